/*
 * The response's side of a filter chain: on_response_headers in a header
 * filter, body and trailers in a body filter, and local responses.
 *
 * When a filter looks at response bodies, the headers wait until the
 * chain lets the first body data through. If the filters changed it, the
 * ETag becomes weak and a Content-Length becomes the new length when that
 * data ends the body, or goes (chunked) when more follows. If they did
 * not, the headers keep their Content-Length, and the body that follows
 * must keep to it. A Content-Length the response does not have (removed by
 * a filter, or never sent) is never added.
 */

#include "ngx_proxy_wasm_shim.h"


/*
 * The r->buffered bit set while the chain holds the response: the image
 * filter's, which never holds data at the same time (it passes whole
 * bodies on before they reach this filter).
 */
#define NGX_HTTP_PROXY_WASM_BUFFERED  0x08


static ngx_int_t ngx_http_proxy_wasm_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_proxy_wasm_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_proxy_wasm_response_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_proxy_wasm_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_proxy_wasm_body_filter;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_proxy_wasm_has_trailers(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &r->headers_out.trailers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash) {
                return 1;
            }
        }
    }

    return 0;
}


/*
 * The headers of a local response: the filter's status and headers, the
 * body's length, and text/plain for a body without a type, as Envoy.
 */
static ngx_int_t
ngx_http_proxy_wasm_local_headers(ngx_http_request_t *r,
    ngx_proxy_wasm_local_response_t *lr)
{
    size_t                i;
    ngx_proxy_wasm_str_t  content_type, text_plain;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm: local response %uD \"%*s\"",
                   lr->status, lr->details.len, lr->details.data);

    r->headers_out.status = lr->status;
    r->headers_out.content_length_n = (off_t) lr->body.len;

    for (i = 0; i < lr->nheaders; i++) {
        if (ngx_http_proxy_wasm_header_set(r, NGX_PROXY_WASM_HEADER_MAP_RESPONSE,
                                           NGX_PROXY_WASM_HEADER_OP_ADD,
                                           lr->headers[i].key,
                                           lr->headers[i].value)
            == NGX_PROXY_WASM_CHANGE_ERROR)
        {
            return NGX_ERROR;
        }
    }

    if (lr->body.len && r->headers_out.content_type.len == 0) {
        content_type.data = (u_char *) "content-type";
        content_type.len = sizeof("content-type") - 1;
        text_plain.data = (u_char *) "text/plain";
        text_plain.len = sizeof("text/plain") - 1;

        if (ngx_http_proxy_wasm_header_set(r, NGX_PROXY_WASM_HEADER_MAP_RESPONSE,
                                           NGX_PROXY_WASM_HEADER_OP_REPLACE,
                                           content_type, text_plain)
            == NGX_PROXY_WASM_CHANGE_ERROR)
        {
            return NGX_ERROR;
        }
    }

    if (lr->body.len == 0) {
        r->header_only = 1;
    }

    return NGX_OK;
}


static ngx_chain_t *
ngx_http_proxy_wasm_local_body(ngx_http_request_t *r,
    ngx_proxy_wasm_local_response_t *lr)
{
    ngx_proxy_wasm_step_t  step;

    ngx_memzero(&step, sizeof(ngx_proxy_wasm_step_t));
    step.data = lr->body;

    return ngx_http_proxy_wasm_output(r, &step, 1);
}


/* Sends a local response's headers, then its body, through the filters
 * given: all of them, or those after this module. */
static ngx_int_t
ngx_http_proxy_wasm_send_local(ngx_http_request_t *r,
    ngx_proxy_wasm_local_response_t *lr,
    ngx_http_output_header_filter_pt send_header,
    ngx_http_output_body_filter_pt send_body)
{
    ngx_int_t     rc;
    ngx_chain_t  *out;

    rc = send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out = ngx_http_proxy_wasm_local_body(r, lr);
    if (out == NULL) {
        return NGX_ERROR;
    }

    return send_body(r, out);
}


/* A local response from a request callback, through all the filters. */
ngx_int_t
ngx_http_proxy_wasm_send_local_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t                        rc;
    ngx_proxy_wasm_local_response_t  lr;

    if (ngx_proxy_wasm_api.chain_local_response(ctx->chain, &lr) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_proxy_wasm_local_headers(r, &lr) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_proxy_wasm_send_local(r, &lr, ngx_http_send_header,
                                          ngx_http_output_filter);
}


/*
 * A local response from a response callback, while the response's headers
 * are still held: it replaces the response, whose body is then dropped.
 */
