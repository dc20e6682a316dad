/*
 * Changing header maps (header_set): request headers, pseudo-headers
 * included (":method", ":path", ":authority"), with the headers_in fields
 * that point into the list derived again; response headers, with the
 * headers_out fields nginx keeps apart (":status", Content-Type,
 * Content-Length) and those that point to the first entry of their name;
 * response trailers. Removed request headers leave the list (upstream
 * modules copy every entry); removed response entries get hash 0, as
 * nginx's own filters do.
 */

#include "ngx_proxy_wasm_shim.h"


/* headers_out fields that point to the first entry of their name */
typedef struct {
    ngx_str_t               name;
    ngx_uint_t              offset;
} ngx_http_proxy_wasm_field_t;


static ngx_http_proxy_wasm_field_t  ngx_http_proxy_wasm_out_fields[] = {
    { ngx_string("server"), offsetof(ngx_http_headers_out_t, server) },
    { ngx_string("date"), offsetof(ngx_http_headers_out_t, date) },
    { ngx_string("content-encoding"),
      offsetof(ngx_http_headers_out_t, content_encoding) },
    { ngx_string("location"), offsetof(ngx_http_headers_out_t, location) },
    { ngx_string("refresh"), offsetof(ngx_http_headers_out_t, refresh) },
    { ngx_string("last-modified"),
      offsetof(ngx_http_headers_out_t, last_modified) },
    { ngx_string("content-range"),
      offsetof(ngx_http_headers_out_t, content_range) },
    { ngx_string("accept-ranges"),
      offsetof(ngx_http_headers_out_t, accept_ranges) },
    { ngx_string("www-authenticate"),
      offsetof(ngx_http_headers_out_t, www_authenticate) },
    { ngx_string("expires"), offsetof(ngx_http_headers_out_t, expires) },
    { ngx_string("etag"), offsetof(ngx_http_headers_out_t, etag) },
#if (NGX_PROXY_WASM_HEADER_CHAINS)
    { ngx_string("cache-control"),
      offsetof(ngx_http_headers_out_t, cache_control) },
    { ngx_string("link"), offsetof(ngx_http_headers_out_t, link) },
#endif
    { ngx_null_string, 0 }
};


/* list primitives */


static ngx_uint_t
ngx_http_proxy_wasm_key_is(ngx_table_elt_t *h, ngx_str_t *key)
{
    return h->hash != 0 && h->key.len == key->len
           && ngx_proxy_wasm_equal_nocase(h->key.data, key->data, key->len);
}


