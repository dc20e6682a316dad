/*
 * HTTP filter chains: the proxy_wasm directives, the phase handlers and
 * the header filter that run a location's chain, and the request state.
 *
 * In every phase the chain runs after nginx's own handlers, Lua's
 * included:
 *   - on_request_headers: first handler of the preaccess phase, i.e. after
 *     every rewrite handler (or of the precontent phase, after every access
 *     handler, with proxy_wasm_request_headers_in_access);
 *   - on_response_headers: a header filter placed below the filters of
 *     Lua, headers_more, add_header, sub, ssi, charset, and above gzip
 *     (see ngx_module_order in "config");
 *   - on_log: last handler of the log phase.
 * The placement of the phase handlers is fixed once, at configuration
 * time, by ngx_http_proxy_wasm_place_handlers().
 */

#include "ngx_http_proxy_wasm.h"


static ngx_int_t ngx_http_proxy_wasm_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_proxy_wasm_init_module(ngx_cycle_t *cycle);
static void *ngx_http_proxy_wasm_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_proxy_wasm_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_proxy_wasm_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_proxy_wasm_preaccess_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_precontent_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_header_filter(ngx_http_request_t *r);
static void ngx_http_proxy_wasm_cleanup(void *data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


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

      ngx_null_command
};


static ngx_http_module_t  ngx_http_proxy_wasm_module_ctx = {
    NULL,                                  /* preconfiguration */
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
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
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

    return conf;
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

    return NGX_CONF_OK;
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
    ngx_http_handler_pt              *h;
    ngx_http_core_main_conf_t        *cmcf;
    ngx_http_proxy_wasm_main_conf_t  *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_proxy_wasm_module);

    if (!pmcf->used) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_proxy_wasm_preaccess_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_proxy_wasm_precontent_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_proxy_wasm_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_proxy_wasm_header_filter;

    return NGX_OK;
}


/*
 * Moves a handler to the front of its block of the phase engine (the
 * entries that share its checker and next index). Returns the number of
 * handlers it now precedes in that phase.
 */
static ngx_uint_t
ngx_http_proxy_wasm_move_first(ngx_http_phase_handler_t *ph,
    ngx_http_handler_pt handler)
{
    ngx_uint_t                i, first, last;
    ngx_http_phase_handler_t  entry;

    for (i = 0; ph[i].checker; i++) {
        if (ph[i].handler == handler) {
            break;
        }
    }

    if (ph[i].checker == NULL) {
        return 0;
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

    return last - first;
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
    ngx_uint_t                        i, n, after;
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

    after = ngx_http_proxy_wasm_move_first(cmcf->phase_engine.handlers,
                                        ngx_http_proxy_wasm_preaccess_handler);
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                   "proxy_wasm: on_request_headers runs first in preaccess, "
                   "before %ui other handlers", after);

    after = ngx_http_proxy_wasm_move_first(cmcf->phase_engine.handlers,
                                       ngx_http_proxy_wasm_precontent_handler);
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                   "proxy_wasm: on_request_headers (in access) runs first in "
                   "precontent, before %ui other handlers", after);

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
 * The request's state. nginx clears module contexts on internal
 * redirects; the state survives in the request pool's cleanup list.
 */
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


static ngx_http_proxy_wasm_ctx_t *
ngx_http_proxy_wasm_create_ctx(ngx_http_request_t *r,
    ngx_http_proxy_wasm_loc_conf_t *plcf)
{
    ngx_pool_cleanup_t         *cln;
    ngx_proxy_wasm_runtime_t   *rt;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);
    if (rt == NULL) {
        return NULL;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_proxy_wasm_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ctx->stream = ngx_proxy_wasm_api.stream_new(rt, r, plcf->filters->elts,
                                                plcf->filters->nelts);
    if (ctx->stream == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_proxy_wasm_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_proxy_wasm_module);

    return ctx;
}


static void
ngx_http_proxy_wasm_cleanup(void *data)
{
    ngx_http_proxy_wasm_ctx_t  *ctx = data;

    ngx_proxy_wasm_api.stream_free(ctx->stream);
    ctx->stream = NULL;
}