static ngx_int_t
ngx_http_proxy_wasm_replace_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_proxy_wasm_local_response_t  lr;

    ctx->response_replaced = 1;
    r->buffered &= ~NGX_HTTP_PROXY_WASM_BUFFERED;

    if (ngx_proxy_wasm_api.chain_local_response(ctx->chain, &lr) != 0) {
        return NGX_ERROR;
    }

    ngx_http_clean_header(r);

    if (ngx_list_init(&r->headers_out.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK
        || ngx_list_init(&r->headers_out.trailers, r->pool, 4,
                         sizeof(ngx_table_elt_t))
        != NGX_OK
        || ngx_http_proxy_wasm_local_headers(r, &lr) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->response_sent = 1;
    ngx_proxy_wasm_api.chain_response_sent(ctx->chain);

    return ngx_http_proxy_wasm_send_local(r, &lr, ngx_http_next_header_filter,
                                          ngx_http_next_body_filter);
}


/*
 * Sends the headers the chain held, with a Content-Length true to the body
 * the chain lets through (see the top of this file).
 */
static ngx_int_t
ngx_http_proxy_wasm_send_headers(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_proxy_wasm_step_t *step)
{
    ngx_http_headers_out_t  *ho = &r->headers_out;

    if (step->output == NGX_PROXY_WASM_OUTPUT_DATA) {
        ngx_http_weak_etag(r);

        if (step->end_of_stream && ho->content_length_n >= 0) {
            ngx_http_clear_content_length(r);
            ho->content_length_n = step->data.len;

        } else {
            ngx_http_clear_content_length(r);
        }

    } else if (step->output == NGX_PROXY_WASM_OUTPUT_UNCHANGED
               && !step->end_of_stream && ho->content_length_n >= 0)
    {
        ctx->response_length_committed = 1;
    }

    if (ngx_http_proxy_wasm_has_trailers(r)) {
        r->expect_trailers = 1;
    }

    ctx->response_sent = 1;
    ngx_proxy_wasm_api.chain_response_sent(ctx->chain);

    return ngx_http_next_header_filter(r);
}


/*
 * Acts on a step of the response: holds it, replaces or fails it, sends
 * the held headers once the chain lets them through, and passes body data
 * on ("in", of "size" bytes, when the chain left it unchanged; "last":
 * the data passed on ends the body).
 */
static ngx_int_t
ngx_http_proxy_wasm_response_step(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_proxy_wasm_step_t *step,
    ngx_chain_t *in, off_t size, ngx_uint_t last)
{
    ngx_int_t     rc;
    ngx_chain_t  *out;

    switch (step->next) {

    case NGX_PROXY_WASM_NEXT_PAUSE:
        ngx_http_proxy_wasm_consume(in);
        ctx->response_held = 1;
        r->buffered |= NGX_HTTP_PROXY_WASM_BUFFERED;
        return NGX_OK;

    case NGX_PROXY_WASM_NEXT_LOCAL_RESPONSE:
        ngx_http_proxy_wasm_consume(in);
        return ngx_http_proxy_wasm_replace_response(r, ctx);

    case NGX_PROXY_WASM_NEXT_CONTINUE:
        break;

    default: /* NGX_PROXY_WASM_NEXT_FAIL, NGX_PROXY_WASM_NEXT_CLOSE */
        ngx_http_proxy_wasm_consume(in);
        ctx->failed = 1;
        r->buffered &= ~NGX_HTTP_PROXY_WASM_BUFFERED;

        if (step->next == NGX_PROXY_WASM_NEXT_FAIL && !ctx->response_sent) {
            ctx->response_replaced = 1;
            return ngx_http_filter_finalize_request(r,
                                          &ngx_http_proxy_wasm_module,
                                          ngx_http_proxy_wasm_failed(r, ctx));
        }

        r->connection->error = 1;
        return NGX_ERROR;
    }

    ctx->response_held = 0;
    r->buffered &= ~NGX_HTTP_PROXY_WASM_BUFFERED;

    if (!ctx->response_sent) {

        /* the headers wait for the first body data through the chain */
        if (step->output == NGX_PROXY_WASM_OUTPUT_NOTHING
            && ctx->response_body_wanted && !r->header_only)
        {
            return NGX_OK;
        }

        rc = ngx_http_proxy_wasm_send_headers(r, ctx, step);

        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            return rc;
        }
    }

    switch (step->output) {

    case NGX_PROXY_WASM_OUTPUT_NOTHING:
        return NGX_OK;

    case NGX_PROXY_WASM_OUTPUT_UNCHANGED:
        ctx->response_out += size;
        out = in;
        break;

    default: /* NGX_PROXY_WASM_OUTPUT_DATA */
        ngx_http_proxy_wasm_consume(in);
        ctx->response_out += step->data.len;

        out = ngx_http_proxy_wasm_output(r, step, last);
        if (out == NULL) {
            return NGX_ERROR;
        }
    }

    if (ctx->response_length_committed
        && (ctx->response_out > r->headers_out.content_length_n
            || (last && ctx->response_out != r->headers_out.content_length_n)))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "proxy_wasm: a filter changed the length of a response "
                      "body after its headers went out with Content-Length "
                      "%O: closing the connection (filters that change "
                      "bodies remove content-length in on_response_headers "
                      "or pause on the body)",
                      r->headers_out.content_length_n);
        ctx->failed = 1;
        r->connection->error = 1;
        return NGX_ERROR;
    }

    return ngx_http_next_body_filter(r, out);
}


