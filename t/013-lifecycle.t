# The edges of a request's life: clients that go away, upstreams that
# fail or time out, internal redirects (error_page, try_files), subrequests
# (ssi, auth_request, mirror), pipelined requests. Every context ends
# exactly once, and a chain runs once per request unless a redirect lands
# in a location with another chain. Root contexts whose on_done returns
# false finish when they call proxy_done, at a worker's shutdown and at
# the end of a request's own instance.
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

# A chain that logs "<name> <callback>" in every callback of its contexts.
sub marked {
    my $name = shift;
    return join '; ', map { "$_ log info $name%20$_" }
        qw(request_headers request_body response_headers log done delete);
}

our $A = marked('A');
our $B = marked('B');
our $Marks = qr/\b[AB] (?:request_headers|request_body|response_headers|log|done|delete)\b/;

# A TCP listener that never accepts: an upstream that never answers.
our $Silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0)
    or die "cannot listen: $!";
our $SilentPort = $Silent->sockport;

our $Backend = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        root $TEST_NGINX_HTML_DIR;
        location /missing { return 404; }
        location /slow/ {
            alias $TEST_NGINX_HTML_DIR/;
            limit_rate 1k;
        }
        location /auth { return 204; }
        location /mirrored {
            proxy_wasm testbed "request_body log_body";
            proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/auth;
        }
    }
END

our $Files = ">>> big.txt\n" . ("0123456789" x 10000) . "\n>>> part.txt\npart\n";

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Backend) unless defined $block->http_config;
    $block->set_value('user_files', $Files) unless defined $block->user_files;
});

run_tests();

__DATA__

=== TEST 1: a client that goes away while sending its body
--- config eval
"location / {
    proxy_wasm testbed \"$::A\";
    proxy_pass http://127.0.0.1:\$TEST_NGINX_RAND_PORT_1;
}"
--- raw_request eval
["POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nsome", " more"]
--- abort
--- timeout: 0.5
--- wait: 0.3
--- error_log
client prematurely closed connection
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A request_body
A request_body
A log
A done
A delete



=== TEST 2: a client that goes away during the response
--- config eval
"location / {
    proxy_wasm testbed \"$::A; response_body log info A%20response_body\";
    proxy_buffering off;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_RAND_PORT_1/slow/;
}"
--- request
GET /big.txt
--- abort
--- timeout: 1
--- wait: 0.5
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A response_headers
A log
A done
A delete



=== TEST 3: an upstream that is down: the filters see the 502
--- config
    location / {
        proxy_wasm testbed "trace; response_headers get_header response :status";
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /
--- error_code: 502
--- error_log
response header :status: "502"
--- grep_error_log eval
qr/(?<=\d )on_(?:request_headers|response_headers|log|done|delete)/
--- grep_error_log_out
on_request_headers
on_response_headers
on_log
on_done
on_delete



=== TEST 4: an upstream that times out: the filters see the 504
--- config eval
"location / {
    proxy_wasm testbed \"trace; response_headers get_header response :status\";
    proxy_read_timeout 1s;
    proxy_pass http://127.0.0.1:$::SilentPort;
}"
--- request
GET /
--- error_code: 504
--- error_log
upstream timed out
response header :status: "504"
--- grep_error_log eval
qr/(?<=\d )on_(?:request_headers|response_headers|log|done|delete)/
--- grep_error_log_out
on_request_headers
on_response_headers
on_log
on_done
on_delete



=== TEST 5: error_page to a location without a chain: the chain sees the error page, once
--- config eval
"location / {
    proxy_wasm testbed \"$::A\";
    proxy_intercept_errors on;
    error_page 404 /error;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_RAND_PORT_1/missing;
}
location /error {
    return 404 \"error page\\n\";
}"
--- request
GET /
--- error_code: 404
--- response_body
error page
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A response_headers
A log
A done
A delete



=== TEST 6: error_page to a location that inherits the same chain: it does not run twice
--- server_config eval
"proxy_wasm testbed \"$::A\";"
--- config
    location / {
        proxy_intercept_errors on;
        error_page 404 /error;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/missing;
    }
    location /error {
        return 404 "error page\n";
    }
--- request
GET /
--- error_code: 404
--- response_body
error page
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A response_headers
A log
A done
A delete



=== TEST 7: error_page to a location with another chain: the first ends, the other runs
--- config eval
"location / {
    proxy_wasm testbed \"$::A\";
    proxy_intercept_errors on;
    error_page 404 = /error;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_RAND_PORT_1/missing;
}
location /error {
    proxy_wasm testbed \"$::B\";
    alias \$TEST_NGINX_HTML_DIR/part.txt;
}"
--- request
GET /
--- error_code: 200
--- response_body
part
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A log
A done
A delete
B request_headers
B response_headers
B log
B done
B delete



