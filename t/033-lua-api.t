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
        -- kept for code written for another host: the filters started already
        assert(proxy_wasm.load(CHAIN))
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



=== TEST 5: start() waits while a filter holds the request, and goes on when it continues
--- http_config
    init_worker_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({
            { name = "testbed", config = "configure tick_period 300; request_headers add_header request x-held yes; request_headers pause; request_headers remember; tick continue_remembered request" },
        })
    }
--- config
    location /t {
        rewrite_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            assert(proxy_wasm.attach(CHAIN))
            local t0 = ngx.now()
            assert(proxy_wasm.start())
            ngx.update_time()
            ngx.log(ngx.INFO, "start returned, held: ", ngx.now() - t0 >= 0.1)
        }
        content_by_lua_block { ngx.say(ngx.req.get_headers()["x-held"]) }
    }
--- request
GET /t
--- response_body
yes
--- error_log
start returned, held: true
--- no_error_log
[error]



=== TEST 6: start() with a filter's local response: the response is sent, Lua's code after it does not run
--- http_config
    init_worker_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({
            { name = "testbed", config = "request_headers respond 403 denied x-by:filter" },
        })
    }
--- config
    location /t {
        rewrite_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            assert(proxy_wasm.attach(CHAIN))
            proxy_wasm.start()
            ngx.log(ngx.ERR, "not reached")
        }
        content_by_lua_block { ngx.say("not reached either") }
    }
--- request
GET /t
--- error_code: 403
--- response_headers
x-by: filter
--- response_body chomp
denied
--- no_error_log
not reached



=== TEST 7: start() with a failing filter: the failure status (proxy_wasm_failure_status); with a held request: the hold timeout
--- http_config
    init_worker_by_lua_block {
        local proxy_wasm = require "resty.proxy_wasm"
        PANICS = proxy_wasm.new({ { name = "testbed", config = "request_headers panic" } })
        HOLDS = proxy_wasm.new({ { name = "other", config = "request_headers pause" } })
    }
--- config
    proxy_wasm_failure_status 503;
    proxy_wasm_hold_timeout 200ms;
    location /t {
        rewrite_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            assert(proxy_wasm.attach(ngx.var.arg_hold and HOLDS or PANICS))
            proxy_wasm.start()
            ngx.log(ngx.ERR, "not reached")
        }
        content_by_lua_block { ngx.say("not reached either") }
    }
--- request eval
["GET /t", "GET /t?hold=1"]
--- error_code eval
[503, 503]
--- error_log eval
[qr/testbed panics in request_headers/, qr/a filter held the request longer than proxy_wasm_hold_timeout \(200 ms\)/]
--- no_error_log
not reached



=== TEST 8: a chain attached in access_by_lua starts after it (precontent), with the request's body
--- http_config
    init_worker_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({
            { name = "testbed", config = "request_headers log info order:%20wasm%20request_headers; request_body log_body; response_headers add_header response x-access yes" },
        })
    }
--- config
    location /t {
        access_by_lua_block {
            ngx.log(ngx.INFO, "order: lua access")
            assert(require("resty.proxy_wasm").attach(CHAIN))
        }
        content_by_lua_block { ngx.req.read_body() ngx.say(ngx.req.get_body_data()) }
    }
--- request
POST /t
hello
--- response_headers
x-access: yes
--- response_body eval
"hello\n\n"

--- grep_error_log eval: qr/order: [\w ]+/
--- grep_error_log_out
order: lua access
order: wasm request_headers
--- no_error_log
[error]



