/*
 * Queue zones (shm_queue): items in a list of the zone's slab pool, and
 * the wakeups that tell a worker that items were credited to it. Who owns
 * a queue, who may use it and which worker gets each item are Rust's,
 * kept in the zone's state.
 *
 * Wakeups: a worker that registered a queue binds a datagram socket named
 * after its pid (Linux abstract namespace); wake sends it one byte, or
 * posts an event when it is this worker. The worker's event loop then
 * calls queues_wakeup. Elsewhere than Linux, workers call it every
 * NGX_PROXY_WASM_QUEUE_POLL ms instead.
 */

#include "ngx_proxy_wasm_shim.h"

#if (NGX_LINUX)
#include <sys/un.h>
#endif


#define NGX_PROXY_WASM_QUEUE_POLL        50


typedef struct {
    ngx_queue_t                  queue;
    size_t                       len;
    u_char                       data[1];
} ngx_proxy_wasm_queue_item_t;


typedef struct {
    ngx_queue_t                  items;
    size_t                       count;
    ngx_proxy_wasm_queue_state_t  state;
} ngx_proxy_wasm_queue_sh_t;


static ngx_int_t ngx_proxy_wasm_queue_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_proxy_wasm_wakeup_handler(ngx_event_t *ev);


/* shm_queue <name> <size> [share=<module>,...|*] */
char *
ngx_proxy_wasm_shm_queue_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t              *value;
    ngx_proxy_wasm_zone_t  *q;

    value = cf->args->elts;

    q = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_zone_t));
    if (q == NULL) {
        return NGX_CONF_ERROR;
    }

    q->kind = NGX_PROXY_WASM_ZONE_QUEUE;
    q->name = value[1];

    if (cf->args->nelts == 4) {
        if (ngx_strncmp(value[3].data, "share=", 6) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", it must be "
                               "\"share=...\"", &value[3]);
            return NGX_CONF_ERROR;
        }

        if (ngx_proxy_wasm_zone_share(cf, &value[3], q) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_proxy_wasm_zone_add(cf, q, &value[2],
                                ngx_proxy_wasm_queue_init_zone)
        == NULL)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_proxy_wasm_queue_init_sh(void *data)
{
    ngx_proxy_wasm_queue_sh_t  *sh = data;

    ngx_queue_init(&sh->items);
}


static ngx_int_t
ngx_proxy_wasm_queue_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    return ngx_proxy_wasm_zone_init(shm_zone, data, "queue",
                                    sizeof(ngx_proxy_wasm_queue_sh_t),
                                    ngx_proxy_wasm_queue_init_sh);
}


static ngx_proxy_wasm_queue_sh_t *
ngx_proxy_wasm_queue_sh(void *zone)
{
    return ((ngx_proxy_wasm_zone_t *) zone)->sh;
}


/* items waiting in a queue; read without the lock: a gauge */
size_t
ngx_proxy_wasm_queue_items(ngx_proxy_wasm_zone_t *zone)
{
    return ngx_proxy_wasm_queue_sh(zone)->count;
}


ngx_proxy_wasm_queue_state_t *
ngx_proxy_wasm_queue_state(void *zone)
{
    return &ngx_proxy_wasm_queue_sh(zone)->state;
}


ngx_proxy_wasm_store_e
ngx_proxy_wasm_queue_push(void *zone, ngx_proxy_wasm_str_t value)
{
    ngx_proxy_wasm_zone_t  *q = zone;

    ngx_proxy_wasm_queue_sh_t    *sh;
    ngx_proxy_wasm_queue_item_t  *item;

    sh = q->sh;

    item = ngx_slab_alloc_locked(q->shpool,
                                 offsetof(ngx_proxy_wasm_queue_item_t, data)
                                 + value.len);
    if (item == NULL) {
        return NGX_PROXY_WASM_STORE_FULL;
    }

    item->len = value.len;
    ngx_memcpy(item->data, value.data, value.len);
    ngx_queue_insert_tail(&sh->items, &item->queue);
    sh->count++;

    return NGX_PROXY_WASM_STORE_DONE;
}


