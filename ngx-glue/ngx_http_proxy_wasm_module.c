/*
 * The HTTP module: the proxy_wasm directives, the placement of its phase
 * handlers, and each request's state and chain. The request's side is in
 * ngx_http_proxy_wasm_request.c, the response's in
 * ngx_http_proxy_wasm_response.c.
 *
 * In every phase the chain runs after nginx's own handlers, Lua's
 * included:
 *   - on_request_headers: first handler of the preaccess phase, i.e. after
 *     every rewrite handler (or of the precontent phase, after every access
 *     handler, with proxy_wasm_request_headers_in_access);
 *   - on_request_body: as the body is read; when a filter looks at bodies,
 *     the body is read first thing in the precontent phase (after the
 *     access checks), before the content handler;
 *   - on_response_headers/body/trailers: header and body filters placed
 *     below the filters of Lua, headers_more, add_header, sub, ssi,
 *     charset, and above gzip (see ngx_module_order in "config");
 *   - on_log: last handler of the log phase.
 * The placement of the phase handlers is fixed once, at configuration
 * time, by ngx_http_proxy_wasm_init_module().
 */

#include "ngx_proxy_wasm_shim.h"


static ngx_int_t ngx_http_proxy_wasm_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_proxy_wasm_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_proxy_wasm_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_proxy_wasm_init_process(ngx_cycle_t *cycle);
static void ngx_http_proxy_wasm_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_proxy_wasm_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_proxy_wasm_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_proxy_wasm_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r);
static void ngx_http_proxy_wasm_cleanup(void *data);


ngx_uint_t  ngx_http_proxy_wasm_process_started;


static ngx_conf_enum_t  ngx_http_proxy_wasm_overflow[] = {
    { ngx_string("fail"), 0 },
    { ngx_string("pass"), 1 },
    { ngx_null_string, 0 }
};


static char *ngx_http_proxy_wasm_check_status(ngx_conf_t *cf, void *post,
    void *data);

static ngx_conf_post_t  ngx_http_proxy_wasm_failure_status_post = {
    ngx_http_proxy_wasm_check_status
};


