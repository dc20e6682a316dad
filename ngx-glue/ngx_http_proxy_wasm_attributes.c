/*
 * The facts of a request and its connection behind Envoy's attributes
 * (attribute_get): times, sizes, addresses, TLS and certificates, the
 * upstream. Which attribute a property path names is Rust's; an attribute
 * with no value now (no TLS, no upstream yet) is ABSENT.
 */

#include "ngx_proxy_wasm_shim.h"


void
ngx_proxy_wasm_value_int(ngx_proxy_wasm_value_t *value, int64_t n)
{
    value->kind = NGX_PROXY_WASM_VALUE_INT;
    value->integer = n;
}


void
ngx_proxy_wasm_value_bool(ngx_proxy_wasm_value_t *value, ngx_uint_t b)
{
    value->kind = NGX_PROXY_WASM_VALUE_BOOL;
    value->integer = b ? 1 : 0;
}


void
ngx_proxy_wasm_value_str(ngx_proxy_wasm_value_t *value, u_char *data,
    size_t len)
{
    value->kind = NGX_PROXY_WASM_VALUE_STRING;
    value->string.data = data;
    value->string.len = len;
}


/* "ip:port" ("[ip6]:port"; a unix socket's path) */
ngx_proxy_wasm_lookup_e
ngx_proxy_wasm_address(ngx_pool_t *pool, struct sockaddr *sa,
    socklen_t socklen, ngx_proxy_wasm_value_t *value)
{
    u_char  *p;
    size_t   len;

    if (sa == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    p = ngx_pnalloc(pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    len = ngx_sock_ntop(sa, socklen, p, NGX_SOCKADDR_STRLEN, 1);

#if (NGX_HAVE_UNIX_DOMAIN)
    if (sa->sa_family == AF_UNIX && len > 5) {
        /* "unix:/path": Envoy names a pipe by its path */
        p += 5;
        len -= 5;
    }
#endif

    ngx_proxy_wasm_value_str(value, p, len);

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


ngx_proxy_wasm_lookup_e
ngx_proxy_wasm_port(struct sockaddr *sa, ngx_proxy_wasm_value_t *value)
{
    if (sa == NULL
        || (sa->sa_family != AF_INET
#if (NGX_HAVE_INET6)
            && sa->sa_family != AF_INET6
#endif
        ))
    {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    ngx_proxy_wasm_value_int(value, ngx_inet_get_port(sa));

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


/*
 * The facts of a connection's ends (source.*, destination.*,
 * connection.id), for requests and stream{} sessions; strings in "pool".
 */
ngx_proxy_wasm_lookup_e
ngx_proxy_wasm_endpoint(ngx_pool_t *pool, ngx_connection_t *c,
    ngx_proxy_wasm_attribute_e attribute, ngx_proxy_wasm_value_t *value)
{
    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_SOURCE_ADDRESS:
        return ngx_proxy_wasm_address(pool, c->sockaddr, c->socklen, value);

    case NGX_PROXY_WASM_ATTR_SOURCE_PORT:
        return ngx_proxy_wasm_port(c->sockaddr, value);

    case NGX_PROXY_WASM_ATTR_DESTINATION_ADDRESS:
    case NGX_PROXY_WASM_ATTR_DESTINATION_PORT:
        if (ngx_connection_local_sockaddr(c, NULL, 0) != NGX_OK) {
            return NGX_PROXY_WASM_LOOKUP_ERROR;
        }

        if (attribute == NGX_PROXY_WASM_ATTR_DESTINATION_PORT) {
            return ngx_proxy_wasm_port(c->local_sockaddr, value);
        }

        return ngx_proxy_wasm_address(pool, c->local_sockaddr,
                                      c->local_socklen, value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_ID:
        ngx_proxy_wasm_value_int(value, (int64_t) c->number);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    default:
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }
}


static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_protocol(ngx_http_request_t *r,
    ngx_proxy_wasm_value_t *value)
{
    ngx_str_t  s;

    switch (r->http_version) {
    case NGX_HTTP_VERSION_9:
        ngx_str_set(&s, "HTTP/0.9");
        break;
    case NGX_HTTP_VERSION_10:
        ngx_str_set(&s, "HTTP/1.0");
        break;
    case NGX_HTTP_VERSION_11:
        ngx_str_set(&s, "HTTP/1.1");
        break;
    case NGX_HTTP_VERSION_20:
        ngx_str_set(&s, "HTTP/2");
        break;
#ifdef NGX_HTTP_VERSION_30
    case NGX_HTTP_VERSION_30:
        ngx_str_set(&s, "HTTP/3");
        break;
#endif
    default:
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    ngx_proxy_wasm_value_str(value, s.data, s.len);

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


/* an attribute that is an nginx variable's value ("request_id", ...) */
static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_variable_value(ngx_http_request_t *r, const char *name,
    ngx_proxy_wasm_value_t *value)
{
    ngx_proxy_wasm_str_t       var, v;
    ngx_proxy_wasm_variable_e  rc;

    var.data = (const uint8_t *) name;
    var.len = ngx_strlen(name);

    rc = ngx_http_proxy_wasm_variable_get(r, var, &v);
    if (rc != NGX_PROXY_WASM_VARIABLE_FOUND) {
        return rc == NGX_PROXY_WASM_VARIABLE_ERROR
               ? NGX_PROXY_WASM_LOOKUP_ERROR : NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    ngx_proxy_wasm_value_str(value, (u_char *) v.data, v.len);

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


#if (NGX_HTTP_SSL)

static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_copy_bio(ngx_http_request_t *r, BIO *bio,
    ngx_proxy_wasm_value_t *value)
{
    u_char  *p;
    size_t   len;

    len = BIO_pending(bio);

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    if (len && BIO_read(bio, p, (int) len) != (int) len) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    ngx_proxy_wasm_value_str(value, p, len);

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


/* the subject in RFC 2253 form, as Envoy gives it; "" without a certificate */
static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_subject(ngx_http_request_t *r, X509 *cert,
    ngx_proxy_wasm_value_t *value)
{
    BIO       *bio;
    ngx_proxy_wasm_lookup_e rc;

    if (cert == NULL) {
        ngx_proxy_wasm_value_str(value, (u_char *) "", 0);
        return NGX_PROXY_WASM_LOOKUP_FOUND;
    }

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0,
                           XN_FLAG_RFC2253) < 0)
    {
        BIO_free(bio);
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    rc = ngx_http_proxy_wasm_copy_bio(r, bio, value);
    BIO_free(bio);

    return rc;
}


/* the first subject alternative name of a type (GEN_DNS, GEN_URI) */
static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_san(ngx_http_request_t *r, X509 *cert, int type,
    ngx_proxy_wasm_value_t *value)
{
    int               i, n;
    u_char           *p;
    ngx_proxy_wasm_lookup_e rc;
    GENERAL_NAME     *name;
    GENERAL_NAMES    *names;
    ASN1_IA5STRING   *s;

    if (cert == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    rc = NGX_PROXY_WASM_LOOKUP_ABSENT;
    n = sk_GENERAL_NAME_num(names);

    for (i = 0; i < n; i++) {
        name = sk_GENERAL_NAME_value(names, i);

        if (name->type != type) {
            continue;
        }

        s = (type == GEN_DNS) ? name->d.dNSName
                              : name->d.uniformResourceIdentifier;

        p = ngx_pnalloc(r->pool, ASN1_STRING_length(s) + 1);
        if (p == NULL) {
            rc = NGX_PROXY_WASM_LOOKUP_ERROR;
            break;
        }

        ngx_memcpy(p, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
        ngx_proxy_wasm_value_str(value, p, ASN1_STRING_length(s));
        rc = NGX_PROXY_WASM_LOOKUP_FOUND;
        break;
    }

    GENERAL_NAMES_free(names);

    return rc;
}


static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_sha256(ngx_http_request_t *r, X509 *cert,
    ngx_proxy_wasm_value_t *value)
{
    u_char        *p;
    u_char         md[EVP_MAX_MD_SIZE];
    unsigned int   n;

    if (cert == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    if (X509_digest(cert, EVP_sha256(), md, &n) == 0) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    p = ngx_pnalloc(r->pool, 2 * n);
    if (p == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    ngx_hex_dump(p, md, n);
    ngx_proxy_wasm_value_str(value, p, 2 * n);

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_tls(ngx_http_request_t *r, ngx_proxy_wasm_attribute_e attribute,
    ngx_proxy_wasm_value_t *value)
{
    SSL         *ssl;
    X509        *peer;
    ngx_proxy_wasm_lookup_e rc;
    const char  *s;

    if (r->connection->ssl == NULL) {
        switch (attribute) {
        case NGX_PROXY_WASM_ATTR_CONNECTION_MTLS:
            ngx_proxy_wasm_value_bool(value, 0);
            return NGX_PROXY_WASM_LOOKUP_FOUND;
        case NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME:
            ngx_proxy_wasm_value_str(value, (u_char *) "", 0);
            return NGX_PROXY_WASM_LOOKUP_FOUND;
        default:
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }
    }

    ssl = r->connection->ssl->connection;

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME:
#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME
        s = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
#else
        s = NULL;
#endif
        s = s ? s : "";
        ngx_proxy_wasm_value_str(value, (u_char *) s, ngx_strlen(s));
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_CONNECTION_TLS_VERSION:
        s = SSL_get_version(ssl);
        ngx_proxy_wasm_value_str(value, (u_char *) s, ngx_strlen(s));
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_LOCAL_CERTIFICATE:
        return ngx_http_proxy_wasm_subject(r, SSL_get_certificate(ssl), value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_LOCAL_CERTIFICATE:
        return ngx_http_proxy_wasm_san(r, SSL_get_certificate(ssl), GEN_DNS,
                                       value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_LOCAL_CERTIFICATE:
        return ngx_http_proxy_wasm_san(r, SSL_get_certificate(ssl), GEN_URI,
                                       value);

    default:
        /* one of the peer's certificate */
        break;
    }

    /* the peer's certificate: a reference to drop */
    peer = SSL_get_peer_certificate(ssl);

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_CONNECTION_MTLS:
        ngx_proxy_wasm_value_bool(value, peer != NULL);
        rc = NGX_PROXY_WASM_LOOKUP_FOUND;
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE:
        rc = ngx_http_proxy_wasm_subject(r, peer, value);
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST:
        rc = ngx_http_proxy_wasm_sha256(r, peer, value);
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE:
        rc = ngx_http_proxy_wasm_san(r, peer, GEN_DNS, value);
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE:
        rc = ngx_http_proxy_wasm_san(r, peer, GEN_URI, value);
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_PEER_CERTIFICATE:
        /* Envoy's URL-encoded PEM */
        rc = peer ? ngx_http_proxy_wasm_variable_value(r,
                                                  "ssl_client_escaped_cert",
                                                  value)
                  : NGX_PROXY_WASM_LOOKUP_ABSENT;
        break;

    default:
        rc = NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    if (peer) {
        X509_free(peer);
    }

    return rc;
}

#endif


/*
 * Envoy's time from the first byte to the upstream to its last one back:
 * $upstream_response_time of the last server tried, once it answered.
 */
static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_backend_latency(ngx_http_request_t *r,
    ngx_proxy_wasm_value_t *value)
{
    ngx_http_upstream_state_t  *state;

    if (r->upstream_states == NULL || r->upstream_states->nelts == 0) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    state = r->upstream_states->elts;
    state = &state[r->upstream_states->nelts - 1];

    if (state->response_time == (ngx_msec_t) -1) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    ngx_proxy_wasm_value_int(value,
                                  (int64_t) state->response_time * 1000000);

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


static ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_upstream(ngx_http_request_t *r, ngx_proxy_wasm_attribute_e attribute,
    ngx_proxy_wasm_value_t *value)
{
    const char            *s;
    ngx_http_upstream_t   *u;

    if (attribute == NGX_PROXY_WASM_ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT) {
        /* one state per upstream server tried */
        ngx_proxy_wasm_value_int(value, r->upstream_states
                                             ? r->upstream_states->nelts : 0);
        return NGX_PROXY_WASM_LOOKUP_FOUND;
    }

    u = r->upstream;

    if (u == NULL || u->peer.sockaddr == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_UPSTREAM_ADDRESS:
        return ngx_proxy_wasm_address(r->pool, u->peer.sockaddr,
                                           u->peer.socklen, value);

    case NGX_PROXY_WASM_ATTR_UPSTREAM_PORT:
        return ngx_proxy_wasm_port(u->peer.sockaddr, value);

    case NGX_PROXY_WASM_ATTR_UPSTREAM_TLS_VERSION:
#if (NGX_HTTP_SSL)
        if (u->peer.connection && u->peer.connection->ssl) {
            s = SSL_get_version(u->peer.connection->ssl->connection);
            ngx_proxy_wasm_value_str(value, (u_char *) s, ngx_strlen(s));
            return NGX_PROXY_WASM_LOOKUP_FOUND;
        }
#endif
        (void) s;
        return NGX_PROXY_WASM_LOOKUP_ABSENT;

    default:
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }
}


ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_attribute_get(void *request,
    ngx_proxy_wasm_attribute_e attribute, ngx_proxy_wasm_value_t *value)
{
    ngx_http_request_t  *r = request;

    off_t              sent;
    ngx_msec_int_t     ms;
    ngx_time_t        *tp;
    ngx_connection_t  *c;

    if (r == NULL || ngx_http_proxy_wasm_request_gone(r)) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    c = r->connection;

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_REQUEST_TIME:
        ngx_proxy_wasm_value_int(value,
                                      (int64_t) r->start_sec * 1000000000
                                      + (int64_t) r->start_msec * 1000000);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_REQUEST_DURATION:
        tp = ngx_timeofday();
        ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                               + (tp->msec - r->start_msec));
        ngx_proxy_wasm_value_int(value, (int64_t) ngx_max(ms, 0)
                                             * 1000000);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_REQUEST_PROTOCOL:
        return ngx_http_proxy_wasm_protocol(r, value);

    case NGX_PROXY_WASM_ATTR_REQUEST_SIZE:
        if (r->headers_in.content_length_n >= 0) {
            ngx_proxy_wasm_value_int(value,
                                          r->headers_in.content_length_n);

        } else {
            ngx_proxy_wasm_value_int(value, r->request_body
                                          ? r->request_body->received : 0);
        }

        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_REQUEST_TOTAL_SIZE:
        ngx_proxy_wasm_value_int(value, r->request_length);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_REQUEST_ID:
        return ngx_http_proxy_wasm_variable_value(r, "request_id", value);

    case NGX_PROXY_WASM_ATTR_RESPONSE_CODE:
        if (r->headers_out.status == 0) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        ngx_proxy_wasm_value_int(value, r->headers_out.status);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_RESPONSE_CODE_DETAILS:
        if (r->headers_out.status == 0) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        if (r->upstream && r->upstream->headers_in.status_n) {
            ngx_proxy_wasm_value_str(value, (u_char *) "via_upstream",
                                          sizeof("via_upstream") - 1);

        } else {
            ngx_proxy_wasm_value_str(value, (u_char *) "direct_response",
                                          sizeof("direct_response") - 1);
        }

        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_RESPONSE_SIZE:
        sent = c->sent - r->header_size;
        ngx_proxy_wasm_value_int(value, ngx_max(sent, 0));
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_RESPONSE_TOTAL_SIZE:
        ngx_proxy_wasm_value_int(value, c->sent);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_RESPONSE_BACKEND_LATENCY:
        return ngx_http_proxy_wasm_backend_latency(r, value);

    case NGX_PROXY_WASM_ATTR_SOURCE_ADDRESS:
    case NGX_PROXY_WASM_ATTR_SOURCE_PORT:
    case NGX_PROXY_WASM_ATTR_DESTINATION_ADDRESS:
    case NGX_PROXY_WASM_ATTR_DESTINATION_PORT:
    case NGX_PROXY_WASM_ATTR_CONNECTION_ID:
        return ngx_proxy_wasm_endpoint(r->pool, c, attribute, value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_MTLS:
    case NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME:
    case NGX_PROXY_WASM_ATTR_CONNECTION_TLS_VERSION:
    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_LOCAL_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST:
    case NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_LOCAL_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_LOCAL_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_PEER_CERTIFICATE:
#if (NGX_HTTP_SSL)
        return ngx_http_proxy_wasm_tls(r, attribute, value);
#else
        if (attribute == NGX_PROXY_WASM_ATTR_CONNECTION_MTLS) {
            ngx_proxy_wasm_value_bool(value, 0);
            return NGX_PROXY_WASM_LOOKUP_FOUND;
        }

        return NGX_PROXY_WASM_LOOKUP_ABSENT;
#endif

    case NGX_PROXY_WASM_ATTR_UPSTREAM_ADDRESS:
    case NGX_PROXY_WASM_ATTR_UPSTREAM_PORT:
    case NGX_PROXY_WASM_ATTR_UPSTREAM_TLS_VERSION:
    case NGX_PROXY_WASM_ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT:
        return ngx_http_proxy_wasm_upstream(r, attribute, value);
    }

    return NGX_PROXY_WASM_LOOKUP_ABSENT;
}