static ngx_int_t
ngx_http_proxy_wasm_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_proxy_wasm_step_t       step;
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

    if (ctx->response_headers_started || ctx->failed) {
        return ngx_http_next_header_filter(r);
    }

    ctx->response_headers_started = 1;
    ctx->response_body_wanted = !r->header_only
        && ngx_proxy_wasm_api.chain_wants_body(ctx->chain,
                                                NGX_PROXY_WASM_DIRECTION_RESPONSE);

    if (ctx->response_body_wanted) {
        /* filters see bodies in memory; byte ranges would cut them */
        r->filter_need_in_memory = 1;
        r->allow_ranges = 0;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "proxy_wasm: on_response_headers %ui c:%ud",
                   r->headers_out.status, r->main->count);

    ngx_proxy_wasm_api.chain_on_headers(ctx->chain, NGX_PROXY_WASM_DIRECTION_RESPONSE,
                                         r->header_only, &step);

    return ngx_http_proxy_wasm_response_step(r, ctx, &step, NULL, 0, 0);
}


static ngx_int_t
ngx_http_proxy_wasm_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t                       size;
    ngx_uint_t                  last, trailers;
    ngx_array_t                 parts;
    ngx_proxy_wasm_step_t       step, trailers_step;
    ngx_proxy_wasm_str_t        buf[NGX_HTTP_PROXY_WASM_STACK_PARTS];
    ngx_http_proxy_wasm_ctx_t  *ctx;

    ctx = (r == r->main) ? ngx_http_proxy_wasm_get_ctx(r) : NULL;

    if (ctx == NULL || !ctx->response_headers_started || ctx->failed) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->response_replaced) {
        ngx_http_proxy_wasm_consume(in);
        return NGX_OK;
    }

    if (ctx->response_sent && !ctx->response_body_wanted
        && !ctx->response_held)
    {
        return ngx_http_next_body_filter(r, in);
    }

    if (in == NULL) {
        return ctx->response_sent && !ctx->response_held
               ? ngx_http_next_body_filter(r, in) : NGX_OK;
    }

    if (ngx_http_proxy_wasm_body_parts(r, in, &parts, buf, &size, &last)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->response_in += size;
    trailers = last && ngx_http_proxy_wasm_has_trailers(r);

    /* with trailers to come, the body's last data is not its end */
    ngx_proxy_wasm_api.chain_on_body(ctx->chain, NGX_PROXY_WASM_DIRECTION_RESPONSE,
                                      parts.elts, parts.nelts,
                                      last && !trailers, &step);

    if (trailers && step.next == NGX_PROXY_WASM_NEXT_CONTINUE) {
        ngx_proxy_wasm_api.chain_on_trailers(ctx->chain,
                                              NGX_PROXY_WASM_DIRECTION_RESPONSE,
                                              &trailers_step);

        if (trailers_step.next != NGX_PROXY_WASM_NEXT_CONTINUE) {
            step.next = trailers_step.next;
        }
    }

    if (last && step.next == NGX_PROXY_WASM_NEXT_CONTINUE
        && ngx_http_proxy_wasm_has_trailers(r)
        && ctx->response_sent && !r->chunked
        && r->http_version < NGX_HTTP_VERSION_20)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "proxy_wasm: response trailers dropped: the response "
                      "is not chunked");
    }

    return ngx_http_proxy_wasm_response_step(r, ctx, &step, in, size,
                                             step.end_of_stream || trailers);
}


/* A filter continued (or answered, or closed) a held response. */
void
ngx_http_proxy_wasm_resume_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx)
{
    ngx_int_t              rc;
    ngx_proxy_wasm_step_t  step;

    if (!ctx->response_held && ctx->response_sent) {
        return;
    }

    ngx_proxy_wasm_api.chain_resume(ctx->chain, NGX_PROXY_WASM_DIRECTION_RESPONSE,
                                     &step);

    if (step.next == NGX_PROXY_WASM_NEXT_PAUSE) {
        return;
    }

    rc = ngx_http_proxy_wasm_response_step(r, ctx, &step, NULL, 0,
                                           step.end_of_stream);

    if (rc == NGX_ERROR && !r->filter_finalize) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    /* the request's writer flushes, and finalizes a request done with */
    r->write_event_handler(r);
}
