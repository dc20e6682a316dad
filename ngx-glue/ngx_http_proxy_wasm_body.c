/*
 * Body data between nginx's chains of buffers and the filter chain, for
 * request and response bodies alike: the memory parts a chain of buffers
 * hands to chain_on_body, and the chain of buffers a step's output makes.
 */

#include "ngx_proxy_wasm_shim.h"


/*
 * The memory parts of a chain, its size and whether it ends the body:
 * parts starts on the caller's stack (NGX_HTTP_PROXY_WASM_STACK_PARTS),
 * and grows in the request's pool for longer chains.
 */
ngx_int_t
ngx_http_proxy_wasm_body_parts(ngx_http_request_t *r, ngx_chain_t *in,
    ngx_array_t *parts, ngx_proxy_wasm_str_t *stack, off_t *size,
    ngx_uint_t *last)
{
    ngx_buf_t             *b;
    ngx_chain_t           *cl;
    ngx_proxy_wasm_str_t  *part;

    parts->elts = stack;
    parts->nelts = 0;
    parts->size = sizeof(ngx_proxy_wasm_str_t);
    parts->nalloc = NGX_HTTP_PROXY_WASM_STACK_PARTS;
    parts->pool = r->pool;

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
