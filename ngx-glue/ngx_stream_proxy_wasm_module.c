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
 * With dynamic modules this is a module of its own, loaded after
 * ngx_proxy_wasm_module.so (whose symbols it uses) and after nginx's
 * stream module.
 */

#include "ngx_proxy_wasm_shim.h"
#include <ngx_stream.h>


/* the chain holds data that goes to a connection */
#define NGX_STREAM_PROXY_WASM_BUFFERED  0x20

/* body parts handed to the chain at once without an allocation */
#define NGX_STREAM_PROXY_WASM_STACK_PARTS  8


typedef struct {
    ngx_array_t                    *filters;     /* uint32_t, or NULL */
    ngx_uint_t                      isolation;
    ngx_uint_t                      failure;
    size_t                          buffer_limit;
    ngx_msec_t                      hold_timeout;
} ngx_stream_proxy_wasm_srv_conf_t;


typedef struct {
    ngx_flag_t                      used;
} ngx_stream_proxy_wasm_main_conf_t;


/* One direction of the connection: the request direction is the
 * downstream's data, the response direction the upstream's. */
typedef struct {
    /* the proxy's buffers not handed to the chain yet (our links) */
    ngx_chain_t                    *pending;
    ngx_chain_t                   **pending_last;
    /* buffers of data the chain changed, and those being written */
    ngx_chain_t                    *free;
    ngx_chain_t                    *busy;
    /* what the filters hold */
    size_t                          held;
    /* the chain was asked to come back to this direction */
    unsigned                        resume:1;
    /* the data ended (handed to the chain) */
    unsigned                        ended:1;
} ngx_stream_proxy_wasm_flow_t;


typedef struct {
    ngx_stream_session_t           *session;
    ngx_proxy_wasm_chain_t         *chain;
    ngx_stream_proxy_wasm_flow_t    flows[2];
    ngx_event_t                     resume;
    ngx_event_t                     hold_timer;
    /* on_new_connection went through the whole chain */
    unsigned                        connected:1;
    /* the chain failed or closed the connection */
    unsigned                        closing:1;
    unsigned                        logged:1;
} ngx_stream_proxy_wasm_ctx_t;


static ngx_int_t ngx_stream_proxy_wasm_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_stream_proxy_wasm_init(ngx_conf_t *cf);
static ngx_int_t ngx_stream_proxy_wasm_init_module(ngx_cycle_t *cycle);
static void *ngx_stream_proxy_wasm_create_main_conf(ngx_conf_t *cf);
static void *ngx_stream_proxy_wasm_create_srv_conf(ngx_conf_t *cf);
static char *ngx_stream_proxy_wasm_merge_srv_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_stream_proxy_wasm_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_stream_proxy_wasm_preread_handler(
    ngx_stream_session_t *s);
static ngx_int_t ngx_stream_proxy_wasm_log_handler(ngx_stream_session_t *s);
static ngx_int_t ngx_stream_proxy_wasm_filter(ngx_stream_session_t *s,
    ngx_chain_t *in, ngx_uint_t from_upstream);
static void ngx_stream_proxy_wasm_resume_handler(ngx_event_t *ev);
static void ngx_stream_proxy_wasm_hold_expired(ngx_event_t *ev);
static void ngx_stream_proxy_wasm_cleanup(void *data);

static const ngx_proxy_wasm_stream_host_t  ngx_stream_proxy_wasm_host;


static ngx_stream_filter_pt  ngx_stream_next_filter;


