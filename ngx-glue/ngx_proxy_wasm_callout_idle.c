/*
 * Connections of HTTP calls kept idle for the next call to the same
 * address (and, over TLS, the same server name), as upstream keepalive
 * does: at most NGX_PROXY_WASM_IDLE_MAX in a worker, closed when the
 * server closes them, after NGX_PROXY_WASM_IDLE_TIMEOUT, or when the
 * worker shuts down.
 */

#include "ngx_proxy_wasm_shim.h"


/* idle connections kept, in all */
#define NGX_PROXY_WASM_IDLE_MAX         64
#define NGX_PROXY_WASM_IDLE_TIMEOUT     60000
/* server names longer than this do not keep their connections */
#define NGX_PROXY_WASM_SNI_MAX          256


typedef struct {
    ngx_queue_t                 queue;
    ngx_connection_t           *connection;
    socklen_t                   socklen;
    u_char                      sockaddr[NGX_SOCKADDRLEN];
    /* a TLS connection, to this server name */
    size_t                      sni_len;
    u_char                      sni[NGX_PROXY_WASM_SNI_MAX];
    unsigned                    tls:1;
} ngx_proxy_wasm_idle_t;


static void ngx_proxy_wasm_idle_handler(ngx_event_t *ev);
static void ngx_proxy_wasm_idle_close(ngx_proxy_wasm_idle_t *idle);


/* this process's idle connections */
static ngx_queue_t  ngx_proxy_wasm_idle;
static ngx_uint_t   ngx_proxy_wasm_nidle;


/* an idle connection to that address (TLS to that server name), or NULL */
ngx_connection_t *
ngx_proxy_wasm_idle_take(struct sockaddr *sa, socklen_t socklen,
    ngx_uint_t tls, ngx_str_t *server_name)
{
    ngx_queue_t            *q;
    ngx_connection_t       *c;
    ngx_proxy_wasm_idle_t  *idle;

    if (ngx_proxy_wasm_idle.next == NULL) {
        return NULL;
    }

    for (q = ngx_queue_head(&ngx_proxy_wasm_idle);
         q != ngx_queue_sentinel(&ngx_proxy_wasm_idle);
         q = ngx_queue_next(q))
    {
        idle = ngx_queue_data(q, ngx_proxy_wasm_idle_t, queue);

        if (idle->socklen != socklen
            || ngx_cmp_sockaddr((struct sockaddr *) idle->sockaddr, socklen,
                                sa, socklen, 1) != NGX_OK
            || idle->tls != tls
            || idle->sni_len != server_name->len
            || ngx_strncmp(idle->sni, server_name->data, idle->sni_len) != 0)
        {
            continue;
        }

        c = idle->connection;
        ngx_queue_remove(q);
        ngx_proxy_wasm_nidle--;
        ngx_free(idle);

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        /* a close noticed meanwhile shows on the call's first read */
        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        return c;
    }

    return NULL;
}


/* keeps a connection a call is done with for the next call there */
void
ngx_proxy_wasm_idle_put(ngx_connection_t *c, struct sockaddr *sa,
    socklen_t socklen, ngx_uint_t tls, ngx_str_t *server_name)
{
    ngx_queue_t            *q;
    ngx_proxy_wasm_idle_t  *idle;

    if (ngx_proxy_wasm_idle.next == NULL) {
        ngx_queue_init(&ngx_proxy_wasm_idle);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ngx_terminate || ngx_exiting || (size_t) socklen > NGX_SOCKADDRLEN
        || server_name->len > NGX_PROXY_WASM_SNI_MAX)
    {
        ngx_proxy_wasm_call_close(c);
        return;
    }

    if (ngx_proxy_wasm_nidle >= NGX_PROXY_WASM_IDLE_MAX) {
        q = ngx_queue_head(&ngx_proxy_wasm_idle);
        ngx_proxy_wasm_idle_close(ngx_queue_data(q, ngx_proxy_wasm_idle_t,
                                                 queue));
    }

    idle = ngx_alloc(sizeof(ngx_proxy_wasm_idle_t), ngx_cycle->log);
    if (idle == NULL) {
        ngx_proxy_wasm_call_close(c);
        return;
    }

    idle->connection = c;
    idle->socklen = socklen;
    ngx_memcpy(idle->sockaddr, sa, socklen);
    idle->tls = tls;
    idle->sni_len = server_name->len;
    ngx_memcpy(idle->sni, server_name->data, server_name->len);
    ngx_queue_insert_tail(&ngx_proxy_wasm_idle, &idle->queue);
    ngx_proxy_wasm_nidle++;

    c->data = idle;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->read->handler = ngx_proxy_wasm_idle_handler;
    c->write->handler = ngx_proxy_wasm_idle_handler;

    ngx_add_timer(c->read, NGX_PROXY_WASM_IDLE_TIMEOUT);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_proxy_wasm_idle_close(idle);
        return;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


/* an idle connection: closed by the server, timed out, or shutting down */
static void
ngx_proxy_wasm_idle_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c = ev->data;
    ngx_proxy_wasm_idle_t  *idle = c->data;

    int      n;
    char     buf[1];

    if (ev->write) {
        return;
    }

    if (!c->close && !ev->timedout) {
        n = recv(c->fd, buf, 1, MSG_PEEK);

        if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
            ev->ready = 0;

            if (ngx_handle_read_event(c->read, 0) == NGX_OK) {
                return;
            }
        }
    }

    ngx_proxy_wasm_idle_close(idle);
}


static void
ngx_proxy_wasm_idle_close(ngx_proxy_wasm_idle_t *idle)
{
    ngx_queue_remove(&idle->queue);
    ngx_proxy_wasm_nidle--;
    ngx_proxy_wasm_call_close(idle->connection);
    ngx_free(idle);
}


/* closes a call's connection: TLS without waiting, and its pool */
void
ngx_proxy_wasm_call_close(ngx_connection_t *c)
{
    ngx_pool_t  *pool = c->pool;

#if (NGX_SSL)
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


/* at worker exit: every idle connection */
void
ngx_proxy_wasm_idle_exit(void)
{
    ngx_queue_t  *q;

    if (ngx_proxy_wasm_idle.next == NULL) {
        return;
    }

    while (!ngx_queue_empty(&ngx_proxy_wasm_idle)) {
        q = ngx_queue_head(&ngx_proxy_wasm_idle);
        ngx_proxy_wasm_idle_close(ngx_queue_data(q, ngx_proxy_wasm_idle_t,
                                                 queue));
    }
}