static ngx_command_t  ngx_http_proxy_wasm_commands[] = {

    { ngx_string("proxy_wasm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_proxy_wasm_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm_request_headers_in_access"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, request_headers_in_access),
      NULL },

    { ngx_string("wasm_response_body_buffers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_conf_set_bufs_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, response_body_buffers),
      NULL },

    { ngx_string("wasm_response_body_overflow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, response_body_overflow),
      &ngx_http_proxy_wasm_overflow },

    { ngx_string("proxy_wasm_isolation"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, isolation),
      &ngx_proxy_wasm_isolations },

    { ngx_string("proxy_wasm_failure"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, failure),
      &ngx_proxy_wasm_failures },

    { ngx_string("proxy_wasm_failure_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, failure_status),
      &ngx_http_proxy_wasm_failure_status_post },

    { ngx_string("proxy_wasm_property"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_proxy_wasm_property_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm_hold_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, hold_timeout),
      NULL },

    { ngx_string("proxy_wasm_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_proxy_wasm_metrics_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_proxy_wasm_module_ctx = {
    ngx_http_proxy_wasm_preconfiguration,  /* preconfiguration */
    ngx_http_proxy_wasm_init,              /* postconfiguration */

    ngx_http_proxy_wasm_create_main_conf,  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_proxy_wasm_create_loc_conf,   /* create location configuration */
    ngx_http_proxy_wasm_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_proxy_wasm_module = {
    NGX_MODULE_V1,
    &ngx_http_proxy_wasm_module_ctx,       /* module context */
    ngx_http_proxy_wasm_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_proxy_wasm_init_module,       /* init module */
    ngx_http_proxy_wasm_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_proxy_wasm_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_proxy_wasm_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_main_conf_t));
}


static void *
ngx_http_proxy_wasm_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_proxy_wasm_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_proxy_wasm_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->filters = NGX_CONF_UNSET_PTR;
    conf->request_headers_in_access = NGX_CONF_UNSET;
    conf->response_body_overflow = NGX_CONF_UNSET_UINT;
    conf->isolation = NGX_CONF_UNSET_UINT;
    conf->failure = NGX_CONF_UNSET_UINT;
    conf->failure_status = NGX_CONF_UNSET_UINT;
    conf->hold_timeout = NGX_CONF_UNSET_MSEC;
    conf->properties = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_proxy_wasm_check_status(ngx_conf_t *cf, void *post, void *data)
{
    ngx_int_t  *status = data;

    if (*status < 400 || *status > 599) {
        return "must be between 400 and 599";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_proxy_wasm_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_proxy_wasm_loc_conf_t  *prev = parent;
    ngx_http_proxy_wasm_loc_conf_t  *conf = child;

    /* a level with its own proxy_wasm lines replaces the inherited chain */
    ngx_conf_merge_ptr_value(conf->filters, prev->filters, NULL);
    ngx_conf_merge_value(conf->request_headers_in_access,
                         prev->request_headers_in_access, 0);
    /* Envoy's default buffer limit: 1 MiB */
    ngx_conf_merge_bufs_value(conf->response_body_buffers,
                              prev->response_body_buffers, 16, 64 * 1024);
    ngx_conf_merge_uint_value(conf->response_body_overflow,
                              prev->response_body_overflow, 0);
    ngx_conf_merge_uint_value(conf->isolation, prev->isolation,
                              NGX_PROXY_WASM_ISOLATION_NONE);
    ngx_conf_merge_uint_value(conf->failure, prev->failure,
                              NGX_PROXY_WASM_FAILURE_RELOAD);
    ngx_conf_merge_uint_value(conf->failure_status, prev->failure_status,
                              NGX_HTTP_INTERNAL_SERVER_ERROR);
    ngx_conf_merge_msec_value(conf->hold_timeout, prev->hold_timeout, 60000);

    return ngx_proxy_wasm_property_merge(cf, &conf->properties,
                                         prev->properties);
}


static char *
ngx_http_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf = conf;

    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    if (ngx_proxy_wasm_filter_directive(cf, &plcf->filters, "http")
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);
    pmcf->used = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_preconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_proxy_wasm_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_proxy_wasm_lua_init(cf);
}


static ngx_int_t
ngx_http_proxy_wasm_init(ngx_conf_t *cf)
{
    ngx_uint_t                        i;
    ngx_http_handler_pt              *h;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    static struct {
        ngx_uint_t           phase;
        ngx_http_handler_pt  handler;
    }  handlers[] = {
        { NGX_HTTP_PREACCESS_PHASE, ngx_http_proxy_wasm_preaccess_handler },
        { NGX_HTTP_PRECONTENT_PHASE, ngx_http_proxy_wasm_precontent_handler },
        { NGX_HTTP_LOG_PHASE, ngx_http_proxy_wasm_log_handler },
    };

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);

    /* with modules, Lua may attach chains in any location */
    if (!pmcf->used && ngx_proxy_wasm_runtime(cf->cycle) == NULL) {
        return NGX_OK;
    }

    pmcf->used = 1;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        h = ngx_array_push(&cmcf->phases[handlers[i].phase].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = handlers[i].handler;
    }

    if (ngx_http_proxy_wasm_request_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_proxy_wasm_response_init(cf);
}


/*
 * Moves a handler to the front of its block of the phase engine (the
 * entries that share its checker and next index), and says in the debug
 * log what it now precedes.
 */
static void
ngx_http_proxy_wasm_move_first(ngx_log_t *log, ngx_http_phase_handler_t *ph,
    ngx_http_handler_pt handler, char *what)
{
    ngx_uint_t                i, first, last;
    ngx_http_phase_handler_t  entry;

    for (i = 0; ph[i].checker; i++) {
        if (ph[i].handler == handler) {
            break;
        }
    }

    if (ph[i].checker == NULL) {
        return;
    }

    first = i;

    while (first > 0 && ph[first - 1].checker == ph[i].checker
           && ph[first - 1].next == ph[i].next)
    {
        first--;
    }

    last = i;

    while (ph[last + 1].checker == ph[i].checker
           && ph[last + 1].next == ph[i].next)
    {
        last++;
    }

    entry = ph[i];
    ngx_memmove(&ph[first + 1], &ph[first],
                (i - first) * sizeof(ngx_http_phase_handler_t));
    ph[first] = entry;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "proxy_wasm: %s, before %ui other handlers",
                   what, last - first);
}


/*
 * Fixes, once per configuration, where the chain runs: after every other
 * handler of the rewrite (resp. access) phase, including handlers that
 * move themselves to the end of their phase at run time (Lua's), and last
 * in the log phase.
 */
static ngx_int_t
ngx_http_proxy_wasm_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i, n;
    ngx_http_handler_pt              *h;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_http_module) == NULL) {
        return NGX_OK;
    }

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_proxy_wasm_module);
    if (pmcf == NULL || !pmcf->used) {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_core_module);

    ngx_http_proxy_wasm_move_first(cycle->log, cmcf->phase_engine.handlers,
                                   ngx_http_proxy_wasm_preaccess_handler,
                                   "on_request_headers runs first in "
                                   "preaccess");

    ngx_http_proxy_wasm_move_first(cycle->log, cmcf->phase_engine.handlers,
                                   ngx_http_proxy_wasm_precontent_handler,
                                   "request bodies are read first in "
                                   "precontent");

    h = cmcf->phases[NGX_HTTP_LOG_PHASE].handlers.elts;
    n = cmcf->phases[NGX_HTTP_LOG_PHASE].handlers.nelts;

    for (i = 0; i < n; i++) {
        if (h[i] == ngx_http_proxy_wasm_log_handler) {
            ngx_memmove(&h[i], &h[i + 1], (n - i - 1) * sizeof(*h));
            h[n - 1] = ngx_http_proxy_wasm_log_handler;
            break;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                   "proxy_wasm: on_log runs last in the log phase, after %ui "
                   "other handlers", n ? n - 1 : 0);

    return NGX_OK;
}


