/*
 * The transport of HTTP calls (proxy_http_call): a connection on nginx's
 * event loop to a server of an upstream{} block (its round robin, weights,
 * backup servers and failure marks, shared with proxy_pass), "ip:port",
 * "host:port" (nginx's resolver) or "unix:/path", the request's bytes
 * out, the response's bytes in to the Rust library (which speaks HTTP).
 * Connections are kept for the next call to the same address in
 * ngx_proxy_wasm_callout_idle.c.
 *
 * Nothing here calls Rust from inside call_start (which runs inside a
 * guest call): outcomes reach Rust only from event handlers.
 */

#include "ngx_proxy_wasm_shim.h"


#define NGX_PROXY_WASM_CALL_READ_SIZE   16384
/* connect, send and read timeouts, and a call's own by default */
#define NGX_PROXY_WASM_CALL_IO_TIMEOUT  60000




static void ngx_proxy_wasm_call_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_proxy_wasm_call_connect(ngx_proxy_wasm_call_t *call);
static void ngx_proxy_wasm_call_send(ngx_proxy_wasm_call_t *call);
static ngx_int_t ngx_proxy_wasm_call_read(ngx_proxy_wasm_call_t *call);
static void ngx_proxy_wasm_call_report(ngx_event_t *ev);
static void ngx_proxy_wasm_call_timeout(ngx_event_t *ev);
static void ngx_proxy_wasm_call_end(ngx_proxy_wasm_call_t *call, ngx_proxy_wasm_call_end_e why);
static void ngx_proxy_wasm_call_free(ngx_proxy_wasm_call_t *call,
    ngx_uint_t keep);


/* this process's calls */
static ngx_queue_t  ngx_proxy_wasm_calls;


static void
ngx_proxy_wasm_call_queues_init(void)
{
    if (ngx_proxy_wasm_calls.next == NULL) {
        ngx_queue_init(&ngx_proxy_wasm_calls);
    }
}


/* the wasm{} settings of the running configuration */
ngx_proxy_wasm_conf_t *
ngx_proxy_wasm_calls_conf(void)
{
    if (ngx_cycle->conf_ctx == NULL) {
        return NULL;
    }

    return (ngx_proxy_wasm_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                                  ngx_proxy_wasm_module);
}



/* the connection is there: TLS first if it has none yet, then the request */
void
ngx_proxy_wasm_call_ready(ngx_proxy_wasm_call_t *call)
{
#if (NGX_SSL)
    if (call->tls && call->peer.connection->ssl == NULL) {
        ngx_proxy_wasm_call_handshake(call);
        return;
    }
#endif

    ngx_proxy_wasm_call_send(call);
}


