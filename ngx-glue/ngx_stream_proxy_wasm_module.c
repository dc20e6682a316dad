/*
 * The stream module: network (L4) filters for stream{} servers. A
 * connection runs the chain of its server:
 *   - on_new_connection: last handler of the preread phase, after nginx's
 *     own (ssl_preread included): a filter that pauses holds the
 *     connection before an upstream is chosen;
 *   - on_downstream_data / on_upstream_data: a stream filter, above the
 *     write filter, sees what the proxy read from either side;
 *   - the close callbacks, on_log: the log phase (on_upstream_connection_close
 *     also when the upstream's data ends);
 *   - on_done, on_delete: when the session's pool goes.
 *
 * What filters hold of a direction is bounded by proxy_wasm_buffer_limit:
 * beyond it the data the proxy read stays in its buffer, so it stops
 * reading from that side until the filters let data go.
 *
 * The data path is in ngx_stream_proxy_wasm_data.c, the host functions of
 * sessions in ngx_stream_proxy_wasm_session.c.
 *
 * With dynamic modules this is a module of its own, loaded after
 * ngx_proxy_wasm_module.so (whose symbols it uses) and after nginx's
 * stream module.
 */

#include "ngx_stream_proxy_wasm.h"


static ngx_int_t ngx_stream_proxy_wasm_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_stream_proxy_wasm_init(ngx_conf_t *cf);
static ngx_int_t ngx_stream_proxy_wasm_init_module(ngx_cycle_t *cycle);
static void *ngx_stream_proxy_wasm_create_main_conf(ngx_conf_t *cf);
static void *ngx_stream_proxy_wasm_create_srv_conf(ngx_conf_t *cf);
static char *ngx_stream_proxy_wasm_merge_srv_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_stream_proxy_wasm_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_stream_proxy_wasm_property_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_stream_proxy_wasm_preread_handler(
    ngx_stream_session_t *s);
static ngx_int_t ngx_stream_proxy_wasm_log_handler(ngx_stream_session_t *s);
static void ngx_stream_proxy_wasm_resume_handler(ngx_event_t *ev);
static void ngx_stream_proxy_wasm_hold_expired(ngx_event_t *ev);
static void ngx_stream_proxy_wasm_cleanup(void *data);



