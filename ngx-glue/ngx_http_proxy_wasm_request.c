/*
 * The request's side of the chain: on_request_headers in a phase handler
 * (a filter may hold the request there, within proxy_wasm_hold_timeout),
 * the request body through a request body filter (read first thing in the
 * precontent phase when a filter looks at it, or replayed when it was
 * read before), and resuming a request a filter held.
 */

#include "ngx_proxy_wasm_shim.h"


static ngx_int_t ngx_http_proxy_wasm_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_request_body_filter_pt  ngx_http_next_request_body_filter;


ngx_int_t
ngx_http_proxy_wasm_request_init(ngx_conf_t *cf)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_proxy_wasm_request_body_filter;

    return NGX_OK;
}


ngx_uint_t
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
void
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

    if (ctx->lua_waiting) {
        /* Lua's start() waits: it ends the request */
        ngx_http_proxy_wasm_lua_hold_expired(r, ctx);
        return;
    }

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


ngx_int_t
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
ngx_int_t
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

    /* (a chain Lua attached in access_by_lua starts here) */
    if ((plcf->request_headers_in_access || ctx->lua_attached)
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
    ngx_proxy_wasm_str_t        buf[NGX_HTTP_PROXY_WASM_STACK_PARTS];

    ctx = (r == r->main) ? ngx_http_proxy_wasm_get_ctx(r) : NULL;

    if (ctx == NULL || ctx->failed || !ctx->request_body_wanted) {
        return ngx_http_next_request_body_filter(r, in);
    }

    r->request_body->filter_need_buffering = 1;

    if (ngx_http_proxy_wasm_body_parts(r, in, &parts, buf, &size, &last)
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
void
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

    if (ctx->lua_start_pending || ctx->lua_waiting) {
        ngx_http_proxy_wasm_lua_resume(r, ctx);

    } else if (ctx->request_paused) {
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