void *
ngx_proxy_wasm_call_start(void *request,
    const ngx_proxy_wasm_call_params_t *params, ngx_proxy_wasm_str_t *err)
{
    ngx_http_request_t  *r = request;

    ngx_pool_t                    *pool;
    ngx_msec_t                     timeout;
    ngx_proxy_wasm_conf_t         *wcf;
    ngx_proxy_wasm_call_t         *call;
    ngx_http_upstream_srv_conf_t  *uscf;

    ngx_proxy_wasm_call_queues_init();

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        goto failed;
    }

    call = ngx_pcalloc(pool, sizeof(ngx_proxy_wasm_call_t));
    if (call == NULL) {
        goto failed;
    }

    call->pool = pool;
    call->token = params->token;
    call->log = (r && !ngx_http_proxy_wasm_request_gone(r))
                ? r->connection->log : ngx_cycle->log;
    call->peer.log = call->log;
    call->peer.log_error = NGX_ERROR_ERR;

    wcf = ngx_proxy_wasm_calls_conf();

    if (wcf != NULL && wcf->block) {
        call->connect_timeout = wcf->socket_connect_timeout;
        call->send_timeout = wcf->socket_send_timeout;
        call->read_timeout = wcf->socket_read_timeout;

    } else {
        call->connect_timeout = NGX_PROXY_WASM_CALL_IO_TIMEOUT;
        call->send_timeout = NGX_PROXY_WASM_CALL_IO_TIMEOUT;
        call->read_timeout = NGX_PROXY_WASM_CALL_IO_TIMEOUT;
    }

    call->target.len = params->target.len;
    call->target.data = ngx_pnalloc(pool, params->target.len + 1);
    call->out.len = params->data.len;

    if (params->duplex) {
        /* a channel outlives requests, and its output grows and shrinks */
        call->duplex = 1;
        call->log = ngx_cycle->log;
        call->peer.log = call->log;
        call->out_size = ngx_max(params->data.len, NGX_PROXY_WASM_CALL_READ_SIZE);
        call->out.data = ngx_alloc(call->out_size, ngx_cycle->log);

    } else {
        call->out.data = ngx_pnalloc(pool, params->data.len + 1);
    }

    if (call->target.data == NULL || call->out.data == NULL) {
        if (call->duplex && call->out.data) {
            ngx_free(call->out.data);
        }

        goto failed;
    }

    ngx_memcpy(call->target.data, params->target.data, params->target.len);
    ngx_memcpy(call->out.data, params->data.data, params->data.len);

    if (params->tls) {
#if (NGX_SSL)
        if (ngx_proxy_wasm_tls_conf() == NULL) {
            ngx_str_set(err, "https: no wasm{} TLS settings");
            ngx_destroy_pool(pool);
            return NULL;
        }

        call->tls = 1;
        call->server_name.len = params->server_name.len;
        call->server_name.data = ngx_pnalloc(pool, params->server_name.len + 1);
        if (call->server_name.data == NULL) {
            goto failed;
        }

        ngx_memcpy(call->server_name.data, params->server_name.data,
                   params->server_name.len);
        call->server_name.data[call->server_name.len] = '\0';
#else
        ngx_str_set(err, "https: nginx is built without OpenSSL");
        ngx_destroy_pool(pool);
        return NULL;
#endif
    }

    uscf = ngx_proxy_wasm_call_upstream(&call->target);

    if (uscf != NULL) {
        if (ngx_proxy_wasm_call_balancer(call, uscf) != NGX_OK) {
            goto failed;
        }

        goto start;
    }

    call->url.url = call->target;
    call->url.default_port = 80;
    call->url.no_resolve = 1;

    if (call->target.len == 0
        || ngx_parse_url(pool, &call->url) != NGX_OK
        || call->url.uri.len)
    {
        err->data = (uint8_t *) (call->url.err ? call->url.err
                                               : "not host:port or unix:path");
        err->len = ngx_strlen(err->data);
        ngx_destroy_pool(pool);
        return NULL;
    }

    if (call->url.naddrs == 0) {
        call->resolver = ngx_proxy_wasm_call_resolver(r,
                                                      &call->resolver_timeout);

        if (call->resolver == NULL) {
            ngx_str_set(err, "a host name, and no resolver is configured");
            ngx_destroy_pool(pool);
            return NULL;
        }
    }

