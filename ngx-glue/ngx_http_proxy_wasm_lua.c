/*
 * The Lua API's side in C: the functions lib/resty/proxy_wasm.lua calls
 * through LuaJIT's FFI (ngx_http_proxy_wasm_ffi_*, exported by this
 * module), and the host functions that call the Lua handlers of host
 * properties.
 *
 * Nothing here links against Lua: the functions of LuaJIT and of
 * lua-nginx-module that are used (its main Lua state, the posting of an
 * ngx.semaphore) are looked up when first needed, so that the module loads
 * into an nginx without Lua.
 *
 * Filters never run inside an FFI call from Lua, but where a filter is
 * added (its on_configure): start() runs the chain from a posted event,
 * and attach() only names the chain, which starts when the request comes
 * to it. That is what lets the host properties' handlers run on Lua's
 * main state (as lua-nginx-module's own log_by_lua does): re-entering Lua
 * from a C function called through the FFI is not allowed.
 */

#include "ngx_proxy_wasm_shim.h"

#include <dlfcn.h>


/* What Lua's start() came to (ngx_http_proxy_wasm_ffi_outcome). */
typedef enum {
    NGX_HTTP_PROXY_WASM_LUA_WAITING = 0,
    NGX_HTTP_PROXY_WASM_LUA_CONTINUE = 1,
    /* a filter answered: send it, then exit with *status */
    NGX_HTTP_PROXY_WASM_LUA_RESPONSE = 2,
    /* a filter failed: exit with *status (proxy_wasm_failure_status) */
    NGX_HTTP_PROXY_WASM_LUA_FAIL = 3,
    /* a filter closed the request */
    NGX_HTTP_PROXY_WASM_LUA_CLOSE = 4
} ngx_http_proxy_wasm_lua_outcome_e;


/* A filter of a chain Lua builds: a module's name, a plugin configuration. */
typedef struct {
    ngx_proxy_wasm_str_t           name;
    ngx_proxy_wasm_str_t           config;
} ngx_http_proxy_wasm_lua_filter_t;


/* The few functions of LuaJIT's C API the host properties need. */
typedef struct lua_State  lua_State;

#define NGX_HTTP_PROXY_WASM_LUA_REGISTRYINDEX  (-10000)
#define NGX_HTTP_PROXY_WASM_LUA_TFUNCTION      6

/* where the library keeps its dispatcher of host properties */
#define NGX_HTTP_PROXY_WASM_LUA_DISPATCH  "ngx_proxy_wasm.host_properties"

typedef struct {
    ngx_uint_t     looked_up;
    ngx_uint_t     ready;
    int          (*gettop)(lua_State *L);
    void         (*settop)(lua_State *L, int idx);
    void         (*getfield)(lua_State *L, int idx, const char *k);
    int          (*type)(lua_State *L, int idx);
    void         (*pushlightuserdata)(lua_State *L, void *p);
    void         (*pushnil)(lua_State *L);
    void         (*pushlstring)(lua_State *L, const char *s, size_t l);
    int          (*pcall)(lua_State *L, int nargs, int nresults, int errfunc);
    const char  *(*tolstring)(lua_State *L, int idx, size_t *len);
    /* lua-nginx-module's */
    ngx_module_t  *lua_module;
    int          (*sema_post)(void *sema, int n);
} ngx_http_proxy_wasm_lua_t;


static ngx_http_proxy_wasm_lua_t  ngx_http_proxy_wasm_lua;

/* the cycle being configured: where init_by_lua adds filters */
static ngx_cycle_t  *ngx_http_proxy_wasm_lua_conf_cycle;

/* guest code runs within a call from Lua: Lua cannot be called back */
static ngx_uint_t  ngx_http_proxy_wasm_lua_busy;

/* a value a Lua handler gave, lent to Rust until the next one */
static u_char  *ngx_http_proxy_wasm_lua_value;
static size_t   ngx_http_proxy_wasm_lua_value_size;


static void
ngx_http_proxy_wasm_lua_forget_cycle(void *data)
{
    if (ngx_http_proxy_wasm_lua_conf_cycle == data) {
        ngx_http_proxy_wasm_lua_conf_cycle = NULL;
    }
}


/* At the start of http{}: init_by_lua of this configuration comes later. */
ngx_int_t
ngx_http_proxy_wasm_lua_init(ngx_conf_t *cf)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(cf->cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_proxy_wasm_lua_forget_cycle;
    cln->data = cf->cycle;

    ngx_http_proxy_wasm_lua_conf_cycle = cf->cycle;

    return NGX_OK;
}


