# Flow control: requests and responses held by a Pause until a continue, a
# close or a local response (from the same or another request's context);
# where in a chain a held stream resumes; what a client that goes away
# while its request is held leaves behind.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm',
                abi_0_1_0_continue => '$TEST_NGINX_WAT/abi_0_1_0_continue.wat');

# The upstream answers 204 with the body it received in a header.
our $Backend = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/sink;
            add_header x-body "$request_body" always;
        }
        location /sink {
            return 204;
        }
    }
END

# The lines every context of a request logs once with "trace".
our $Files = <<'END';
>>> resumed.txt
resumed
>>> not-held.txt
not held
END

our $Life = qr/(?<=\d )on_(?:log|done|delete)/;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Backend) unless defined $block->http_config;
    $block->set_value('user_files', $Files) unless defined $block->user_files;
});

run_tests();

__DATA__

=== TEST 1: a Pause in on_request_headers holds the request, body unread, until another request continues it
--- config
    location /held {
        proxy_wasm testbed "request_headers log info held:%20headers; request_headers pause; request_headers remember; request_body log info held:%20body";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /release {
        proxy_wasm testbed "request_headers log info releasing%20now; request_headers continue_remembered request";
        empty_gif;
    }
--- concurrent
--- request eval
["POST /held\ndata", "GET /release"]
--- error_code eval
[204, 200]
--- response_headers eval
["x-body: data", ""]
--- grep_error_log eval
qr/held: \w+|releasing now/
--- grep_error_log_out
held: headers
releasing now
held: body



=== TEST 2: a Pause in filter 2 of 3 stops filter 3 until resumed; the response runs the filters in reverse
--- config
    location /held {
        proxy_wasm testbed "request_headers log info f1%20request; response_headers log info f1%20response";
        proxy_wasm testbed "request_headers log info f2%20request; request_headers pause; request_headers remember; response_headers log info f2%20response";
        proxy_wasm testbed "request_headers log info f3%20request; response_headers log info f3%20response";
        alias $TEST_NGINX_HTML_DIR/resumed.txt;
    }
    location /release {
        proxy_wasm testbed "request_headers log info releasing%20now; request_headers continue_remembered request";
        empty_gif;
    }
--- concurrent
--- request eval
["GET /held", "GET /release"]
--- error_code eval
[200, 200]
--- response_body eval
["resumed\n", qr/GIF/]
--- grep_error_log eval
qr/f\d \w+|releasing now/
--- grep_error_log_out
f1 request
f2 request
releasing now
f3 request
f3 response
f2 response
f1 response



=== TEST 3: a response paused by filter 2 of 3 resumes at filter 1 (response filters run in reverse)
--- config
    location /held {
        proxy_wasm testbed "response_headers log info f1%20response";
        proxy_wasm testbed "response_headers log info f2%20response; response_headers pause; response_headers remember";
        proxy_wasm testbed "response_headers log info f3%20response";
        return 200 "resumed\n";
    }
    location /release {
        proxy_wasm testbed "request_headers log info releasing%20now; request_headers continue_remembered response";
        empty_gif;
    }
--- concurrent
--- request eval
["GET /held", "GET /release"]
--- error_code eval
[200, 200]
--- response_body eval
["resumed\n", qr/GIF/]
--- grep_error_log eval
qr/f\d \w+|releasing now/
--- grep_error_log_out
f3 response
f2 response
releasing now
f1 response



=== TEST 4: a continue within the paused callback itself: nothing is held
--- config
    location / {
        proxy_wasm testbed "request_headers pause; request_headers continue request; response_headers pause; response_headers continue response";
        proxy_wasm testbed "request_headers log info second%20filter";
    }
--- request
GET /not-held.txt
--- timeout: 3
--- response_body
not held
--- error_log
second filter



=== TEST 5: ABI 0.1.0: proxy_continue_request and proxy_continue_response
--- config
    location / {
        proxy_wasm abi_0_1_0_continue;
    }
--- request
GET /not-held.txt
--- timeout: 3
--- response_body
not held
--- error_log
continued



=== TEST 6: a request held in on_request_headers answered from another request; the filters after it do not run
--- config
    location /held {
        proxy_wasm testbed "request_headers pause; request_headers remember";
        proxy_wasm testbed "request_headers log info second%20filter; response_headers log info second%20filter%20response";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /answer {
        proxy_wasm testbed "request_headers respond_remembered 403 denied";
        empty_gif;
    }
--- concurrent
--- request eval
["POST /held\ndata", "GET /answer"]
--- error_code eval
[403, 200]
--- response_body eval
["denied", qr/GIF/]
--- error_log
second filter response
--- no_error_log
second filter,



=== TEST 7: a request held in on_request_body answered from another request
--- config
    location /held {
        proxy_wasm testbed "request_body pause; request_body remember";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /answer {
        proxy_wasm testbed "request_headers respond_remembered 413 too%20big";
        empty_gif;
    }
--- concurrent
--- request eval
["POST /held\ndata", "GET /answer"]
--- error_code eval
[413, 200]
--- response_body eval
["too big", qr/GIF/]



=== TEST 8: a request held in on_request_headers closed from another request; its contexts end once
--- config
    location /held {
        proxy_wasm testbed "trace; request_headers pause; request_headers remember";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /close {
        proxy_wasm testbed "request_headers close_remembered";
        empty_gif;
    }
--- concurrent
--- request eval
["GET /held", "GET /close"]
--- error_code eval
["", 200]
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete



=== TEST 9: proxy_close_stream from the filter's own callbacks takes effect when the callback returns
--- config
    location /request {
        proxy_wasm testbed "trace; request_headers close; request_headers log info still%20running";
        proxy_wasm testbed "request_headers log info second%20filter";
        empty_gif;
    }
    location /response {
        proxy_wasm testbed "trace; response_headers close; response_headers log info still%20running";
        return 200 "never sent\n";
    }
    location /body {
        proxy_wasm testbed "trace; response_body close";
        return 200 "never sent\n";
    }
--- request eval
["GET /request", "GET /response", "GET /body"]
--- error_code eval
["", "", ""]
--- error_log
still running
--- no_error_log
second filter
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete
on_log
on_done
on_delete
on_log
on_done
on_delete



=== TEST 10: a local response takes effect when the callback returns
--- config
    location / {
        proxy_wasm testbed "request_headers respond 403 no; request_headers log info still%20running";
        empty_gif;
    }
--- request
GET /
--- error_code: 403
--- response_body chomp
no
--- error_log
still running



=== TEST 11: a client that goes away while its request is held: the contexts end once
--- config
    location / {
        proxy_wasm testbed "trace; request_headers pause";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /
--- abort
--- timeout: 0.5
--- wait: 0.3
--- error_log
client prematurely closed connection
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete



=== TEST 12: ... while its request body is held
--- config
    location / {
        proxy_wasm testbed "trace; request_body pause";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
POST /
data
--- abort
--- timeout: 0.5
--- wait: 0.3
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete



=== TEST 13: ... while its response headers are held
--- config
    location / {
        proxy_wasm testbed "trace; response_headers pause";
        return 200 "held\n";
    }
--- request
GET /
--- abort
--- timeout: 0.5
--- wait: 0.3
--- error_log
client prematurely closed connection
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete



=== TEST 14: ... while its response body is held
--- config
    location / {
        proxy_wasm testbed "trace; response_body pause";
        return 200 "held\n";
    }
--- request
GET /
--- abort
--- timeout: 0.5
--- wait: 0.3
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete



=== TEST 15: continuing, closing or answering a context that has ended is refused, harmlessly
--- config
    location /first {
        proxy_wasm testbed "request_headers remember";
        empty_gif;
    }
    location /continue {
        proxy_wasm testbed "request_headers continue_remembered request";
        alias $TEST_NGINX_HTML_DIR/resumed.txt;
    }
--- request eval
["GET /first", "GET /continue"]
--- error_code eval
[200, 200]
--- error_log eval
qr/remembered context #\d+ is gone: BadArgument/



=== TEST 16: a request body held past client_body_timeout: the request times out, the contexts end once
--- config
    location / {
        client_body_timeout 1s;
        proxy_wasm testbed "trace; request_body pause";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
POST /
data
--- timeout: 4
--- error_code:
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete



=== TEST 17: a response held past send_timeout: the request times out, the contexts end once
--- config
    location / {
        send_timeout 1s;
        proxy_wasm testbed "trace; response_headers pause";
        return 200 "held\n";
    }
--- request
GET /
--- timeout: 4
--- error_code:
--- error_log
client timed out
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete



=== TEST 18: HTTP/2: proxy_close_stream resets the stream
--- http2
--- config
    location / {
        proxy_wasm testbed "trace; request_headers close";
        empty_gif;
    }
--- request
GET /
--- error_code:
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete



=== TEST 19: a request held in on_request_headers past proxy_wasm_hold_timeout fails with proxy_wasm_failure_status
--- config
    location / {
        proxy_wasm_hold_timeout 300ms;
        proxy_wasm_failure_status 504;
        proxy_wasm testbed "trace; request_headers pause";
        empty_gif;
    }
--- request
GET /
--- timeout: 3
--- error_code: 504
--- error_log eval
qr/\[error\] .*proxy_wasm: a filter held the request longer than proxy_wasm_hold_timeout \(300 ms\), client/
--- grep_error_log eval: $::Life
--- grep_error_log_out
on_log
on_done
on_delete