start:

    call->deadline.handler = ngx_proxy_wasm_call_timeout;
    call->deadline.data = call;
    call->deadline.log = call->log;
    call->deadline.cancelable = 1;

    call->report.handler = ngx_proxy_wasm_call_report;
    call->report.data = call;
    call->report.log = call->log;

    /* a channel's calls have their own deadlines */
    if (!call->duplex) {
        timeout = params->timeout_ms ? (ngx_msec_t) params->timeout_ms
                                     : NGX_PROXY_WASM_CALL_IO_TIMEOUT;
        ngx_add_timer(&call->deadline, ngx_min(timeout, NGX_MAX_INT32_VALUE));
    }

    ngx_queue_insert_tail(&ngx_proxy_wasm_calls, &call->queue);

    if (call->balancer_get) {
        ngx_proxy_wasm_call_connect(call);
        return call;
    }

    if (call->resolver == NULL) {
        call->peer.sockaddr = call->url.addrs[0].sockaddr;
        call->peer.socklen = call->url.addrs[0].socklen;
        call->peer.name = &call->url.addrs[0].name;
        ngx_proxy_wasm_call_connect(call);
        return call;
    }

    call->resolving = ngx_resolve_start(call->resolver, NULL);

    if (call->resolving == NULL || call->resolving == NGX_NO_RESOLVER) {
        call->resolving = NULL;
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_RESOLVE,
                                 "cannot start resolving");
        return call;
    }

    call->resolving->name = call->url.host;
    call->resolving->handler = ngx_proxy_wasm_call_resolved;
    call->resolving->data = call;
    call->resolving->timeout = call->resolver_timeout;

    if (ngx_resolve_name(call->resolving) != NGX_OK) {
        call->resolving = NULL;
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_RESOLVE,
                                 "cannot resolve");
    }

    return call;

failed:

    if (pool) {
        ngx_destroy_pool(pool);
    }

    ngx_str_set(err, "out of memory");
    return NULL;
}


void
ngx_proxy_wasm_call_cancel(void *call)
{
    ngx_proxy_wasm_call_free(call, 0);
}


/* more bytes for a duplex call: kept until the connection takes them */
int32_t
ngx_proxy_wasm_call_send_more(void *data, ngx_proxy_wasm_str_t more)
{
    ngx_proxy_wasm_call_t  *call = data;

    size_t   left, size;
    u_char  *out;

    if (call->report.posted) {
        /* it failed, and says so from the event loop */
        return -1;
    }

    left = call->out.len - call->sent;

    if (left + more.len > call->out_size) {
        size = ngx_max(call->out_size * 2, left + more.len);
        out = ngx_alloc(size, call->log);

        if (out == NULL) {
            ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_RESET,
                                     "out of memory");
            return -1;
        }

        ngx_memcpy(out, call->out.data + call->sent, left);
        ngx_free(call->out.data);
        call->out.data = out;
        call->out_size = size;

    } else if (call->sent) {
        ngx_memmove(call->out.data, call->out.data + call->sent, left);
    }

    call->sent = 0;
    call->out.len = left;

    ngx_memcpy(call->out.data + call->out.len, more.data, more.len);
    call->out.len += more.len;

    /* a write in progress goes on from the write handler */
    if (call->connected && !call->peer.connection->write->timer_set) {
        ngx_proxy_wasm_call_send(call);
    }

    return call->report.posted ? -1 : 0;
}


static void
ngx_proxy_wasm_call_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_proxy_wasm_call_t  *call = ctx->data;

    size_t            len;
    u_char           *p;
    ngx_str_t        *name;
    struct sockaddr  *sa;

    call->resolving = NULL;

    if (ctx->state || ctx->naddrs == 0) {
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_RESOLVE,
                                 ctx->state ? ngx_resolver_strerror(ctx->state)
                                            : "no address");
        ngx_resolve_name_done(ctx);
        return;
    }

    /* the first address; the context's memory goes with it */
    sa = ngx_palloc(call->pool, ctx->addrs[0].socklen);
    name = ngx_palloc(call->pool, sizeof(ngx_str_t));
    p = ngx_pnalloc(call->pool, NGX_SOCKADDR_STRLEN);

    if (sa == NULL || name == NULL || p == NULL) {
        ngx_resolve_name_done(ctx);
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_REFUSED,
                                 "out of memory");
        return;
    }

    ngx_memcpy(sa, ctx->addrs[0].sockaddr, ctx->addrs[0].socklen);
    call->peer.socklen = ctx->addrs[0].socklen;
    ngx_resolve_name_done(ctx);

    ngx_inet_set_port(sa, call->url.port);
    len = ngx_sock_ntop(sa, call->peer.socklen, p, NGX_SOCKADDR_STRLEN, 1);

    name->data = p;
    name->len = len;
    call->peer.sockaddr = sa;
    call->peer.name = name;

    ngx_proxy_wasm_call_connect(call);
}


