# HTTP calls (proxy_http_call): from request and root contexts, several in
# flight, the response's headers, body and trailers, keep-alive, and how
# failures reach the filter.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

our $Services = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /ok {
            add_header X-Service ok;
            return 200 "hello from $request_method $request_uri\n";
        }
        location /echo {
            # proxy_pass reads the body: $request_body is set for the headers
            proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/inner;
            add_header X-Host $http_host;
            add_header X-Conn "$connection:$connection_requests";
            add_header X-Body $request_body;
            add_header X-Extra $http_x_extra;
        }
        location /inner {
            return 200 "len=$content_length\n";
        }
        location /slow {
            limit_rate 1;
            return 200 "0123456789";
        }
        location /reset {
            return 444;
        }
        location /status {
            return 503 "unavailable\n";
        }
    }
END

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Services) unless defined $block->http_config;
});

run_tests();

__DATA__

=== TEST 1: a call from on_request_headers holds the request until the response continues it
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?a=1; request_headers pause; call_response continue";
        return 200 "served\n";
    }
    location = /gif {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?a=1; request_headers pause; call_response continue";
        empty_gif;
    }
--- request
GET /gif
--- error_code: 200
--- error_log eval
[qr/dispatched call #(\d+) to 127\.0\.0\.1:\d+/,
 qr/call #\d+ response: \d+ headers, 23 bytes, 0 trailers/,
 qr/call #\d+ header ":status: 200"/,
 qr/call #\d+ header "x-service: ok"/,
 qr/call #\d+ body "hello from GET \/ok\?a=1"/,
 qr/call #\d+ status 0 ""/]



=== TEST 2: several calls in flight from one context; each response comes once
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?n=1; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?n=2; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /status; request_headers pause; call_response count; call_response when_count 3 continue";
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- grep_error_log eval
qr/call #\d+ (body|header ":status)[^,]*/
--- grep_error_log_out eval
qr/\A(?=[\s\S]*hello from GET \/ok\?n=1)(?=[\s\S]*hello from GET \/ok\?n=2)(?=[\s\S]*header ":status: 503")/
--- error_log
count 3



=== TEST 3: a POST with a body, Host from :authority, extra headers; the connection is kept for the next call
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 POST /echo svc.test 0 payload x-extra:1; request_headers pause; call_response continue";
        empty_gif;
    }
--- request eval
["GET /t", "GET /t"]
--- error_log eval
[qr/call #\d+ header "x-host: svc\.test"/,
 qr/call #\d+ header "x-body: payload"/,
 qr/call #\d+ header "x-extra: 1"/,
 qr/call #\d+ body "len=7"/,
 qr/call #\d+ header "x-conn: (\d+):1"/,
 qr/call #\d+ header "x-conn: (\d+):2"/]



=== TEST 4: a call from on_tick comes back to the root context
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start tick_period 100";
    }
--- config
    location /t {
        proxy_wasm testbed "tick call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?from=tick; tick tick_period 0";
        empty_gif;
    }
--- wait: 0.5
--- error_log eval
[qr/proxy_wasm "testbed" #1: call #\d+ body "hello from GET \/ok\?from=tick"/]



=== TEST 5: failures call back with no headers and are logged with why: refused, timeout, reset
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:1 GET /; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow localhost 200; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /reset; request_headers pause; call_response count; call_response when_count 3 continue";
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- error_log eval
[qr/http call #\d+ to "127\.0\.0\.1:1" failed: refused/,
 qr/http call #\d+ to "127\.0\.0\.1:\d+" failed: timeout/,
 qr/http call #\d+ to "127\.0\.0\.1:\d+" failed: reset/,
 qr/call #\d+ response: 0 headers, 0 bytes, 0 trailers/,
 qr/call #\d+ status 11 "refused"/,
 qr/call #\d+ status 11 "timeout"/,
 qr/call #\d+ status 11 "reset"/,
 "count 3"]



=== TEST 6: bad calls are BAD_ARGUMENT: :authority missing, a target that is no address
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok -; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 - /ok; request_headers call no-such-cluster GET /; request_headers call 127.0.0.1:99999 GET /";
        empty_gif;
    }
--- request
GET /t
--- error_log eval
[qr/http call to "127\.0\.0\.1:\d+": :authority is required/,
 qr/http call to "127\.0\.0\.1:\d+": :method is required/,
 qr/http call to "no-such-cluster": a host name, and no resolver is configured/,
 qr/http call to "127\.0\.0\.1:99999": invalid port/,
 "dispatch to no-such-cluster failed: BadArgument"]



=== TEST 7: a client that goes away cancels the request's calls
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow; request_headers pause";
        empty_gif;
    }
--- request
GET /t
--- abort
--- timeout: 0.3
--- wait: 0.5
--- no_error_log eval
[qr/call #\d+ response/, qr/failed: /]



=== TEST 8: an upstream{} block's name is a cluster: round robin, a failing server skipped (and marked, as for proxy_pass), backup servers
--- http_config eval
$::Services . <<'END';
    upstream backend {
        server 127.0.0.1:1;
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    upstream standby {
        server 127.0.0.1:1;
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1 backup;
    }
    upstream nothing {
        server 127.0.0.1:1 down;
    }
END
--- config
    location /t {
        proxy_wasm testbed "request_headers call backend GET /ok?via=backend; request_headers call standby GET /ok?via=standby; request_headers call nothing GET /ok; request_headers pause; call_response count; call_response when_count 3 continue";
        empty_gif;
    }
--- request eval
["GET /t", "GET /t"]
--- error_log eval
[qr/call #\d+ body "hello from GET \/ok\?via=backend"/,
 qr/call #\d+ body "hello from GET \/ok\?via=standby"/,
 qr/http call #\d+ to "nothing" failed: refused \(no live upstreams\)/,
 qr/http call to "standby": server 127\.0\.0\.1:1 failed, trying the next one/]



=== TEST 9: Envoy's http_auth_random, as a Rust SDK filter: an even byte from the httpbin cluster lets the request through
--- main_config
    wasm {
        module auth_random $TEST_NGINX_FILTERS/auth_random.wasm;
    }
--- http_config
    upstream httpbin {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location = /bytes/1 {
            return 200 "b";
        }
    }
--- config
    location /t {
        proxy_wasm auth_random;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/bytes/1;
    }
--- request
GET /t
--- error_code: 200
--- response_headers
Powered-By: proxy-wasm
--- response_body chomp
b
--- error_log
Access granted.



=== TEST 10: http_auth_random: an odd byte answers 403
--- main_config
    wasm {
        module auth_random $TEST_NGINX_FILTERS/auth_random.wasm;
    }
--- http_config
    upstream httpbin {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location = /bytes/1 {
            return 200 "a";
        }
    }
--- config
    location /t {
        proxy_wasm auth_random;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/bytes/1;
    }
--- request
GET /t
--- error_code: 403
--- response_headers
Powered-By: proxy-wasm
--- response_body
Access forbidden.
--- error_log
Access forbidden.
