# Response header maps: ":status" and the headers nginx keeps in fields
# (Content-Type, Content-Length, Last-Modified) look like any other header,
# and changes reach the client.
use Test::Nginx::Socket 'no_plan';

use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

run_tests();

__DATA__

=== TEST 1: the response map of a static file
--- config
    location / {
        proxy_wasm testbed "response_headers dump_headers response";
    }
--- user_files
>>> index.html
hello
--- request
GET /index.html
--- grep_error_log eval
qr/response header ":?[^:]+/
--- grep_error_log_out
response header ":status
response header "content-type
response header "content-length
response header "last-modified
response header "etag



=== TEST 2: the response map of a proxied response: no header twice
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            add_header x-upstream yes;
            return 201 "created\n";
        }
    }
--- config
    location / {
        proxy_wasm testbed "response_headers dump_headers response";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /
--- error_code: 201
--- grep_error_log eval
qr/response header ":?[^:]+: [^"]*/
--- grep_error_log_out eval
qr/^response header ":status: 201
response header "content-type: text\/plain
response header "content-length: 8
(response header "(server|date|connection): [^\n]+\n)*response header "x-upstream: yes
$/s



=== TEST 3: added, replaced and removed headers reach the client
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-added yes; response_headers replace_header response x-replaced new; response_headers remove_header response x-removed";
        add_header x-replaced old;
        add_header x-removed gone;
        empty_gif;
    }
--- request
GET /
--- response_headers
x-added: yes
x-replaced: new
!x-removed



=== TEST 4: add_header runs before the filters: they see and can change its headers
--- config
    location / {
        proxy_wasm testbed "response_headers get_header response x-from-nginx";
        add_header x-from-nginx configured;
        empty_gif;
    }
--- request
GET /
--- error_log
response header x-from-nginx: "configured"



=== TEST 5: :status
--- config
    location / {
        proxy_wasm testbed "response_headers get_header response :status; response_headers replace_header response :status 418";
        empty_gif;
    }
--- request
GET /
--- error_code: 418
--- error_log
response header :status: "200"



=== TEST 6: an invalid :status is logged and left alone
--- config
    location / {
        proxy_wasm testbed "response_headers replace_header response :status 42";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log
header ":status" cannot be changed in nginx: ignored



=== TEST 7: content-type
--- config
    location /replace {
        proxy_wasm testbed "response_headers replace_header response content-type application/json";
        empty_gif;
    }
    location /remove {
        proxy_wasm testbed "response_headers remove_header response content-type";
        empty_gif;
    }
    location /charset {
        charset utf-8;
        proxy_wasm testbed "response_headers get_header response content-type";
        return 200 "x";
    }
--- request eval
["GET /replace", "GET /remove", "GET /charset"]
--- response_headers eval
["Content-Type: application/json", "!Content-Type", "Content-Type: text/plain; charset=utf-8"]
--- error_log
response header content-type: "text/plain; charset=utf-8"



=== TEST 8: content-length: removed means chunked; replaced is what nginx frames with
--- config
    location /remove {
        proxy_wasm testbed "response_headers remove_header response content-length";
        empty_gif;
    }
    location /same {
        proxy_wasm testbed "response_headers replace_header response Content-Length 43; response_headers get_header response content-length";
        empty_gif;
    }
--- request eval
["GET /remove", "GET /same"]
--- response_headers eval
["!Content-Length\nTransfer-Encoding: chunked", "Content-Length: 43"]
--- error_log
response header content-length: "43"



=== TEST 9: last-modified and etag
--- config
    location / {
        proxy_wasm testbed "response_headers remove_header response last-modified; response_headers replace_header response etag \"wasm\"";
    }
--- user_files
>>> index.html
hello
--- request
GET /index.html
--- response_headers
!Last-Modified
ETag: "wasm"



=== TEST 10: a Location set by a filter
--- config
    location / {
        proxy_wasm testbed "response_headers replace_header response :status 302; response_headers add_header response location /elsewhere";
        empty_gif;
    }
--- request
GET /
--- error_code: 302
--- response_headers_like
Location: http://localhost(:\d+)?/elsewhere



=== TEST 11: gzip runs after the filters and compresses what they let through
--- config
    location / {
        gzip on;
        gzip_types text/plain;
        gzip_min_length 1;
        proxy_wasm testbed "response_headers get_header response content-encoding; response_headers add_header response x-seen yes";
        return 200 "compress me compress me compress me\n";
    }
--- request
GET /
--- more_headers
Accept-Encoding: gzip
--- response_headers
Content-Encoding: gzip
x-seen: yes
--- error_log
response header content-encoding: missing



=== TEST 12: the whole response map replaced
--- config
    location / {
        proxy_wasm testbed "response_headers set_headers response :status=202 x-only=1";
        add_header x-dropped 1;
        empty_gif;
    }
--- request
GET /
--- error_code: 202
--- response_headers
x-only: 1
!x-dropped



=== TEST 13: response headers are readable in on_log
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-a 1; log get_header response x-a; log get_header response :status";
        empty_gif;
    }
--- request
GET /
--- error_log
response header x-a: "1"
response header :status: "200"



=== TEST 14: single headers are found without the map: fields, case, repeats, missing
--- config
    charset utf-8;
    location / {
        add_header x-multi one;
        add_header x-multi two;
        proxy_wasm testbed "response_headers get_header response Content-Length; response_headers get_header response last-modified; response_headers get_header response content-type; response_headers get_header response X-MULTI; response_headers get_header response x-none; response_headers get_header response :status";
    }
--- user_files
>>> index.html
hello
--- request
GET /index.html
--- grep_error_log eval
qr/response header :?[^:]+: ("[^"]*"|missing)/
--- grep_error_log_out eval
qr/^response header Content-Length: "6"
response header last-modified: "\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT"
response header content-type: "text\/html; charset=utf-8"
response header X-MULTI: "one"
response header x-none: missing
response header :status: "200"
$/s



=== TEST 15: a request header found without the map: Host is :authority
--- config
    location / {
        proxy_wasm testbed "request_headers get_header request host; request_headers get_header request :authority; request_headers get_header request X-Twice";
        empty_gif;
    }
--- more_headers
X-Twice: a
X-Twice: b
--- request
GET /
--- grep_error_log eval
qr/request header :?[^:]+: ("[^"]*"|missing)/
--- grep_error_log_out
request header host: "localhost"
request header :authority: "localhost"
request header X-Twice: "a"