static ngx_int_t
ngx_http_proxy_wasm_copy(ngx_http_request_t *r, ngx_str_t *dst,
    ngx_proxy_wasm_str_t *src)
{
    dst->len = src->len;
    dst->data = ngx_pnalloc(r->pool, src->len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->data[src->len] = '\0';

    return NGX_OK;
}


/* "key": lower-cased in the request's pool, kept as the entry's name */
static ngx_table_elt_t *
ngx_http_proxy_wasm_list_add(ngx_http_request_t *r, ngx_list_t *list,
    ngx_str_t *key, ngx_proxy_wasm_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(list);
    if (h == NULL) {
        return NULL;
    }

    if (ngx_http_proxy_wasm_copy(r, &h->value, value) != NGX_OK) {
        h->hash = 0;
        return NULL;
    }

    h->key = *key;
    h->lowcase_key = key->data;
    h->hash = ngx_hash_key(key->data, key->len);

    /* hash 0 would mean "removed" */
    if (h->hash == 0) {
        h->hash = 1;
    }

#if (NGX_PROXY_WASM_HEADER_CHAINS)
    h->next = NULL;
#endif

    return h;
}


/*
 * Applies an operation to the entries named "key" (lower-cased, in the
 * request's pool: an added entry keeps it). Removed entries are taken out
 * of the list ("unlink") or given hash 0.
 */
static ngx_int_t
ngx_http_proxy_wasm_list_set(ngx_http_request_t *r, ngx_list_t *list,
    ngx_uint_t op, ngx_str_t *key, ngx_proxy_wasm_str_t *value,
    ngx_uint_t unlink)
{
    ngx_uint_t        i, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    found = 0;

    /* adding leaves the entries of that name as they are */
    for (part = op == NGX_PROXY_WASM_HEADER_OP_ADD ? NULL : &list->part;
         part;
         part = part->next)
    {
        h = part->elts;

        for (i = 0; i < part->nelts; /* void */) {

            if (!ngx_http_proxy_wasm_key_is(&h[i], key)) {
                i++;
                continue;
            }

            if (op == NGX_PROXY_WASM_HEADER_OP_REPLACE && !found) {
                if (ngx_http_proxy_wasm_copy(r, &h[i].value, value) != NGX_OK) {
                    return NGX_ERROR;
                }

                found = 1;
                i++;
                continue;
            }

            if (!unlink) {
                h[i].hash = 0;
                i++;
                continue;
            }

            part->nelts--;
            ngx_memmove(&h[i], &h[i + 1],
                        (part->nelts - i) * sizeof(ngx_table_elt_t));
        }
    }

    if (op == NGX_PROXY_WASM_HEADER_OP_ADD
        || (op == NGX_PROXY_WASM_HEADER_OP_REPLACE && !found))
    {
        if (ngx_http_proxy_wasm_list_add(r, list, key, value) == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_http_proxy_wasm_list_first(ngx_list_t *list, ngx_str_t *key)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &list->part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (ngx_http_proxy_wasm_key_is(&h[i], key)) {
                return &h[i];
            }
        }
    }

    return NULL;
}


/* request headers */


#if (!NGX_PROXY_WASM_HEADER_CHAINS)

/* nginx 1.22 keeps Cookie and X-Forwarded-For in arrays */
static ngx_int_t
ngx_http_proxy_wasm_is_array_field(ngx_uint_t offset)
{
#if (NGX_HTTP_X_FORWARDED_FOR)
    if (offset == offsetof(ngx_http_headers_in_t, x_forwarded_for)) {
        return 1;
    }
#endif

    return offset == offsetof(ngx_http_headers_in_t, cookies);
}

#endif


/*
 * Derives again every headers_in field that points into the header list,
 * as nginx's header parsing set them: the first entry of each name, the
 * others chained behind it.
 */
static ngx_int_t
ngx_http_proxy_wasm_request_fields(ngx_http_request_t *r)
{
    u_char                     *field;
    ngx_uint_t                  i;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h, **ph;
    ngx_http_header_t          *hh;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    for (hh = ngx_http_headers_in; hh->name.len; hh++) {
        field = (u_char *) &r->headers_in + hh->offset;

#if (!NGX_PROXY_WASM_HEADER_CHAINS)
        if (ngx_http_proxy_wasm_is_array_field(hh->offset)) {
            ((ngx_array_t *) field)->nelts = 0;
            continue;
        }
#endif

        *(ngx_table_elt_t **) field = NULL;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
#if (NGX_PROXY_WASM_HEADER_CHAINS)
            h[i].next = NULL;
#endif

            if (h[i].hash == 0) {
                continue;
            }

            hh = ngx_hash_find(&cmcf->headers_in_hash, h[i].hash,
                               h[i].lowcase_key, h[i].key.len);
            if (hh == NULL) {
                continue;
            }

            field = (u_char *) &r->headers_in + hh->offset;

#if (!NGX_PROXY_WASM_HEADER_CHAINS)
            if (ngx_http_proxy_wasm_is_array_field(hh->offset)) {
                ngx_array_t  *a = (ngx_array_t *) field;

                if (a->elts == NULL
                    && ngx_array_init(a, r->pool, 1, sizeof(ngx_table_elt_t *))
                       != NGX_OK)
                {
                    return NGX_ERROR;
                }

                ph = ngx_array_push(a);
                if (ph == NULL) {
                    return NGX_ERROR;
                }

                *ph = &h[i];
                continue;
            }
#endif

            ph = (ngx_table_elt_t **) field;

#if (NGX_PROXY_WASM_HEADER_CHAINS)
            while (*ph) {
                ph = &(*ph)->next;
            }
#endif

            /* without chains only the first entry is kept */
            if (*ph == NULL) {
                *ph = &h[i];
            }
        }
    }

    return NGX_OK;
}


