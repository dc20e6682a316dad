# proxy_wasm_failure: what a request does when a filter fails (fail the
# request, with proxy_wasm_failure_status, or skip the filter), and what
# becomes of the failed instance (replaced, or not). The failure model
# itself (no backoff for bad requests, crash loops, requests taken down
# with an instance) is t/024-containment.t's.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm',
                second => '$TEST_NGINX_WAT/second_configure_fails.wat');

our $Trap = qr/proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed/;

run_tests();

__DATA__

=== TEST 1: reload (the default): the request fails, the next one gets a new instance
--- config
    location /trap {
        proxy_wasm testbed "request_headers unreachable";
        empty_gif;
    }
    location /ok {
        proxy_wasm testbed "request_headers count";
        empty_gif;
    }
--- request eval
["GET /ok", "GET /trap", "GET /ok"]
--- error_code eval
[200, 500, 200]
--- error_log eval
[$::Trap, qr/\[info\] .*proxy_wasm "testbed": starting a new instance/]
--- grep_error_log eval
qr/count \d+/
--- grep_error_log_out
count 1
count 1



=== TEST 2: fail_closed: the request fails, and so do later ones until nginx reloads
--- config
    location /trap {
        proxy_wasm_failure fail_closed;
        proxy_wasm testbed "request_headers unreachable";
        empty_gif;
    }
    location /ok {
        proxy_wasm_failure fail_closed;
        proxy_wasm testbed "request_headers count";
        empty_gif;
    }
--- request eval
["GET /ok", "GET /trap", "GET /ok"]
--- error_code eval
[200, 500, 500]
--- error_log eval
[$::Trap, qr/\[error\] .*proxy_wasm "testbed": filter unavailable: its instance failed: failing the request, client/]
--- no_error_log
starting a new instance



=== TEST 3: fail_open: the failed filter is skipped, the chain goes on; later requests skip it too
--- config
    location /trap {
        proxy_wasm_failure fail_open;
        proxy_wasm testbed "request_headers unreachable";
        proxy_wasm hello;
        empty_gif;
    }
    location /ok {
        proxy_wasm_failure fail_open;
        proxy_wasm testbed "request_headers count";
        empty_gif;
    }
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        module hello $TEST_NGINX_FILTERS/hello.wasm;
    }
--- request eval
["GET /trap", "GET /ok"]
--- error_code eval
[200, 200]
--- response_headers eval
["x-powered-by: ngx_proxy_wasm", ""]
--- error_log eval
[$::Trap,
 qr/\[warn\] .*proxy_wasm "testbed" #\d+: filter failed: skipped for the rest of the request \(proxy_wasm_failure fail_open\)/,
 qr/\[warn\] .*proxy_wasm "testbed": filter unavailable \(its instance failed\): skipped \(proxy_wasm_failure fail_open\)/]
--- no_error_log
count 1



=== TEST 4: fail_open in response callbacks: the response goes out as it was
--- config
    location / {
        proxy_wasm_failure fail_open;
        proxy_wasm testbed "response_headers unreachable";
        return 200 "unchanged\n";
    }
    location /body {
        proxy_wasm_failure fail_open;
        proxy_wasm testbed "response_body unreachable";
        return 200 "unchanged\n";
    }
--- request eval
["GET /", "GET /body"]
--- error_code eval
[200, 200]
--- response_body eval
["unchanged\n", "unchanged\n"]



=== TEST 5: proxy_wasm_failure_status
--- config
    location / {
        proxy_wasm_failure_status 503;
        proxy_wasm testbed "request_headers unreachable";
        empty_gif;
    }
    location /response {
        proxy_wasm_failure_status 502;
        proxy_wasm testbed "response_headers unreachable";
        return 200;
    }
--- request eval
["GET /", "GET /response"]
--- error_code eval
[503, 502]



=== TEST 6: proxy_wasm_failure_status must be an error status
--- config
    location / {
        proxy_wasm_failure_status 200;
        empty_gif;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"proxy_wasm_failure_status" directive must be between 400 and 599 in .*nginx.conf:\d+/



=== TEST 7: a filter that fails to start in the worker (not at configuration time): logged; other filters serve
--- main_config
    wasm {
        module second $TEST_NGINX_WAT/second_configure_fails.wat;
    }
--- config
    location /first {
        proxy_wasm second first;
        return 200 "first\n";
    }
    location /second {
        proxy_wasm second second;
        return 200 "second\n";
    }
    location /open {
        proxy_wasm_failure fail_open;
        proxy_wasm second second;
        return 200 "open\n";
    }
    location /plain {
        return 200 "plain\n";
    }
--- request eval
["GET /first", "GET /second", "GET /open", "GET /plain"]
--- error_code eval
[200, 500, 200, 200]
--- error_log eval
[qr/\[error\] .*proxy_wasm "second": filter failed to start: on_configure returned false/,
 qr/\[error\] .*proxy_wasm "second": filter unavailable: it failed to start in this worker: failing the request/,
 qr/\[warn\] .*proxy_wasm "second": filter unavailable \(it failed to start in this worker\): skipped/]



=== TEST 8: an invalid policy
--- config
    location / {
        proxy_wasm_failure ignore;
        empty_gif;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "ignore" in "proxy_wasm_failure" directive, it must be "reload", "fail_closed" or "fail_open" in .*nginx.conf:\d+/