static void
ngx_http_proxy_wasm_lua_lookup(void)
{
    ngx_http_proxy_wasm_lua_t  *lua = &ngx_http_proxy_wasm_lua;

    if (lua->looked_up) {
        return;
    }

    lua->looked_up = 1;

    lua->gettop = (int (*)(lua_State *)) dlsym(RTLD_DEFAULT, "lua_gettop");
    lua->settop = (void (*)(lua_State *, int)) dlsym(RTLD_DEFAULT,
                                                     "lua_settop");
    lua->getfield = (void (*)(lua_State *, int, const char *))
                        dlsym(RTLD_DEFAULT, "lua_getfield");
    lua->type = (int (*)(lua_State *, int)) dlsym(RTLD_DEFAULT, "lua_type");
    lua->pushlightuserdata = (void (*)(lua_State *, void *))
                                 dlsym(RTLD_DEFAULT, "lua_pushlightuserdata");
    lua->pushnil = (void (*)(lua_State *)) dlsym(RTLD_DEFAULT, "lua_pushnil");
    lua->pushlstring = (void (*)(lua_State *, const char *, size_t))
                           dlsym(RTLD_DEFAULT, "lua_pushlstring");
    lua->pcall = (int (*)(lua_State *, int, int, int))
                     dlsym(RTLD_DEFAULT, "lua_pcall");
    lua->tolstring = (const char *(*)(lua_State *, int, size_t *))
                         dlsym(RTLD_DEFAULT, "lua_tolstring");
    lua->lua_module = dlsym(RTLD_DEFAULT, "ngx_http_lua_module");
    lua->sema_post = (int (*)(void *, int))
                         dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_sema_post");

    lua->ready = lua->gettop && lua->settop && lua->getfield && lua->type
                 && lua->pushlightuserdata && lua->pushnil
                 && lua->pushlstring && lua->pcall
                 && lua->tolstring && lua->lua_module;
}


/* lua-nginx-module's main Lua state (its main conf begins with it). */
static lua_State *
ngx_http_proxy_wasm_lua_state(void)
{
    void                 *lmcf;
    ngx_http_conf_ctx_t  *http;

    ngx_http_proxy_wasm_lua_lookup();

    http = ngx_http_proxy_wasm_http_conf();

    if (!ngx_http_proxy_wasm_lua.ready || http == NULL) {
        return NULL;
    }

    lmcf = http->main_conf[ngx_http_proxy_wasm_lua.lua_module->ctx_index];

    return lmcf ? *(lua_State **) lmcf : NULL;
}


/*
 * Calls the library's dispatcher of host properties on Lua's main state:
 * dispatch(request, op, path, value) returns a status word and a value
 * (or why it failed). NGX_DECLINED: no handler is set. The status is
 * compared while the results are on the stack; *value is copied out.
 */
