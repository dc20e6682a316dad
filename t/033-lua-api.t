# The Lua API (lib/resty/proxy_wasm.lua): chains built in Lua, attached
# per request, started early; properties, host properties served by Lua,
# shared memory and metrics from Lua. Run with Debian's nginx and its Lua
# module, in both load orders (util/test-env.sh debian and
# debian-wasm-first); skipped elsewhere.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm',
                other => '$TEST_NGINX_FILTERS/testbed.wasm');

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('skip_eval', '!$ENV{TEST_NGINX_HAS_LUA}');
    my $http = $block->http_config // '';
    $block->set_value('http_config',
        qq{    lua_package_path "\$TEST_NGINX_LUA_LIB/?.lua;;";\n$http});
});

run_tests();

__DATA__

=== TEST 1: a chain built in init_worker_by_lua, attached in rewrite_by_lua, serves any number of requests
--- http_config
    init_worker_by_lua_block {
        local proxy_wasm = require "resty.proxy_wasm"
        CHAIN = proxy_wasm.new({
            { name = "testbed", config = "configure log info started; response_headers add_header response x-filter one" },
            { name = "other", config = "response_headers add_header response x-filter two" },
        })
    }
--- config
    location /t {
        rewrite_by_lua_block {
            assert(require("resty.proxy_wasm").attach(CHAIN))
        }
        content_by_lua_block { ngx.say("ok") }
    }
--- pipelined_requests eval
["GET /t", "GET /t", "GET /t"]
--- response_headers eval
["x-filter: one, two", "x-filter: one, two", "x-filter: one, two"]
--- response_body eval
["ok\n", "ok\n", "ok\n"]
--- grep_error_log eval: qr/started/
--- grep_error_log_out
started
started
--- no_error_log
[error]



=== TEST 2: attach replaces the location's chain, with an isolation of its own
--- http_config
    init_worker_by_lua_block {
        local proxy_wasm = require "resty.proxy_wasm"
        LUA = proxy_wasm.new({ { name = "testbed", config = "response_headers add_header response x-chain lua" } })
    }
--- config
    location /t {
        proxy_wasm testbed "response_headers add_header response x-chain location";
        rewrite_by_lua_block {
            if ngx.var.arg_lua then
                local proxy_wasm = require "resty.proxy_wasm"
                assert(proxy_wasm.attach(LUA, { isolation = "request" }))
            end
        }
        content_by_lua_block { ngx.say("ok") }
    }
--- request eval
["GET /t", "GET /t?lua=1", "GET /t"]
--- response_headers eval
["x-chain: location", "x-chain: lua", "x-chain: location"]
--- no_error_log
[error]



=== TEST 3: a gateway picks one of three chains per request from a Lua table, and changes the table without a reload
--- http_config
    init_worker_by_lua_block {
        local proxy_wasm = require "resty.proxy_wasm"
        ROUTES = {}
        function SET_ROUTE(name, tag)
            ROUTES[name] = proxy_wasm.new({
                { name = "testbed", config = "response_headers add_header response x-route " .. tag },
            })
        end
        SET_ROUTE("a", "a1")
        SET_ROUTE("b", "b1")
        SET_ROUTE("c", "c1")
    }
--- config
    location /route {
        rewrite_by_lua_block {
            local chain = ROUTES[ngx.var.arg_r]
            if chain then
                assert(require("resty.proxy_wasm").attach(chain))
            end
        }
        content_by_lua_block { ngx.say("ok") }
    }
    location /admin {
        content_by_lua_block {
            SET_ROUTE(ngx.var.arg_r, ngx.var.arg_tag)
            ngx.say("updated")
        }
    }
--- request eval
["GET /route?r=a", "GET /route?r=b", "GET /route?r=c", "GET /admin?r=b&tag=b2", "GET /route?r=b", "GET /route?r=a", "GET /route?r=none"]
--- response_headers eval
["x-route: a1", "x-route: b1", "x-route: c1", "!x-route", "x-route: b2", "x-route: a1", "!x-route"]
--- no_error_log
[error]



=== TEST 4: start() runs on_request_headers at once: Lua sees what the filters did
--- http_config
    init_worker_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({
            { name = "testbed", config = "request_headers add_header request x-seen-by filter" },
        })
    }
--- config
    location /t {
        rewrite_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            assert(proxy_wasm.attach(CHAIN))
            ngx.log(ngx.INFO, "before start: ", tostring(ngx.req.get_headers()["x-seen-by"]))
            assert(proxy_wasm.start())
            ngx.log(ngx.INFO, "after start: ", tostring(ngx.req.get_headers()["x-seen-by"]))
        }
        content_by_lua_block { ngx.say(ngx.req.get_headers()["x-seen-by"]) }
    }
--- request
GET /t
--- response_body
filter
--- error_log
before start: nil
after start: filter
--- no_error_log
[error]