/* r->headers_in.server: the Host header's host, lower-cased, no port */
static void
ngx_http_proxy_wasm_set_server(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_str_t  *host;

    if (r->headers_in.host == NULL) {
        return;
    }

    host = &r->headers_in.host->value;
    last = host->data + host->len;

    if (host->len && host->data[0] == '[') {
        p = ngx_strlchr(host->data, last, ']');
        last = p ? p + 1 : last;

    } else {
        p = ngx_strlchr(host->data, last, ':');
        last = p ? p : last;
    }

    r->headers_in.server.len = last - host->data;
    r->headers_in.server.data = ngx_pnalloc(r->pool, r->headers_in.server.len);

    if (r->headers_in.server.data == NULL) {
        r->headers_in.server.len = 0;
        return;
    }

    ngx_strlow(r->headers_in.server.data, host->data, r->headers_in.server.len);
}


typedef struct {
    ngx_str_t    name;
    ngx_uint_t   method;
} ngx_http_proxy_wasm_method_t;


static ngx_http_proxy_wasm_method_t  ngx_http_proxy_wasm_methods[] = {
    { ngx_string("GET"), NGX_HTTP_GET },
    { ngx_string("HEAD"), NGX_HTTP_HEAD },
    { ngx_string("POST"), NGX_HTTP_POST },
    { ngx_string("PUT"), NGX_HTTP_PUT },
    { ngx_string("DELETE"), NGX_HTTP_DELETE },
    { ngx_string("MKCOL"), NGX_HTTP_MKCOL },
    { ngx_string("COPY"), NGX_HTTP_COPY },
    { ngx_string("MOVE"), NGX_HTTP_MOVE },
    { ngx_string("OPTIONS"), NGX_HTTP_OPTIONS },
    { ngx_string("PROPFIND"), NGX_HTTP_PROPFIND },
    { ngx_string("PROPPATCH"), NGX_HTTP_PROPPATCH },
    { ngx_string("LOCK"), NGX_HTTP_LOCK },
    { ngx_string("UNLOCK"), NGX_HTTP_UNLOCK },
    { ngx_string("PATCH"), NGX_HTTP_PATCH },
    { ngx_string("TRACE"), NGX_HTTP_TRACE },
    { ngx_null_string, 0 }
};