static ngx_int_t
ngx_http_proxy_wasm_lua_dispatch(void *request, const char *op,
    ngx_proxy_wasm_str_t path, ngx_proxy_wasm_str_t *value,
    ngx_str_t *status)
{
    int                         top;
    size_t                      len;
    u_char                     *p;
    lua_State                  *L;
    const char                 *s;
    ngx_log_t                  *log;
    ngx_http_proxy_wasm_lua_t  *lua = &ngx_http_proxy_wasm_lua;

    L = ngx_http_proxy_wasm_lua_state();
    if (L == NULL) {
        return NGX_DECLINED;
    }

    log = ngx_cycle->log;

    if (request != NULL && !ngx_proxy_wasm_is_session(request)) {
        log = ((ngx_http_request_t *) request)->connection->log;

    } else {
        /* the handlers serve HTTP requests (or none) */
        request = NULL;
    }

    if (ngx_http_proxy_wasm_lua_busy) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "proxy_wasm: property \"%*s\" is served by Lua, "
                      "which cannot be called while it adds a filter",
                      path.len, path.data);
        return NGX_ERROR;
    }

    top = lua->gettop(L);

    lua->getfield(L, NGX_HTTP_PROXY_WASM_LUA_REGISTRYINDEX,
                  NGX_HTTP_PROXY_WASM_LUA_DISPATCH);

    if (lua->type(L, -1) != NGX_HTTP_PROXY_WASM_LUA_TFUNCTION) {
        lua->settop(L, top);
        return NGX_DECLINED;
    }

    if (request != NULL) {
        lua->pushlightuserdata(L, request);

    } else {
        lua->pushnil(L);
    }

    lua->pushlstring(L, op, ngx_strlen(op));
    lua->pushlstring(L, (const char *) path.data, path.len);
    lua->pushlstring(L, value->len ? (const char *) value->data : "",
                     value->len);

    if (lua->pcall(L, 4, 2, 0) != 0) {
        s = lua->tolstring(L, -1, &len);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "proxy_wasm: the Lua handler of property \"%*s\" "
                      "failed: %*s", path.len, path.data,
                      s ? len : 0, s ? s : "");
        lua->settop(L, top);
        return NGX_ERROR;
    }

    s = lua->tolstring(L, -2, &len);
    if (s == NULL || len > status->len) {
        len = 0;
    }

    status->len = ngx_cpymem(status->data, s, len) - status->data;

    s = lua->tolstring(L, -1, &len);
    if (s == NULL) {
        len = 0;
    }

    if (len > ngx_http_proxy_wasm_lua_value_size) {
        p = ngx_alloc(len, ngx_cycle->log);
        if (p == NULL) {
            lua->settop(L, top);
            return NGX_ERROR;
        }

        if (ngx_http_proxy_wasm_lua_value) {
            ngx_free(ngx_http_proxy_wasm_lua_value);
        }

        ngx_http_proxy_wasm_lua_value = p;
        ngx_http_proxy_wasm_lua_value_size = len;
    }

    if (len) {
        ngx_memcpy(ngx_http_proxy_wasm_lua_value, s, len);
    }

    value->data = ngx_http_proxy_wasm_lua_value;
    value->len = len;

    if (ngx_strncmp(status->data, "error", status->len) == 0
        && status->len == 5)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "proxy_wasm: the Lua handler of property \"%*s\" "
                      "failed: %*s", path.len, path.data, len, s ? s : "");
    }

    lua->settop(L, top);

    return NGX_OK;
}


#define ngx_http_proxy_wasm_lua_is(status, word)                             \
    ((status).len == sizeof(word) - 1                                        \
     && ngx_strncmp((status).data, word, sizeof(word) - 1) == 0)


ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_lua_property_get(void *request, ngx_proxy_wasm_str_t path,
    ngx_proxy_wasm_str_t *value)
{
    u_char     buf[16];
    ngx_str_t  status;

    status.data = buf;
    status.len = sizeof(buf);
    value->data = NULL;
    value->len = 0;

    switch (ngx_http_proxy_wasm_lua_dispatch(request, "get", path, value,
                                             &status))
    {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    default:
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    if (ngx_http_proxy_wasm_lua_is(status, "found")) {
        return NGX_PROXY_WASM_LOOKUP_FOUND;
    }

    if (ngx_http_proxy_wasm_lua_is(status, "absent")) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    return NGX_PROXY_WASM_LOOKUP_ERROR;
}


ngx_proxy_wasm_change_e
ngx_http_proxy_wasm_lua_property_set(void *request, ngx_proxy_wasm_str_t path,
    ngx_proxy_wasm_str_t value)
{
    u_char     buf[16];
    ngx_str_t  status;

    status.data = buf;
    status.len = sizeof(buf);

    switch (ngx_http_proxy_wasm_lua_dispatch(request, "set", path, &value,
                                             &status))
    {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    default:
        return NGX_PROXY_WASM_CHANGE_ERROR;
    }

    if (ngx_http_proxy_wasm_lua_is(status, "done")) {
        return NGX_PROXY_WASM_CHANGE_DONE;
    }

    if (ngx_http_proxy_wasm_lua_is(status, "readonly")) {
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    }

    return NGX_PROXY_WASM_CHANGE_ERROR;
}


/* The runtime Lua reaches: the configured one in init_by_lua. */
static ngx_proxy_wasm_runtime_t *
ngx_http_proxy_wasm_lua_runtime(ngx_uint_t configuring,
    ngx_proxy_wasm_str_t *err)
{
    ngx_cycle_t               *cycle;
    ngx_proxy_wasm_runtime_t  *rt;

    cycle = configuring ? ngx_http_proxy_wasm_lua_conf_cycle
                        : (ngx_cycle_t *) ngx_cycle;

    rt = cycle ? ngx_proxy_wasm_runtime(cycle) : NULL;

    if (rt == NULL) {
        err->data = (u_char *) "no wasm{} block is configured";
        err->len = sizeof("no wasm{} block is configured") - 1;
    }

    return rt;
}


#define ngx_http_proxy_wasm_lua_error(err, text)                             \
    ((err)->data = (u_char *) (text), (err)->len = sizeof(text) - 1,         \
     NGX_ERROR)


/*
 * Adds the filters of a chain Lua builds (new()): their ids, or the index
 * of the one that failed in *failed and why in *err. In init_by_lua
 * (configuring) they are filters of the configuration being loaded; in a
 * worker they start there at once.
 */
int
ngx_http_proxy_wasm_ffi_filters_add(
    const ngx_http_proxy_wasm_lua_filter_t *filters, size_t n, uint32_t *ids,
    int configuring, size_t *failed, ngx_proxy_wasm_str_t *err)
{
    size_t                     i;
    int32_t                    id;
    ngx_proxy_wasm_runtime_t  *rt;

    *failed = 0;

    rt = ngx_http_proxy_wasm_lua_runtime(configuring, err);
    if (rt == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        ngx_http_proxy_wasm_lua_busy++;
        id = ngx_proxy_wasm_api.filter_add(rt, filters[i].name,
                                           filters[i].config, err);
        ngx_http_proxy_wasm_lua_busy--;

        if (id < 0) {
            *failed = i;
            return NGX_ERROR;
        }

        ids[i] = (uint32_t) id;
    }

    return NGX_OK;
}


/* The request Lua works on, if chains may run for it. */
static ngx_int_t
ngx_http_proxy_wasm_lua_request(ngx_http_request_t *r,
    ngx_proxy_wasm_str_t *err)
{
    if (r != r->main) {
        return ngx_http_proxy_wasm_lua_error(err,
                                  "subrequests run no filter chains");
    }

    if (ngx_http_proxy_wasm_request_gone(r) || r->logged) {
        return ngx_http_proxy_wasm_lua_error(err,
                                  "the request is being finalized");
    }

    if (ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle) == NULL) {
        return ngx_http_proxy_wasm_lua_error(err,
                                  "no wasm{} block is configured");
    }

    return NGX_OK;
}