static ngx_conf_enum_t  ngx_stream_proxy_wasm_isolations[] = {
    { ngx_string("none"), NGX_PROXY_WASM_ISOLATION_NONE },
    { ngx_string("request"), NGX_PROXY_WASM_ISOLATION_REQUEST },
    { ngx_string("stream"), NGX_PROXY_WASM_ISOLATION_REQUEST },
    { ngx_string("filter"), NGX_PROXY_WASM_ISOLATION_FILTER },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_stream_proxy_wasm_failures[] = {
    { ngx_string("reload"), NGX_PROXY_WASM_FAILURE_RELOAD },
    { ngx_string("fail_closed"), NGX_PROXY_WASM_FAILURE_FAIL_CLOSED },
    { ngx_string("fail_open"), NGX_PROXY_WASM_FAILURE_FAIL_OPEN },
    { ngx_null_string, 0 }
};


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
      &ngx_stream_proxy_wasm_isolations },

    { ngx_string("proxy_wasm_failure"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_srv_conf_t, failure),
      &ngx_stream_proxy_wasm_failures },

    { ngx_string("proxy_wasm_buffer_limit"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_stream_proxy_wasm_srv_conf_t, buffer_limit),
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

    return NGX_CONF_OK;
}


static char *
ngx_stream_proxy_wasm_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_stream_proxy_wasm_srv_conf_t  *pscf = conf;

    int32_t                             id;
    uint32_t                           *filter;
    ngx_str_t                          *value;
    ngx_proxy_wasm_str_t                module, config, err;
    ngx_proxy_wasm_runtime_t           *rt;
    ngx_stream_proxy_wasm_main_conf_t  *pmcf;

    value = cf->args->elts;

    rt = ngx_proxy_wasm_runtime(cf->cycle);
    if (rt == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no wasm{} block is defined before stream{}: "
                           "module \"%V\" is unknown", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (pscf->filters == NGX_CONF_UNSET_PTR) {
        pscf->filters = ngx_array_create(cf->pool, 2, sizeof(uint32_t));
        if (pscf->filters == NULL) {
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

    id = ngx_proxy_wasm_library->filter_add(rt, module, config, &err);
    if (id < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%*s",
                           (size_t) err.len, err.data);
        return NGX_CONF_ERROR;
    }

    filter = ngx_array_push(pscf->filters);
    if (filter == NULL) {
        return NGX_CONF_ERROR;
    }

    *filter = (uint32_t) id;

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

    ngx_stream_next_filter = ngx_stream_top_filter;
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
static ngx_connection_t *
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


static void
ngx_stream_proxy_wasm_schedule_resume(void *session)
{
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    ctx = ngx_stream_get_module_ctx((ngx_stream_session_t *) session,
                                    ngx_stream_proxy_wasm_module);

    if (ctx != NULL && !ctx->resume.posted) {
        ngx_post_event(&ctx->resume, &ngx_posted_events);
    }
}


/* A buffer of ours with a copy of the data a step left. */
static ngx_chain_t *
ngx_stream_proxy_wasm_output(ngx_connection_t *c,
    ngx_stream_proxy_wasm_flow_t *flow, ngx_proxy_wasm_str_t data,
    ngx_uint_t last)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_chain_get_free_buf(c->pool, &flow->free);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;
    b->tag = (ngx_buf_tag_t) &ngx_stream_proxy_wasm_module;

    if (data.len) {
        size = b->end - b->start;

        if (b->start == NULL || size < data.len) {
            /* the buffers' memory is ours: freed with the pool */
            if (b->start != NULL) {
                ngx_pfree(c->pool, b->start);
            }

            size = ngx_max(data.len, 4096);

            b->start = ngx_palloc(c->pool, size);
            if (b->start == NULL) {
                return NULL;
            }

            b->end = b->start + size;
        }

        b->pos = b->start;
        b->last = ngx_cpymem(b->pos, data.data, data.len);
        b->temporary = 1;

    } else {
        b->pos = b->start;
        b->last = b->start;
        b->temporary = 0;
    }

    b->last_buf = last;
    b->flush = !last;

    return cl;
}


/* The proxy's buffers of a direction were read: they can be refilled. */
static void
ngx_stream_proxy_wasm_release(ngx_connection_t *c, ngx_chain_t *links,
    ngx_uint_t consume)
{
    ngx_chain_t  *cl, *next;

    for (cl = links; cl; cl = next) {
        next = cl->next;

        if (consume) {
            cl->buf->pos = cl->buf->last;
        }

        ngx_free_chain(c->pool, cl);
    }
}


/*
 * Hands the chain what it asked for: first its coming back to the
 * direction, if it asked, else the pending data (unless it holds
 * proxy_wasm_buffer_limit already). What left it goes to *out: the
 * proxy's own buffers when the data is unchanged, else a copy. NGX_ERROR:
 * the chain closed or failed the connection.
 */
static ngx_int_t
ngx_stream_proxy_wasm_feed(ngx_stream_session_t *s,
    ngx_stream_proxy_wasm_ctx_t *ctx, ngx_uint_t from_upstream,
    ngx_chain_t ***out)
{
    ngx_buf_t                         *b;
    ngx_uint_t                         n, last;
    ngx_chain_t                       *cl, *pending;
    ngx_connection_t                  *c;
    ngx_proxy_wasm_str_t               stack[NGX_STREAM_PROXY_WASM_STACK_PARTS];
    ngx_proxy_wasm_str_t              *parts;
    ngx_proxy_wasm_step_t              step;
    ngx_stream_proxy_wasm_flow_t      *flow;
    ngx_stream_proxy_wasm_srv_conf_t  *pscf;

    c = s->connection;
    flow = &ctx->flows[from_upstream];
    pscf = ngx_stream_get_module_srv_conf(s, ngx_stream_proxy_wasm_module);
    pending = NULL;

    if (flow->resume) {
        flow->resume = 0;
        ngx_proxy_wasm_library->chain_resume(ctx->chain, from_upstream,
                                             &step);

    } else {
        if (flow->pending == NULL || flow->held >= pscf->buffer_limit) {
            return NGX_OK;
        }

        n = 0;
        last = 0;

        for (cl = flow->pending; cl; cl = cl->next) {
            n++;
        }

        parts = stack;

        if (n > NGX_STREAM_PROXY_WASM_STACK_PARTS) {
            parts = ngx_palloc(c->pool, n * sizeof(ngx_proxy_wasm_str_t));
            if (parts == NULL) {
                return NGX_ERROR;
            }
        }

        n = 0;

        for (cl = flow->pending; cl; cl = cl->next) {
            b = cl->buf;

            if (b->last_buf) {
                last = 1;
            }

            if (b->last > b->pos) {
                parts[n].data = b->pos;
                parts[n].len = b->last - b->pos;
                n++;
            }
        }

        pending = flow->pending;
        flow->pending = NULL;
        flow->pending_last = &flow->pending;
        flow->ended |= last;

        ngx_proxy_wasm_library->chain_on_body(ctx->chain, from_upstream,
                                              parts, n, last, &step);

        if (parts != stack) {
            ngx_pfree(c->pool, parts);
        }
    }

    flow->held = step.held;

    if (step.output == NGX_PROXY_WASM_OUTPUT_UNCHANGED && pending != NULL) {
        /* the proxy's own buffers go on */
        **out = pending;

        for (cl = pending; cl; cl = cl->next) {
            *out = &cl->next;
        }

    } else {
        ngx_stream_proxy_wasm_release(c, pending, 1);

        if (step.output != NGX_PROXY_WASM_OUTPUT_NOTHING
            && (step.data.len || step.end_of_stream))
        {
            cl = ngx_stream_proxy_wasm_output(c, flow, step.data,
                                              step.end_of_stream);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            **out = cl;
            *out = &cl->next;
        }
    }

    switch (step.next) {

    case NGX_PROXY_WASM_NEXT_CONTINUE:
    case NGX_PROXY_WASM_NEXT_PAUSE:
        return NGX_OK;

    case NGX_PROXY_WASM_NEXT_CLOSE:
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "proxy_wasm: a filter closed the connection");
        ctx->closing = 1;
        return NGX_ERROR;

    default:
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "proxy_wasm: a filter failed: closing the connection");
        ctx->closing = 1;
        return NGX_ERROR;
    }
}


