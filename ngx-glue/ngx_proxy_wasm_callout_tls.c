/*
 * HTTP calls over TLS (:scheme https): the handshake on a new connection,
 * with SNI, and the checks of the server's certificate that wasm{}'s
 * tls_verify_cert and tls_verify_host ask for.
 */

#include "ngx_proxy_wasm_shim.h"


#if (NGX_SSL)

/* the wasm{} settings, if they have a TLS context for calls */
ngx_proxy_wasm_conf_t *
ngx_proxy_wasm_tls_conf(void)
{
    ngx_proxy_wasm_conf_t  *wcf;

    wcf = ngx_proxy_wasm_calls_conf();

    return (wcf && wcf->ssl) ? wcf : NULL;
}


static void ngx_proxy_wasm_call_handshaked(ngx_connection_t *c);


/* the TLS handshake, with SNI, on a new connection */
void
ngx_proxy_wasm_call_handshake(ngx_proxy_wasm_call_t *call)
{
    ngx_int_t               rc;
    ngx_connection_t       *c;
    ngx_proxy_wasm_conf_t  *wcf;

    c = call->peer.connection;
    wcf = ngx_proxy_wasm_tls_conf();

    /* the pool outlives the call (a kept connection): not the call's log,
     * which may be its request's */
    if (c->pool == NULL) {
        c->pool = ngx_create_pool(128, ngx_cycle->log);
    }

    if (wcf == NULL || c->pool == NULL
        || ngx_ssl_create_connection(wcf->ssl, c,
                                     NGX_SSL_BUFFER|NGX_SSL_CLIENT)
           != NGX_OK)
    {
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_TLS,
                                 "cannot start TLS");
        return;
    }

#ifdef TLSEXT_TYPE_application_layer_protocol_negotiation
    /* a channel speaks HTTP/2 only */
    if (call->duplex
        && SSL_set_alpn_protos(c->ssl->connection, (u_char *) "\x02h2", 3)
           != 0)
    {
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_TLS,
                                 "cannot offer ALPN h2");
        return;
    }
#endif

#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME
    /* no SNI for an address */
    if (ngx_inet_addr(call->server_name.data, call->server_name.len)
        == INADDR_NONE
        && call->server_name.data[0] != '['
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) call->server_name.data)
           == 0)
    {
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_TLS,
                                 "cannot set the server name");
        return;
    }
#endif

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write,
                          call->connect_timeout);
        }

        c->ssl->handler = ngx_proxy_wasm_call_handshaked;
        return;
    }

    ngx_proxy_wasm_call_handshaked(c);
}


static void
ngx_proxy_wasm_call_handshaked(ngx_connection_t *c)
{
    ngx_proxy_wasm_call_t  *call = c->data;

    long                    rc;
    ngx_proxy_wasm_conf_t  *wcf;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!c->ssl->handshaked) {
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_TLS,
                                 c->write->timedout ? "handshake timed out"
                                                    : "handshake failed");
        return;
    }

    wcf = ngx_proxy_wasm_tls_conf();

    if (wcf && wcf->tls_verify_cert) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_log_error(NGX_LOG_ERR, call->log, 0,
                          "%s to \"%V\": certificate verify error: "
                          "(%l:%s)", call->duplex ? "grpc channel" : "http call",
                          &call->target, rc,
                          X509_verify_cert_error_string(rc));
            ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_TLS,
                                     "certificate verify failed");
            return;
        }

        if (wcf->tls_verify_host
            && ngx_ssl_check_host(c, &call->server_name) != NGX_OK)
        {
            ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_TLS,
                                     "certificate does not match the host");
            return;
        }
    }

#ifdef TLSEXT_TYPE_application_layer_protocol_negotiation
    if (call->duplex) {
        const unsigned char  *alpn;
        unsigned int          len;

        len = 0;
        SSL_get0_alpn_selected(c->ssl->connection, &alpn, &len);

        if (len != 2 || ngx_memcmp(alpn, "h2", 2) != 0) {
            ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_TLS,
                                     "the server did not choose HTTP/2 "
                                     "(ALPN h2)");
            return;
        }
    }
#endif

    c->read->handler = ngx_proxy_wasm_call_read_handler;
    c->write->handler = ngx_proxy_wasm_call_write_handler;

    ngx_proxy_wasm_call_ready(call);
}

#endif
