# Filter chains: order, inheritance, root contexts, and when each callback
# runs in a request's life.
use Test::Nginx::Socket 'no_plan';
run_tests();

__DATA__

=== TEST 1: request callbacks run in chain order, response callbacks in reverse (as Envoy's encoders)
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers log info first:%20request; response_headers log info first:%20response; log log info first:%20log";
        proxy_wasm testbed "request_headers log info second:%20request; response_headers log info second:%20response; log log info second:%20log";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- grep_error_log eval
qr/(first|second): \w+/
--- grep_error_log_out
first: request
second: request
second: response
first: response
first: log
second: log



=== TEST 2: a filter sees the changes of the filters before it
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers add_header request x-from-first 1; response_headers get_header response x-from-second";
        proxy_wasm testbed "request_headers get_header request x-from-first; response_headers add_header response x-from-second 2";
        empty_gif;
    }
--- request
GET /
--- response_headers
x-from-second: 2
--- error_log
request header x-from-first: "1"
response header x-from-second: "2"



=== TEST 3: http{} and server{} chains are inherited; a level with its own replaces them
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- http_config
    proxy_wasm testbed "response_headers add_header response x-level http";
--- config
    location /inherits {
        empty_gif;
    }
    location /own {
        proxy_wasm testbed "response_headers add_header response x-level location";
        empty_gif;
    }
    location /none {
        empty_gif;
    }
--- request eval
["GET /inherits", "GET /own"]
--- response_headers eval
["x-level: http", "x-level: location"]



=== TEST 4: a server chain
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- server_config
    proxy_wasm testbed "response_headers add_header response x-level server";
--- config
    location / {
        empty_gif;
    }
--- request
GET /
--- response_headers
x-level: server



=== TEST 5: locations without a chain are not touched
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location /with {
        proxy_wasm testbed "trace";
        empty_gif;
    }
    location /without {
        empty_gif;
    }
--- request
GET /without
--- error_code: 200
--- no_error_log eval
[qr/#\d+ on_request_headers/, qr/#\d+ on_response_headers/, "create http context"]



=== TEST 6: one module, two configurations: two root contexts, started in every worker
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location /a {
        proxy_wasm testbed "trace; configure log info configured%20a";
        empty_gif;
    }
    location /b {
        proxy_wasm testbed "trace; configure log info configured%20b";
        empty_gif;
    }
--- request
GET /a
--- grep_error_log eval
qr/#\d+ on_configure|configured \w/
--- grep_error_log_out
#1 on_configure
configured a
#2 on_configure
configured b



=== TEST 7: identical proxy_wasm lines share one filter
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location /a {
        proxy_wasm testbed "configure log info configured";
        empty_gif;
    }
    location /b {
        proxy_wasm testbed "configure log info configured";
        empty_gif;
    }
--- request
GET /b
--- grep_error_log: configured
--- grep_error_log_out
configured



=== TEST 8: the life of a request's contexts
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "trace";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/#\d+ (create http context #\d+|on_(request|response)_headers [\w ]+, end_of_stream \w+|on_log|on_done|on_delete)/
--- grep_error_log_out
#1 create http context #2
#2 on_request_headers 5 headers, end_of_stream true
#2 on_response_headers 4 headers, end_of_stream false
#2 on_log
#2 on_done
#2 on_delete



=== TEST 9: "return" answers before on_request_headers; the response callbacks run
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "trace; response_headers add_header response x-seen yes";
        return 200 "returned\n";
    }
--- request
GET /
--- response_body
returned
--- response_headers
x-seen: yes
--- error_log eval
[qr/#\d+ on_response_headers/, qr/#\d+ on_log/, qr/#\d+ on_delete/]
--- no_error_log eval
qr/#\d+ on_request_headers/



=== TEST 10: responses nginx produces itself (404) go through the filters
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-seen yes";
    }
--- request
GET /nonexistent
--- error_code: 404
--- response_headers
x-seen: yes



=== TEST 11: end_of_stream of request headers with a request body
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "trace";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/upstream;
    }
    location /upstream {
        return 200 "upstream\n";
    }
--- request
POST /
hello
--- response_body
upstream
--- error_log
end_of_stream false



=== TEST 12: keep-alive requests each get their own contexts
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "trace";
        empty_gif;
    }
--- raw_request eval
"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
--- grep_error_log eval
qr/#\d+ (create http context #\d+|on_delete)/
--- grep_error_log_out
#1 create http context #2
#2 on_delete
#1 create http context #3
#3 on_delete



=== TEST 13: on_request_headers runs before the access phase by default
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "trace";
        deny all;
        empty_gif;
    }
--- request
GET /
--- error_code: 403
--- error_log eval
[qr/#\d+ on_request_headers/, qr/#\d+ on_response_headers/]



=== TEST 14: with proxy_wasm_request_headers_in_access, after the access checks
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location /denied {
        proxy_wasm testbed "trace";
        proxy_wasm_request_headers_in_access on;
        deny all;
        empty_gif;
    }
    location /allowed {
        proxy_wasm testbed "trace";
        proxy_wasm_request_headers_in_access on;
        allow all;
        empty_gif;
    }
--- request eval
["GET /denied", "GET /allowed"]
--- error_code eval
[403, 200]
--- grep_error_log eval
qr/#\d+ on_(request|response)_headers/
--- grep_error_log_out
#2 on_response_headers
#3 on_request_headers
#3 on_response_headers



=== TEST 15: each filter is told how many headers there are after the filters before it changed them
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "trace";
        proxy_wasm testbed "request_headers add_header request x-a 1; response_headers add_header response x-r 1";
        proxy_wasm testbed "trace; response_headers add_header response x-s 1";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/on_(request|response)_headers \d+ headers/
--- grep_error_log_out
on_request_headers 5 headers
on_request_headers 6 headers
on_response_headers 4 headers
on_response_headers 6 headers
