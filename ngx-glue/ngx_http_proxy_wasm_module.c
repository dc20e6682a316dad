/*
 * HTTP filter chains: the proxy_wasm directives, the request state, and
 * the request's side: on_request_headers in a phase handler, the request
 * body through a request body filter, and resuming a held request.
 * Responses are in ngx_http_proxy_wasm_response.c.
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

#include "ngx_http_proxy_wasm.h"


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
static ngx_int_t ngx_http_proxy_wasm_preaccess_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_precontent_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_proxy_wasm_resume_handler(ngx_event_t *ev);
static void ngx_http_proxy_wasm_hold_expired(ngx_event_t *ev);
static void ngx_http_proxy_wasm_cleanup(void *data);


static ngx_http_request_body_filter_pt  ngx_http_next_request_body_filter;

ngx_uint_t  ngx_http_proxy_wasm_process_started;


static ngx_conf_enum_t  ngx_http_proxy_wasm_overflow[] = {
    { ngx_string("fail"), 0 },
    { ngx_string("pass"), 1 },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_proxy_wasm_isolations[] = {
    { ngx_string("none"), NGX_PROXY_WASM_ISOLATION_NONE },
    { ngx_string("request"), NGX_PROXY_WASM_ISOLATION_REQUEST },
    /* the former name of "request" */
    { ngx_string("stream"), NGX_PROXY_WASM_ISOLATION_REQUEST },
    { ngx_string("filter"), NGX_PROXY_WASM_ISOLATION_FILTER },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_proxy_wasm_failures[] = {
    { ngx_string("reload"), NGX_PROXY_WASM_FAILURE_RELOAD },
    { ngx_string("fail_closed"), NGX_PROXY_WASM_FAILURE_FAIL_CLOSED },
    { ngx_string("fail_open"), NGX_PROXY_WASM_FAILURE_FAIL_OPEN },
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
      &ngx_http_proxy_wasm_isolations },

    { ngx_string("proxy_wasm_failure"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_proxy_wasm_loc_conf_t, failure),
      &ngx_http_proxy_wasm_failures },

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
    ngx_http_proxy_wasm_add_variables,     /* preconfiguration */
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

    return ngx_http_proxy_wasm_merge_properties(cf, prev, conf);
}