=== TEST 9: bad arguments and chains that cannot be built are Lua errors with clear messages
--- config
    location /t {
        content_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            local function try(f, ...)
                local ok, err = pcall(f, ...)
                ngx.say(ok and "ok" or err)
            end
            try(proxy_wasm.new, "testbed")
            try(proxy_wasm.new, {})
            try(proxy_wasm.new, { "testbed" })
            try(proxy_wasm.new, { { name = 1 } })
            try(proxy_wasm.new, { { name = "testbed", config = 2 } })
            try(proxy_wasm.new, { { name = "nope" } })
            try(proxy_wasm.new, { { name = "testbed" }, { name = "other", config = "configure fail" } })
            try(proxy_wasm.new, { { name = "testbed", config = "configure unreachable" } })
            local chain = proxy_wasm.new({ { name = "testbed" } })
            try(proxy_wasm.attach, chain)
            try(proxy_wasm.attach, {})
            try(proxy_wasm.start)
            try(proxy_wasm.get_property, 1)
            try(proxy_wasm.set_property, "a.b", 1)
            try(proxy_wasm.set_host_properties_handlers)
            try(proxy_wasm.set_host_properties_handlers, function() end, nil, "a.b")
            try(proxy_wasm.set_host_properties_handlers, function() end, nil, "request")
            try(proxy_wasm.kv_set, "k", 1)
            try(proxy_wasm.metric, "m", "meter")
        }
    }
--- request
GET /t
--- response_body_like eval
qr/^.*filters must be a table, not string
.*filters must list at least one filter
.*filters\[1\] must be a table, not string
.*filters\[1\]\.name must be a string, not number
.*filters\[1\]\.config must be a string, not number
.*filters\[1\] \("nope"\): unknown module "nope".*
.*filters\[2\] \("other"\): .*on_configure returned false
.*filters\[1\] \("testbed"\): .*on_configure failed.*
.*attach cannot be called in the 'content' phase
.*chain must be a chain made by new\(\)
.*start cannot be called in the 'content' phase
.*path must be a string, not number
.*value must be a string, not number
.*a getter or a setter is needed
.*namespace must be one non-empty path segment
.*namespace names one of nginx's attributes \(or Envoy's former ones\)
.*value must be a string, not number
.*kind must be "counter", "gauge" or "histogram"
$/



=== TEST 10: attach fails cleanly once the chain started, and from a timer
--- http_config
    init_worker_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({ { name = "testbed" } })
        ngx.timer.at(0, function()
            local ok, err = pcall(require("resty.proxy_wasm").attach, CHAIN)
            ngx.log(ngx.WARN, "attach from a timer: ", err)
        end)
    }
--- config
    location /t {
        rewrite_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            assert(proxy_wasm.attach(CHAIN))
            assert(proxy_wasm.start())
            local ok, err = proxy_wasm.attach(CHAIN)
            ngx.log(ngx.WARN, "attach after start: ", err)
            ok, err = proxy_wasm.start()
            ngx.log(ngx.WARN, "start again: ", err)
        }
        content_by_lua_block { ngx.say("ok") }
        log_by_lua_block {
            local ok, err = pcall(require("resty.proxy_wasm").attach, CHAIN)
            ngx.log(ngx.WARN, "attach while logging: ", err)
        }
    }
--- request
GET /t
--- response_body
ok
--- error_log
attach while logging: attach cannot be called in the 'log' phase
attach from a timer: attach cannot be called in the 'timer' phase
attach after start: the request's chain has already started
start again: the request's chain has already started



=== TEST 11: properties from Lua: the tree filters see, both ways, with their encodings and errors
--- http_config
    init_worker_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({
            { name = "testbed", config = "request_headers prop gateway%00route; request_headers set_prop filter%00note hello" },
        })
    }
