/*
 * Header maps as Proxy-Wasm filters see them (changing them is
 * ngx_http_proxy_wasm_headers_change.c's).
 *
 * Requests: ":method", ":path", ":scheme", ":authority" (the Host header),
 * then r->headers_in.headers. Removed request headers leave the list
 * (upstream modules copy every entry), after which the headers_in fields
 * that point into the list are derived again.
 *
 * Responses: ":status", the headers nginx keeps outside the list
 * (Content-Type, and Content-Length or Last-Modified when only their
 * numeric form is set), then r->headers_out.headers; response trailers:
 * r->headers_out.trailers. Removed entries get hash 0, as nginx's own
 * filters do.
 */

#include "ngx_proxy_wasm_shim.h"


/*
 * Where a map's entries go: into pairs (NULL: only counted), all of them
 * or, with a key, the first of that name.
 */
typedef struct {
    ngx_proxy_wasm_pair_t  *pairs;
    size_t                  npairs;
    size_t                  n;
    ngx_proxy_wasm_str_t   *key;
} ngx_http_proxy_wasm_pairs_t;


static ngx_inline ngx_uint_t
ngx_http_proxy_wasm_selects(ngx_http_proxy_wasm_pairs_t *out, u_char *key,
    size_t key_len)
{
    if (out->key == NULL) {
        return 1;
    }

    return out->n == 0 && key_len == out->key->len
           && ngx_proxy_wasm_equal_nocase(key, out->key->data, key_len);
}


/* Whether an entry's value is wanted: values nginx keeps in numeric form
 * are only formatted then. */
static ngx_uint_t
ngx_http_proxy_wasm_wants(ngx_http_proxy_wasm_pairs_t *out, u_char *key,
    size_t key_len)
{
    return out->pairs != NULL && ngx_http_proxy_wasm_selects(out, key, key_len);
}


#define ngx_http_proxy_wasm_wants_literal(out, key)                           \
    ngx_http_proxy_wasm_wants(out, (u_char *) key, sizeof(key) - 1)


static ngx_inline void
ngx_http_proxy_wasm_push(ngx_http_proxy_wasm_pairs_t *out, u_char *key,
    size_t key_len, u_char *value, size_t value_len)
{
    if (!ngx_http_proxy_wasm_selects(out, key, key_len)) {
        return;
    }

    if (out->n < out->npairs) {
        out->pairs[out->n].key.data = key;
        out->pairs[out->n].key.len = key_len;
        out->pairs[out->n].value.data = value;
        out->pairs[out->n].value.len = value_len;
    }

    out->n++;
}


#define ngx_http_proxy_wasm_push_literal(out, key, value)                      \
    ngx_http_proxy_wasm_push(out, (u_char *) key, sizeof(key) - 1,            \
                             (value).data, (value).len)


static void
ngx_http_proxy_wasm_push_list(ngx_http_proxy_wasm_pairs_t *out,
    ngx_list_t *list, ngx_table_elt_t *skip)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &list->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash == 0 || &h[i] == skip) {
                continue;
            }

            ngx_http_proxy_wasm_push(out, h[i].key.data, h[i].key.len,
                                     h[i].value.data, h[i].value.len);
        }
    }
}


static void
ngx_http_proxy_wasm_request_pairs(ngx_http_request_t *r,
    ngx_http_proxy_wasm_pairs_t *out)
{
    ngx_str_t  scheme, authority;

    ngx_str_set(&scheme, "http");

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https");
    }
#endif

    authority = r->headers_in.host ? r->headers_in.host->value
                                   : r->headers_in.server;

    ngx_http_proxy_wasm_push_literal(out, ":method", r->method_name);
    ngx_http_proxy_wasm_push_literal(out, ":path", r->unparsed_uri);
    ngx_http_proxy_wasm_push_literal(out, ":scheme", scheme);
    ngx_http_proxy_wasm_push_literal(out, ":authority", authority);

    ngx_http_proxy_wasm_push_list(out, &r->headers_in.headers,
                                  r->headers_in.host);
}