/*
 * Makes a chain of filters (ids from filters_add) the request's chain, in
 * place of its location's; isolation: a proxy_wasm_isolation value, or -1
 * for the location's. The chain starts when the request comes to it.
 */
int
ngx_http_proxy_wasm_ffi_attach(ngx_http_request_t *r, const uint32_t *ids,
    size_t n, int isolation, ngx_proxy_wasm_str_t *err)
{
    ngx_array_t                *filters;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    if (ngx_http_proxy_wasm_lua_request(r, err) != NGX_OK) {
        return NGX_ERROR;
    }

    if (n == 0) {
        return ngx_http_proxy_wasm_lua_error(err, "the chain is empty");
    }

    ctx = ngx_http_proxy_wasm_get_ctx(r);

    if (ctx != NULL && ctx->request_headers_started) {
        return ngx_http_proxy_wasm_lua_error(err,
                                  "the request's chain has already started");
    }

    filters = ngx_array_create(r->pool, n, sizeof(uint32_t));
    if (filters == NULL) {
        return ngx_http_proxy_wasm_lua_error(err, "no memory");
    }

    ngx_memcpy(ngx_array_push_n(filters, n), ids, n * sizeof(uint32_t));

    if (ctx == NULL) {
        ctx = ngx_http_proxy_wasm_new_ctx(r);
        if (ctx == NULL) {
            return ngx_http_proxy_wasm_lua_error(err, "no memory");
        }

    } else {
        /* the location's chain, made early (set_property): it ends */
        ngx_http_proxy_wasm_end_chain(ctx);
        ctx->failed = 0;
    }

    ctx->filters = filters;
    ctx->lua_attached = 1;
    ctx->lua_isolation = (isolation < 0) ? NGX_CONF_UNSET_UINT
                                         : (ngx_uint_t) isolation;

    return NGX_OK;
}


/*
 * Lua's start(): on_request_headers now, from a posted event (filters
 * never run within a call from Lua); Lua waits on its semaphore for
 * ngx_http_proxy_wasm_ffi_outcome to tell what came of it.
 */