static char *
ngx_http_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf = conf;

    int32_t                           id;
    uint32_t                         *filter;
    ngx_str_t                        *value;
    ngx_proxy_wasm_str_t              module, config, err;
    ngx_proxy_wasm_runtime_t         *rt;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    value = cf->args->elts;

    rt = ngx_proxy_wasm_runtime(cf->cycle);
    if (rt == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no wasm{} block is defined before http{}: "
                           "module \"%V\" is unknown", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (plcf->filters == NGX_CONF_UNSET_PTR) {
        plcf->filters = ngx_array_create(cf->pool, 2, sizeof(uint32_t));
        if (plcf->filters == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    module.data = value[1].data;
    module.len = value[1].len;

    if (cf->args->nelts == 3) {
        config.data = value[2].data;
        config.len = value[2].len;

    } else {
        config.data = NULL;
        config.len = 0;
    }

    ngx_str_null(&err);

    id = ngx_proxy_wasm_api.filter_add(rt, module, config, &err);
    if (id < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%*s",
                           (size_t) err.len, err.data);
        return NGX_CONF_ERROR;
    }

    filter = ngx_array_push(plcf->filters);
    if (filter == NULL) {
        return NGX_CONF_ERROR;
    }

    *filter = (uint32_t) id;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);
    pmcf->used = 1;

    return NGX_CONF_OK;
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

    if (!pmcf->used) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        h = ngx_array_push(&cmcf->phases[handlers[i].phase].handlers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        *h = handlers[i].handler;
    }

    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_proxy_wasm_request_body_filter;

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


/*
 * A new run of the location's chain, in a fresh or ended state. If it
 * cannot start, the state stays (failed: the error response passes the
 * filters by) and *rc is set.
 */
static ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_start_chain(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_loc_conf_t *plcf,
    ngx_int_t *rc)
{
    ngx_proxy_wasm_runtime_t     *rt;
    ngx_proxy_wasm_chain_conf_t   conf;

    ngx_memzero(ctx, sizeof(ngx_http_proxy_wasm_ctx_t));

    ctx->request = r;
    ctx->filters = plcf->filters;
    ctx->resume.handler = ngx_http_proxy_wasm_resume_handler;
    ctx->resume.data = ctx;
    ctx->resume.log = r->connection->log;
    ctx->hold_timer.handler = ngx_http_proxy_wasm_hold_expired;
    ctx->hold_timer.data = ctx;
    ctx->hold_timer.log = r->connection->log;

    conf.response_body_limit = plcf->response_body_buffers.num
                               * plcf->response_body_buffers.size;
    conf.response_body_overflow_pass = plcf->response_body_overflow;
    conf.failure = plcf->failure;
    conf.isolation = plcf->isolation;

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    ctx->chain = rt ? ngx_proxy_wasm_api.chain_new(rt, r,
                                                    plcf->filters->elts,
                                                    plcf->filters->nelts,
                                                    &conf)
                     : NULL;

    if (ctx->chain == NULL) {
        ctx->failed = 1;
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    return ctx;
}


static void
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
 * The request's state when its location runs a filter chain (NULL, with
 * *rc set, otherwise). After an internal redirect to a location with
 * another chain, the old chain's contexts end and the new chain starts,
 * unless the response is under way.
 */
ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_request_ctx(ngx_http_request_t *r, ngx_int_t *rc)
{
    ngx_pool_cleanup_t              *cln;
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    *rc = NGX_DECLINED;

    /* chains run for the client's request, not for subrequests */
    if (r != r->main) {
        return NULL;
    }

    ctx = ngx_http_proxy_wasm_get_ctx(r);
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

        return ngx_http_proxy_wasm_start_chain(r, ctx, plcf, rc);
    }

    ctx = ngx_palloc(r->pool, sizeof(ngx_http_proxy_wasm_ctx_t));
    if (ctx == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    ngx_memzero(ctx, sizeof(ngx_http_proxy_wasm_ctx_t));

    cln->handler = ngx_http_proxy_wasm_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_proxy_wasm_module);

    return ngx_http_proxy_wasm_start_chain(r, ctx, plcf, rc);
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


static ngx_uint_t
ngx_http_proxy_wasm_request_has_body(ngx_http_request_t *r)
{
#if (NGX_HTTP_V2)
    if (r->stream) {
        return !r->stream->in_closed;
    }
#endif

    return r->headers_in.content_length_n > 0 || r->headers_in.chunked;
}


/*
 * Whether the client went away, on a read event while a filter holds the
 * request and nginx reads nothing from the client; if so, it is logged and
 * the request ends. (HTTP/2 streams are reset by nginx's HTTP/2 layer.)
 */
static ngx_uint_t
ngx_http_proxy_wasm_client_gone(ngx_http_request_t *r)
{
    int                n;
    char               buf[1];
    ngx_err_t          err;
    ngx_connection_t  *c;

    c = r->connection;

#if (NGX_HTTP_V2)
    if (r->stream) {
        return 0;
    }
#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n > 0 || (n == -1 && err == NGX_EAGAIN)) {
        c->read->ready = 0;
        return 0;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, n == 0 ? 0 : err,
                  "client prematurely closed connection while a filter "
                  "held the request");

    c->error = 1;
    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);

    return 1;
}


/* The read handler of a request held in a phase. */
static void
ngx_http_proxy_wasm_check_broken_connection(ngx_http_request_t *r)
{
    (void) ngx_http_proxy_wasm_client_gone(r);
}


/*
 * The read handler of a request whose body's end a filter holds: nginx has
 * read the whole body and would only notice the client going away at
 * client_body_timeout. Its body reader takes over again when the filter
 * continues, or to answer the timeout.
 */
static void
ngx_http_proxy_wasm_held_body_handler(ngx_http_request_t *r)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_http_proxy_wasm_get_ctx(r);

    if (!r->connection->read->timedout) {
        (void) ngx_http_proxy_wasm_client_gone(r);
        return;
    }

    r->read_event_handler = ctx->body_read_handler;
    ctx->body_read_handler = NULL;
    r->read_event_handler(r);
}


/* Watches the client while the chain holds the end of the request body. */
static void
ngx_http_proxy_wasm_watch_held_body(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    if (!ctx->request_body_held || !ctx->request_body_reader_set
        || ctx->body_read_handler)
    {
        return;
    }

    ctx->body_read_handler = r->read_event_handler;
    r->read_event_handler = ngx_http_proxy_wasm_held_body_handler;
}