--- config
    location /t {
        set $gw_var "";
        rewrite_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            local function show(a, b) ngx.log(ngx.WARN, "lua: ", tostring(a), " ", tostring(b)) end
            show(proxy_wasm.set_property("gateway.route", "r1"))
            assert(proxy_wasm.attach(CHAIN))
            show(proxy_wasm.set_property("gateway.route", "r1"))
            show(proxy_wasm.get_property("gateway.route"))
            show(proxy_wasm.get_property("request.url_path"))
            show(proxy_wasm.get_property("ngx.arg_x"))
            show(proxy_wasm.set_property("ngx.gw_var", "from-lua"))
            show(proxy_wasm.get_property("ngx.gw_var"))
            show(proxy_wasm.get_property("no.such.thing"))
            show(proxy_wasm.set_property("request.path", "/x"))
            show(proxy_wasm.set_property("ngx.no_such_var", "x"))
        }
        content_by_lua_block { ngx.say(ngx.var.gw_var) }
        log_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            ngx.log(ngx.WARN, "log: filter.note = ", proxy_wasm.get_property("filter.note"))
            ngx.log(ngx.WARN, "log: response.code has ", #proxy_wasm.get_property("response.code"), " bytes")
        }
    }
--- request
GET /t?x=42
--- response_body
from-lua
--- grep_error_log eval: qr/(lua|log): .*?(?=, client| while)|property gateway.route: [^,]*/
--- grep_error_log_out
lua: nil no filter chain runs for this request to store it
lua: true nil
lua: r1 nil
lua: /t nil
lua: 42 nil
lua: true nil
lua: from-lua nil
lua: nil not found
lua: nil cannot set request.path: the property is read-only
lua: nil cannot set ngx.no_such_var: no such variable
property gateway.route: len=2 hex=7231 text="r1"
log: filter.note = hello
log: response.code has 8 bytes



=== TEST 12: host properties served by Lua: filters read and write them, with the request at hand
--- http_config
    init_worker_by_lua_block {
        local proxy_wasm = require "resty.proxy_wasm"
        STORE = {}
        assert(proxy_wasm.set_host_properties_handlers(
            function(key)
                if key == "route.name" then
                    return true, "route-for-" .. ngx.var.uri
                elseif key == "fails" then
                    error("lookup failed", 0)
                elseif key == "refused" then
                    return false, "not for you"
                end
                return false
            end,
            function(key, value)
                if key == "readonly" then
                    return false, "read-only here"
                end
                STORE[key] = value
                return true
            end,
            "gw"))
        CHAIN = proxy_wasm.new({
            { name = "testbed", config = "request_headers prop gw%00route%00name; request_headers prop gw%00missing; request_headers prop gw%00fails; request_headers prop gw%00refused; request_headers set_prop gw%00consumer alice; request_headers set_prop gw%00readonly x" },
        })
    }
--- config
    location /t {
        rewrite_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            assert(proxy_wasm.attach(CHAIN))
        }
        content_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            ngx.say("consumer: ", STORE.consumer)
            ngx.say("from lua: ", proxy_wasm.get_property("gw.route.name"))
        }
    }
--- request
GET /t
--- response_body
consumer: alice
from lua: route-for-/t
--- grep_error_log eval: qr/property gw\S+: [^,]*|set_property gw\S+ returned \d+|Lua handler of property "[^"]+" failed: [^,]*/
--- grep_error_log_out
property gw.route.name: len=12 hex=726f7574652d666f722d2f74 text="route-for-/t"
property gw.missing: missing
Lua handler of property "gw.fails" failed: lookup failed
property gw.fails: error InternalFailure
Lua handler of property "gw.refused" failed: not for you
property gw.refused: error InternalFailure
set_property gw.consumer returned 0
Lua handler of property "gw.readonly" failed: read-only here
set_property gw.readonly returned 10



=== TEST 13: Lua and a filter share a counter in shm_kv (the module's keys, CAS); Lua has its own keys too
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k;
    }