=== TEST 8: try_files falling back to a location with another chain
--- config eval
"location / {
    proxy_wasm testbed \"$::A\";
    try_files \$uri /fallback;
}
location /fallback {
    proxy_wasm testbed \"$::B\";
    alias \$TEST_NGINX_HTML_DIR/part.txt;
}"
--- request
GET /nothing-here
--- response_body
part
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A log
A done
A delete
B request_headers
B response_headers
B log
B done
B delete



=== TEST 9: ssi includes are part of the main response's body; their locations' chains do not run
--- config eval
"location / {
    ssi on;
    ssi_types text/plain;
    proxy_wasm testbed \"$::A; response_body pause_until_end; response_body at_end log_body\";
}
location /part.txt {
    proxy_wasm testbed \"$::B\";
}"
--- user_files
>>> page.txt
before <!--# include virtual="/part.txt" --> after
>>> part.txt
part
--- request
GET /page.txt
--- response_body
before part
 after
--- error_log eval
qr/response_body \(\d+ bytes, end_of_stream true\): "before part\n after\n"/
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A response_headers
A log
A done
A delete



=== TEST 10: auth_request: the subrequest's location chain does not run
--- config eval
"location / {
    auth_request /auth;
    proxy_wasm testbed \"$::A\";
}
location /auth {
    proxy_wasm testbed \"$::B\";
    proxy_pass http://127.0.0.1:\$TEST_NGINX_RAND_PORT_1/auth;
}"
--- request
GET /part.txt
--- response_body
part
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A response_headers
A log
A done
A delete



=== TEST 11: mirror: the mirrored subrequest does not run the chain; the mirror gets the filtered body
--- config eval
"location / {
    mirror /mirror;
    proxy_wasm testbed \"$::A; request_body at_end replace_body filtered\";
    proxy_pass http://127.0.0.1:\$TEST_NGINX_RAND_PORT_1/mirrored;
}
location /mirror {
    internal;
    proxy_wasm testbed \"$::B\";
    proxy_pass http://127.0.0.1:\$TEST_NGINX_RAND_PORT_1/mirrored;
}"
--- request
POST /
original
--- error_code: 204
--- error_log eval
qr/request_body \(8 bytes, end_of_stream true\): "filtered"(?s:.*)request_body \(8 bytes, end_of_stream true\): "filtered"/
--- grep_error_log eval: $::Marks
--- grep_error_log_out
A request_headers
A request_body
A response_headers
A log
A done
A delete



=== TEST 12: pipelined requests with bodies: each through its own contexts
--- config
    location / {
        proxy_wasm testbed "request_body pause_until_end; request_body at_end upper_body";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location /echo {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/sink;
        add_header x-body "$request_body" always;
    }
    location /sink {
        return 204;
    }
--- raw_request eval
"POST /1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\none"
. "POST /2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\ntwo"
. "GET /3 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- raw_response_like eval
qr/x-body: ONE\r\n.*x-body: TWO\r\n.*HTTP\/1.1 204/s



=== TEST 13: at a graceful shutdown, a root context whose on_done returns false keeps the worker until it calls proxy_done from a tick
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /auth { return 204; }
    }
--- config
    location / {
        proxy_wasm testbed "configure done_later; root_done tick_period 200; tick proxy_done; tick proxy_done";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/auth;
    }
--- request
GET /
--- error_code: 204
--- grep_error_log eval
qr/#\d+ (root on_done: finishing later|proxy_done returned \d|root on_delete)/
--- grep_error_log_out eval
qr/\A#(\d+) root on_done: finishing later\n#\1 proxy_done returned 0\n#\1 proxy_done returned 1\n#\1 root on_delete\n\z/
--- no_error_log
[warn]



=== TEST 14: a root context that never calls proxy_done is ended after 5 s, with a warning; the worker exits
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /auth { return 204; }
    }
--- config
    location / {
        proxy_wasm testbed "configure done_later";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/auth;
    }
--- request
GET /
--- error_code: 204
--- error_log eval
[qr/#\d+ root on_done: finishing later/,
 qr/\[warn\].*root contexts \[\d+\] did not call proxy_done within 5 s of on_done: ended/,
 qr/#\d+ root on_delete/]



=== TEST 15: a request's own instance stays while its root finishes: proxy_done from the root's HTTP call callback
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /auth { return 204; }
    }
--- config
    location / {
        proxy_wasm_isolation request;
        proxy_wasm testbed "configure done_later; root_done call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /auth ''; root_call_response proxy_done";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/auth;
    }
--- request
GET /
--- error_code: 204
--- wait: 0.5
--- grep_error_log eval
qr/(#\d+ (root on_done: finishing later|proxy_done returned \d|root on_delete)|call #\d+ status \d+)/
--- grep_error_log_out eval
qr/\A#(\d+) root on_done: finishing later\ncall #\d+ status 0\n#\1 proxy_done returned 0\n#\1 root on_delete\n/