int
ngx_http_proxy_wasm_ffi_start(ngx_http_request_t *r, void *sema,
    ngx_proxy_wasm_str_t *err)
{
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    if (ngx_http_proxy_wasm_lua_request(r, err) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_proxy_wasm_lua_lookup();

    if (ngx_http_proxy_wasm_lua.sema_post == NULL) {
        return ngx_http_proxy_wasm_lua_error(err,
                                  "lua-nginx-module's semaphores are missing");
    }

    ctx = ngx_http_proxy_wasm_get_ctx(r);

    if (ctx == NULL) {
        plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

        if (plcf->filters == NULL || plcf->filters->nelts == 0) {
            return ngx_http_proxy_wasm_lua_error(err,
                "no filter chain runs for this request: attach one, or "
                "configure proxy_wasm for its location");
        }

        /* the location's chain, started by Lua: it starts when posted */
        ctx = ngx_http_proxy_wasm_new_ctx(r);
        if (ctx == NULL) {
            return ngx_http_proxy_wasm_lua_error(err, "no memory");
        }

        ctx->filters = plcf->filters;
        ctx->lua_attached = 1;
    }

    if (ctx->request_headers_started || ctx->lua_start_pending) {
        return ngx_http_proxy_wasm_lua_error(err,
                                  "the request's chain has already started");
    }

    if (ctx->failed) {
        return ngx_http_proxy_wasm_lua_error(err,
                                  "the request's filter chain failed");
    }

    ctx->lua_sema = sema;
    ctx->lua_start_pending = 1;
    ctx->lua_outcome = NGX_HTTP_PROXY_WASM_LUA_WAITING;

    ngx_post_event(&ctx->resume, &ngx_posted_events);

    return NGX_OK;
}


/* Tells the waiting Lua code what start() came to. */
static void
ngx_http_proxy_wasm_lua_done(ngx_http_proxy_wasm_ctx_t *ctx,
    ngx_http_proxy_wasm_lua_outcome_e outcome)
{
    ctx->lua_outcome = outcome;
    ctx->lua_waiting = 0;
    ctx->request_paused = 0;

    if (ctx->hold_timer.timer_set) {
        ngx_del_timer(&ctx->hold_timer);
    }

    if (ctx->lua_sema != NULL) {
        (void) ngx_http_proxy_wasm_lua.sema_post(ctx->lua_sema, 1);
        ctx->lua_sema = NULL;
    }
}


/* From the request's posted event: start() runs, or goes on. */
void
ngx_http_proxy_wasm_lua_resume(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    void                            *sema;
    ngx_int_t                        rc;
    ngx_proxy_wasm_step_t            step;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    if (ctx->lua_start_pending) {
        /* the chain may start now, in a state made afresh */
        sema = ctx->lua_sema;
        (void) ngx_http_proxy_wasm_request_ctx(r, &rc);
        ctx->lua_sema = sema;
        ctx->lua_start_pending = 0;

        if (ctx->chain == NULL) {
            ctx->failed = 1;
            ngx_http_proxy_wasm_lua_done(ctx, NGX_HTTP_PROXY_WASM_LUA_FAIL);
            return;
        }

        ctx->request_headers_started = 1;

        ngx_proxy_wasm_api.chain_on_headers(ctx->chain,
                                     NGX_PROXY_WASM_DIRECTION_REQUEST,
                                     !ngx_http_proxy_wasm_request_has_body(r),
                                     &step);

    } else {
        ngx_proxy_wasm_api.chain_resume(ctx->chain,
                                        NGX_PROXY_WASM_DIRECTION_REQUEST,
                                        &step);
    }

    switch (step.next) {

    case NGX_PROXY_WASM_NEXT_CONTINUE:
        ctx->request_headers_done = step.headers_done;
        ngx_http_proxy_wasm_lua_done(ctx, NGX_HTTP_PROXY_WASM_LUA_CONTINUE);
        return;

    case NGX_PROXY_WASM_NEXT_PAUSE:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "proxy_wasm: request held by a filter, Lua waits");
        ctx->request_paused = 1;
        ctx->lua_waiting = 1;

        if (!ctx->hold_timer.timer_set) {
            plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);
            ngx_add_timer(&ctx->hold_timer, plcf->hold_timeout);
        }

        return;

    case NGX_PROXY_WASM_NEXT_LOCAL_RESPONSE:
        ngx_http_proxy_wasm_lua_done(ctx, NGX_HTTP_PROXY_WASM_LUA_RESPONSE);
        return;

    case NGX_PROXY_WASM_NEXT_CLOSE:
        ctx->failed = 1;
        ngx_http_proxy_wasm_lua_done(ctx, NGX_HTTP_PROXY_WASM_LUA_CLOSE);
        return;

    default: /* NGX_PROXY_WASM_NEXT_FAIL */
        ngx_http_proxy_wasm_lua_done(ctx, NGX_HTTP_PROXY_WASM_LUA_FAIL);
        return;
    }
}


