# proxy_send_local_response: a filter answers the request itself.
use Test::Nginx::Socket 'no_plan';

use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

run_tests();

__DATA__

=== TEST 1: status, body and headers; a body without a type is text/plain
--- config
    location / {
        proxy_wasm testbed "request_headers respond 403 denied%0A x-reason:policy x-other:1";
        proxy_pass http://127.0.0.1:1;
    }
--- request
GET /
--- error_code: 403
--- response_body
denied
--- response_headers
x-reason: policy
x-other: 1
Content-Type: text/plain
Content-Length: 7
--- no_error_log
[error]



=== TEST 2: the filter's content type
--- config
    location / {
        proxy_wasm testbed "request_headers respond 200 {} content-type:application/json";
        empty_gif;
    }
--- request
GET /
--- response_body chomp
{}
--- response_headers
Content-Type: application/json



=== TEST 3: no body
--- config
    location / {
        proxy_wasm testbed "request_headers respond 204";
        empty_gif;
    }
--- request
GET /
--- error_code: 204
--- response_body chomp
--- response_headers
!Content-Type



=== TEST 4: HEAD gets the headers only
--- config
    location / {
        proxy_wasm testbed "request_headers respond 200 body";
        empty_gif;
    }
--- request
HEAD /
--- error_code: 200
--- response_body chomp
--- response_headers
Content-Length: 4



=== TEST 5: the chain stops; every filter's response callbacks run
--- config
    location / {
        proxy_wasm testbed "request_headers log info filter-one; response_headers log info filter-one%20response; request_headers respond 401 no";
        proxy_wasm testbed "request_headers log info filter-two; response_headers log info filter-two%20response";
        empty_gif;
    }
--- request
GET /
--- error_code: 401
--- grep_error_log eval
qr/filter-(one|two)( response)?/
--- grep_error_log_out
filter-one
filter-two response
filter-one response



=== TEST 6: the response callbacks see the local response
--- config
    location / {
        proxy_wasm testbed "request_headers respond 409 conflict x-a:1";
        proxy_wasm testbed "response_headers get_header response :status; response_headers get_header response x-a; response_headers add_header response x-b 2";
        empty_gif;
    }
--- request
GET /
--- error_code: 409
--- response_headers
x-a: 1
x-b: 2
--- error_log
response header :status: "409"
response header x-a: "1"



=== TEST 7: error_page does not replace a filter's response
--- config
    error_page 404 /oops;
    location / {
        proxy_wasm testbed "request_headers respond 404 from%20the%20filter";
        empty_gif;
    }
    location /oops {
        return 200 "error page\n";
    }
--- request
GET /
--- error_code: 404
--- response_body chomp
from the filter



=== TEST 8: the request body is discarded and the connection reused
--- config
    location / {
        proxy_wasm testbed "request_headers respond 200 early";
        proxy_pass http://127.0.0.1:1;
    }
--- raw_request eval
"POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello worldPOST /b HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
--- raw_response_like eval
qr{^HTTP/1\.1 200 OK\r\n(?:[^\r]+\r\n)*Connection: keep-alive\r\n(?:[^\r]+\r\n)*\r\nearlyHTTP/1\.1 200 OK\r\n(?:[^\r]+\r\n)*Connection: close\r\n(?:[^\r]+\r\n)*\r\nearly$}s



=== TEST 9: a second local response is refused
--- config
    location / {
        proxy_wasm testbed "request_headers respond_status 200; request_headers respond_status 500";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log
proxy_send_local_response returned 0
proxy_send_local_response: a response is already under way
proxy_send_local_response returned 2



=== TEST 10: no local response once the response is under way
--- config
    location / {
        proxy_wasm testbed "log respond_status 500";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log
proxy_send_local_response returned 2



=== TEST 11: invalid statuses are refused
--- config
    location / {
        proxy_wasm testbed "request_headers respond_status 99; request_headers respond_status 1000";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- grep_error_log eval
qr/proxy_send_local_response(: invalid status \d+| returned \d+)/
--- grep_error_log_out
proxy_send_local_response: invalid status 99
proxy_send_local_response returned 2
proxy_send_local_response: invalid status 1000
proxy_send_local_response returned 2



=== TEST 12: a gRPC request gets a trailers-only gRPC answer, as in Envoy: 200, grpc-status mapped from the HTTP status, the body as grpc-message
--- config
    location / {
        proxy_wasm testbed "request_headers respond_grpc 403 -1 denied:%20100%25";
        empty_gif;
    }
--- request
POST /pkg.Service/Method
--- more_headers
content-type: application/grpc
--- error_code: 200
--- response_headers
content-type: application/grpc
grpc-status: 7
grpc-message: denied: 100%25
--- response_body eval
""



=== TEST 13: the filter's gRPC status wins over the mapping
--- config
    location / {
        proxy_wasm testbed "request_headers respond_grpc 401 16";
        empty_gif;
    }
--- request
POST /pkg.Service/Method
--- more_headers
content-type: application/grpc+proto
--- error_code: 200
--- response_headers
grpc-status: 16
! grpc-message



=== TEST 14: for any other request, grpc_status is ignored: the HTTP status and body go out
--- config
    location / {
        proxy_wasm testbed "request_headers respond_grpc 401 16 nope";
        empty_gif;
    }
--- request
GET /
--- error_code: 401
--- response_headers
! grpc-status
--- response_body_like: ^nope$