/* A filter held the request headers longer than proxy_wasm_hold_timeout. */
static void
ngx_http_proxy_wasm_hold_expired(ngx_event_t *ev)
{
    ngx_http_proxy_wasm_ctx_t  *ctx = ev->data;

    ngx_connection_t                *c;
    ngx_http_request_t              *r;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    ngx_log_error(NGX_LOG_ERR, c->log, 0,
                  "proxy_wasm: a filter held the request longer than "
                  "proxy_wasm_hold_timeout (%M ms)", plcf->hold_timeout);

    ctx->request_paused = 0;
    r->read_event_handler = ngx_http_block_reading;

    ngx_http_finalize_request(r, ngx_http_proxy_wasm_failed(r, ctx));
    ngx_http_run_posted_requests(c);
}


/* Acts on a step of the request headers, for a phase handler. */
static ngx_int_t
ngx_http_proxy_wasm_request_step(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_proxy_wasm_step_t *step)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    ctx->request_paused = 0;
    r->read_event_handler = ngx_http_block_reading;

    if (ctx->hold_timer.timer_set) {
        ngx_del_timer(&ctx->hold_timer);
    }

    switch (step->next) {

    case NGX_PROXY_WASM_NEXT_CONTINUE:
        ctx->request_headers_done = step->headers_done;
        return NGX_DECLINED;

    case NGX_PROXY_WASM_NEXT_PAUSE:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "proxy_wasm: request held by a filter");
        ctx->request_paused = 1;
        r->read_event_handler = ngx_http_proxy_wasm_check_broken_connection;

        /* also keeps a worker that shuts down waiting for the request */
        plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);
        ngx_add_timer(&ctx->hold_timer, plcf->hold_timeout);

        return NGX_DONE;

    case NGX_PROXY_WASM_NEXT_LOCAL_RESPONSE:
        ngx_http_finalize_request(r,
                              ngx_http_proxy_wasm_send_local_response(r, ctx));
        return NGX_DONE;

    case NGX_PROXY_WASM_NEXT_CLOSE:
        ctx->failed = 1;
        return NGX_HTTP_CLOSE;

    default: /* NGX_PROXY_WASM_NEXT_FAIL */
        return ngx_http_proxy_wasm_failed(r, ctx);
    }
}


/* on_request_headers, in the phase configured for the location */
static ngx_int_t
ngx_http_proxy_wasm_request_headers(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_proxy_wasm_step_t  step;

    if (ctx->request_paused) {
        ngx_proxy_wasm_api.chain_resume(ctx->chain, NGX_PROXY_WASM_DIRECTION_REQUEST,
                                         &step);

    } else {
        ctx->request_headers_started = 1;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "proxy_wasm: on_request_headers \"%V\" c:%ud",
                       &r->uri, r->main->count);

        ngx_proxy_wasm_api.chain_on_headers(ctx->chain,
                                     NGX_PROXY_WASM_DIRECTION_REQUEST,
                                     !ngx_http_proxy_wasm_request_has_body(r),
                                     &step);
    }

    return ngx_http_proxy_wasm_request_step(r, ctx, &step);
}


static ngx_int_t
ngx_http_proxy_wasm_preaccess_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    if (plcf->request_headers_in_access) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_proxy_wasm_request_ctx(r, &rc);

    if (ctx == NULL || ctx->failed
        || (ctx->request_headers_started && !ctx->request_paused))
    {
        return ctx ? NGX_DECLINED : rc;
    }

    return ngx_http_proxy_wasm_request_headers(r, ctx);
}


