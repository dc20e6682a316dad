# Logging from filters, and the WASI functions that work here.
use Test::Nginx::Socket 'no_plan';

use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

run_tests();

__DATA__

=== TEST 1: proxy_log levels map to nginx's, prefixed with the filter and context
(nginx adds the request to lines above debug level)
--- config
    location / {
        proxy_wasm testbed "request_headers log trace a%20trace; request_headers log debug a%20debug; request_headers log info an%20info; request_headers log warn a%20warning; request_headers log error an%20error; request_headers log critical a%20critical";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[qr/\[debug\] .*proxy_wasm "testbed" #2: a trace$/m,
 qr/\[debug\] .*proxy_wasm "testbed" #2: a debug$/m,
 qr/\[info\] .*proxy_wasm "testbed" #2: an info, client: /,
 qr/\[warn\] .*proxy_wasm "testbed" #2: a warning, client: /,
 qr/\[error\] .*proxy_wasm "testbed" #2: an error, client: /,
 qr/\[crit\] .*proxy_wasm "testbed" #2: a critical, client: /]



=== TEST 2: root contexts log without a request
--- config
    location / {
        proxy_wasm testbed "configure log info configuring";
        empty_gif;
    }
--- request
GET /
--- error_log eval
qr/\[info\] \d+#\d+: proxy_wasm "testbed" #1: configuring$/m



=== TEST 3: the level filters see is nginx's error_log level
--- log_level: warn
--- config
    location / {
        proxy_wasm testbed "request_headers log_level; request_headers log warn shown; request_headers log info hidden";
        empty_gif;
    }
--- request
GET /
--- error_log
shown
--- no_error_log
hidden
host log level



=== TEST 4: info level
--- log_level: info
--- config
    location / {
        proxy_wasm testbed "request_headers log_level";
        empty_gif;
    }
--- request
GET /
--- error_log
host log level: Info



=== TEST 5: debug level is trace for filters
--- config
    location / {
        proxy_wasm testbed "request_headers log_level";
        empty_gif;
    }
--- request
GET /
--- error_log
host log level: Trace



=== TEST 6: stdout and stderr go to the error log
--- config
    location / {
        proxy_wasm testbed "request_headers stdout printed; request_headers stderr complained";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[qr/\[info\] .*proxy_wasm "testbed" #2: printed, client/,
 qr/\[error\] .*proxy_wasm "testbed" #2: complained, client/]



=== TEST 7: clocks, randomness, empty args and environment
--- config
    location / {
        proxy_wasm testbed "request_headers wasi; request_headers time";
        empty_gif;
    }
--- request
GET /
--- error_log
wasi: random true, wall clock plausible true, monotonic true, args 0, env 0
host time plausible: true