static ngx_int_t
ngx_http_proxy_wasm_response_pairs(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx, ngx_http_proxy_wasm_pairs_t *out)
{
    u_char                  *p;
    ngx_str_t                value;
    ngx_http_headers_out_t  *ho = &r->headers_out;

    ngx_str_null(&value);

    if (ngx_http_proxy_wasm_wants_literal(out, ":status")) {
        value.data = ctx->status;
        value.len = ngx_sprintf(ctx->status, "%ui", ho->status) - ctx->status;
    }

    ngx_http_proxy_wasm_push_literal(out, ":status", value);

    if (ho->content_type.len) {
        value = ho->content_type;

        /* as the header filter writes it */
        if (ho->content_type_len == ho->content_type.len && ho->charset.len
            && !ngx_http_proxy_wasm_request_gone(r)
            && ngx_http_proxy_wasm_wants_literal(out, "content-type"))
        {
            value.len = ho->content_type.len + sizeof("; charset=") - 1
                        + ho->charset.len;
            value.data = ngx_pnalloc(r->pool, value.len);
            if (value.data == NULL) {
                return NGX_ERROR;
            }

            p = ngx_cpymem(value.data, ho->content_type.data,
                           ho->content_type.len);
            p = ngx_cpymem(p, "; charset=", sizeof("; charset=") - 1);
            ngx_memcpy(p, ho->charset.data, ho->charset.len);
        }

        ngx_http_proxy_wasm_push_literal(out, "content-type", value);
    }

    ngx_str_null(&value);

    if (ho->content_length == NULL && ho->content_length_n >= 0) {
        if (ngx_http_proxy_wasm_wants_literal(out, "content-length")) {
            value.data = ctx->content_length;
            value.len = ngx_sprintf(ctx->content_length, "%O",
                                    ho->content_length_n)
                        - ctx->content_length;
        }

        ngx_http_proxy_wasm_push_literal(out, "content-length", value);
    }

    ngx_str_null(&value);

    if (ho->last_modified == NULL && ho->last_modified_time != -1) {
        if (ngx_http_proxy_wasm_wants_literal(out, "last-modified")) {
            value.data = ctx->last_modified;
            value.len = ngx_http_time(ctx->last_modified,
                                      ho->last_modified_time)
                        - ctx->last_modified;
        }

        ngx_http_proxy_wasm_push_literal(out, "last-modified", value);
    }

    ngx_http_proxy_wasm_push_list(out, &ho->headers, NULL);

    return NGX_OK;
}


static ngx_int_t
ngx_http_proxy_wasm_gather(ngx_http_request_t *r,
    ngx_proxy_wasm_header_map_e map,
    ngx_http_proxy_wasm_pairs_t *out)
{
    ngx_http_proxy_wasm_ctx_t  *ctx;

    if (map == NGX_PROXY_WASM_HEADER_MAP_REQUEST) {
        ngx_http_proxy_wasm_request_pairs(r, out);

    } else if (map == NGX_PROXY_WASM_HEADER_MAP_RESPONSE_TRAILERS) {
        ngx_http_proxy_wasm_push_list(out, &r->headers_out.trailers, NULL);

    } else {
        ctx = ngx_http_proxy_wasm_get_ctx(r);
        if (ctx == NULL
            || ngx_http_proxy_wasm_response_pairs(r, ctx, out) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_proxy_wasm_list_e
ngx_http_proxy_wasm_headers_get(void *request, ngx_proxy_wasm_header_map_e map,
    ngx_proxy_wasm_pair_t *pairs, size_t npairs, size_t *n)
{
    ngx_http_proxy_wasm_pairs_t  out;

    out.pairs = pairs;
    out.npairs = npairs;
    out.n = 0;
    out.key = NULL;

    if (ngx_http_proxy_wasm_gather(request, map, &out) != NGX_OK) {
        return NGX_PROXY_WASM_LIST_ERROR;
    }

    *n = out.n;

    return out.n > npairs ? NGX_PROXY_WASM_LIST_TOO_SMALL
                          : NGX_PROXY_WASM_LIST_DONE;
}


ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_header_get(void *request, ngx_proxy_wasm_header_map_e map,
    ngx_proxy_wasm_str_t key, ngx_proxy_wasm_str_t *value)
{
    ngx_proxy_wasm_pair_t        pair;
    ngx_http_proxy_wasm_pairs_t  out;

    out.pairs = &pair;
    out.npairs = 1;
    out.n = 0;
    out.key = &key;

    if (ngx_http_proxy_wasm_gather(request, map, &out) != NGX_OK) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    if (out.n == 0) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    *value = pair.value;

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}
