-- resty.proxy_wasm: Proxy-Wasm filter chains driven from Lua (OpenResty,
-- or Debian's lua-nginx-module with lua-resty-core), on LuaJIT's FFI
-- against functions ngx_proxy_wasm_module exports.
--
--   local proxy_wasm = require "resty.proxy_wasm"
--   local chain = proxy_wasm.new({ { name = "auth", config = "..." } })
--   proxy_wasm.attach(chain)            -- rewrite_by_lua, access_by_lua
--
-- Bad arguments, and a chain that cannot be built, are Lua errors; what
-- fails at run time (a property that is absent, a CAS that does not
-- match) returns nil and a message. The README's "Lua API" lists it all.

local ffi = require "ffi"
local base = require "resty.core.base"

local C = ffi.C
local ngx = ngx
local type = type
local error = error
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local getfenv = getfenv
local setmetatable = setmetatable
local getmetatable = getmetatable
local ffi_new = ffi.new
local ffi_str = ffi.string
local get_request = base.get_request
local get_phase = ngx.get_phase


local _M = {
    version = "0.1.0",
    -- the isolations of attach(): proxy_wasm_isolation's values, and the
    -- numbers of other Lua APIs (UNSET: the location's)
    isolations = { UNSET = 0, NONE = 1, STREAM = 2, FILTER = 3 },
}


if ngx.config.subsystem ~= "http" then
    local function http_only()
        error("resty.proxy_wasm works in the http subsystem only", 2)
    end

    return setmetatable(_M, { __index = function() return http_only end })
end


ffi.cdef [[
    typedef struct {
        const char  *data;
        size_t       len;
    } ngx_http_proxy_wasm_lua_str_t;

    typedef struct {
        ngx_http_proxy_wasm_lua_str_t  name;
        ngx_http_proxy_wasm_lua_str_t  config;
    } ngx_http_proxy_wasm_lua_filter_t;

    int ngx_http_proxy_wasm_ffi_filters_add(
        const ngx_http_proxy_wasm_lua_filter_t *filters, size_t n,
        uint32_t *ids, int configuring, size_t *failed,
        ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_attach(void *r, const uint32_t *ids,
        size_t n, int isolation, ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_start(void *r, void *sema,
        ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_outcome(void *r, int *status);
    int ngx_http_proxy_wasm_ffi_property_get(void *r, const char *path,
        size_t path_len, ngx_http_proxy_wasm_lua_str_t *value,
        ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_property_set(void *r, const char *path,
        size_t path_len, const char *value, size_t value_len,
        ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_host_properties(const char *ns,
        size_t ns_len, ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_kv_get(const char *owner, size_t owner_len,
        const char *key, size_t key_len, ngx_http_proxy_wasm_lua_str_t *value,
        uint32_t *cas, ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_kv_set(const char *owner, size_t owner_len,
        const char *key, size_t key_len, const char *value, size_t value_len,
        uint32_t cas, ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_enqueue(const char *owner, size_t owner_len,
        const char *queue_owner, size_t queue_owner_len, const char *name,
        size_t name_len, const char *item, size_t item_len,
        ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_metric_define(const char *owner,
        size_t owner_len, int type, const char *name, size_t name_len,
        uint32_t *id, ngx_http_proxy_wasm_lua_str_t *err);
    int ngx_http_proxy_wasm_ffi_metric_apply(const char *owner,
        size_t owner_len, uint32_t id, int op, int64_t arg, uint64_t *value,
        ngx_http_proxy_wasm_lua_str_t *err);
]]


-- the module's codes (ngx_proxy_wasm.h and ngx_http_proxy_wasm_lua.c)
local NGX_OK = 0
local LOOKUP_FOUND, LOOKUP_ABSENT = 0, 1
local SHARED_DONE, SHARED_ABSENT, SHARED_CAS_MISMATCH = 0, 1, 2
local OUTCOME_WAITING, OUTCOME_CONTINUE = 0, 1
local METRIC_TYPES = { counter = 0, gauge = 1, histogram = 2 }
local METRIC_INCREMENT, METRIC_RECORD, METRIC_GET = 0, 1, 2

-- attach()'s isolations, as proxy_wasm_isolation's values (-1: the
-- location's)
local ISOLATIONS = {
    none = 0, request = 1, stream = 1, filter = 2,
    [0] = -1, [1] = 0, [2] = 1, [3] = 2,
}

local err_out = ffi_new("ngx_http_proxy_wasm_lua_str_t[1]")
local value_out = ffi_new("ngx_http_proxy_wasm_lua_str_t[1]")
local cas_out = ffi_new("uint32_t[1]")
local id_out = ffi_new("uint32_t[1]")
local u64_out = ffi_new("uint64_t[1]")
local int_out = ffi_new("int[1]")
local size_out = ffi_new("size_t[1]")


local function last_error()
    local e = err_out[0]
    if e.data == nil or e.len == 0 then
        return "unknown error"
    end

    return ffi_str(e.data, e.len)
end


local function check_type(value, kind, what, level)
    if type(value) ~= kind then
        error(what .. " must be a " .. kind .. ", not " .. type(value),
              level + 1)
    end
end


-- Where a function may run: ngx.get_phase() names, or "request" for any
-- phase that has a request.
local function check_phase(fname, phases)
    local phase = get_phase()
    if not phases[phase] then
        error(fname .. " cannot be called in the '" .. phase .. "' phase",
              3)
    end
    return phase
end


local function current_request(fname)
    local r = get_request()
    if not r then
        error(fname .. " needs a request (not in a timer or an init phase)",
              3)
    end
    return r
end


local REQUEST_PHASES = {
    rewrite = true, access = true, content = true, header_filter = true,
    body_filter = true, log = true, balancer = true,
}
local ATTACH_PHASES = { rewrite = true, access = true }
local WORKER_PHASES = setmetatable({ init_worker = true, timer = true },
                                   { __index = REQUEST_PHASES })


-- Chains --------------------------------------------------------------

local chain_mt = {
    __tostring = function(chain)
        return "proxy_wasm chain (" .. chain.n .. " filters)"
    end,
}
chain_mt.__index = chain_mt


-- A chain of filters: { { name = "<module>", config = "<config>" }, ... }.
-- Its filters start in this worker now (in init_by_lua: in every worker,
-- at its start), once for any number of requests.
function _M.new(filters)
    check_type(filters, "table", "filters", 2)

    local n = #filters
    if n == 0 then
        error("filters must list at least one filter", 2)
    end

    local cfilters = ffi_new("ngx_http_proxy_wasm_lua_filter_t[?]", n)
    local ids = ffi_new("uint32_t[?]", n)
    local copy = {}

    for i = 1, n do
        local filter = filters[i]
        local where = "filters[" .. i .. "]"
        check_type(filter, "table", where, 2)

        local name, config = filter.name, filter.config
        check_type(name, "string", where .. ".name", 2)

        if config == nil then
            config = ""
        end
        check_type(config, "string", where .. ".config", 2)

        cfilters[i - 1].name.data = name
        cfilters[i - 1].name.len = #name
        cfilters[i - 1].config.data = config
        cfilters[i - 1].config.len = #config
        copy[i] = { name = name, config = config }
    end

    local configuring = get_phase() == "init" and 1 or 0

    local rc = C.ngx_http_proxy_wasm_ffi_filters_add(cfilters, n, ids,
                                                     configuring, size_out,
                                                     err_out)
    if rc ~= NGX_OK then
        error("filters[" .. tonumber(size_out[0]) + 1 .. "] (\""
              .. copy[tonumber(size_out[0]) + 1].name .. "\"): "
              .. last_error(), 2)
    end

    return setmetatable({ ids = ids, n = n, filters = copy }, chain_mt)
end


local function check_chain(chain)
    if getmetatable(chain) ~= chain_mt then
        error("chain must be a chain made by new()", 3)
    end
end


-- Filters start with new(): nothing is left to load. Kept so that code
-- written for load() runs unchanged.
function _M.load(chain)
    check_chain(chain)
    return true
end


-- Makes the chain the request's chain for every later phase, in place of
-- its location's proxy_wasm chain. opts.isolation: "none", "request",
-- "filter" (or _M.isolations' numbers); the location's by default.
function _M.attach(chain, opts)
    check_chain(chain)
    check_phase("attach", ATTACH_PHASES)

    local isolation = -1

    if opts ~= nil then
        check_type(opts, "table", "opts", 2)

        if opts.isolation ~= nil then
            isolation = ISOLATIONS[opts.isolation]
            if isolation == nil then
                error("bad opts.isolation: " .. tostring(opts.isolation), 2)
            end
        end
    end

    local r = current_request("attach")

    if C.ngx_http_proxy_wasm_ffi_attach(r, chain.ids, chain.n, isolation,
                                        err_out) ~= NGX_OK
    then
        return nil, last_error()
    end

    return true
end


local semaphore

-- Runs on_request_headers of the request's chain now: Lua code after it
-- sees what the filters did. A filter that pauses the request makes it
-- wait (within proxy_wasm_hold_timeout); a filter's response, failure or
-- close ends the request here (ngx.exit), as it would have without Lua.
function _M.start()
    check_phase("start", ATTACH_PHASES)

    local r = current_request("start")

    if not semaphore then
        semaphore = require "ngx.semaphore"
    end

    local sema = semaphore.new()

    if C.ngx_http_proxy_wasm_ffi_start(r, sema.sem, err_out) ~= NGX_OK then
        return nil, last_error()
    end

    while true do
        local outcome = C.ngx_http_proxy_wasm_ffi_outcome(r, int_out)

        if outcome == OUTCOME_CONTINUE then
            return true
        end

        if outcome ~= OUTCOME_WAITING then
            return ngx.exit(int_out[0])
        end

        -- woken when the chain goes on (the hold timeout bounds it)
        sema:wait(60)
    end
end


-- Properties ------------------------------------------------------------

local host_namespace, host_getter, host_setter



-- The part of a path after the host namespace, if it is in it.
local function host_key(path)
    if host_namespace
       and path:sub(1, #host_namespace + 1) == host_namespace .. "."
    then
        return path:sub(#host_namespace + 2)
    end
end


-- What Lua's handlers make of a property of the host namespace (op:
-- "get" or "set"): a status word ("found", "absent", "done", "readonly",
-- "error") and the value, or why.
local function serve(op, key, value)
    local handler = op == "get" and host_getter or host_setter
    if not handler then
        if op == "get" then
            return "absent"
        end

        return "readonly", "no setter"
    end

    local pok, ok, v = pcall(handler, key, value)
    if not pok then
        return "error", tostring(ok)
    end

    if op == "set" then
        if ok then
            return "done"
        end

        return "error", tostring(v or "the setter failed")
    end

    if ok and v ~= nil then
        return "found", tostring(v)
    end

    if ok or v == nil then
        return "absent"
    end

    return "error", tostring(v)
end


-- A property of the current request as its filters see it (Envoy's
-- attributes and encodings, ngx.*, what filters stored); nil and "not
-- found" when it has none.
function _M.get_property(path)
    check_type(path, "string", "path", 2)

    local r = current_request("get_property")

    local key = host_key(path)
    if key then
        local status, value = serve("get", key)
        if status == "found" then
            return value
        end

        return nil, status == "absent" and "not found" or value
    end

    local rc = C.ngx_http_proxy_wasm_ffi_property_get(r, path, #path,
                                                      value_out, err_out)
    if rc == LOOKUP_FOUND then
        return ffi_str(value_out[0].data, value_out[0].len)
    end

    if rc == LOOKUP_ABSENT then
        return nil, "not found"
    end

    return nil, last_error()
end


-- Sets a property of the current request: an nginx variable (ngx.*), or
-- a value its filters read (the request needs a chain).
function _M.set_property(path, value)
    check_type(path, "string", "path", 2)
    check_type(value, "string", "value", 2)

    local r = current_request("set_property")

    local key = host_key(path)
    if key then
        local status, err = serve("set", key, value)
        if status == "done" then
            return true
        end

        if status == "readonly" then
            return nil, "cannot set " .. path .. ": the property is read-only"
        end

        return nil, err
    end

    if C.ngx_http_proxy_wasm_ffi_property_set(r, path, #path, value, #value,
                                              err_out) ~= NGX_OK
    then
        return nil, last_error()
    end

    return true
end


local set_current_request

do
    local ok, exdata = pcall(require, "thread.exdata")

    if ok and exdata then
        -- OpenResty's LuaJIT keeps the request in the thread's exdata
        local ffi_cast = ffi.cast
        set_current_request = function(r)
            local previous = exdata()
            exdata(ffi_cast("void *", r))
            return previous
        end

    else
        set_current_request = function(r)
            local env = getfenv(0)
            local previous = env.__ngx_req
            env.__ngx_req = r
            return previous
        end
    end
end


-- What the module calls (from C, on Lua's main state) when a filter
-- reads or writes a property of the host namespace.
local function dispatch(r, op, path, value)
    local key = host_key(path)
    if not key then
        return "absent"
    end

    local previous = set_current_request(r)
    local status, result = serve(op, key, value)
    set_current_request(previous)

    return status, result
end


-- Lets Lua serve the properties under "<namespace>." (default "lua")
-- for filters and get_property/set_property, in this worker:
--   getter(key) -> true, value | false (absent) | false, err
--   setter(key, value) -> true | false, err
-- where key is the path after "<namespace>.". Call it in
-- init_worker_by_lua (or later).
function _M.set_host_properties_handlers(getter, setter, namespace)
    if getter ~= nil then
        check_type(getter, "function", "getter", 2)
    end

    if setter ~= nil then
        check_type(setter, "function", "setter", 2)
    end

    if getter == nil and setter == nil then
        error("a getter or a setter is needed", 2)
    end

    if namespace == nil then
        namespace = "lua"
    end

    check_type(namespace, "string", "namespace", 2)
    check_phase("set_host_properties_handlers", WORKER_PHASES)

    if C.ngx_http_proxy_wasm_ffi_host_properties(namespace, #namespace,
                                                 err_out) ~= NGX_OK
    then
        error(last_error(), 2)
    end

    host_namespace, host_getter, host_setter = namespace, getter, setter
    debug.getregistry()["ngx_proxy_wasm.host_properties"] = dispatch

    return true
end


-- Shared memory -----------------------------------------------------------
--
-- Lua acts for a module (module: its name, as filters' keys, queues and
-- metrics are that module's), or for itself (nil): its own part of
-- per-module zones, and every zone with share=.

-- What an operation on shared memory came to: its results (...) when
-- done, else nil and why.
local function shared_outcome(rc, ...)
    if rc == SHARED_DONE then
        return ...
    end

    if rc == SHARED_ABSENT then
        return nil, "not found"
    end

    if rc == SHARED_CAS_MISMATCH then
        return nil, "cas mismatch"
    end

    return nil, last_error()
end


local function owner_of(module, level)
    if module == nil then
        return ""
    end

    check_type(module, "string", "module", level + 1)
    return module
end


-- The value of a key of shm_kv and its CAS; nil, "not found".
function _M.kv_get(key, module)
    check_type(key, "string", "key", 2)
    local owner = owner_of(module, 2)
    check_phase("kv_get", WORKER_PHASES)

    local rc = C.ngx_http_proxy_wasm_ffi_kv_get(owner, #owner, key, #key,
                                                value_out, cas_out, err_out)
    if rc == SHARED_DONE then
        return ffi_str(value_out[0].data, value_out[0].len),
               tonumber(cas_out[0])
    end

    return shared_outcome(rc)
end


-- Stores a key's value; with a cas (from kv_get), only if it is still
-- the stored one: nil, "cas mismatch" otherwise.
function _M.kv_set(key, value, cas, module)
    check_type(key, "string", "key", 2)
    check_type(value, "string", "value", 2)

    if cas == nil then
        cas = 0
    end

    check_type(cas, "number", "cas", 2)
    local owner = owner_of(module, 2)
    check_phase("kv_set", WORKER_PHASES)

    return shared_outcome(C.ngx_http_proxy_wasm_ffi_kv_set(owner, #owner,
                                                           key, #key, value,
                                                           #value, cas,
                                                           err_out),
                          true)
end


-- Appends an item to a shm_queue a filter registered (opts.owner: the
-- module that registered it, when several may have; opts.module: who
-- Lua acts for); nil, "not found" when no such queue is registered.
function _M.enqueue(queue, item, opts)
    check_type(queue, "string", "queue", 2)
    check_type(item, "string", "item", 2)

    local owner, queue_owner = "", ""

    if opts ~= nil then
        check_type(opts, "table", "opts", 2)
        owner = owner_of(opts.module, 2)

        if opts.owner ~= nil then
            check_type(opts.owner, "string", "opts.owner", 2)
            queue_owner = opts.owner
        end
    end

    check_phase("enqueue", WORKER_PHASES)

    return shared_outcome(C.ngx_http_proxy_wasm_ffi_enqueue(owner, #owner,
                                                            queue_owner,
                                                            #queue_owner,
                                                            queue, #queue,
                                                            item, #item,
                                                            err_out),
                          true)
end


local metric_mt = {}
metric_mt.__index = metric_mt


local function metric_apply(metric, op, arg)
    local owner = metric.owner
    return shared_outcome(C.ngx_http_proxy_wasm_ffi_metric_apply(owner,
                                                      #owner, metric.id, op,
                                                      arg, u64_out, err_out),
                          true)
end


-- Adds n (default 1) to a counter or a gauge (a gauge may go down).
function metric_mt:increment(n)
    if n == nil then
        n = 1
    end

    check_type(n, "number", "n", 2)
    return metric_apply(self, METRIC_INCREMENT, n)
end


-- Sets a gauge, or records a value in a histogram.
function metric_mt:record(value)
    check_type(value, "number", "value", 2)
    return metric_apply(self, METRIC_RECORD, value)
end


-- A counter's or a gauge's value (a histogram's count of values).
function metric_mt:get()
    local ok, err = metric_apply(self, METRIC_GET, 0)
    if not ok then
        return nil, err
    end

    return tonumber(u64_out[0])
end


-- A metric of the metrics zone: "counter", "gauge" or "histogram",
-- named as the module's filters name it (its name prefixed by the
-- module's, "lua" without one), so that Lua and filters share it.
function _M.metric(name, kind, module)
    check_type(name, "string", "name", 2)
    check_type(kind, "string", "kind", 2)

    local ctype = METRIC_TYPES[kind]
    if ctype == nil then
        error("kind must be \"counter\", \"gauge\" or \"histogram\"", 2)
    end

    local owner = module == nil and "lua" or owner_of(module, 2)
    check_phase("metric", WORKER_PHASES)

    local ok, err = shared_outcome(
        C.ngx_http_proxy_wasm_ffi_metric_define(owner, #owner, ctype, name,
                                                #name, id_out, err_out),
        true)
    if not ok then
        return nil, err
    end

    return setmetatable({ id = id_out[0], owner = owner, name = name },
                        metric_mt)
end


return _M