void
ngx_http_proxy_wasm_lua_hold_expired(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_http_proxy_wasm_lua_done(ctx, NGX_HTTP_PROXY_WASM_LUA_FAIL);
}


/*
 * What start() came to; for a response (sent here) or a failure, the
 * status Lua exits with (ngx.exit).
 */
int
ngx_http_proxy_wasm_ffi_outcome(ngx_http_request_t *r, int *status)
{
    ngx_int_t                   rc;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    *status = 0;

    ctx = ngx_http_proxy_wasm_get_ctx(r);
    if (ctx == NULL) {
        *status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_HTTP_PROXY_WASM_LUA_FAIL;
    }

    switch (ctx->lua_outcome) {

    case NGX_HTTP_PROXY_WASM_LUA_RESPONSE:
        ctx->lua_outcome = NGX_HTTP_PROXY_WASM_LUA_CONTINUE;
        rc = ngx_http_proxy_wasm_send_local_response(r, ctx);
        *status = (rc == NGX_OK || rc == NGX_AGAIN || rc == NGX_DONE)
                  ? NGX_HTTP_OK : (int) rc;
        return NGX_HTTP_PROXY_WASM_LUA_RESPONSE;

    case NGX_HTTP_PROXY_WASM_LUA_FAIL:
        *status = (int) ngx_http_proxy_wasm_failed(r, ctx);
        return NGX_HTTP_PROXY_WASM_LUA_FAIL;

    case NGX_HTTP_PROXY_WASM_LUA_CLOSE:
        *status = NGX_HTTP_CLOSE;
        return NGX_HTTP_PROXY_WASM_LUA_CLOSE;

    default:
        return (int) ctx->lua_outcome;
    }
}


/*
 * The chain of a request for its properties, made if it is due (its
 * contexts start early); NULL: it has none.
 */
static ngx_proxy_wasm_chain_t *
ngx_http_proxy_wasm_lua_property_chain(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_proxy_wasm_str_t        err;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    if (r == NULL || ngx_http_proxy_wasm_lua_request(r, &err) != NGX_OK) {
        return NULL;
    }

    /* a filter of the chain may start now (isolation): Lua is busy */
    ngx_http_proxy_wasm_lua_busy++;
    ctx = ngx_http_proxy_wasm_request_ctx(r, &rc);
    ngx_http_proxy_wasm_lua_busy--;

    return ctx ? ctx->chain : NULL;
}