/*
 * The server of a balanced call failed before the request went out: the
 * balancer notes it, and the call goes to the next server if one is left.
 */
static ngx_uint_t
ngx_proxy_wasm_call_next(ngx_proxy_wasm_call_t *call)
{
    if (!call->peer_chosen) {
        return 0;
    }

    call->balancer_free(&call->peer, call->balancer_data, NGX_PEER_FAILED);
    call->peer_chosen = 0;

    if (call->peer.connection) {
        ngx_proxy_wasm_call_close(call->peer.connection);
        call->peer.connection = NULL;
    }

    if (call->peer.tries == 0 || call->received) {
        return 0;
    }

    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "http call to \"%V\": server %V failed, trying the next one",
                  &call->target, call->peer.name);

    call->sent = 0;
    ngx_proxy_wasm_call_connect(call);

    return 1;
}


static void
ngx_proxy_wasm_call_connect(ngx_proxy_wasm_call_t *call)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    if (call->balancer_get) {
        rc = call->balancer_get(&call->peer, call->balancer_data);

        if (rc != NGX_OK) {
            ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_REFUSED,
                                     "no live upstreams");
            return;
        }

        call->peer_chosen = 1;
    }

    /* a retry follows a stale idle connection: it takes a fresh one */
    c = (call->retried || call->duplex) ? NULL : ngx_proxy_wasm_idle_take(call->peer.sockaddr,
                                                      call->peer.socklen,
                                                      call->tls,
                                                      &call->server_name);

    if (c != NULL) {
        call->reused = 1;

    } else {
        call->reused = 0;
        call->peer.get = ngx_event_get_peer;
        call->peer.log = call->log;
        call->peer.log_error = NGX_ERROR_ERR;

        rc = ngx_event_connect_peer(&call->peer);

        if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
            if (ngx_proxy_wasm_call_next(call)) {
                return;
            }

            ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_REFUSED,
                                     "cannot connect");
            return;
        }

        c = call->peer.connection;

        if (rc == NGX_AGAIN) {
            c->read->cancelable = 1;
            c->write->cancelable = 1;
            c->data = call;
            c->read->handler = ngx_proxy_wasm_call_read_handler;
            c->write->handler = ngx_proxy_wasm_call_write_handler;
            c->log = call->log;
            c->read->log = call->log;
            c->write->log = call->log;
            ngx_add_timer(c->write,
                          call->connect_timeout);
            return;
        }
    }

    call->peer.connection = c;
    c->data = call;
    c->idle = 0;
    /* a worker shutting down does not wait for a call: exit cancels it */
    c->read->cancelable = 1;
    c->write->cancelable = 1;
    c->log = call->log;
    c->read->log = call->log;
    c->write->log = call->log;
    c->read->handler = ngx_proxy_wasm_call_read_handler;
    c->write->handler = ngx_proxy_wasm_call_write_handler;

    ngx_proxy_wasm_call_send(call);
}


/* whether a connect in progress succeeded */
static ngx_int_t
ngx_proxy_wasm_call_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        (void) ngx_connection_error(c, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_proxy_wasm_call_send(ngx_proxy_wasm_call_t *call)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = call->peer.connection;

    if (call->duplex && !call->connected) {
        /* the server may speak first, and at any time */
        call->connected = 1;

        if (ngx_proxy_wasm_call_read(call) != NGX_OK) {
            return;
        }
    }

    while (call->sent < call->out.len) {
        n = c->send(c, call->out.data + call->sent,
                    call->out.len - call->sent);

        if (n == NGX_ERROR) {
            ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_RESET,
                                     "cannot send the request");
            return;
        }

        if (n == NGX_AGAIN) {
            ngx_add_timer(c->write,
                          call->send_timeout);

            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_RESET,
                                         "cannot send the request");
            }

            return;
        }

        call->sent += n;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (call->duplex) {
        /* an idle channel is not a slow server */
        return;
    }

    ngx_add_timer(c->read, call->read_timeout);

    (void) ngx_proxy_wasm_call_read(call);
}