ngx_proxy_wasm_lookup_e
ngx_proxy_wasm_queue_peek(void *zone, ngx_proxy_wasm_str_t *value)
{
    ngx_proxy_wasm_queue_sh_t    *sh;
    ngx_proxy_wasm_queue_item_t  *item;

    sh = ngx_proxy_wasm_queue_sh(zone);

    if (ngx_queue_empty(&sh->items)) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    item = ngx_queue_data(ngx_queue_head(&sh->items),
                          ngx_proxy_wasm_queue_item_t, queue);

    value->data = item->data;
    value->len = item->len;

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


void
ngx_proxy_wasm_queue_drop(void *zone)
{
    ngx_proxy_wasm_zone_t  *q = zone;

    ngx_queue_t                *head;
    ngx_proxy_wasm_queue_sh_t  *sh;

    sh = q->sh;

    if (ngx_queue_empty(&sh->items)) {
        return;
    }

    head = ngx_queue_head(&sh->items);
    ngx_queue_remove(head);
    ngx_slab_free_locked(q->shpool,
                         ngx_queue_data(head, ngx_proxy_wasm_queue_item_t,
                                        queue));
    sh->count--;
}


size_t
ngx_proxy_wasm_queue_len(void *zone)
{
    return ngx_proxy_wasm_queue_sh(zone)->count;
}


/* ---- wakeups ---- */


/* this worker's wakeup: a socket (Linux) or a poll timer, and a posted
 * event for items this worker enqueued for itself */
static ngx_connection_t  *ngx_proxy_wasm_wakeup_conn;
/* what a worker that registered no queue sends wakeups with */
static ngx_socket_t       ngx_proxy_wasm_wakeup_sender = (ngx_socket_t) -1;
static ngx_event_t        ngx_proxy_wasm_wakeup_posted;
static ngx_event_t        ngx_proxy_wasm_wakeup_poll;
static ngx_uint_t         ngx_proxy_wasm_wakeup_ready;


int64_t
ngx_proxy_wasm_worker_pid(void)
{
    return (int64_t) ngx_pid;
}


#if (NGX_LINUX)

/* "\0ngx_proxy_wasm <pid>": the abstract name of a worker's socket */
static socklen_t
ngx_proxy_wasm_wakeup_addr(struct sockaddr_un *sun, ngx_pid_t pid)
{
    u_char  *p;

    ngx_memzero(sun, sizeof(struct sockaddr_un));
    sun->sun_family = AF_UNIX;

    p = ngx_snprintf((u_char *) sun->sun_path + 1,
                     sizeof(sun->sun_path) - 1, "ngx_proxy_wasm %P", pid);

    return offsetof(struct sockaddr_un, sun_path)
           + (p - (u_char *) sun->sun_path);
}

#endif


int32_t
ngx_proxy_wasm_wakeup_listen(void)
{
#if (NGX_LINUX)
    ngx_socket_t         s;
    socklen_t            len;
    ngx_connection_t    *c;
    struct sockaddr_un   sun;
#endif

    if (ngx_proxy_wasm_wakeup_ready) {
        return 0;
    }

    ngx_proxy_wasm_wakeup_posted.handler = ngx_proxy_wasm_wakeup_handler;
    ngx_proxy_wasm_wakeup_posted.log = ngx_cycle->log;

#if (NGX_LINUX)

    s = socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_socket_errno,
                      "proxy_wasm: socket() for queue wakeups failed");
        return -1;
    }

    len = ngx_proxy_wasm_wakeup_addr(&sun, ngx_pid);

    if (bind(s, (struct sockaddr *) &sun, len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_socket_errno,
                      "proxy_wasm: bind() of the queue wakeup socket failed");
        ngx_close_socket(s);
        return -1;
    }

    c = ngx_get_connection(s, ngx_cycle->log);
    if (c == NULL) {
        ngx_close_socket(s);
        return -1;
    }

    /* a worker that starts shutting down closes it (and leaves its
     * queues) with its other idle connections */
    c->idle = 1;
    c->read->handler = ngx_proxy_wasm_wakeup_handler;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_close_connection(c);
        return -1;
    }

    ngx_proxy_wasm_wakeup_conn = c;

#else

    ngx_proxy_wasm_wakeup_poll.handler = ngx_proxy_wasm_wakeup_handler;
    ngx_proxy_wasm_wakeup_poll.log = ngx_cycle->log;
    ngx_proxy_wasm_wakeup_poll.cancelable = 1;
    ngx_add_timer(&ngx_proxy_wasm_wakeup_poll, NGX_PROXY_WASM_QUEUE_POLL);

#endif

    ngx_proxy_wasm_wakeup_ready = 1;

    return 0;
}


/*
 * Wakes this worker at its event loop's next turn: a filter that enqueues
 * from on_queue_ready cannot keep it from its other events.
 */
static void
ngx_proxy_wasm_wakeup_post(void)
{
    if (ngx_proxy_wasm_wakeup_ready && !ngx_proxy_wasm_wakeup_posted.posted) {
        ngx_post_event(&ngx_proxy_wasm_wakeup_posted, &ngx_posted_next_events);
    }
}