static void
ngx_http_proxy_wasm_request_body_read(ngx_http_request_t *r)
{
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * A body another module read before the chain could see it (Lua's
 * ngx.req.read_body() in rewrite_by_lua or access_by_lua): it goes through
 * the chain now, from memory or its temporary file, and what the chain
 * lets through becomes the request body (kept in memory unless
 * client_body_in_file_only is on).
 */
static ngx_int_t
ngx_http_proxy_wasm_replay_request_body(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    off_t                      offset;
    size_t                     size;
    ssize_t                    n;
    ngx_int_t                  rc;
    ngx_buf_t                 *b, *chunk;
    ngx_chain_t               *cl, *in, out;
    ngx_http_request_body_t   *rb;
    ngx_http_core_loc_conf_t  *clcf;

    rb = r->request_body;

    if (rb->rest != 0 || !rb->last_saved) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "proxy_wasm: the request body is being read by "
                      "another module: filters do not see it");
        return NGX_DECLINED;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm: request body read before the chain: "
                   "replayed through it");

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    in = rb->bufs;
    rb->bufs = NULL;
    rb->temp_file = NULL;
    rb->last_saved = 0;
    ctx->request_body_replayed = 1;

    out.next = NULL;
    rc = NGX_OK;

    for (cl = in; cl && rc == NGX_OK; cl = cl->next) {
        b = cl->buf;
        offset = b->file_pos;

        do {
            /* a fresh buffer each time: the body may keep it */
            chunk = ngx_calloc_buf(r->pool);
            if (chunk == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (ngx_buf_in_memory(b)) {
                chunk->pos = b->pos;
                chunk->last = b->last;
                chunk->memory = 1;

            } else if (b->in_file) {
                size = (size_t) ngx_min(b->file_last - offset,
                                        (off_t) clcf->client_body_buffer_size);

                chunk->start = ngx_palloc(r->pool, size);
                if (chunk->start == NULL) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                n = ngx_read_file(b->file, chunk->start, size, offset);
                if (n != (ssize_t) size) {
                    ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                                  "proxy_wasm: cannot read the request body "
                                  "from \"%V\"", &b->file->name);
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                offset += n;
                chunk->pos = chunk->start;
                chunk->last = chunk->start + n;
                chunk->end = chunk->last;
                chunk->temporary = 1;
            }

            chunk->last_buf = (cl->next == NULL
                               && (!b->in_file || offset >= b->file_last));
            out.buf = chunk;

            rc = ngx_http_proxy_wasm_request_body_filter(r, &out);

        } while (rc == NGX_OK && !ngx_buf_in_memory(b) && b->in_file
                 && offset < b->file_last);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->request_body_held) {
        r->read_event_handler = ngx_http_proxy_wasm_check_broken_connection;
        return NGX_DONE;
    }

    if (ctx->local_response_pending) {
        ctx->local_response_pending = 0;
        ngx_http_finalize_request(r,
                              ngx_http_proxy_wasm_send_local_response(r, ctx));
        return NGX_DONE;
    }

    return NGX_DECLINED;
}


/*
 * On request headers in the access phase; then, when a filter looks at
 * request bodies, reads the body before the content handler runs, so that
 * its filtered version is what the content handler gets.
 */
static ngx_int_t
ngx_http_proxy_wasm_precontent_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    ctx = ngx_http_proxy_wasm_request_ctx(r, &rc);

    if (ctx == NULL || ctx->failed) {
        return ctx ? NGX_DECLINED : rc;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    if (plcf->request_headers_in_access
        && (!ctx->request_headers_started || ctx->request_paused))
    {
        rc = ngx_http_proxy_wasm_request_headers(r, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (ctx->local_response_pending) {
        ctx->local_response_pending = 0;
        ngx_http_finalize_request(r,
                              ngx_http_proxy_wasm_send_local_response(r, ctx));
        return NGX_DONE;
    }

    if (!ctx->request_headers_done || ctx->request_body_reading
        || r->discard_body || !ngx_http_proxy_wasm_request_has_body(r))
    {
        return NGX_DECLINED;
    }

    if (!ngx_proxy_wasm_api.chain_wants_body(ctx->chain,
                                              NGX_PROXY_WASM_DIRECTION_REQUEST))
    {
        return NGX_DECLINED;
    }

    ctx->request_body_wanted = 1;
    ctx->request_body_reading = 1;

    if (r->request_body) {
        return ngx_http_proxy_wasm_replay_request_body(r, ctx);
    }

    rc = ngx_http_read_client_request_body(r,
                                       ngx_http_proxy_wasm_request_body_read);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /* nginx's body reader is the read handler now, unless the body is in */
    ctx->request_body_reader_set = 1;
    ngx_http_proxy_wasm_watch_held_body(r, ctx);

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/* body helpers, for requests and responses */


/* The memory parts of a chain, its size and whether it ends the body. */
ngx_int_t
ngx_http_proxy_wasm_body_parts(ngx_http_request_t *r, ngx_chain_t *in,
    ngx_array_t *parts, off_t *size, ngx_uint_t *last)
{
    ngx_buf_t             *b;
    ngx_chain_t           *cl;
    ngx_proxy_wasm_str_t  *part;

    *size = 0;
    *last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        /* chains run for main requests: last_in_chain ends subrequests */
        if (b->last_buf) {
            *last = 1;
        }

        if (ngx_buf_special(b)) {
            continue;
        }

        if (!ngx_buf_in_memory(b)) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "proxy_wasm: body data not in memory");
            return NGX_ERROR;
        }

        if (b->last == b->pos) {
            continue;
        }

        part = ngx_array_push(parts);
        if (part == NULL) {
            return NGX_ERROR;
        }

        part->data = b->pos;
        part->len = b->last - b->pos;
        *size += b->last - b->pos;
    }

    return NGX_OK;
}


