# proxy_wasm_isolation: which instance a request's filters run in, seen
# through a global counter of the testbed filter ("count").
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

run_tests();

__DATA__

=== TEST 1: none (the default): one instance per module in the worker, shared by requests and filters
--- config
    location / {
        proxy_wasm testbed "request_headers count";
        proxy_wasm testbed "request_headers count; request_headers log info second";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 2
count 3
count 4



=== TEST 2: stream: a fresh instance per request, shared by its filters of one module
--- config
    location / {
        proxy_wasm_isolation stream;
        proxy_wasm testbed "request_headers count";
        proxy_wasm testbed "request_headers count; request_headers log info second";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 2
count 1
count 2



=== TEST 3: filter: a fresh instance per filter per request
--- config
    location / {
        proxy_wasm_isolation filter;
        proxy_wasm testbed "request_headers count";
        proxy_wasm testbed "request_headers count; request_headers log info second";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 1
count 1
count 1



=== TEST 4: a request's instance starts its root contexts once; the next request gets it back as that start left it (no second on_configure); each request ends the roots; the worker's shared instance ends its root at shutdown
--- config
    location / {
        proxy_wasm_isolation stream;
        proxy_wasm testbed "configure log info ROOT_CONFIGURED; root_done log info ROOT_DONE; request_headers log info REQUEST_SEEN";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- grep_error_log eval
qr/ROOT_CONFIGURED|REQUEST_SEEN|ROOT_DONE/
--- grep_error_log_out
ROOT_CONFIGURED
ROOT_CONFIGURED
REQUEST_SEEN
ROOT_DONE
REQUEST_SEEN
ROOT_DONE
ROOT_DONE



=== TEST 5: the setting is inherited from http{} and server{}
--- http_config
    proxy_wasm_isolation filter;
--- config
    location / {
        proxy_wasm testbed "request_headers count";
        proxy_wasm testbed "request_headers count";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 1



=== TEST 6: a failure in a request's own instance fails that request only; nothing is replaced
--- config
    location /fail {
        proxy_wasm_isolation stream;
        proxy_wasm testbed "request_headers unreachable";
        empty_gif;
    }
    location /count {
        proxy_wasm testbed "request_headers count";
        empty_gif;
    }
--- request eval
["GET /count", "GET /fail", "GET /fail", "GET /count"]
--- error_code eval
[200, 500, 500, 200]
--- error_log eval
qr/proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed/
--- no_error_log
starting a new instance
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 2



=== TEST 7: an invalid value
--- config
    location / {
        proxy_wasm_isolation connection;
        empty_gif;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "connection" in "proxy_wasm_isolation" directive, it must be "none", "request", "stream" or "filter" in .*nginx.conf:\d+/



=== TEST 7b: request: the name of stream
--- config
    location / {
        proxy_wasm_isolation request;
        proxy_wasm testbed "request_headers count";
        proxy_wasm testbed "request_headers count; request_headers log info second";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 2
count 1
count 2



=== TEST 8: instance_pool: instances come from a pool of slots, reused request after request
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        instance_pool 4;
    }
--- config
    location / {
        proxy_wasm_isolation stream;
        proxy_wasm testbed "request_headers count";
        empty_gif;
    }
--- request eval
["GET /", "GET /", "GET /", "GET /", "GET /", "GET /"]
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 1
count 1
count 1
count 1
count 1



=== TEST 9: a full pool: the instance cannot start, the request fails as configured
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        instance_pool 2;
    }
--- config
    location / {
        proxy_wasm_isolation filter;
        proxy_wasm testbed "request_headers count";
        proxy_wasm testbed "request_headers count; request_headers log info second";
        empty_gif;
    }
--- request
GET /
--- error_code: 500
--- error_log eval
[qr/\[error\] .*proxy_wasm "testbed": cannot start an instance: cannot instantiate: .*/,
 qr/\[error\] .*proxy_wasm "testbed": filter unavailable: its instance could not start: failing the request/]



=== TEST 10: a bad pool size
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        instance_pool 0;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"instance_pool" directive must be "off" or a number of instances from 1 to 100000 in .*nginx.conf:\d+/



=== TEST 11: a request's instance is reset for the next request: each sees the state its start left, never the last request's
--- config
    location / {
        proxy_wasm_isolation request;
        proxy_wasm testbed "configure count; request_headers count; request_headers count";
        empty_gif;
    }
--- request eval
["GET /", "GET /", "GET /", "GET /", "GET /", "GET /"]
--- grep_error_log eval
qr/count [2-9]/
--- grep_error_log_out
count 2
count 3
count 2
count 3
count 2
count 3
count 2
count 3
count 2
count 3
count 2
count 3



=== TEST 12: an instance that failed is dropped, not reset: the next request gets a new one (its start runs)
--- config
    location / {
        proxy_wasm_isolation request;
        proxy_wasm testbed "configure count; request_headers count; request_body panic";
        empty_gif;
    }
--- request eval
["GET /", "POST /\nboom", "GET /"]
--- error_code eval
[200, 500, 200]
--- error_log
panicked
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 1
count 2
count 2
count 1
count 2



=== TEST 13: an instance whose memory grew is dropped: memory does not carry over to the next request
--- config
    location / {
        proxy_wasm_isolation request;
        proxy_wasm testbed "request_headers grow 2";
        empty_gif;
    }
--- request eval
["GET /", "GET /", "GET /"]
--- grep_error_log eval
qr/kept \d+ MiB/
--- grep_error_log_out
kept 2 MiB
kept 2 MiB
kept 2 MiB



=== TEST 14: instance_pool: reset instances hold their slots until another chain needs one
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        instance_pool 3;
    }
--- config
    location /two {
        proxy_wasm_isolation filter;
        proxy_wasm testbed "request_headers count";
        proxy_wasm testbed "request_headers count; request_headers log info second";
        empty_gif;
    }
    location /other {
        proxy_wasm_isolation request;
        proxy_wasm testbed "request_headers count; request_headers log info other";
        empty_gif;
    }
--- request eval
["GET /two", "GET /two", "GET /other", "GET /two"]
--- error_code eval
[200, 200, 200, 200]
--- no_error_log
cannot start an instance
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 1
count 1
count 1
count 1
count 1
count 1



=== TEST 15: an instance whose start left a call in flight is not reused (reset to its start, it would wait for a response that no longer comes): each request gets a new one
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /ok { return 200 "ok\n"; }
    }
--- config
    location / {
        proxy_wasm_isolation request;
        proxy_wasm testbed "configure call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok; configure count; request_headers count";
        empty_gif;
    }
--- request eval
["GET /", "GET /", "GET /"]
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 1
count 2
count 1
count 2
count 1
count 2



=== TEST 16: an instance whose start subscribed to a shared queue is not reused (its items would go to the instance of the request that ended): each request gets a new one
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue jobs 64k;
    }
--- config
    location / {
        proxy_wasm_isolation request;
        proxy_wasm testbed "configure queue_register jobs; configure count; request_headers count";
        empty_gif;
    }
--- request eval
["GET /", "GET /", "GET /"]
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 1
count 2
count 1
count 2
count 1
count 2
