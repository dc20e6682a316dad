# A failing filter fails its request (500), is logged with the callback, the
# cause and a backtrace, and never takes the worker down: the next request
# gets a fresh instance.
use Test::Nginx::Socket 'no_plan';

use ProxyWasmTest;

default_modules(hostile => '$TEST_NGINX_WAT/hostile.wat', calm => '$TEST_NGINX_WAT/hostile.wat', testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

run_tests();

__DATA__

=== TEST 1: unreachable in on_request_headers: 500, then the next request is served
--- config
    location /fail {
        proxy_wasm hostile "u";
        empty_gif;
    }
    location /ok {
        proxy_wasm calm "ok";
        empty_gif;
    }
--- request eval
["GET /fail", "GET /ok", "GET /fail", "GET /ok"]
--- error_code eval
[500, 200, 500, 200]
--- error_log eval
qr/\[error\] .*proxy_wasm "hostile" #\d+: proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed\nwasm backtrace:\n  #0 hostile!<wasm function \d+> at offset 0x[0-9a-f]+, client: 127\.0\.0\.1, server: localhost, request: "GET \/fail HTTP\/1\.1"/



=== TEST 2: division by zero
--- config
    location / {
        proxy_wasm hostile "d";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- error_code eval
[500, 500]
--- error_log
proxy_on_request_headers failed: wasm trap: integer divide by zero



=== TEST 3: unbounded recursion
--- config
    location / {
        proxy_wasm hostile "r";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- error_code eval
[500, 500]
--- error_log
proxy_on_request_headers failed: wasm trap: call stack exhausted



=== TEST 4: out-of-bounds memory access
--- config
    location / {
        proxy_wasm hostile "m";
        empty_gif;
    }
--- request
GET /
--- error_code: 500
--- error_log
proxy_on_request_headers failed: wasm trap: out of bounds memory access



=== TEST 5: proc_exit
--- config
    location / {
        proxy_wasm hostile "e";
        empty_gif;
    }
--- request
GET /
--- error_code: 500
--- error_log
proxy_on_request_headers failed: proc_exit(1) called



=== TEST 6: a trap in on_response_headers replaces the response with a 500
--- config
    location / {
        proxy_wasm hostile "R";
        return 200 "never sent\n";
    }
--- request
GET /
--- error_code: 500
--- response_body_like: 500 Internal Server Error
--- error_log
proxy_on_response_headers failed: wasm trap: wasm `unreachable` instruction executed



=== TEST 7: a Rust panic (the SDK logs its message at critical level)
--- config
    location / {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- error_code eval
[500, 500]
--- error_log eval
[qr/\[crit\] .*proxy_wasm "testbed" #\d+: panicked at .*testbed panics in request_headers/,
 qr/proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed\nwasm backtrace:\n  #0 testbed!/]



=== TEST 8: a trap after the response: logged, the response was sent
--- config
    location / {
        proxy_wasm testbed "log unreachable";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- error_code eval
[200, 200]
--- error_log
proxy_on_log failed: wasm trap: wasm `unreachable` instruction executed



=== TEST 9: the replacement instance starts the filters again
--- config
    location /fail {
        proxy_wasm testbed "trace; request_headers unreachable";
        empty_gif;
    }
--- request eval
["GET /fail", "GET /fail"]
--- error_code eval
[500, 500]
--- grep_error_log eval
qr/#\d+ on_configure|proxy_on_request_headers failed/
--- grep_error_log_out
#1 on_configure
proxy_on_request_headers failed
#1 on_configure
proxy_on_request_headers failed
#1 on_configure



=== TEST 10: other filters of another module are not affected
--- config
    location / {
        proxy_wasm testbed "request_headers unreachable";
        empty_gif;
    }
    location /other {
        proxy_wasm calm "ok";
        return 200 "other\n";
    }
--- request eval
["GET /", "GET /other"]
--- error_code eval
[500, 200]
--- response_body eval
[qr/500/, "other\n"]



=== TEST 11: a failure in a response nginx produced itself
--- config
    location / {
        proxy_wasm hostile "R";
        return 404;
    }
--- request
GET /
--- error_code: 500
