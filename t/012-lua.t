# The chain runs after lua-nginx-module's handlers in every phase: it sees
# what Lua did, Lua does not see what it does. Run with Debian's nginx and
# its Lua module, in both load orders (util/test-env.sh debian and
# debian-wasm-first); skipped elsewhere.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('skip_eval', '!$ENV{TEST_NGINX_HAS_LUA}');
});

# The order of one request's handlers, as they log "order: ..." lines.
our $Order = qr/order: \w+ \w+/;

run_tests();

__DATA__

=== TEST 1: every phase: Lua's handler first, then the chain; the same for every request
--- config
    location / {
        rewrite_by_lua_block { ngx.log(ngx.INFO, "order: lua rewrite") }
        access_by_lua_block { ngx.log(ngx.INFO, "order: lua access") }
        proxy_wasm testbed "request_headers log info order:%20wasm%20request_headers; response_headers log info order:%20wasm%20response_headers; log log info order:%20wasm%20log";
        content_by_lua_block { ngx.log(ngx.INFO, "order: lua content") ngx.say("hello") }
        header_filter_by_lua_block { ngx.log(ngx.INFO, "order: lua header_filter") }
        log_by_lua_block { ngx.log(ngx.INFO, "order: lua log") }
    }
--- request eval
["GET /", "GET /"]
--- response_body eval
["hello\n", "hello\n"]
--- grep_error_log eval: $::Order
--- grep_error_log_out
order: lua rewrite
order: wasm request_headers
order: lua access
order: lua content
order: lua header_filter
order: wasm response_headers
order: lua log
order: wasm log
order: lua rewrite
order: wasm request_headers
order: lua access
order: lua content
order: lua header_filter
order: wasm response_headers
order: lua log
order: wasm log



=== TEST 2: with proxy_wasm_request_headers_in_access, on_request_headers after access_by_lua
--- config
    location / {
        proxy_wasm_request_headers_in_access on;
        rewrite_by_lua_block { ngx.log(ngx.INFO, "order: lua rewrite") }
        access_by_lua_block { ngx.log(ngx.INFO, "order: lua access") }
        proxy_wasm testbed "request_headers log info order:%20wasm%20request_headers";
        content_by_lua_block { ngx.log(ngx.INFO, "order: lua content") ngx.say("hello") }
    }
--- request eval
["GET /", "GET /"]
--- grep_error_log eval: $::Order
--- grep_error_log_out
order: lua rewrite
order: lua access
order: wasm request_headers
order: lua content
order: lua rewrite
order: lua access
order: wasm request_headers
order: lua content



=== TEST 3: the order is fixed at start-up, and logged
--- config
    location / {
        rewrite_by_lua_block { ngx.log(ngx.INFO, "lua rewrite") }
        proxy_wasm testbed "request_headers log info wasm";
        return 200;
    }
--- request
GET /
--- error_log eval
[qr/proxy_wasm: on_request_headers runs first in preaccess, before \d+ other handlers/,
 qr/proxy_wasm: on_log runs last in the log phase, after [1-9]\d* other handlers/]



=== TEST 4: request headers: the chain sees what rewrite_by_lua set; access_by_lua sees the chain's
--- config
    location / {
        rewrite_by_lua_block {
            ngx.req.set_header("x-lua", "from-rewrite")
            ngx.log(ngx.INFO, "rewrite saw x-wasm: ", ngx.var.http_x_wasm)
        }
        access_by_lua_block { ngx.log(ngx.INFO, "access saw x-wasm: ", ngx.var.http_x_wasm) }
        proxy_wasm testbed "request_headers get_header request x-lua; request_headers add_header request x-wasm from-wasm";
        content_by_lua_block { ngx.say(ngx.var.http_x_lua, " ", ngx.var.http_x_wasm) }
    }
--- request
GET /
--- response_body
from-rewrite from-wasm
--- error_log
request header x-lua: "from-rewrite"
rewrite saw x-wasm: nil
access saw x-wasm: from-wasm



