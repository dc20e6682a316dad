# Resource limits: a CPU-time deadline per guest call (callback_timeout)
# and a memory cap per instance (memory_limit). A filter over either fails
# its request; the worker and its other requests are fine.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm',
                hostile => '$TEST_NGINX_WAT/hostile.wat');

run_tests();

__DATA__

=== TEST 1: an endless loop is stopped after callback_timeout; other requests go on meanwhile
--- main_config
    wasm {
        module hostile $TEST_NGINX_WAT/hostile.wat;
        callback_timeout 300ms;
    }
--- config
    location /loop {
        proxy_wasm hostile l;
        empty_gif;
    }
    location /ok {
        empty_gif;
    }
--- concurrent
--- request_delay: 0.05
--- request eval
["GET /loop", "GET /ok"]
--- error_code eval
[500, 200]
--- error_log eval
qr/\[error\] .*proxy_wasm "hostile" #2: proxy_on_request_headers failed: stopped after callback_timeout \(300 ms\)/



=== TEST 2: the default deadline (500 ms) stops a Rust filter's loop; the backtrace names it
--- config
    location / {
        proxy_wasm testbed "request_headers spin";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- error_code eval
[500, 500]
--- error_log eval
[qr/proxy_on_request_headers failed: stopped after callback_timeout \(500 ms\)\nwasm backtrace:\n  #0 testbed!testbed::run_op/,
 qr/starting a new instance/]



=== TEST 3: a Rust filter growing over memory_limit: refused, the filter fails, the next request gets a new instance
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        memory_limit 8m;
    }
--- config
    location /grow {
        proxy_wasm testbed "request_headers grow 16";
        empty_gif;
    }
    location /small {
        proxy_wasm testbed "request_headers grow 1";
        empty_gif;
    }
--- request eval
["GET /grow", "GET /small"]
--- error_code eval
[500, 200]
--- error_log eval
[qr/\[warn\] .*proxy_wasm "testbed" #\d+: memory growth to \d+ bytes refused: over memory_limit \(8388608 bytes\)/,
 qr/\[error\] .*proxy_wasm "testbed" #\d+: proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed/,
 qr/\[error\] .*proxy_wasm "testbed" #\d+: memory allocation of 1048576 bytes failed, client/,
 "kept 1 MiB"]



=== TEST 4: memory.grow over memory_limit returns -1 to the guest
--- main_config
    wasm {
        module hostile $TEST_NGINX_WAT/hostile.wat;
        memory_limit 1m;
    }
--- config
    location / {
        proxy_wasm hostile g;
        empty_gif;
    }
--- request
GET /
--- error_code: 500
--- error_log eval
[qr/memory growth to 1179648 bytes refused: over memory_limit \(1048576 bytes\)/,
 qr/proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed/]



=== TEST 5: a module whose initial memory is over memory_limit cannot start
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        memory_limit 64k;
    }
--- config
    location / {
        proxy_wasm testbed;
        empty_gif;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*module "testbed" failed to start: cannot instantiate: .*memory.* in .*nginx.conf:\d+/



=== TEST 6: bad limits
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        memory_limit 1k;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"memory_limit" directive must be at least 64k \(one Wasm page\) in .*nginx.conf:\d+/



=== TEST 7: ... a zero callback_timeout
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        callback_timeout 0;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"callback_timeout" directive must be more than 0 in .*nginx.conf:\d+/



=== TEST 8: a filter looping in on_configure fails nginx -t after callback_timeout
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        callback_timeout 200ms;
    }
--- config
    location / {
        proxy_wasm testbed "configure spin";
        empty_gif;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*filter "testbed" failed to start: on_configure failed: stopped after callback_timeout \(200 ms\) in .*nginx.conf:\d+/