static ngx_int_t
ngx_http_proxy_wasm_set_method(ngx_http_request_t *r,
    ngx_proxy_wasm_str_t *value)
{
    ngx_http_proxy_wasm_method_t  *m;

    if (value->len == 0
        || ngx_http_proxy_wasm_copy(r, &r->method_name, value) != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->method = NGX_HTTP_UNKNOWN;

    for (m = ngx_http_proxy_wasm_methods; m->name.len; m++) {
        if (m->name.len == value->len
            && ngx_strncmp(m->name.data, value->data, value->len) == 0)
        {
            r->method = m->method;
            break;
        }
    }

    return NGX_OK;
}


/* ":path": the request URI as sent upstream, its path and arguments */
static ngx_int_t
ngx_http_proxy_wasm_set_path(ngx_http_request_t *r,
    ngx_proxy_wasm_str_t *value)
{
    u_char     *query, *dst, *src;
    ngx_str_t   unparsed;

    if (value->len == 0 || value->data[0] != '/'
        || ngx_http_proxy_wasm_copy(r, &unparsed, value) != NGX_OK)
    {
        return NGX_ERROR;
    }

    query = ngx_strlchr(unparsed.data, unparsed.data + unparsed.len, '?');

    r->uri.data = ngx_pnalloc(r->pool, unparsed.len);
    if (r->uri.data == NULL) {
        return NGX_ERROR;
    }

    src = unparsed.data;
    dst = r->uri.data;
    ngx_unescape_uri(&dst, &src, (query ? query : unparsed.data + unparsed.len)
                                 - unparsed.data, NGX_UNESCAPE_URI);
    r->uri.len = dst - r->uri.data;

    if (query) {
        r->args.data = query + 1;
        r->args.len = unparsed.data + unparsed.len - query - 1;

    } else {
        ngx_str_null(&r->args);
    }

    r->unparsed_uri = unparsed;
    r->valid_unparsed_uri = 1;

    ngx_http_set_exten(r);

    return NGX_OK;
}


static ngx_proxy_wasm_change_e
ngx_http_proxy_wasm_request_set(ngx_http_request_t *r,
    ngx_proxy_wasm_header_op_e op,
    ngx_str_t *key, ngx_proxy_wasm_str_t *value)
{
    ngx_int_t  rc;
    ngx_str_t  host;

    if (key->len && key->data[0] == ':') {

        if (op == NGX_PROXY_WASM_HEADER_OP_REMOVE) {
            return NGX_PROXY_WASM_CHANGE_READ_ONLY;
        }

        if (key->len == 7 && ngx_strncasecmp(key->data, (u_char *) ":method", 7)
                             == 0)
        {
            rc = ngx_http_proxy_wasm_set_method(r, value);

        } else if (key->len == 5
                   && ngx_strncasecmp(key->data, (u_char *) ":path", 5) == 0)
        {
            rc = ngx_http_proxy_wasm_set_path(r, value);

        } else if (key->len == 10
                   && ngx_strncasecmp(key->data, (u_char *) ":authority", 10)
                      == 0)
        {
            /* a Host entry added keeps its name: in the pool, as others */
            host.len = sizeof("host") - 1;
            host.data = ngx_pstrdup(r->pool, &(ngx_str_t) ngx_string("host"));
            if (host.data == NULL) {
                return NGX_PROXY_WASM_CHANGE_ERROR;
            }

            rc = ngx_http_proxy_wasm_list_set(r, &r->headers_in.headers,
                                              NGX_PROXY_WASM_HEADER_OP_REPLACE,
                                              &host, value, 1);
            if (rc == NGX_OK) {
                rc = ngx_http_proxy_wasm_request_fields(r);
                ngx_http_proxy_wasm_set_server(r);
            }

        } else {
            return NGX_PROXY_WASM_CHANGE_READ_ONLY;
        }

        /* an empty method or a path not starting with "/" is refused */
        return rc == NGX_OK ? NGX_PROXY_WASM_CHANGE_DONE
                            : NGX_PROXY_WASM_CHANGE_READ_ONLY;
    }

    rc = ngx_http_proxy_wasm_list_set(r, &r->headers_in.headers, op, key,
                                      value, 1);

    if (rc == NGX_OK) {
        rc = ngx_http_proxy_wasm_request_fields(r);
    }

    return rc == NGX_OK ? NGX_PROXY_WASM_CHANGE_DONE : NGX_PROXY_WASM_CHANGE_ERROR;
}


/* response headers */


/* the first byte first: most names differ there, without a call */
#define ngx_http_proxy_wasm_is(key, name)                                     \
    ((key)->len == sizeof(name) - 1 && (key)->data[0] == (name)[0]            \
     && ngx_strncmp((key)->data, name, sizeof(name) - 1) == 0)


static ngx_proxy_wasm_change_e
ngx_http_proxy_wasm_set_status(ngx_http_request_t *r,
    ngx_proxy_wasm_header_op_e op,
    ngx_proxy_wasm_str_t *value)
{
    ngx_int_t  n;

    n = ngx_atoi((u_char *) value->data, value->len);

    if (op == NGX_PROXY_WASM_HEADER_OP_REMOVE || n < 100 || n > 999) {
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    }

    r->headers_out.status = n;
    ngx_str_null(&r->headers_out.status_line);

    return NGX_PROXY_WASM_CHANGE_DONE;
}


/* nginx keeps the type in fields only: a list entry would duplicate it */
static ngx_proxy_wasm_change_e
ngx_http_proxy_wasm_set_content_type(ngx_http_request_t *r,
    ngx_proxy_wasm_header_op_e op,
    ngx_proxy_wasm_str_t *value)
{
    ngx_str_t                copy;
    ngx_http_headers_out_t  *ho = &r->headers_out;

    ngx_str_null(&ho->content_type);
    ngx_str_null(&ho->charset);
    ho->content_type_len = 0;
    ho->content_type_lowcase = NULL;
    ho->content_type_hash = 0;

    if (op == NGX_PROXY_WASM_HEADER_OP_REMOVE) {
        return NGX_PROXY_WASM_CHANGE_DONE;
    }

    if (ngx_http_proxy_wasm_copy(r, &copy, value) != NGX_OK) {
        return NGX_PROXY_WASM_CHANGE_ERROR;
    }

    ho->content_type = copy;
    ho->content_type_len = copy.len;

    return NGX_PROXY_WASM_CHANGE_DONE;
}


/* single-valued; the header filter writes it from content_length_n */
static ngx_proxy_wasm_change_e
ngx_http_proxy_wasm_set_content_length(ngx_http_request_t *r,
    ngx_proxy_wasm_header_op_e op,
    ngx_str_t *key, ngx_proxy_wasm_str_t *value)
{
    off_t  n;

    n = -1;

    if (op != NGX_PROXY_WASM_HEADER_OP_REMOVE) {
        n = ngx_atoof((u_char *) value->data, value->len);
        if (n == NGX_ERROR) {
            return NGX_PROXY_WASM_CHANGE_READ_ONLY;
        }
    }

    if (ngx_http_proxy_wasm_list_set(r, &r->headers_out.headers,
                                     NGX_PROXY_WASM_HEADER_OP_REMOVE, key, NULL,
                                     0)
        != NGX_OK)
    {
        return NGX_PROXY_WASM_CHANGE_ERROR;
    }

    r->headers_out.content_length = NULL;
    r->headers_out.content_length_n = n;

    return NGX_PROXY_WASM_CHANGE_DONE;
}


static ngx_proxy_wasm_change_e
ngx_http_proxy_wasm_response_set(ngx_http_request_t *r,
    ngx_proxy_wasm_header_op_e op,
    ngx_str_t *key, ngx_proxy_wasm_str_t *value)
{
    ngx_table_elt_t             **field;
    ngx_http_proxy_wasm_field_t  *f;

    if (ngx_http_proxy_wasm_is(key, ":status")) {
        return ngx_http_proxy_wasm_set_status(r, op, value);
    }

    if (key->len && key->data[0] == ':') {
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    }

    if (ngx_http_proxy_wasm_is(key, "content-type")) {
        return ngx_http_proxy_wasm_set_content_type(r, op, value);
    }

    if (ngx_http_proxy_wasm_is(key, "content-length")) {
        return ngx_http_proxy_wasm_set_content_length(r, op, key, value);
    }

    if (ngx_http_proxy_wasm_list_set(r, &r->headers_out.headers, op, key,
                                     value, 0)
        != NGX_OK)
    {
        return NGX_PROXY_WASM_CHANGE_ERROR;
    }

    for (f = ngx_http_proxy_wasm_out_fields; f->name.len; f++) {
        if (f->name.len == key->len && f->name.data[0] == key->data[0]
            && ngx_strncmp(f->name.data, key->data, key->len) == 0)
        {
            field = (ngx_table_elt_t **) ((u_char *) &r->headers_out
                                          + f->offset);
            *field = ngx_http_proxy_wasm_list_first(&r->headers_out.headers,
                                                    key);
            break;
        }
    }

    if (ngx_http_proxy_wasm_is(key, "last-modified")) {
        field = &r->headers_out.last_modified;
        r->headers_out.last_modified_time = *field
            ? ngx_parse_http_time((*field)->value.data, (*field)->value.len)
            : -1;
    }

    return NGX_PROXY_WASM_CHANGE_DONE;
}


ngx_proxy_wasm_change_e
ngx_http_proxy_wasm_header_set(void *request, ngx_proxy_wasm_header_map_e map,
    ngx_proxy_wasm_header_op_e op, ngx_proxy_wasm_str_t key,
    ngx_proxy_wasm_str_t value)
{
    ngx_http_request_t  *r = request;

    ngx_str_t  name;

    if (ngx_http_proxy_wasm_request_gone(r)) {
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    }

    /* lower-cased, as Envoy names headers; an added entry keeps it */
    name.len = key.len;
    name.data = ngx_pnalloc(r->pool, key.len + 1);
    if (name.data == NULL) {
        return NGX_PROXY_WASM_CHANGE_ERROR;
    }

    ngx_strlow(name.data, (u_char *) key.data, key.len);
    name.data[key.len] = '\0';

    if (map == NGX_PROXY_WASM_HEADER_MAP_REQUEST) {
        return ngx_http_proxy_wasm_request_set(r, op, &name, &value);
    }

    if (map == NGX_PROXY_WASM_HEADER_MAP_RESPONSE_TRAILERS) {
        if (name.len && name.data[0] == ':') {
            return NGX_PROXY_WASM_CHANGE_READ_ONLY;
        }

        return ngx_http_proxy_wasm_list_set(r, &r->headers_out.trailers, op,
                                            &name, &value, 0)
               == NGX_OK ? NGX_PROXY_WASM_CHANGE_DONE : NGX_PROXY_WASM_CHANGE_ERROR;
    }

    return ngx_http_proxy_wasm_response_set(r, op, &name, &value);
}