static ngx_command_t  ngx_stream_proxy_wasm_commands[] = {

    { ngx_string("proxy_wasm"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE12,
      ngx_stream_proxy_wasm_directive,
      NGX_STREAM_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm_isolation"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_srv_conf_t, isolation),
      &ngx_proxy_wasm_isolations },

    { ngx_string("proxy_wasm_failure"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_srv_conf_t, failure),
      &ngx_proxy_wasm_failures },

    { ngx_string("proxy_wasm_buffer_limit"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_srv_conf_t, buffer_limit),
      NULL },

    { ngx_string("proxy_wasm_property"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE2,
      ngx_stream_proxy_wasm_property_directive,
      NGX_STREAM_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("proxy_wasm_hold_timeout"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_srv_conf_t, hold_timeout),
      NULL },

      ngx_null_command
};


static ngx_stream_module_t  ngx_stream_proxy_wasm_module_ctx = {
    ngx_stream_proxy_wasm_preconfiguration,  /* preconfiguration */
    ngx_stream_proxy_wasm_init,              /* postconfiguration */

    ngx_stream_proxy_wasm_create_main_conf,  /* create main configuration */
    NULL,                                    /* init main configuration */

    ngx_stream_proxy_wasm_create_srv_conf,   /* create server configuration */
    ngx_stream_proxy_wasm_merge_srv_conf     /* merge server configuration */
};


ngx_module_t  ngx_stream_proxy_wasm_module = {
    NGX_MODULE_V1,
    &ngx_stream_proxy_wasm_module_ctx,     /* module context */
    ngx_stream_proxy_wasm_commands,        /* module directives */
    NGX_STREAM_MODULE,                     /* module type */
    NULL,                                  /* init master */
    ngx_stream_proxy_wasm_init_module,     /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_stream_proxy_wasm_preconfiguration(ngx_conf_t *cf)
{
    /* sessions can reach nginx through the host functions from now on */
    ngx_proxy_wasm_stream_host = &ngx_stream_proxy_wasm_host;

    return NGX_OK;
}


static void *
ngx_stream_proxy_wasm_create_main_conf(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_stream_proxy_wasm_main_conf_t));
}


static void *
ngx_stream_proxy_wasm_create_srv_conf(ngx_conf_t *cf)
{
    ngx_stream_proxy_wasm_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_stream_proxy_wasm_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->filters = NGX_CONF_UNSET_PTR;
    conf->isolation = NGX_CONF_UNSET_UINT;
    conf->failure = NGX_CONF_UNSET_UINT;
    conf->buffer_limit = NGX_CONF_UNSET_SIZE;
    conf->hold_timeout = NGX_CONF_UNSET_MSEC;
    conf->properties = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_stream_proxy_wasm_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_stream_proxy_wasm_srv_conf_t  *prev = parent;
    ngx_stream_proxy_wasm_srv_conf_t  *conf = child;

    /* a server with its own proxy_wasm lines replaces the inherited chain */
    ngx_conf_merge_ptr_value(conf->filters, prev->filters, NULL);
    ngx_conf_merge_uint_value(conf->isolation, prev->isolation,
                              NGX_PROXY_WASM_ISOLATION_NONE);
    ngx_conf_merge_uint_value(conf->failure, prev->failure,
                              NGX_PROXY_WASM_FAILURE_RELOAD);
    /* Envoy's default per-connection buffer limit: 1 MiB */
    ngx_conf_merge_size_value(conf->buffer_limit, prev->buffer_limit,
                              1024 * 1024);
    ngx_conf_merge_msec_value(conf->hold_timeout, prev->hold_timeout, 60000);

    return ngx_proxy_wasm_property_merge(cf, &conf->properties,
                                         prev->properties);
}


/* proxy_wasm_property <path> <value> */
static char *
ngx_stream_proxy_wasm_property_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_stream_proxy_wasm_srv_conf_t  *pscf = conf;

    ngx_str_t                            *value;
    ngx_stream_proxy_wasm_property_t     *prop;
    ngx_stream_compile_complex_value_t    ccv;

    value = cf->args->elts;

    prop = ngx_proxy_wasm_property_add(cf, &pscf->properties,
                                     sizeof(ngx_stream_proxy_wasm_property_t));
    if (prop == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_stream_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &prop->value;

    if (ngx_stream_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_stream_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_stream_proxy_wasm_srv_conf_t  *pscf = conf;

    ngx_stream_proxy_wasm_main_conf_t  *pmcf;

    if (ngx_proxy_wasm_filter_directive(cf, &pscf->filters, "stream")
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    pmcf = ngx_stream_conf_get_module_main_conf(cf,
                                                ngx_stream_proxy_wasm_module);
    pmcf->used = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_stream_proxy_wasm_init(ngx_conf_t *cf)
{
    ngx_stream_handler_pt               *h;
    ngx_stream_core_main_conf_t         *cmcf;
    ngx_stream_proxy_wasm_main_conf_t   *pmcf;

    pmcf = ngx_stream_conf_get_module_main_conf(cf,
                                                ngx_stream_proxy_wasm_module);
    if (!pmcf->used) {
        return NGX_OK;
    }

    cmcf = ngx_stream_conf_get_module_main_conf(cf, ngx_stream_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_STREAM_PREREAD_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_stream_proxy_wasm_preread_handler;

    h = ngx_array_push(&cmcf->phases[NGX_STREAM_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_stream_proxy_wasm_log_handler;

    ngx_stream_proxy_wasm_next_filter = ngx_stream_top_filter;
    ngx_stream_top_filter = ngx_stream_proxy_wasm_filter;

    return NGX_OK;
}


/*
 * Fixes, once per configuration, where on_new_connection runs: last of the
 * preread phase, also after a handler that ends the phase early (returns
 * NGX_OK, as ssl_preread does once it has read the ClientHello).
 */
static ngx_int_t
ngx_stream_proxy_wasm_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                          i, ours, last;
    ngx_stream_phase_handler_t         *ph, entry;
    ngx_stream_core_main_conf_t        *cmcf;
    ngx_stream_proxy_wasm_main_conf_t  *pmcf;

    if (ngx_get_conf(cycle->conf_ctx, ngx_stream_module) == NULL) {
        return NGX_OK;
    }

    pmcf = ngx_stream_cycle_get_module_main_conf(cycle,
                                                 ngx_stream_proxy_wasm_module);
    if (pmcf == NULL || !pmcf->used) {
        return NGX_OK;
    }

    cmcf = ngx_stream_cycle_get_module_main_conf(cycle,
                                                 ngx_stream_core_module);
    ph = cmcf->phase_engine.handlers;

    for (ours = 0; ph[ours].checker; ours++) {
        if (ph[ours].handler == ngx_stream_proxy_wasm_preread_handler) {
            break;
        }
    }

    if (ph[ours].checker == NULL) {
        return NGX_OK;
    }

    last = ours;

    while (ph[last + 1].checker == ph[ours].checker
           && ph[last + 1].next == ph[ours].next)
    {
        last++;
    }

    entry = ph[ours];
    ngx_memmove(&ph[ours], &ph[ours + 1],
                (last - ours) * sizeof(ngx_stream_phase_handler_t));
    ph[last] = entry;

    /* the handlers before it go on to it, not past it */
    for (i = 0; i < last; i++) {
        if (ph[i].checker == entry.checker && ph[i].next == entry.next) {
            ph[i].next = last;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_STREAM, cycle->log, 0,
                   "proxy_wasm: on_new_connection runs last in preread, "
                   "after %ui other handlers", last - ours);

    return NGX_OK;
}


/* The session's state, made at its first phase handler. */
static ngx_stream_proxy_wasm_ctx_t *
ngx_stream_proxy_wasm_session_ctx(ngx_stream_session_t *s,
    ngx_stream_proxy_wasm_srv_conf_t *pscf)
{
    ngx_uint_t                    i;
    ngx_connection_t             *c;
    ngx_pool_cleanup_t           *cln;
    ngx_proxy_wasm_runtime_t     *rt;
    ngx_proxy_wasm_chain_conf_t   conf;
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    c = s->connection;

    ctx = ngx_pcalloc(c->pool, sizeof(ngx_stream_proxy_wasm_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(c->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_stream_proxy_wasm_cleanup;
    cln->data = ctx;

    ctx->session = s;

    for (i = 0; i < 2; i++) {
        ctx->flows[i].pending_last = &ctx->flows[i].pending;
    }

    ctx->resume.handler = ngx_stream_proxy_wasm_resume_handler;
    ctx->resume.data = ctx;
    ctx->resume.log = c->log;
    ctx->hold_timer.handler = ngx_stream_proxy_wasm_hold_expired;
    ctx->hold_timer.data = ctx;
    ctx->hold_timer.log = c->log;

    ngx_stream_set_ctx(s, ctx, ngx_stream_proxy_wasm_module);

    ngx_memzero(&conf, sizeof(ngx_proxy_wasm_chain_conf_t));
    conf.connection = 1;
    conf.failure = pscf->failure;
    conf.isolation = pscf->isolation;

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    ctx->chain = rt ? ngx_proxy_wasm_library->chain_new(rt, s,
                                                         pscf->filters->elts,
                                                         pscf->filters->nelts,
                                                         &conf)
                    : NULL;

    if (ctx->chain != NULL) {
        for (i = 0; i < 2; i++) {
            ctx->flows[i].bypass =
                !ngx_proxy_wasm_library->chain_wants_body(ctx->chain, i);
        }
    }

    return ctx;
}


/* What a step of the new connection means for the phase engine. */
static ngx_int_t
ngx_stream_proxy_wasm_connect_step(ngx_stream_session_t *s,
    ngx_stream_proxy_wasm_ctx_t *ctx, ngx_proxy_wasm_step_t *step)
{
    ngx_stream_proxy_wasm_srv_conf_t  *pscf;

    switch (step->next) {

    case NGX_PROXY_WASM_NEXT_CONTINUE:
        if (ctx->hold_timer.timer_set) {
            ngx_del_timer(&ctx->hold_timer);
        }

        ctx->connected = 1;
        return NGX_DECLINED;

    case NGX_PROXY_WASM_NEXT_PAUSE:
        if (!ctx->hold_timer.timer_set) {
            pscf = ngx_stream_get_module_srv_conf(s,
                                                  ngx_stream_proxy_wasm_module);
            ngx_add_timer(&ctx->hold_timer, pscf->hold_timeout);
        }

        return NGX_DONE;

    case NGX_PROXY_WASM_NEXT_CLOSE:
        ctx->closing = 1;
        return NGX_STREAM_OK;

    default:
        ctx->closing = 1;
        return NGX_STREAM_INTERNAL_SERVER_ERROR;
    }
}


/*
 * The chain holds the connection (on_new_connection paused): a client
 * that went away meanwhile ends it.
 */
static ngx_int_t
ngx_stream_proxy_wasm_client_gone(ngx_connection_t *c)
{
    u_char   buf;
    ssize_t  n;

    if (!c->read->ready || c->type != SOCK_STREAM) {
        return 0;
    }

#if (NGX_SSL)
    if (c->ssl) {
        return 0;
    }
#endif

    n = recv(c->fd, &buf, 1, MSG_PEEK);

    if (n == 0 || (n == -1 && ngx_socket_errno != NGX_EAGAIN)) {
        c->read->eof = 1;
        return 1;
    }

    if (n == -1) {
        c->read->ready = 0;
    }

    return 0;
}


static ngx_int_t
ngx_stream_proxy_wasm_preread_handler(ngx_stream_session_t *s)
{
    ngx_proxy_wasm_step_t              step;
    ngx_stream_proxy_wasm_ctx_t       *ctx;
    ngx_stream_proxy_wasm_srv_conf_t  *pscf;

    pscf = ngx_stream_get_module_srv_conf(s, ngx_stream_proxy_wasm_module);

    if (pscf->filters == NULL || pscf->filters->nelts == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_stream_get_module_ctx(s, ngx_stream_proxy_wasm_module);

    if (ctx == NULL) {
        ctx = ngx_stream_proxy_wasm_session_ctx(s, pscf);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        if (ctx->chain == NULL) {
            ctx->closing = 1;
            return NGX_STREAM_INTERNAL_SERVER_ERROR;
        }

        ngx_proxy_wasm_library->chain_on_headers(ctx->chain,
                                                 NGX_PROXY_WASM_DIRECTION_REQUEST,
                                                 0, &step);

        return ngx_stream_proxy_wasm_connect_step(s, ctx, &step);
    }

    if (ctx->connected) {
        return NGX_DECLINED;
    }

    if (ctx->closing) {
        return NGX_STREAM_OK;
    }

    /* woken while the chain holds the connection */
    if (ngx_stream_proxy_wasm_client_gone(s->connection)) {
        ngx_log_error(NGX_LOG_INFO, s->connection->log, 0,
                      "proxy_wasm: the client closed the connection while "
                      "a filter held it");
        return NGX_STREAM_OK;
    }

    return NGX_DONE;
}


/* on_new_connection held the connection too long */
static void
ngx_stream_proxy_wasm_hold_expired(ngx_event_t *ev)
{
    ngx_stream_proxy_wasm_ctx_t  *ctx = ev->data;

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "proxy_wasm: a filter held the new connection longer than "
                  "proxy_wasm_hold_timeout: closing it");

    ctx->closing = 1;
    ngx_stream_finalize_session(ctx->session,
                                NGX_STREAM_SERVICE_UNAVAILABLE);
}


/* The connection data of a direction goes to "dst". */
ngx_connection_t *
ngx_stream_proxy_wasm_destination(ngx_stream_session_t *s,
    ngx_uint_t from_upstream)
{
    ngx_stream_upstream_t  *u = s->upstream;

    if (from_upstream) {
        return s->connection;
    }

    return (u && u->connected) ? u->peer.connection : NULL;
}


/*
 * Filters asked to come back to the connection from outside its
 * callbacks: before it reached the proxy, right here; then through the
 * proxy's write events, which call the filter of each direction.
 */
static void
ngx_stream_proxy_wasm_resume_handler(ngx_event_t *ev)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_connection_t             *dst;
    ngx_proxy_wasm_step_t         step;
    ngx_stream_session_t         *s;
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    ctx = ev->data;
    s = ctx->session;

    if (ctx->chain == NULL || ctx->closing) {
        return;
    }

    if (!ctx->connected) {
        ngx_proxy_wasm_library->chain_resume(ctx->chain,
                                             NGX_PROXY_WASM_DIRECTION_REQUEST,
                                             &step);

        rc = ngx_stream_proxy_wasm_connect_step(s, ctx, &step);

        if (rc == NGX_DECLINED) {
            ngx_stream_core_run_phases(s);

        } else if (rc != NGX_DONE) {
            ngx_stream_finalize_session(s, rc);
        }

        return;
    }

    for (i = 0; i < 2; i++) {
        ctx->flows[i].resume = 1;
        dst = ngx_stream_proxy_wasm_destination(s, i);

        if (dst != NULL) {
            dst->buffered |= NGX_STREAM_PROXY_WASM_BUFFERED;
            ngx_post_event(dst->write, &ngx_posted_events);
        }
    }
}


void
ngx_stream_proxy_wasm_schedule_resume(void *session)
{
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_stream_get_module_ctx((ngx_stream_session_t *) session,
                                    ngx_stream_proxy_wasm_module);

    if (ctx != NULL && !ctx->resume.posted) {
        ngx_post_event(&ctx->resume, &ngx_posted_events);
    }
}


static ngx_int_t
ngx_stream_proxy_wasm_log_handler(ngx_stream_session_t *s)
{
    ngx_connection_t             *c;
    ngx_proxy_wasm_peer_e         peer;
    ngx_stream_upstream_t        *u;
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_stream_get_module_ctx(s, ngx_stream_proxy_wasm_module);

    if (ctx == NULL || ctx->chain == NULL || ctx->logged) {
        return NGX_OK;
    }

    ctx->logged = 1;
    c = s->connection;
    u = s->upstream;

    peer = (c->read->eof || c->read->error || c->error)
           ? NGX_PROXY_WASM_PEER_REMOTE : NGX_PROXY_WASM_PEER_LOCAL;

    /* also when a filter held the new connection: its contexts exist */
    ngx_proxy_wasm_library->chain_on_close(ctx->chain,
                                           NGX_PROXY_WASM_DIRECTION_REQUEST,
                                           peer);

    if (u != NULL && u->connected) {
        /* not closed by the upstream (else reported already): by nginx */
        ngx_proxy_wasm_library->chain_on_close(ctx->chain,
                                               NGX_PROXY_WASM_DIRECTION_RESPONSE,
                                               NGX_PROXY_WASM_PEER_LOCAL);
    }

    ngx_proxy_wasm_library->chain_on_log(ctx->chain);

    return NGX_OK;
}


static void
ngx_stream_proxy_wasm_cleanup(void *data)
{
    ngx_stream_proxy_wasm_ctx_t  *ctx = data;

    if (ctx->resume.posted) {
        ngx_delete_posted_event(&ctx->resume);
    }

    if (ctx->hold_timer.timer_set) {
        ngx_del_timer(&ctx->hold_timer);
    }

    if (ctx->chain) {
        ngx_proxy_wasm_library->chain_free(ctx->chain);
        ctx->chain = NULL;
    }
}
