/*
 * The data path of network filters: a stream filter above nginx's write
 * filter. The proxy's buffers of each direction go to the chain (pending
 * until it has room under proxy_wasm_buffer_limit: they stay in the
 * proxy's buffer, which stops its reading); what leaves the chain goes on
 * in the proxy's own buffers when unchanged, else in buffers of ours.
 */

#include "ngx_stream_proxy_wasm.h"


ngx_stream_filter_pt  ngx_stream_proxy_wasm_next_filter;


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


/*
 * The upstream's data ended (it closed its side): its close callback,
 * once.
 */
static void
ngx_stream_proxy_wasm_ended(ngx_stream_proxy_wasm_ctx_t *ctx,
    ngx_uint_t from_upstream)
{
    ngx_stream_proxy_wasm_flow_t  *flow = &ctx->flows[from_upstream];

    if (from_upstream && flow->ended && !flow->reported) {
        flow->reported = 1;
        ngx_proxy_wasm_library->chain_on_close(ctx->chain,
                                           NGX_PROXY_WASM_DIRECTION_RESPONSE,
                                           NGX_PROXY_WASM_PEER_REMOTE);
    }
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


ngx_int_t
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
        return ngx_stream_proxy_wasm_next_filter(s, in, from_upstream);
    }

    if (ctx->closing) {
        return NGX_ERROR;
    }

    c = s->connection;
    flow = &ctx->flows[from_upstream];

    if (flow->bypass) {
        for (cl = in; cl && !flow->ended; cl = cl->next) {
            flow->ended = cl->buf->last_buf;
        }

        ngx_stream_proxy_wasm_ended(ctx, from_upstream);

        return ngx_stream_proxy_wasm_next_filter(s, in, from_upstream);
    }

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

    ngx_stream_proxy_wasm_ended(ctx, from_upstream);

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

    rc = ngx_stream_proxy_wasm_next_filter(s, out, from_upstream);

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