--- config
    location /filter {
        proxy_wasm testbed "request_headers kv_incr hits; request_headers kv_get mine";
        content_by_lua_block { ngx.say("filter counted") }
    }
    location /lua {
        content_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            local value, cas = proxy_wasm.kv_get("hits", "testbed")
            ngx.say("hits: ", value)
            ngx.say("set with its cas: ", tostring(proxy_wasm.kv_set("hits", tostring(tonumber(value) + 10), cas, "testbed")))
            ngx.say("set with a stale cas: ", select(2, proxy_wasm.kv_set("hits", "0", cas, "testbed")))
            ngx.say("lua's own: ", tostring(proxy_wasm.kv_set("mine", "lua", nil)), " ", (proxy_wasm.kv_get("mine")))
            ngx.say("absent: ", select(2, proxy_wasm.kv_get("nothing", "testbed")))
        }
    }
--- request eval
["GET /filter", "GET /filter", "GET /lua", "GET /filter"]
--- response_body eval
["filter counted\n", "filter counted\n", "hits: 2\nset with its cas: true\nset with a stale cas: cas mismatch\nlua's own: true lua\nabsent: not found\n", "filter counted\n"]
--- grep_error_log eval: qr/kv_incr hits: \d+|kv_get mine: [^,]*/
--- grep_error_log_out
kv_incr hits: 1
kv_get mine: missing
kv_incr hits: 2
kv_get mine: missing
kv_incr hits: 13
kv_get mine: missing



=== TEST 14: Lua enqueues into a queue a filter registered; its root context drains it
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue jobs 64k;
    }
--- config
    proxy_wasm testbed "configure queue_register jobs; queue_ready dequeue ready";
    location /t {
        content_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            ngx.say(tostring(proxy_wasm.enqueue("jobs", "from-lua")))
            ngx.say(tostring(proxy_wasm.enqueue("jobs", "for-the-owner", { owner = "testbed" })))
            ngx.say(select(2, proxy_wasm.enqueue("nope", "x")))
        }
    }
--- request
GET /t
--- response_body
true
true
not found
--- wait: 0.5
--- error_log
dequeued "from-lua"
dequeued "for-the-owner"



=== TEST 15: Lua and a filter share metrics; Lua's own are under "lua_" on the scrape endpoint
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location /filter {
        proxy_wasm testbed "request_headers metric 0 hits; request_headers metric_incr hits 1; request_headers metric_get hits";
        content_by_lua_block { ngx.say("ok") }
    }
    location /lua {
        content_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            local hits = assert(proxy_wasm.metric("hits", "counter", "testbed"))
            ngx.say("hits: ", hits:get())
            assert(hits:increment(10))
            ngx.say("decrement: ", select(2, hits:increment(-1)))
            local own = assert(proxy_wasm.metric("requests", "gauge"))
            own:record(7)
            ngx.say("gauge: ", own:get())
            ngx.say("type: ", select(2, proxy_wasm.metric("hits", "gauge", "testbed")))
        }
    }
    location /metrics {
        proxy_wasm_metrics;
    }
--- request eval
["GET /filter", "GET /lua", "GET /filter", "GET /metrics"]
--- response_body_like eval
["ok\n", "hits: 1\ndecrement: a counter only goes up \\(and by more than 0\\)\ngauge: 7\ntype: metric \"hits\": the name has another type\n", "ok\n", "(?s)testbed_hits 12.*lua_requests 7|lua_requests 7.*testbed_hits 12"]
--- error_log
get_metric hits returned 0 value 12



=== TEST 16: an attached chain follows the failure policy; a request that ends frees what Lua attached
--- http_config
    init_worker_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({
            { name = "testbed", config = "response_headers panic" },
        })
    }
--- config
    location /t {
        proxy_wasm_failure fail_open;
        rewrite_by_lua_block { assert(require("resty.proxy_wasm").attach(CHAIN, { isolation = "filter" })) }
        content_by_lua_block { ngx.say("ok") }
    }
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["ok\n", "ok\n"]
--- error_log
testbed panics in response_headers



=== TEST 17: a chain built in init_by_lua starts in every worker, as a proxy_wasm line's
--- http_config
    init_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({
            { name = "testbed", config = "response_headers add_header response x-init yes" },
        })
    }
