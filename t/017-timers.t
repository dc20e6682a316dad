# Ticks: proxy_set_tick_period_milliseconds from root contexts, on_tick in
# every worker, changed, cancelled, stopped with a failed instance and at
# shutdown.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

run_tests();

__DATA__

=== TEST 1: a period set in on_vm_start
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start tick_period 100";
    }
--- config
    location / {
        proxy_wasm testbed "tick log info ticked";
        empty_gif;
    }
--- wait: 0.6
--- grep_error_log eval
qr/proxy_wasm "testbed" #1: ticked$/m
--- grep_error_log_out eval
qr/^(proxy_wasm "testbed" #1: ticked\n){3,7}$/



=== TEST 2: a period set in on_configure; two root contexts tick on their own
--- config
    location / {
        proxy_wasm testbed "configure tick_period 100; tick log info first";
        proxy_wasm testbed "configure tick_period 100; tick log info second";
        empty_gif;
    }
--- wait: 0.45
--- error_log eval
[qr/#1: first$/m, qr/#2: second$/m]



=== TEST 3: a period of 0 stops the ticks
--- config
    location / {
        proxy_wasm testbed "configure tick_period 50; tick tick_count 3 0";
        empty_gif;
    }
--- wait: 0.6
--- grep_error_log eval
qr/tick \d+$/m
--- grep_error_log_out
tick 1
tick 2
tick 3



=== TEST 4: a new period replaces the old one
--- config
    location / {
        proxy_wasm testbed "configure tick_period 50; tick tick_count 2 60000";
        empty_gif;
    }
--- wait: 0.6
--- grep_error_log eval
qr/tick \d+$/m
--- grep_error_log_out
tick 1
tick 2



=== TEST 5: a period set from an HTTP context applies to its root context
--- config
    location / {
        proxy_wasm testbed "request_headers tick_period 100; tick log info ticked";
        empty_gif;
    }
--- request
GET /
--- wait: 0.35
--- error_log eval
qr/#1: ticked$/m



=== TEST 6: every worker ticks
--- workers: 2
--- config
    location / {
        proxy_wasm testbed "configure tick_period 50; tick log info ticked";
        empty_gif;
    }
--- wait: 0.4
--- error_log eval
qr/ (\d+)#\1: proxy_wasm "testbed" #1: ticked$(?s:.*) (?!\1#)(\d+)#\2: proxy_wasm "testbed" #1: ticked$/m



=== TEST 7: a tick continues a request held by a filter of the same instance
--- config
    location / {
        proxy_wasm testbed "configure tick_period 100; request_headers pause; request_headers remember; tick continue_remembered request";
        empty_gif;
    }
--- request
GET /
--- timeout: 3
--- error_code: 200



=== TEST 8: the ticks of a failed instance stop; its replacement ticks again
--- config
    location /trap {
        proxy_wasm testbed "configure tick_period 50; tick log info ticked; request_headers unreachable";
        empty_gif;
    }
    location /ok {
        proxy_wasm testbed "configure tick_period 50; tick log info ticked; request_headers unreachable";
        return 200;
    }
--- request eval
["GET /ok", "GET /trap", "GET /ok"]
--- request_delay: 0.4
--- error_code eval
[200, 500, 200]
--- wait: 0.3
--- grep_error_log eval
qr/ticked|proxy_on_request_headers failed|starting a new instance/
--- grep_error_log_out eval
qr/^(ticked\n)+proxy_on_request_headers failed\n(starting a new instance\n)(ticked\n)+$/



=== TEST 9: instances made for one request do not tick
--- config
    location / {
        proxy_wasm_isolation stream;
        proxy_wasm testbed "request_headers tick_period 50; tick log info ticked";
        empty_gif;
    }
--- request
GET /
--- wait: 0.3
--- no_error_log
ticked



=== TEST 10: ticks do not keep a worker from shutting down
--- config
    location / {
        proxy_wasm testbed "configure tick_period 10; tick log info ticked";
        empty_gif;
    }
--- wait: 0.1
--- error_log
ticked