/* Marks the data of a chain as taken: the chain keeps it. */
void
ngx_http_proxy_wasm_consume(ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;

        if (cl->buf->in_file) {
            cl->buf->file_pos = cl->buf->file_last;
        }
    }
}


/* A chain with the data a step left, ending the body if "last". */
ngx_chain_t *
ngx_http_proxy_wasm_output(ngx_http_request_t *r, ngx_proxy_wasm_step_t *step,
    ngx_uint_t last)
{
    ngx_buf_t    *b;
    ngx_chain_t  *out;

    out = ngx_alloc_chain_link(r->pool);
    if (out == NULL) {
        return NULL;
    }

    if (step->data.len) {
        b = ngx_create_temp_buf(r->pool, step->data.len);
        if (b == NULL) {
            return NULL;
        }

        b->last = ngx_cpymem(b->last, step->data.data, step->data.len);

    } else {
        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NULL;
        }
    }

    b->last_buf = last && r == r->main;
    b->last_in_chain = last;
    b->flush = 1;

    out->buf = b;
    out->next = NULL;

    return out;
}


/* The request body length after the filters: what the upstream gets. */
static ngx_int_t
ngx_http_proxy_wasm_set_request_length(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_table_elt_t  *h;

    r->headers_in.content_length_n = ctx->request_body_out;

    h = r->headers_in.content_length;

    if (h != NULL) {
        h->value.data = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (h->value.data == NULL) {
            return NGX_ERROR;
        }

        h->value.len = ngx_sprintf(h->value.data, "%O", ctx->request_body_out)
                       - h->value.data;
    }

    return NGX_OK;
}