/* reads what comes from now on; what is waiting already, from the event
 * loop, not from here */
static ngx_int_t
ngx_proxy_wasm_call_read(ngx_proxy_wasm_call_t *call)
{
    ngx_connection_t  *c = call->peer.connection;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_proxy_wasm_call_fail(call, NGX_PROXY_WASM_CALL_END_RESET,
                                 "cannot read from the connection");
        return NGX_ERROR;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }

    return NGX_OK;
}


void
ngx_proxy_wasm_call_write_handler(ngx_event_t *wev)
{
    ngx_connection_t       *c = wev->data;
    ngx_proxy_wasm_call_t  *call = c->data;

    if (wev->timedout) {
        if (call->sent == 0 && ngx_proxy_wasm_call_next(call)) {
            return;
        }

        ngx_proxy_wasm_call_end(call, NGX_PROXY_WASM_CALL_END_TIMEOUT);
        return;
    }

    if (call->sent == 0 && !call->reused
        && ngx_proxy_wasm_call_test_connect(c) != NGX_OK)
    {
        if (ngx_proxy_wasm_call_next(call)) {
            return;
        }

        ngx_proxy_wasm_call_end(call, NGX_PROXY_WASM_CALL_END_REFUSED);
        return;
    }

    if (call->sent < call->out.len) {
        ngx_proxy_wasm_call_ready(call);
    }
}


void
ngx_proxy_wasm_call_read_handler(ngx_event_t *rev)
{
    ngx_connection_t       *c = rev->data;
    ngx_proxy_wasm_call_t  *call = c->data;

    u_char                     buf[NGX_PROXY_WASM_CALL_READ_SIZE];
    ssize_t                    n;
    ngx_proxy_wasm_call_progress_e  rc;
    ngx_proxy_wasm_str_t       data;
    ngx_proxy_wasm_runtime_t  *rt;

    if (rev->timedout) {
        ngx_proxy_wasm_call_end(call, NGX_PROXY_WASM_CALL_END_TIMEOUT);
        return;
    }

    if (call->sent < call->out.len && !call->connected) {
        /* a connect failed, or the server answered early */
        if (!call->reused && ngx_proxy_wasm_call_test_connect(c) != NGX_OK) {
            if (call->sent == 0 && ngx_proxy_wasm_call_next(call)) {
                return;
            }

            ngx_proxy_wasm_call_end(call, NGX_PROXY_WASM_CALL_END_REFUSED);
            return;
        }
    }

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            if (!call->duplex) {
                ngx_add_timer(rev, call->read_timeout);
            }

            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_proxy_wasm_call_end(call, NGX_PROXY_WASM_CALL_END_RESET);
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (call->reused && !call->received && !call->retried) {
                /* the server had closed the idle connection: once more */
                call->retried = 1;
                ngx_proxy_wasm_call_close(c);
                call->peer.connection = NULL;
                call->sent = 0;
                ngx_proxy_wasm_call_connect(call);
                return;
            }

            ngx_proxy_wasm_call_end(call, n == 0 ? NGX_PROXY_WASM_CALL_END_CLOSED
                                                 : NGX_PROXY_WASM_CALL_END_RESET);
            return;
        }

        call->received = 1;

        if (rt == NULL) {
            ngx_proxy_wasm_call_free(call, 0);
            return;
        }

        data.data = buf;
        data.len = n;

        rc = ngx_proxy_wasm_api.call_data(rt, call->token, data);

        switch (rc) {

        case NGX_PROXY_WASM_CALL_PROGRESS_MORE:
            continue;

        case NGX_PROXY_WASM_CALL_PROGRESS_KEEP_ALIVE:
            ngx_proxy_wasm_call_free(call, !call->duplex);
            return;

        default:
            ngx_proxy_wasm_call_free(call, 0);
            return;
        }
    }
}