ngx_proxy_wasm_wake_e
ngx_proxy_wasm_wake(int64_t pid, ngx_proxy_wasm_str_t queue)
{
#if (NGX_LINUX)
    u_char              byte;
    socklen_t           len;
    ngx_err_t           err;
    ngx_socket_t        s;
    struct sockaddr_un  sun;
#endif

    if (pid == (int64_t) ngx_pid) {
        ngx_proxy_wasm_wakeup_post();
        return NGX_PROXY_WASM_WAKE_SENT;
    }

#if (NGX_LINUX)

    /* a worker that registered no queue sends from a socket of its own */
    if (ngx_proxy_wasm_wakeup_conn) {
        s = ngx_proxy_wasm_wakeup_conn->fd;

    } else {
        if (ngx_proxy_wasm_wakeup_sender == (ngx_socket_t) -1) {
            ngx_proxy_wasm_wakeup_sender = socket(AF_UNIX,
                                    SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
            if (ngx_proxy_wasm_wakeup_sender == (ngx_socket_t) -1) {
                err = ngx_socket_errno;
                goto failed;
            }
        }

        s = ngx_proxy_wasm_wakeup_sender;
    }

    len = ngx_proxy_wasm_wakeup_addr(&sun, (ngx_pid_t) pid);
    byte = 1;

    if (sendto(s, &byte, 1, 0, (struct sockaddr *) &sun, len) == 1) {
        return NGX_PROXY_WASM_WAKE_SENT;
    }

    err = ngx_socket_errno;

    /* a full socket holds wakeups its worker has not read: it will look */
    if (err == NGX_EAGAIN) {
        return NGX_PROXY_WASM_WAKE_SENT;
    }

    /* no such socket: the worker is gone without leaving */
    if (err == NGX_ECONNREFUSED || err == NGX_ENOENT) {
        return NGX_PROXY_WASM_WAKE_GONE;
    }

failed:

    /* the items wait for the worker's next wakeup */
    ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, err,
                  "proxy_wasm: cannot wake worker %P for queue \"%*s\"",
                  (ngx_pid_t) pid, queue.len, queue.data);

    return NGX_PROXY_WASM_WAKE_FAILED;

#else

    /* other workers look at their credits on their own */
    return NGX_PROXY_WASM_WAKE_SENT;

#endif
}


static void
ngx_proxy_wasm_wakeup_handler(ngx_event_t *ev)
{
    ngx_proxy_wasm_runtime_t  *rt;
#if (NGX_LINUX)
    u_char                     buf[64];
    ngx_connection_t          *c;

    c = ngx_proxy_wasm_wakeup_conn;

    if (c && ev == c->read) {
        if (c->close) {
            ngx_proxy_wasm_queues_exit();
            return;
        }

        while (recv(c->fd, buf, sizeof(buf), 0) > 0) { /* drain */ }

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "proxy_wasm: cannot wait for queue wakeups");
        }
    }
#else
    if (ev == &ngx_proxy_wasm_wakeup_poll) {
        ngx_add_timer(ev, NGX_PROXY_WASM_QUEUE_POLL);
    }
#endif

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    if (rt != NULL && ngx_proxy_wasm_api.queues_wakeup(rt)) {
        ngx_proxy_wasm_wakeup_post();
    }
}


/*
 * The worker leaves its queues (at exit, or when it starts shutting
 * down): items credited to it go to other workers.
 */
void
ngx_proxy_wasm_queues_exit(void)
{
    ngx_proxy_wasm_runtime_t  *rt;

    if (ngx_proxy_wasm_wakeup_ready) {
        rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

        if (rt != NULL) {
            ngx_proxy_wasm_api.queues_leave(rt);
        }
    }

    if (ngx_proxy_wasm_wakeup_sender != (ngx_socket_t) -1) {
        ngx_close_socket(ngx_proxy_wasm_wakeup_sender);
        ngx_proxy_wasm_wakeup_sender = (ngx_socket_t) -1;
    }

    if (!ngx_proxy_wasm_wakeup_ready) {
        return;
    }

    ngx_proxy_wasm_wakeup_ready = 0;

    if (ngx_proxy_wasm_wakeup_posted.posted) {
        ngx_delete_posted_event(&ngx_proxy_wasm_wakeup_posted);
    }

    if (ngx_proxy_wasm_wakeup_poll.timer_set) {
        ngx_del_timer(&ngx_proxy_wasm_wakeup_poll);
    }

    if (ngx_proxy_wasm_wakeup_conn) {
        ngx_close_connection(ngx_proxy_wasm_wakeup_conn);
        ngx_proxy_wasm_wakeup_conn = NULL;
    }
}