/* Passes body data the chain let through to the next request filter. */
static ngx_int_t
ngx_http_proxy_wasm_request_output(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_proxy_wasm_step_t *step,
    ngx_chain_t *in, off_t size)
{
    ngx_chain_t  *out;

    if (step->output == NGX_PROXY_WASM_OUTPUT_UNCHANGED) {
        ctx->request_body_out += size;
        out = in;

    } else {
        ngx_http_proxy_wasm_consume(in);
        ctx->request_body_out += step->data.len;

        out = ngx_http_proxy_wasm_output(r, step, step->end_of_stream);
        if (out == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (step->end_of_stream
        && ngx_http_proxy_wasm_set_request_length(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_next_request_body_filter(r, out);
}


/*
 * Ends the request body for nginx when the chain will not pass its end
 * on (a local response answers the request instead).
 */
static ngx_int_t
ngx_http_proxy_wasm_request_body_end(ngx_http_request_t *r)
{
    ngx_proxy_wasm_step_t  step;
    ngx_chain_t           *out;

    ngx_memzero(&step, sizeof(ngx_proxy_wasm_step_t));

    out = ngx_http_proxy_wasm_output(r, &step, 1);
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_next_request_body_filter(r, out);
}


/*
 * The request body through the chain, as nginx reads it. Data a filter
 * holds is kept by the chain (it copies it); the end of a body held until
 * a filter continues keeps nginx waiting for it.
 */
static ngx_int_t
ngx_http_proxy_wasm_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    off_t                       size;
    ngx_uint_t                  last;
    ngx_array_t                 parts;
    ngx_proxy_wasm_step_t       step;
    ngx_http_proxy_wasm_ctx_t  *ctx;
    ngx_proxy_wasm_str_t        buf[8];

    ctx = (r == r->main) ? ngx_http_proxy_wasm_get_ctx(r) : NULL;

    if (ctx == NULL || ctx->failed || !ctx->request_body_wanted) {
        return ngx_http_next_request_body_filter(r, in);
    }

    r->request_body->filter_need_buffering = 1;

    parts.elts = buf;
    parts.nelts = 0;
    parts.size = sizeof(ngx_proxy_wasm_str_t);
    parts.nalloc = sizeof(buf) / sizeof(buf[0]);
    parts.pool = r->pool;

    if (ngx_http_proxy_wasm_body_parts(r, in, &parts, &size, &last)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a local response answers the request: the rest of the body goes */
    if (ctx->local_response_pending) {
        ngx_http_proxy_wasm_consume(in);
        return last ? ngx_http_proxy_wasm_request_body_end(r) : NGX_OK;
    }

    if (parts.nelts == 0 && !last) {
        return ngx_http_next_request_body_filter(r, in);
    }

    ngx_proxy_wasm_api.chain_on_body(ctx->chain, NGX_PROXY_WASM_DIRECTION_REQUEST,
                                      parts.elts, parts.nelts, last, &step);

    switch (step.next) {

    case NGX_PROXY_WASM_NEXT_CONTINUE:
        return ngx_http_proxy_wasm_request_output(r, ctx, &step, in, size);

    case NGX_PROXY_WASM_NEXT_PAUSE:
        ngx_http_proxy_wasm_consume(in);
        ctx->request_body_held = last;
        ngx_http_proxy_wasm_watch_held_body(r, ctx);
        return NGX_OK;

    case NGX_PROXY_WASM_NEXT_LOCAL_RESPONSE:
        ctx->local_response_pending = 1;
        ngx_http_proxy_wasm_consume(in);
        return last ? ngx_http_proxy_wasm_request_body_end(r) : NGX_OK;

    case NGX_PROXY_WASM_NEXT_CLOSE:
        ctx->failed = 1;
        return NGX_HTTP_CLOSE;

    default: /* NGX_PROXY_WASM_NEXT_FAIL */
        return ngx_http_proxy_wasm_failed(r, ctx);
    }
}


/* A filter continued the request body it held at its end. */
static void
ngx_http_proxy_wasm_resume_request_body(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t              rc;
    ngx_proxy_wasm_step_t  step;

    ngx_proxy_wasm_api.chain_resume(ctx->chain, NGX_PROXY_WASM_DIRECTION_REQUEST,
                                     &step);

    switch (step.next) {

    case NGX_PROXY_WASM_NEXT_CONTINUE:
        if (step.output == NGX_PROXY_WASM_OUTPUT_NOTHING) {
            return;
        }

        ctx->request_body_held = 0;
        rc = ngx_http_proxy_wasm_request_output(r, ctx, &step, NULL, 0);
        break;

    case NGX_PROXY_WASM_NEXT_PAUSE:
        return;

    case NGX_PROXY_WASM_NEXT_LOCAL_RESPONSE:
        ctx->request_body_held = 0;
        ctx->local_response_pending = 1;
        rc = ngx_http_proxy_wasm_request_body_end(r);
        break;

    case NGX_PROXY_WASM_NEXT_CLOSE:
        ctx->failed = 1;
        ngx_http_finalize_request(r, NGX_HTTP_CLOSE);
        return;

    default: /* NGX_PROXY_WASM_NEXT_FAIL */
        ngx_http_finalize_request(r, ngx_http_proxy_wasm_failed(r, ctx));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (ctx->request_body_replayed) {
        /* the precontent phase goes on, or sends the local response */
        ngx_http_core_run_phases(r);
        return;
    }

    /* nginx's body reader sees the end of the body and goes on */
    if (ctx->body_read_handler) {
        r->read_event_handler = ctx->body_read_handler;
        ctx->body_read_handler = NULL;
    }

    r->read_event_handler(r);
}


/* Comes back to a request a filter asked about from outside its callbacks. */
static void
ngx_http_proxy_wasm_resume_handler(ngx_event_t *ev)
{
    ngx_http_proxy_wasm_ctx_t  *ctx = ev->data;

    ngx_connection_t       *c;
    ngx_http_request_t     *r;
    ngx_proxy_wasm_step_t   step;

    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "proxy_wasm: resume \"%V?%V\"", &r->uri, &r->args);

    if (ctx->request_paused) {
        /* the phase handler that holds the request runs again */
        ngx_http_core_run_phases(r);

    } else if (ctx->request_body_held) {
        ngx_http_proxy_wasm_resume_request_body(r, ctx);

    } else if (ctx->response_headers_started && !ctx->response_replaced) {
        ngx_http_proxy_wasm_resume_response(r, ctx);

    } else {
        /* nothing is held: only a close can take effect */
        ngx_proxy_wasm_api.chain_resume(ctx->chain, NGX_PROXY_WASM_DIRECTION_REQUEST,
                                         &step);

        if (step.next == NGX_PROXY_WASM_NEXT_CLOSE) {
            ctx->failed = 1;
            ngx_http_finalize_request(r, NGX_HTTP_CLOSE);

        } else if (step.next == NGX_PROXY_WASM_NEXT_LOCAL_RESPONSE) {
            ngx_log_error(NGX_LOG_WARN, c->log, 0,
                          "proxy_wasm: local response ignored: no filter "
                          "holds the request");
        }
    }

    ngx_http_run_posted_requests(c);
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