/*
 * Starts the worker's instances. Here rather than in the wasm{} block's
 * core module: root contexts may start timers, and HTTP modules come
 * after the event modules, which set timers up, also in static builds.
 */
static ngx_int_t
ngx_http_proxy_wasm_init_process(ngx_cycle_t *cycle)
{
    ngx_proxy_wasm_runtime_t  *rt;

    /* from now on ngx_cycle holds this configuration */
    ngx_http_proxy_wasm_process_started = 1;
    ngx_proxy_wasm_shm_conf = (ngx_proxy_wasm_conf_t *)
                   ngx_get_conf(cycle->conf_ctx, ngx_proxy_wasm_module);

    rt = ngx_proxy_wasm_runtime(cycle);

    if (rt != NULL) {
        ngx_proxy_wasm_api.worker_init(rt);
        ngx_proxy_wasm_shutdown_watch(cycle);
    }

    return NGX_OK;
}


static void
ngx_http_proxy_wasm_exit_process(ngx_cycle_t *cycle)
{
    ngx_proxy_wasm_runtime_t  *rt;

    rt = ngx_proxy_wasm_runtime(cycle);

    if (rt != NULL) {
        ngx_proxy_wasm_api.worker_exit(rt);
    }

    /* nginx alerts on sockets left open at exit */
    ngx_proxy_wasm_shutdown_watch_exit();
    ngx_proxy_wasm_calls_exit();
    ngx_proxy_wasm_queues_exit();
}


/*
 * The request's state. nginx clears module contexts on internal
 * redirects; the state survives in the request pool's cleanup list.
 */
ngx_http_conf_ctx_t *
ngx_http_proxy_wasm_http_conf(void)
{
    if (ngx_cycle->conf_ctx == NULL) {
        return NULL;
    }

    return (ngx_http_conf_ctx_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                                ngx_http_module);
}


ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_proxy_wasm_module);

    if (ctx != NULL || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_proxy_wasm_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_proxy_wasm_module);
            return ctx;
        }
    }

    return NULL;
}


/* The state's request, and its events (zeroed with the state). */
static void
ngx_http_proxy_wasm_ctx_init(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ctx->request = r;
    ctx->resume.handler = ngx_http_proxy_wasm_resume_handler;
    ctx->resume.data = ctx;
    ctx->resume.log = r->connection->log;
    ctx->hold_timer.handler = ngx_http_proxy_wasm_hold_expired;
    ctx->hold_timer.data = ctx;
    ctx->hold_timer.log = r->connection->log;
}


/*
 * A new run of the state's chain (ctx->filters: the location's, or those
 * Lua attached), in a fresh or ended state. If it cannot start, the state
 * stays (failed: the error response passes the filters by) and *rc is set.
 */
static ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_start_chain(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_int_t *rc)
{
    ngx_uint_t                       isolation, attached;
    ngx_array_t                     *filters;
    ngx_proxy_wasm_runtime_t        *rt;
    ngx_proxy_wasm_chain_conf_t      conf;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    filters = ctx->filters;
    isolation = ctx->lua_isolation;
    attached = ctx->lua_attached;

    ngx_memzero(ctx, sizeof(ngx_http_proxy_wasm_ctx_t));

    ngx_http_proxy_wasm_ctx_init(r, ctx);
    ctx->filters = filters;
    ctx->lua_isolation = isolation;
    ctx->lua_attached = attached;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    ngx_memzero(&conf, sizeof(ngx_proxy_wasm_chain_conf_t));
    conf.response_body_limit = plcf->response_body_buffers.num
                               * plcf->response_body_buffers.size;
    conf.response_body_overflow_pass = plcf->response_body_overflow;
    conf.failure = plcf->failure;
    conf.isolation = (isolation != NGX_CONF_UNSET_UINT) ? isolation
                                                        : plcf->isolation;

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    ctx->chain = rt ? ngx_proxy_wasm_api.chain_new(rt, r, filters->elts,
                                                    filters->nelts, &conf)
                     : NULL;

    if (ctx->chain == NULL) {
        ctx->failed = 1;
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    return ctx;
}


void
ngx_http_proxy_wasm_end_chain(ngx_http_proxy_wasm_ctx_t *ctx)
{
    if (ctx->resume.posted) {
        ngx_delete_posted_event(&ctx->resume);
    }

    if (ctx->hold_timer.timer_set) {
        ngx_del_timer(&ctx->hold_timer);
    }

    if (ctx->chain) {
        ngx_proxy_wasm_api.chain_free(ctx->chain);
        ctx->chain = NULL;
    }
}


static void
ngx_http_proxy_wasm_cleanup(void *data)
{
    ngx_http_proxy_wasm_end_chain(data);
}


/*
 * A new state for the request, without a chain; it lives as long as the
 * request's pool, whose cleanup ends its chain.
 */
ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_new_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_proxy_wasm_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ngx_http_proxy_wasm_ctx_init(r, ctx);
    ctx->lua_isolation = NGX_CONF_UNSET_UINT;

    cln->handler = ngx_http_proxy_wasm_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_proxy_wasm_module);

    return ctx;
}


/*
 * The request's state when it runs a filter chain (NULL, with *rc set,
 * otherwise): the chain Lua attached, else its location's. After an
 * internal redirect to a location with another chain, the old chain's
 * contexts end and the new chain starts, unless the response is under way
 * (or Lua attached the chain).
 */
ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_request_ctx(ngx_http_request_t *r, ngx_int_t *rc)
{
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    *rc = NGX_DECLINED;

    /* chains run for the client's request, not for subrequests */
    if (r != r->main) {
        return NULL;
    }

    ctx = ngx_http_proxy_wasm_get_ctx(r);

    if (ctx != NULL && ctx->lua_attached) {
        if (ctx->chain == NULL && !ctx->failed) {
            return ngx_http_proxy_wasm_start_chain(r, ctx, rc);
        }

        return ctx;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    if (plcf->filters == NULL || plcf->filters->nelts == 0) {
        return ctx;
    }

    if (ctx != NULL) {
        if (ctx->filters == plcf->filters || ctx->response_headers_started) {
            return ctx;
        }

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "proxy_wasm: another chain after a redirect");

        ngx_http_proxy_wasm_end_chain(ctx);

    } else {
        ctx = ngx_http_proxy_wasm_new_ctx(r);
        if (ctx == NULL) {
            *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NULL;
        }
    }

    ctx->filters = plcf->filters;

    return ngx_http_proxy_wasm_start_chain(r, ctx, rc);
}


/*
 * A filter failed and the request fails with it: the status of
 * proxy_wasm_failure_status.
 */
ngx_int_t
ngx_http_proxy_wasm_failed(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    ctx->failed = 1;
    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    return plcf->failure_status;
}


/* Filters ask to come back to the request: after the current event. */
void
ngx_http_proxy_wasm_schedule_resume(void *request)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_http_proxy_wasm_get_ctx(request);

    if (ctx != NULL && !ctx->resume.posted) {
        ngx_post_event(&ctx->resume, &ngx_posted_events);
    }
}


static ngx_int_t
ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_http_proxy_wasm_get_ctx(r);

    if (ctx != NULL && ctx->chain != NULL) {
        ngx_proxy_wasm_api.chain_on_log(ctx->chain);
    }

    return NGX_OK;
}