/* fails the call from the event loop: its caller may be a guest call */
void
ngx_proxy_wasm_call_fail(ngx_proxy_wasm_call_t *call, ngx_proxy_wasm_call_end_e why,
    const char *detail)
{
    call->why = why;
    call->detail.data = (u_char *) detail;
    call->detail.len = ngx_strlen(detail);

    if (!call->report.posted) {
        ngx_post_event(&call->report, &ngx_posted_events);
    }
}


static void
ngx_proxy_wasm_call_report(ngx_event_t *ev)
{
    ngx_proxy_wasm_call_t  *call = ev->data;

    ngx_proxy_wasm_call_end(call, call->why);
}


static void
ngx_proxy_wasm_call_timeout(ngx_event_t *ev)
{
    ngx_proxy_wasm_call_t  *call = ev->data;

    call->detail.len = 0;
    ngx_proxy_wasm_call_end(call, NGX_PROXY_WASM_CALL_END_TIMEOUT);
}


/* tells Rust why the call ended, and frees it */
static void
ngx_proxy_wasm_call_end(ngx_proxy_wasm_call_t *call, ngx_proxy_wasm_call_end_e why)
{
    uint32_t                   token;
    ngx_proxy_wasm_str_t       detail;
    ngx_proxy_wasm_runtime_t  *rt;

    token = call->token;
    call->peer_failed = (why != NGX_PROXY_WASM_CALL_END_CLOSED);

    /* the detail lives in static memory or the call's pool */
    detail.data = call->detail.data;
    detail.len = (why == call->why) ? call->detail.len : 0;

    if (detail.len == 0) {
        detail.data = (uint8_t *) "";
    }

    /* freed first: the guest's callback may start other calls */
    ngx_proxy_wasm_call_free(call, 0);

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    if (rt != NULL) {
        ngx_proxy_wasm_api.call_end(rt, token, why, detail);
    }
}


static void
ngx_proxy_wasm_call_free(ngx_proxy_wasm_call_t *call, ngx_uint_t keep)
{
    ngx_connection_t  *c;

    if (call->deadline.timer_set) {
        ngx_del_timer(&call->deadline);
    }

    if (call->report.posted) {
        ngx_delete_posted_event(&call->report);
    }

    if (call->resolving) {
        ngx_resolve_name_done(call->resolving);
        call->resolving = NULL;
    }

    if (call->peer_chosen) {
        call->balancer_free(&call->peer, call->balancer_data,
                            call->peer_failed ? NGX_PEER_FAILED : 0);
        call->peer_chosen = 0;
    }

    c = call->peer.connection;

    if (c != NULL) {
        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (keep && !c->read->eof && !c->read->error && !c->write->error) {
            ngx_proxy_wasm_idle_put(c, call->peer.sockaddr, call->peer.socklen,
                                    call->tls, &call->server_name);

        } else {
            ngx_proxy_wasm_call_close(c);
        }
    }

    if (call->duplex) {
        ngx_free(call->out.data);
    }

    ngx_queue_remove(&call->queue);
    ngx_destroy_pool(call->pool);
}


/* at worker exit, after the runtime cancelled its calls: what is left */
void
ngx_proxy_wasm_calls_exit(void)
{
    ngx_queue_t  *q;

    if (ngx_proxy_wasm_calls.next == NULL) {
        return;
    }

    while (!ngx_queue_empty(&ngx_proxy_wasm_calls)) {
        q = ngx_queue_head(&ngx_proxy_wasm_calls);
        ngx_proxy_wasm_call_free(ngx_queue_data(q, ngx_proxy_wasm_call_t,
                                                queue), 0);
    }

    ngx_proxy_wasm_idle_exit();
}
