# Request bodies through the chain: chunk by chunk as nginx reads them,
# buffered by pausing filters, changed on their way to the upstream.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

# The upstream answers 204 with what it received in headers.
our $Backend = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/sink;
            add_header x-body "$request_body" always;
            add_header x-length "$http_content_length" always;
            add_header x-chunked "$http_transfer_encoding" always;
        }
        location /sink {
            return 204;
        }
    }
END

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Backend) unless defined $block->http_config;
});

run_tests();

__DATA__

=== TEST 1: chunk by chunk as the body arrives, end_of_stream on the last
--- config
    location / {
        proxy_wasm testbed "request_body log_body";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- raw_request eval
["POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 16\r\nConnection: close\r\n\r\nhello",
 "-world",
 "-done"]
--- error_code: 204
--- response_headers
x-body: hello-world-done
x-length: 16
--- grep_error_log eval
qr/request_body \(\d+ bytes, end_of_stream \w+\): "[^"]*"/
--- grep_error_log_out
request_body (5 bytes, end_of_stream false): "hello"
request_body (6 bytes, end_of_stream false): "-world"
request_body (5 bytes, end_of_stream true): "-done"



=== TEST 2: pausing buffers: each call carries the whole body so far
--- config
    location / {
        proxy_wasm testbed "request_body pause_until_end; request_body log_body";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- raw_request eval
["POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 16\r\nConnection: close\r\n\r\nhello",
 "-world",
 "-done"]
--- error_code: 204
--- response_headers
x-body: hello-world-done
--- grep_error_log eval
qr/request_body \(\d+ bytes, end_of_stream \w+\): "[^"]*"/
--- grep_error_log_out
request_body (5 bytes, end_of_stream false): "hello"
request_body (11 bytes, end_of_stream false): "hello-world"
request_body (16 bytes, end_of_stream true): "hello-world-done"



=== TEST 3: replace, prepend, append and a range: the upstream gets the new body and its length
--- config
    location /replace {
        proxy_wasm testbed "request_body replace_body new";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /prepend {
        proxy_wasm testbed "request_body prepend_body hello%20";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /append {
        proxy_wasm testbed "request_body append_body !!";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /range {
        proxy_wasm testbed "request_body splice_body 1 3 ORL";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["POST /replace\nworld", "POST /prepend\nworld", "POST /append\nworld", "POST /range\nworld"]
--- error_code eval
[204, 204, 204, 204]
--- response_headers eval
["x-body: new\nx-length: 3", "x-body: hello world\nx-length: 11", "x-body: world!!\nx-length: 7", "x-body: wORLd\nx-length: 5"]



=== TEST 4: a chunked request body, changed: the upstream gets it sized
--- config
    location / {
        proxy_wasm testbed "request_body upper_body";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- raw_request eval
"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n-world\r\n0\r\n\r\n"
--- error_code: 204
--- response_headers
x-body: HELLO-WORLD
x-length: 11
!x-chunked



=== TEST 5: a body nginx spools to a temporary file is seen whole
--- config
    client_body_buffer_size 1k;
    location / {
        proxy_wasm testbed "request_body pause_until_end; request_body log_body_size";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
"POST /\n" . ("a" x 100000)
--- error_code: 204
--- response_headers
x-length: 100000
--- error_log
request_body (100000 bytes, end_of_stream true)



=== TEST 6: a large body streamed through unchanged
--- config
    client_body_buffer_size 1k;
    location / {
        proxy_wasm testbed "request_body log_body_size";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- raw_request eval
["POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n" . ("a" x 100000),
 "b" x 100000]
--- error_code: 204
--- response_headers
x-length: 200000
--- error_log eval
qr/request_body \(\d+ bytes, end_of_stream true\)/



=== TEST 7: no body, no body callback
--- config
    location / {
        proxy_wasm testbed "trace";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /
--- error_code: 204
--- no_error_log eval
qr/on_request_body/



=== TEST 8: Expect: 100-continue
--- config
    location / {
        proxy_wasm testbed "request_body log_body";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
"POST /\nhello"
--- more_headers
Expect: 100-continue
--- error_code: 204
--- response_headers
x-body: hello
--- error_log
request_body (5 bytes, end_of_stream true): "hello"



=== TEST 9: a body over client_max_body_size is refused before any body callback
--- config
    location / {
        client_max_body_size 10;
        proxy_wasm testbed "trace";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
POST /
this body is too large
--- error_code: 413
--- no_error_log eval
qr/on_request_body/



=== TEST 10: a local response from on_request_body; the connection goes on
--- config
    location /deny {
        proxy_wasm testbed "request_body respond 403 denied";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /next {
        proxy_wasm testbed "request_headers log info next%20request";
        empty_gif;
    }
--- raw_request eval
"POST /deny HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- error_code: 403
--- response_body chomp
denied
--- error_log
next request



=== TEST 11: a body held at its end waits until another request continues it
--- config
    location /held {
        proxy_wasm testbed "request_body pause; request_body remember";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    location /release {
        proxy_wasm testbed "request_headers continue_remembered request";
        empty_gif;
    }
--- concurrent
--- request eval
["POST /held\ndata", "GET /release"]
--- error_code eval
[204, 200]
--- response_headers eval
["x-body: data", ""]



=== TEST 12: a filter that does not pause on the body never holds it
--- config
    location / {
        proxy_wasm testbed "request_body log_body; request_body continue request";
        proxy_wasm testbed "request_body append_body -2";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
"POST /\none"
--- error_code: 204
--- response_headers
x-body: one-2



=== TEST 13: HTTP/2
--- http2
--- config
    location / {
        proxy_wasm testbed "request_body pause_until_end; request_body log_body; request_body upper_body";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
"POST /\nover http2"
--- error_code: 204
--- response_headers
x-body: OVER HTTP2
x-length: 10
--- error_log
request_body (10 bytes, end_of_stream true): "over http2"
