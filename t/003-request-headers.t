# Request header maps: what filters read (pseudo-headers first, names
# lower-cased), and changes that reach the upstream and nginx's variables.
use Test::Nginx::Socket 'no_plan';

our $Upstream = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            return 200 "$request_method $request_uri host=$http_host a=[$http_x_a] ua=[$http_user_agent] b=[$http_x_b] cookie=[$cookie_c]\n";
        }
    }
END

use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Upstream) unless defined $block->http_config;
});

run_tests();

__DATA__

=== TEST 1: the request map: pseudo-headers first, then the headers, names lower-cased
--- config
    location / {
        proxy_wasm testbed "request_headers dump_headers request";
        empty_gif;
    }
--- request
GET /t?a=1
--- more_headers
X-Mixed-Case: Value
--- grep_error_log eval
qr/request header "[^"]+"/
--- grep_error_log_out
request header ":method: GET"
request header ":path: /t?a=1"
request header ":scheme: http"
request header ":authority: localhost"
request header "x-mixed-case: Value"
request header "connection: close"



=== TEST 2: single values, case-insensitive; Host is :authority
--- config
    location / {
        proxy_wasm testbed "request_headers get_header request X-MIXED-case; request_headers get_header request host; request_headers get_header request :method; request_headers get_header request x-nope";
        empty_gif;
    }
--- request
GET /
--- more_headers
X-Mixed-Case: Value
--- error_log
request header X-MIXED-case: "Value"
request header host: "localhost"
request header :method: "GET"
request header x-nope: missing



=== TEST 3: names of 8 bytes and more are compared without case, and only letters fold
--- config
    ignore_invalid_headers off;
    location / {
        proxy_wasm testbed "request_headers get_header request x-abcdef; request_headers get_header request X-ABCDEFG; request_headers get_header request x-long-header-name-0123; request_headers get_header request x-ab{def; request_headers get_header request x-ab`def; request_headers get_header request x-abcdefgh";
        empty_gif;
    }