static ngx_int_t
ngx_stream_proxy_wasm_filter(ngx_stream_session_t *s, ngx_chain_t *in,
    ngx_uint_t from_upstream)
{
    ngx_int_t                      rc;
    ngx_chain_t                   *cl, *ln, *next, *out, **ll, *ours, **lo;
    ngx_connection_t              *c, *dst;
    ngx_stream_proxy_wasm_ctx_t   *ctx;
    ngx_stream_proxy_wasm_flow_t  *flow;

    ctx = ngx_stream_get_module_ctx(s, ngx_stream_proxy_wasm_module);

    if (ctx == NULL || ctx->chain == NULL || !ctx->connected) {
        return ngx_stream_next_filter(s, in, from_upstream);
    }

    if (ctx->closing) {
        return NGX_ERROR;
    }

    c = s->connection;
    flow = &ctx->flows[from_upstream];

    /* links of our own to the proxy's buffers: it reuses its links */
    for (cl = in; cl; cl = cl->next) {
        ln = ngx_alloc_chain_link(c->pool);
        if (ln == NULL) {
            return NGX_ERROR;
        }

        ln->buf = cl->buf;
        ln->next = NULL;
        *flow->pending_last = ln;
        flow->pending_last = &ln->next;
    }

    out = NULL;
    ll = &out;

    /* a resume, then the data pending (maybe what waited for room) */
    if (ngx_stream_proxy_wasm_feed(s, ctx, from_upstream, &ll) != NGX_OK
        || ngx_stream_proxy_wasm_feed(s, ctx, from_upstream, &ll) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (from_upstream && flow->ended) {
        /* the upstream's data ended: it closed its side */
        ngx_proxy_wasm_library->chain_on_close(ctx->chain,
                                           NGX_PROXY_WASM_DIRECTION_RESPONSE,
                                           NGX_PROXY_WASM_PEER_REMOTE);
    }

    dst = ngx_stream_proxy_wasm_destination(s, from_upstream);

    if (dst != NULL) {
        if (flow->held || flow->pending) {
            dst->buffered |= NGX_STREAM_PROXY_WASM_BUFFERED;

        } else {
            dst->buffered &= ~NGX_STREAM_PROXY_WASM_BUFFERED;
        }
    }

    /*
     * The write filter refuses to be called with nothing to write: only
     * with data, or to go on writing what it keeps.
     */
    if (out == NULL
        && (dst == NULL
            || !(dst->buffered & ~NGX_STREAM_PROXY_WASM_BUFFERED)))
    {
        return NGX_OK;
    }

    rc = ngx_stream_next_filter(s, out, from_upstream);

    /*
     * The next filter keeps links of its own: ours to the proxy's buffers
     * go, those of our buffers wait for them to be written.
     */
    ours = NULL;
    lo = &ours;

    for (cl = out; cl; cl = next) {
        next = cl->next;

        if (cl->buf->tag == (ngx_buf_tag_t) &ngx_stream_proxy_wasm_module) {
            cl->next = NULL;
            *lo = cl;
            lo = &cl->next;

        } else {
            ngx_free_chain(c->pool, cl);
        }
    }

    ngx_chain_update_chains(c->pool, &flow->free, &flow->busy, &ours,
                            (ngx_buf_tag_t) &ngx_stream_proxy_wasm_module);

    return rc;
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

    if (ctx->connected) {
        ngx_proxy_wasm_library->chain_on_close(ctx->chain,
                                               NGX_PROXY_WASM_DIRECTION_REQUEST,
                                               peer);
    }

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


/* The host functions of sessions. */

static ngx_log_t *
ngx_stream_proxy_wasm_log_of(void *session)
{
    return ((ngx_stream_session_t *) session)->connection->log;
}


/* A variable's value by name, NULL when it has none. */
static ngx_stream_variable_value_t *
ngx_stream_proxy_wasm_variable(ngx_stream_session_t *s, u_char *name,
    size_t len)
{
    u_char                        lowcase[64];
    ngx_str_t                     var;
    ngx_uint_t                    key;
    ngx_stream_variable_value_t  *vv;

    if (len > sizeof(lowcase)) {
        return NULL;
    }

    key = ngx_hash_strlow(lowcase, name, len);
    var.data = lowcase;
    var.len = len;

    vv = ngx_stream_get_variable(s, &var, key);

    if (vv == NULL || vv->not_found) {
        return NULL;
    }

    return vv;
}


static ngx_proxy_wasm_variable_e
ngx_stream_proxy_wasm_variable_get(void *session, ngx_proxy_wasm_str_t name,
    ngx_proxy_wasm_str_t *value)
{
    u_char                       *lowcase;
    ngx_str_t                     var;
    ngx_uint_t                    key;
    ngx_stream_session_t         *s = session;
    ngx_stream_variable_t        *v;
    ngx_stream_variable_value_t  *vv;
    ngx_stream_core_main_conf_t  *cmcf;

    lowcase = ngx_pnalloc(s->connection->pool, name.len);
    if (lowcase == NULL) {
        return NGX_PROXY_WASM_VARIABLE_ERROR;
    }

    key = ngx_hash_strlow(lowcase, (u_char *) name.data, name.len);
    var.data = lowcase;
    var.len = name.len;

    cmcf = ngx_stream_get_module_main_conf(s, ngx_stream_core_module);
    v = ngx_hash_find(&cmcf->variables_hash, key, var.data, var.len);

    if (v == NULL) {
        return NGX_PROXY_WASM_VARIABLE_UNKNOWN;
    }

    vv = ngx_stream_get_variable(s, &var, key);

    if (vv == NULL) {
        return NGX_PROXY_WASM_VARIABLE_ERROR;
    }

    if (vv->not_found) {
        return NGX_PROXY_WASM_VARIABLE_NO_VALUE;
    }

    value->data = vv->data;
    value->len = vv->len;

    return NGX_PROXY_WASM_VARIABLE_FOUND;
}


static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_string(ngx_proxy_wasm_value_t *value, u_char *data,
    size_t len)
{
    value->kind = NGX_PROXY_WASM_VALUE_STRING;
    value->string.data = data;
    value->string.len = len;

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_integer(ngx_proxy_wasm_value_t *value, int64_t n)
{
    value->kind = NGX_PROXY_WASM_VALUE_INT;
    value->integer = n;

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


/* "ip:port" of an address, in the session's pool. */
static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_address(ngx_stream_session_t *s, struct sockaddr *sa,
    socklen_t socklen, ngx_proxy_wasm_value_t *value)
{
    u_char  *p;
    size_t   len;

    p = ngx_pnalloc(s->connection->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    len = ngx_sock_ntop(sa, socklen, p, NGX_SOCKADDR_STRLEN, 1);

    return ngx_stream_proxy_wasm_string(value, p, len);
}


/* A fact read from a variable of nginx's (those of the SSL modules). */
static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_from_variable(ngx_stream_session_t *s, char *name,
    ngx_proxy_wasm_value_t *value)
{
    ngx_stream_variable_value_t  *vv;

    vv = ngx_stream_proxy_wasm_variable(s, (u_char *) name, ngx_strlen(name));

    if (vv == NULL || vv->len == 0) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    return ngx_stream_proxy_wasm_string(value, vv->data, vv->len);
}


static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_attribute_get(void *session,
    ngx_proxy_wasm_attribute_e attribute, ngx_proxy_wasm_value_t *value)
{
    ngx_connection_t         *c;
    ngx_stream_session_t     *s = session;
    ngx_stream_upstream_t    *u;
    ngx_proxy_wasm_lookup_e   rc;

    c = s->connection;
    u = s->upstream;

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_SOURCE_ADDRESS:
        return ngx_stream_proxy_wasm_address(s, c->sockaddr, c->socklen,
                                             value);

    case NGX_PROXY_WASM_ATTR_SOURCE_PORT:
        return ngx_stream_proxy_wasm_integer(value,
                                             ngx_inet_get_port(c->sockaddr));

    case NGX_PROXY_WASM_ATTR_DESTINATION_ADDRESS:
    case NGX_PROXY_WASM_ATTR_DESTINATION_PORT:
        if (ngx_connection_local_sockaddr(c, NULL, 0) != NGX_OK) {
            return NGX_PROXY_WASM_LOOKUP_ERROR;
        }

        if (attribute == NGX_PROXY_WASM_ATTR_DESTINATION_PORT) {
            return ngx_stream_proxy_wasm_integer(value,
                                          ngx_inet_get_port(c->local_sockaddr));
        }

        return ngx_stream_proxy_wasm_address(s, c->local_sockaddr,
                                             c->local_socklen, value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_ID:
        return ngx_stream_proxy_wasm_integer(value, c->number);

    case NGX_PROXY_WASM_ATTR_CONNECTION_MTLS:
        if (ngx_stream_proxy_wasm_from_variable(s, "ssl_client_verify", value)
            != NGX_PROXY_WASM_LOOKUP_FOUND)
        {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        value->kind = NGX_PROXY_WASM_VALUE_BOOL;
        value->integer = (value->string.len == 7
                          && ngx_strncmp(value->string.data, "SUCCESS", 7)
                             == 0);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME:
        rc = ngx_stream_proxy_wasm_from_variable(s, "ssl_server_name", value);

        if (rc != NGX_PROXY_WASM_LOOKUP_FOUND) {
            rc = ngx_stream_proxy_wasm_from_variable(s,
                                                     "ssl_preread_server_name",
                                                     value);
        }

        return rc;

    case NGX_PROXY_WASM_ATTR_CONNECTION_TLS_VERSION:
        return ngx_stream_proxy_wasm_from_variable(s, "ssl_protocol", value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE:
        return ngx_stream_proxy_wasm_from_variable(s, "ssl_client_s_dn",
                                                   value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_PEER_CERTIFICATE:
        return ngx_stream_proxy_wasm_from_variable(s, "ssl_client_escaped_cert",
                                                   value);

    case NGX_PROXY_WASM_ATTR_UPSTREAM_ADDRESS:
        if (u == NULL || u->peer.name == NULL) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        return ngx_stream_proxy_wasm_string(value, u->peer.name->data,
                                            u->peer.name->len);

    case NGX_PROXY_WASM_ATTR_UPSTREAM_PORT:
        if (u == NULL || u->peer.sockaddr == NULL) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        return ngx_stream_proxy_wasm_integer(value,
                                          ngx_inet_get_port(u->peer.sockaddr));

    case NGX_PROXY_WASM_ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT:
        if (u == NULL || s->upstream_states == NULL) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        return ngx_stream_proxy_wasm_integer(value,
                                             s->upstream_states->nelts);

    default:
        /* the facts of HTTP requests */
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }
}


static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_static_property_get(void *session,
    ngx_proxy_wasm_str_t key, ngx_proxy_wasm_str_t *value)
{
    return NGX_PROXY_WASM_LOOKUP_ABSENT;
}


static const ngx_proxy_wasm_stream_host_t  ngx_stream_proxy_wasm_host = {
    .log = ngx_stream_proxy_wasm_log_of,
    .attribute_get = ngx_stream_proxy_wasm_attribute_get,
    .variable_get = ngx_stream_proxy_wasm_variable_get,
    .static_property_get = ngx_stream_proxy_wasm_static_property_get,
    .schedule_resume = ngx_stream_proxy_wasm_schedule_resume,
};