--- config
    location /t {
        rewrite_by_lua_block { assert(require("resty.proxy_wasm").attach(CHAIN)) }
        content_by_lua_block { ngx.say("ok") }
    }
--- request
GET /t
--- response_headers
x-init: yes
--- no_error_log
[error]



=== TEST 18: a chain that cannot be built in init_by_lua stops nginx with the reason
--- http_config
    init_by_lua_block {
        CHAIN = require("resty.proxy_wasm").new({ { name = "testbed", config = "configure fail" } })
    }
--- config
    location /t {
        return 200;
    }
--- must_die
--- error_log eval
qr/init_by_lua.*filters\[1\] \("testbed"\): filter "testbed" failed to start: on_configure returned false/



=== TEST 19: thousands of requests attaching, starting and setting properties keep the worker's memory flat
--- http_config
    init_worker_by_lua_block {
        PW = require "resty.proxy_wasm"
        CONFIG = { { name = "testbed", config = "request_headers add_header request x-a 1; response_headers add_header response x-b 2" } }
    }
--- config
    location /t {
        rewrite_by_lua_block {
            -- a gateway rebuilding its chain for each request: the same
            -- filters are found again, not added
            assert(PW.attach(PW.new(CONFIG), { isolation = ngx.var.arg_isolation }))
            assert(PW.set_property("gateway.route", string.rep("r", 100)))
            assert(PW.start())
        }
        content_by_lua_block { ngx.say("ok") }
    }
    location /load {
        content_by_lua_block {
            local function rss()
                local f = assert(io.open("/proc/self/status"))
                local status = f:read("*a")
                f:close()
                return tonumber(status:match("VmRSS:%s+(%d+)"))
            end
            local function load(n, isolation)
                for _ = 1, n do
                    local sock = ngx.socket.tcp()
                    assert(sock:connect("127.0.0.1", ngx.var.server_port))
                    assert(sock:send("GET /t?isolation=" .. isolation .. " HTTP/1.0\r\nHost: x\r\n\r\n"))
                    local answer = assert(sock:receive("*a"))
                    assert(answer:find("ok", 1, true), answer)
                    sock:close()
                end
            end
            for _, isolation in ipairs({ "none", "request" }) do
                load(500, isolation)
                local before = rss()
                load(3000, isolation)
                local growth = rss() - before
                ngx.say(isolation, ": ", growth < 1024 and "flat" or growth .. " KiB more")
            end
        }
    }
--- request
GET /load
--- response_body
none: flat
request: flat
--- timeout: 60
--- no_error_log
[error]



=== TEST 20: an attached chain runs as a directive chain does: a call that holds the request, a local response
--- http_config
    init_worker_by_lua_block {
        local proxy_wasm = require "resty.proxy_wasm"
        CALLS = proxy_wasm.new({
            { name = "testbed", config = "request_headers call 127.0.0.1:$TEST_NGINX_SERVER_PORT GET /svc; request_headers pause; call_response continue; response_headers add_header response x-after-call yes" },
        })
        DENIES = proxy_wasm.new({ { name = "testbed", config = "request_headers respond 401 nope" } })
    }
--- config
    location /t {
        rewrite_by_lua_block {
            local proxy_wasm = require "resty.proxy_wasm"
            assert(proxy_wasm.attach(ngx.var.arg_deny and DENIES or CALLS))
        }
        content_by_lua_block { ngx.say("served") }
    }
    location /svc {
        content_by_lua_block { ngx.say("service") }
    }
--- request eval
["GET /t", "GET /t?deny=1"]
--- error_code eval
[200, 401]
--- response_headers eval
["x-after-call: yes", "!x-after-call"]
--- response_body eval
["served\n", "nope"]
--- error_log eval
qr/call #\d+ response: \d+ headers, 8 bytes, 0 trailers/
--- no_error_log
[error]