--- request
GET /
--- more_headers
X-AbCdEf: eight
X-aBcDeFg: nine
X-LONG-Header-NAME-0123: long
X-Ab[def: bracket
X-Ab@def: at
X-AbCdEfGi: near
--- error_log
request header x-abcdef: "eight"
request header X-ABCDEFG: "nine"
request header x-long-header-name-0123: "long"
request header x-ab{def: missing
request header x-ab`def: missing
request header x-abcdefgh: missing



=== TEST 4: added, replaced and removed headers reach the upstream
--- config
    location / {
        proxy_wasm testbed "request_headers add_header request x-a added; request_headers replace_header request user-agent wasm; request_headers remove_header request x-b";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
User-Agent: curl
X-B: to-remove
--- response_body
GET /t host=127.0.0.1:$TEST_NGINX_RAND_PORT_1 a=[added] ua=[wasm] b=[] cookie=[]



=== TEST 5: nginx variables follow the changes
--- config
    location /content {
        proxy_wasm testbed "request_headers replace_header request user-agent wasm; request_headers add_header request x-a 1; request_headers remove_header request cookie; request_headers add_header request cookie c=from-wasm";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /content
--- more_headers
User-Agent: curl
Cookie: c=original
--- response_body
GET /content host=127.0.0.1:$TEST_NGINX_RAND_PORT_1 a=[1] ua=[wasm] b=[] cookie=[from-wasm]



=== TEST 6: variables read after the filters ran
--- config
    location / {
        proxy_wasm testbed "request_headers replace_header request user-agent wasm; request_headers add_header request x-a 1; request_headers remove_header request cookie; request_headers add_header request cookie c=from-wasm; request_headers remove_header request x-b";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        add_header x-seen "ua=[$http_user_agent] a=[$http_x_a] b=[$http_x_b] cookie=[$cookie_c]";
    }
--- request
GET /
--- more_headers
User-Agent: curl
Cookie: c=original
X-B: gone
--- response_headers
x-seen: ua=[wasm] a=[1] b=[] cookie=[from-wasm]



=== TEST 7: several values of one name
--- config
    location / {
        proxy_wasm testbed "request_headers add_header request x-a one; request_headers add_header request x-a two; request_headers dump_headers request";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /
--- response_body_like: a=\[one, two\]|a=\[one\]
--- error_log
request header "x-a: one"
request header "x-a: two"



=== TEST 8: replacing a repeated header keeps one value
--- config
    location / {
        proxy_wasm testbed "request_headers replace_header request x-a only";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /
--- more_headers
X-A: one
X-A: two
--- response_body_like: a=\[only\]



=== TEST 9: the whole map replaced
--- config
    location / {
        proxy_wasm testbed "request_headers set_headers request x-a=1 x-b=2 user-agent=set";
        proxy_wasm testbed "request_headers dump_headers request";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- more_headers
User-Agent: curl
X-Other: dropped
--- response_body
GET /t host=127.0.0.1:$TEST_NGINX_RAND_PORT_1 a=[1] ua=[set] b=[2] cookie=[]
--- no_error_log
x-other



=== TEST 10: :path changes the URI sent upstream, $uri and $args
--- config
    location / {
        proxy_wasm testbed "request_headers replace_header request :path /new/path%3Fx=1";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        add_header x-uri "$uri $args $request_uri";
    }
--- request
GET /old?y=2
--- response_body
GET /new/path?x=1 host=127.0.0.1:$TEST_NGINX_RAND_PORT_1 a=[] ua=[] b=[] cookie=[]
--- response_headers
x-uri: /new/path x=1 /new/path?x=1



=== TEST 11: :method changes the method sent upstream
--- config
    location / {
        proxy_wasm testbed "request_headers replace_header request :method PATCH";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /m
--- response_body
PATCH /m host=127.0.0.1:$TEST_NGINX_RAND_PORT_1 a=[] ua=[] b=[] cookie=[]



=== TEST 12: :authority is the Host header; $host follows
--- config
    location / {
        proxy_wasm testbed "request_headers replace_header request :authority Example.org:8443";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_set_header Host $http_host;
        add_header x-host $host;
    }
--- request
GET /
--- response_body
GET / host=Example.org:8443 a=[] ua=[] b=[] cookie=[]
--- response_headers
x-host: example.org



=== TEST 13: setting "host" is setting :authority
--- config
    location / {
        proxy_wasm testbed "request_headers replace_header request host other.test; request_headers dump_headers request";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_set_header Host $http_host;
    }
--- request
GET /
--- response_body
GET / host=other.test a=[] ua=[] b=[] cookie=[]
--- error_log
request header ":authority: other.test"
--- no_error_log
request header "host:



=== TEST 14: pseudo-headers nginx cannot change are logged and left alone
--- config
    location / {
        proxy_wasm testbed "request_headers replace_header request :scheme https; request_headers remove_header request :method; request_headers dump_headers request";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log
header ":scheme" cannot be changed in nginx: ignored
header ":method" cannot be changed in nginx: ignored
request header ":scheme: http"
request header ":method: GET"



=== TEST 15: invalid names and values are refused (the Rust SDK panics on the error: 500)
--- config
    location /name {
        proxy_wasm testbed "request_headers add_header request bad%20name v";
        empty_gif;
    }
    location /value {
        proxy_wasm testbed "request_headers add_header request x-a a%0D%0AInjected:%201";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /name", "GET /value"]
--- error_code eval
[500, 500]
--- error_log
invalid header "bad name": "v"
invalid header "x-a": "a\r\nInjected: 1"
panicked at



=== TEST 16: request headers stay readable in response callbacks and on_log
--- config
    location / {
        proxy_wasm testbed "response_headers get_header request x-a; log get_header request x-a; done get_header request x-a";
        empty_gif;
    }
--- request
GET /
--- more_headers
X-A: kept
--- grep_error_log: request header x-a: "kept"
--- grep_error_log_out
request header x-a: "kept"
request header x-a: "kept"
request header x-a: "kept"