/* The request's state when its location runs a filter chain. */
static ngx_http_proxy_wasm_ctx_t *
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
    if (ctx != NULL) {
        return ctx;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    if (plcf->filters == NULL || plcf->filters->nelts == 0) {
        return NULL;
    }

    ctx = ngx_http_proxy_wasm_create_ctx(r, plcf);
    if (ctx == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ctx;
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


static ngx_int_t
ngx_http_proxy_wasm_send_local_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    size_t                           i;
    ngx_buf_t                       *b;
    ngx_int_t                        rc;
    ngx_chain_t                      out;
    ngx_proxy_wasm_str_t             content_type;
    ngx_proxy_wasm_local_response_t  lr;

    if (ngx_proxy_wasm_api.stream_local_response(ctx->stream, &lr) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm: local response %uD \"%*s\"",
                   lr.status, lr.details.len, lr.details.data);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = lr.status;
    r->headers_out.content_length_n = (off_t) lr.body.len;

    for (i = 0; i < lr.nheaders; i++) {
        if (ngx_http_proxy_wasm_header_set(r, NGX_PROXY_WASM_HEADERS_RESPONSE,
                                           NGX_PROXY_WASM_HEADER_ADD,
                                           lr.headers[i].key,
                                           lr.headers[i].value)
            == NGX_PROXY_WASM_HOST_ERROR)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* as Envoy: a body without a type is text/plain */
    if (lr.body.len && r->headers_out.content_type.len == 0) {
        content_type.data = (u_char *) "content-type";
        content_type.len = sizeof("content-type") - 1;
        ngx_http_proxy_wasm_header_set(r, NGX_PROXY_WASM_HEADERS_RESPONSE,
                                       NGX_PROXY_WASM_HEADER_REPLACE,
                                       content_type,
                                       (ngx_proxy_wasm_str_t)
                                       { (u_char *) "text/plain", 10 });
    }

    if (lr.body.len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, lr.body.len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, lr.body.data, lr.body.len);
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* on_request_headers, in the phase configured for the location */
static ngx_int_t
ngx_http_proxy_wasm_request_headers(ngx_http_request_t *r,
    ngx_uint_t in_access)
{
    uint32_t                         action;
    ngx_int_t                        rc;
    ngx_http_proxy_wasm_ctx_t       *ctx;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    if ((ngx_uint_t) plcf->request_headers_in_access != in_access) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_proxy_wasm_request_ctx(r, &rc);
    if (ctx == NULL) {
        return rc;
    }

    if (ctx->request_headers_done || ctx->failed) {
        return NGX_DECLINED;
    }

    ctx->request_headers_done = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm: on_request_headers \"%V\" c:%ud",
                   &r->uri, r->main->count);

    action = ngx_proxy_wasm_api.stream_on_request_headers(ctx->stream,
                                     !ngx_http_proxy_wasm_request_has_body(r));

    switch (action) {

    case NGX_PROXY_WASM_ACTION_CONTINUE:
        return NGX_DECLINED;

    case NGX_PROXY_WASM_ACTION_LOCAL_RESPONSE:
        ngx_http_finalize_request(r,
                              ngx_http_proxy_wasm_send_local_response(r, ctx));
        return NGX_DONE;

    default: /* NGX_PROXY_WASM_ACTION_FAIL */
        ctx->failed = 1;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


static ngx_int_t
ngx_http_proxy_wasm_preaccess_handler(ngx_http_request_t *r)
{
    return ngx_http_proxy_wasm_request_headers(r, 0);
}


static ngx_int_t
ngx_http_proxy_wasm_precontent_handler(ngx_http_request_t *r)
{
    return ngx_http_proxy_wasm_request_headers(r, 1);
}


static ngx_int_t
ngx_http_proxy_wasm_header_filter(ngx_http_request_t *r)
{
    uint32_t                    action;
    ngx_int_t                   rc;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    /*
     * A response produced before on_request_headers ran (by "return",
     * access checks, ...) still goes through the response callbacks.
     */
    ctx = ngx_http_proxy_wasm_request_ctx(r, &rc);

    if (ctx == NULL) {
        if (rc == NGX_HTTP_INTERNAL_SERVER_ERROR) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    if (ctx->response_headers_done || ctx->failed) {
        return ngx_http_next_header_filter(r);
    }

    ctx->response_headers_done = 1;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm: on_response_headers %ui c:%ud",
                   r->headers_out.status, r->main->count);

    action = ngx_proxy_wasm_api.stream_on_response_headers(ctx->stream,
                                                           r->header_only);

    if (action == NGX_PROXY_WASM_ACTION_FAIL) {
        ctx->failed = 1;
        return ngx_http_filter_finalize_request(r, &ngx_http_proxy_wasm_module,
                                              NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_proxy_wasm_log_handler(ngx_http_request_t *r)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_http_proxy_wasm_get_ctx(r);

    if (ctx != NULL && ctx->stream != NULL) {
        ngx_proxy_wasm_api.stream_on_log(ctx->stream);
    }

    return NGX_OK;
}