=== TEST 5: access_by_lua denying: with on_request_headers in access it never runs, the response callbacks do
--- config
    location / {
        proxy_wasm_request_headers_in_access on;
        access_by_lua_block { ngx.exit(403) }
        proxy_wasm testbed "trace";
        empty_gif;
    }
--- request
GET /
--- error_code: 403
--- grep_error_log eval
qr/(?<=\d )on_(?:request_headers|response_headers|log)/
--- grep_error_log_out
on_response_headers
on_log



=== TEST 6: response headers: the chain sees what header_filter_by_lua set; Lua does not see the chain's
--- config
    location / {
        proxy_wasm testbed "response_headers get_header response x-lua; response_headers add_header response x-wasm from-wasm";
        header_filter_by_lua_block {
            ngx.header["x-lua"] = "from-lua"
            ngx.log(ngx.INFO, "header filter saw x-wasm: ", ngx.header["x-wasm"])
        }
        return 200 "ok\n";
    }
--- request
GET /
--- response_headers
x-lua: from-lua
x-wasm: from-wasm
--- error_log
response header x-lua: "from-lua"
header filter saw x-wasm: nil



=== TEST 7: response bodies: the chain gets what body_filter_by_lua made
--- config
    location / {
        proxy_wasm testbed "response_body log_body; response_body at_end append_body +wasm";
        body_filter_by_lua_block { ngx.arg[1] = string.upper(ngx.arg[1]) }
        content_by_lua_block { ngx.print("hello") }
    }
--- request
GET /
--- response_body chomp
HELLO+wasm
--- error_log
response_body (5 bytes, end_of_stream false): "HELLO"



=== TEST 8: content_by_lua reads the request body the chain filtered
--- config
    location / {
        proxy_wasm testbed "request_body at_end replace_body filtered";
        content_by_lua_block {
            ngx.req.read_body()
            ngx.say(ngx.req.get_body_data())
        }
    }
--- request
POST /
original
--- response_body
filtered



=== TEST 9: on_log after log_by_lua, each filter once
--- config
    location / {
        proxy_wasm testbed "log log info order:%20wasm%20f1";
        proxy_wasm testbed "log log info order:%20wasm%20f2";
        log_by_lua_block { ngx.log(ngx.INFO, "order: lua log") }
        return 200;
    }
--- request
GET /
--- grep_error_log eval: $::Order
--- grep_error_log_out
order: lua log
order: wasm f1
order: wasm f2



=== TEST 10: a body Lua read in rewrite_by_lua goes through the chain before the content handler
--- config
    location / {
        rewrite_by_lua_block { ngx.req.read_body() }
        proxy_wasm testbed "request_body log_body; request_body at_end replace_body filtered";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location /echo {
        content_by_lua_block {
            ngx.req.read_body()
            ngx.say(ngx.var.http_content_length, " ", ngx.req.get_body_data())
        }
    }
--- request
POST /
original
--- response_body
8 filtered
--- error_log eval
qr/request_body \(9 bytes, end_of_stream true\): "original$/m



=== TEST 11: ... also from the temporary file it went to
--- config
    location / {
        client_body_buffer_size 1k;
        access_by_lua_block { ngx.req.read_body() }
        proxy_wasm testbed "request_body pause_until_end; request_body at_end log_body_size; request_body at_end upper_body";
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location /echo {
        content_by_lua_block {
            ngx.req.read_body()
            local body = ngx.req.get_body_data()
            ngx.say(ngx.var.http_content_length, " ", #body, " ", body:sub(1, 6), " ", body:sub(-6))
        }
    }
--- request eval
"POST /\n" . ("abcdefghij" x 500)
--- response_body
5000 5000 ABCDEF EFGHIJ
--- error_log
request_body (5000 bytes, end_of_stream true)
a client request body is buffered to a temporary file



=== TEST 12: ... and a local response from on_request_body answers the request
--- config
    location / {
        rewrite_by_lua_block { ngx.req.read_body() }
        proxy_wasm testbed "request_body respond 403 denied";
        content_by_lua_block { ngx.say("not denied") }
    }
--- request
POST /
data
--- error_code: 403
--- response_body chomp
denied