/* A property as filters see it; r may be NULL (no request). */
int
ngx_http_proxy_wasm_ffi_property_get(ngx_http_request_t *r,
    const u_char *path_data, size_t path_len, ngx_proxy_wasm_str_t *value,
    ngx_proxy_wasm_str_t *err)
{
    ngx_proxy_wasm_str_t       path = { path_data, path_len };
    ngx_proxy_wasm_chain_t    *chain;
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_http_proxy_wasm_lua_runtime(0, err);
    if (rt == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    chain = ngx_http_proxy_wasm_lua_property_chain(r);

    return ngx_proxy_wasm_api.property_get(rt, r, chain, path, value, err);
}


int
ngx_http_proxy_wasm_ffi_property_set(ngx_http_request_t *r,
    const u_char *path_data, size_t path_len, const u_char *value_data,
    size_t value_len, ngx_proxy_wasm_str_t *err)
{
    ngx_proxy_wasm_str_t       path = { path_data, path_len };
    ngx_proxy_wasm_str_t       value = { value_data, value_len };
    ngx_proxy_wasm_chain_t    *chain;
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_http_proxy_wasm_lua_runtime(0, err);
    if (rt == NULL) {
        return NGX_ERROR;
    }

    chain = ngx_http_proxy_wasm_lua_property_chain(r);

    return ngx_proxy_wasm_api.property_set(rt, r, chain, path, value, err);
}


/* The first segment of the property paths Lua's handlers serve. */
int
ngx_http_proxy_wasm_ffi_host_properties(const u_char *ns_data, size_t ns_len,
    ngx_proxy_wasm_str_t *err)
{
    ngx_proxy_wasm_str_t       ns = { ns_data, ns_len };
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_http_proxy_wasm_lua_runtime(0, err);
    if (rt == NULL) {
        return NGX_ERROR;
    }

    ngx_http_proxy_wasm_lua_lookup();

    if (!ngx_http_proxy_wasm_lua.ready) {
        return ngx_http_proxy_wasm_lua_error(err,
                                  "lua-nginx-module's Lua state is missing");
    }

    return ngx_proxy_wasm_api.host_properties_namespace(rt, ns, err);
}


/* Shared memory, for a module (owner; empty: Lua's own part). */

int
ngx_http_proxy_wasm_ffi_kv_get(const u_char *owner_data, size_t owner_len,
    const u_char *key_data, size_t key_len, ngx_proxy_wasm_str_t *value,
    uint32_t *cas, ngx_proxy_wasm_str_t *err)
{
    ngx_proxy_wasm_str_t       owner = { owner_data, owner_len };
    ngx_proxy_wasm_str_t       key = { key_data, key_len };
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_http_proxy_wasm_lua_runtime(0, err);

    return rt ? ngx_proxy_wasm_api.kv_get(rt, owner, key, value, cas, err)
              : NGX_PROXY_WASM_SHARED_ERROR;
}


int
ngx_http_proxy_wasm_ffi_kv_set(const u_char *owner_data, size_t owner_len,
    const u_char *key_data, size_t key_len, const u_char *value_data,
    size_t value_len, uint32_t cas, ngx_proxy_wasm_str_t *err)
{
    ngx_proxy_wasm_str_t       owner = { owner_data, owner_len };
    ngx_proxy_wasm_str_t       key = { key_data, key_len };
    ngx_proxy_wasm_str_t       value = { value_data, value_len };
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_http_proxy_wasm_lua_runtime(0, err);

    return rt ? ngx_proxy_wasm_api.kv_set(rt, owner, key, value, cas, err)
              : NGX_PROXY_WASM_SHARED_ERROR;
}


int
ngx_http_proxy_wasm_ffi_enqueue(const u_char *owner_data, size_t owner_len,
    const u_char *queue_owner_data, size_t queue_owner_len,
    const u_char *name_data, size_t name_len, const u_char *item_data,
    size_t item_len, ngx_proxy_wasm_str_t *err)
{
    ngx_proxy_wasm_str_t       owner = { owner_data, owner_len };
    ngx_proxy_wasm_str_t       queue_owner = { queue_owner_data,
                                               queue_owner_len };
    ngx_proxy_wasm_str_t       name = { name_data, name_len };
    ngx_proxy_wasm_str_t       item = { item_data, item_len };
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_http_proxy_wasm_lua_runtime(0, err);

    return rt ? ngx_proxy_wasm_api.queue_enqueue(rt, owner, queue_owner,
                                                 name, item, err)
              : NGX_PROXY_WASM_SHARED_ERROR;
}


int
ngx_http_proxy_wasm_ffi_metric_define(const u_char *owner_data,
    size_t owner_len, int type, const u_char *name_data, size_t name_len,
    uint32_t *id, ngx_proxy_wasm_str_t *err)
{
    ngx_proxy_wasm_str_t       owner = { owner_data, owner_len };
    ngx_proxy_wasm_str_t       name = { name_data, name_len };
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_http_proxy_wasm_lua_runtime(0, err);

    return rt ? ngx_proxy_wasm_api.metric_define(rt, owner,
                                  (ngx_proxy_wasm_metric_type_e) type, name,
                                  id, err)
              : NGX_PROXY_WASM_SHARED_ERROR;
}


int
ngx_http_proxy_wasm_ffi_metric_apply(const u_char *owner_data,
    size_t owner_len, uint32_t id, int op, int64_t arg, uint64_t *value,
    ngx_proxy_wasm_str_t *err)
{
    ngx_proxy_wasm_str_t       owner = { owner_data, owner_len };
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_http_proxy_wasm_lua_runtime(0, err);

    return rt ? ngx_proxy_wasm_api.metric_apply(rt, owner, id,
                                  (ngx_proxy_wasm_metric_op_e) op, arg,
                                  value, err)
              : NGX_PROXY_WASM_SHARED_ERROR;
}
