/*
 * Where an HTTP call goes: an upstream{} block (its round robin, weights,
 * backup servers and failure marks, shared with proxy_pass), or a name
 * resolved by the resolver of the request's location, of wasm{} or of
 * http{}.
 */

#include "ngx_proxy_wasm_shim.h"


/* an upstream{} block of that name */
ngx_http_upstream_srv_conf_t *
ngx_proxy_wasm_call_upstream(ngx_str_t *name)
{
    ngx_uint_t                       i;
    ngx_http_conf_ctx_t             *http;
    ngx_http_upstream_srv_conf_t   **uscfp;
    ngx_http_upstream_main_conf_t   *umcf;

    http = ngx_http_proxy_wasm_http_conf();
    if (http == NULL) {
        return NULL;
    }

    umcf = http->main_conf[ngx_http_upstream_module.ctx_index];
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        /* blocks only: proxy_pass makes implicit ones, without srv_conf */
        if (uscfp[i]->srv_conf != NULL && uscfp[i]->peer.data != NULL
            && uscfp[i]->host.len == name->len
            && ngx_strncasecmp(uscfp[i]->host.data, name->data, name->len)
               == 0)
        {
            return uscfp[i];
        }
    }

    return NULL;
}


/* the block's round robin, as proxy_pass uses it */
ngx_int_t
ngx_proxy_wasm_call_balancer(ngx_proxy_wasm_call_t *call,
    ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_http_request_t   *r;
    ngx_http_upstream_t  *u;

    /* what the round robin takes from a request: its pool and upstream */
    r = ngx_pcalloc(call->pool, sizeof(ngx_http_request_t));
    u = ngx_pcalloc(call->pool, sizeof(ngx_http_upstream_t));
    if (r == NULL || u == NULL) {
        return NGX_ERROR;
    }

    r->pool = call->pool;
    r->upstream = u;

    if (ngx_http_upstream_init_round_robin_peer(r, uscf) != NGX_OK) {
        return NGX_ERROR;
    }

    call->balancer_get = u->peer.get;
    call->balancer_free = u->peer.free;
    call->balancer_data = u->peer.data;
    call->peer.tries = u->peer.tries;

    return NGX_OK;
}


/*
 * The resolver of a call: the request's location's; outside requests the
 * wasm{} block's, else http{}'s.
 */
ngx_resolver_t *
ngx_proxy_wasm_call_resolver(ngx_http_request_t *r, ngx_msec_t *timeout)
{
    ngx_http_conf_ctx_t       *http;
    ngx_proxy_wasm_conf_t     *wcf;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = NULL;

    if (r != NULL && !ngx_http_proxy_wasm_request_gone(r)) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    } else {
        wcf = ngx_proxy_wasm_calls_conf();

        if (wcf != NULL && wcf->resolver != NULL) {
            *timeout = wcf->resolver_timeout;
            return wcf->resolver;
        }

        http = ngx_http_proxy_wasm_http_conf();
        if (http != NULL) {
            clcf = http->loc_conf[ngx_http_core_module.ctx_index];
        }
    }

    if (clcf == NULL || clcf->resolver == NULL
        || clcf->resolver->connections.nelts == 0)
    {
        return NULL;
    }

    *timeout = clcf->resolver_timeout;

    return clcf->resolver;
}
