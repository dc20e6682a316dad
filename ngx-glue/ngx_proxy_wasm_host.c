/*
 * The functions the Rust library calls to reach nginx (see
 * ngx_proxy_wasm_host_t).
 */

#include "ngx_proxy_wasm_shim.h"


const ngx_proxy_wasm_api_t  *ngx_proxy_wasm_library = &ngx_proxy_wasm_api;

const ngx_proxy_wasm_stream_host_t  *ngx_proxy_wasm_stream_host;


static ngx_log_t *
ngx_proxy_wasm_log_of(void *request)
{
    ngx_http_request_t  *r = request;

    if (ngx_proxy_wasm_is_session(request)) {
        return ngx_proxy_wasm_stream_host->log(request);
    }

    return r ? r->connection->log : ngx_cycle->log;
}


/*
 * The functions that take a request or a session: Rust only hands a
 * session over where the stream module registered its functions.
 */

static ngx_proxy_wasm_lookup_e
ngx_proxy_wasm_attribute_get(void *request,
    ngx_proxy_wasm_attribute_e attribute, ngx_proxy_wasm_value_t *value)
{
    if (ngx_proxy_wasm_is_session(request)) {
        return ngx_proxy_wasm_stream_host->attribute_get(request, attribute,
                                                         value);
    }

    return ngx_http_proxy_wasm_attribute_get(request, attribute, value);
}


static ngx_proxy_wasm_variable_e
ngx_proxy_wasm_variable_get(void *request, ngx_proxy_wasm_str_t name,
    ngx_proxy_wasm_str_t *value)
{
    if (ngx_proxy_wasm_is_session(request)) {
        return ngx_proxy_wasm_stream_host->variable_get(request, name, value);
    }

    return ngx_http_proxy_wasm_variable_get(request, name, value);
}


static ngx_proxy_wasm_change_e
ngx_proxy_wasm_variable_set(void *request, ngx_proxy_wasm_str_t name,
    ngx_proxy_wasm_str_t value)
{
    if (ngx_proxy_wasm_is_session(request)) {
        /* stream{} variables are read-only to filters */
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    }

    return ngx_http_proxy_wasm_variable_set(request, name, value);
}


static ngx_proxy_wasm_lookup_e
ngx_proxy_wasm_static_property_get(void *request, ngx_proxy_wasm_str_t key,
    ngx_proxy_wasm_str_t *value)
{
    if (ngx_proxy_wasm_is_session(request)) {
        return ngx_proxy_wasm_stream_host->static_property_get(request, key,
                                                               value);
    }

    return ngx_http_proxy_wasm_static_property_get(request, key, value);
}


static void
ngx_proxy_wasm_schedule_resume(void *request)
{
    if (ngx_proxy_wasm_is_session(request)) {
        ngx_proxy_wasm_stream_host->schedule_resume(request);
        return;
    }

    ngx_http_proxy_wasm_schedule_resume(request);
}


static void *
ngx_proxy_wasm_call_start_any(void *request,
    const ngx_proxy_wasm_call_params_t *params, ngx_proxy_wasm_str_t *err)
{
    /* a session's calls resolve names with wasm{}'s resolver */
    return ngx_proxy_wasm_call_start(ngx_proxy_wasm_is_session(request)
                                     ? NULL : request, params, err);
}


static void
ngx_proxy_wasm_log(void *request, ngx_proxy_wasm_log_level_e level,
    ngx_proxy_wasm_str_t filter, uint32_t context_id,
    ngx_proxy_wasm_str_t message)
{
    ngx_log_t   *log;
    ngx_uint_t   nginx_level;

    switch (level) {
    case NGX_PROXY_WASM_LOG_TRACE:
    case NGX_PROXY_WASM_LOG_DEBUG:
        nginx_level = NGX_LOG_DEBUG;
        break;
    case NGX_PROXY_WASM_LOG_INFO:
        nginx_level = NGX_LOG_INFO;
        break;
    case NGX_PROXY_WASM_LOG_WARN:
        nginx_level = NGX_LOG_WARN;
        break;
    case NGX_PROXY_WASM_LOG_ERROR:
        nginx_level = NGX_LOG_ERR;
        break;
    default:
        nginx_level = NGX_LOG_CRIT;
    }

    log = ngx_proxy_wasm_log_of(request);

    if (context_id) {
        ngx_log_error(nginx_level, log, 0, "proxy_wasm \"%*s\" #%uD: %*s",
                      filter.len, filter.data, context_id,
                      message.len, message.data);

    } else {
        ngx_log_error(nginx_level, log, 0, "proxy_wasm \"%*s\": %*s",
                      filter.len, filter.data, message.len, message.data);
    }
}


static ngx_proxy_wasm_log_level_e
ngx_proxy_wasm_log_level(void *request)
{
    ngx_uint_t  level;

    level = ngx_proxy_wasm_log_of(request)->log_level;

    if (level >= NGX_LOG_DEBUG) {
        return NGX_PROXY_WASM_LOG_TRACE;
    }

    if (level >= NGX_LOG_INFO) {
        return NGX_PROXY_WASM_LOG_INFO;
    }

    if (level >= NGX_LOG_WARN) {
        return NGX_PROXY_WASM_LOG_WARN;
    }

    if (level >= NGX_LOG_ERR) {
        return NGX_PROXY_WASM_LOG_ERROR;
    }

    return NGX_PROXY_WASM_LOG_CRITICAL;
}


/*
 * Timers for root contexts' ticks. They are cancelable: a worker that is
 * shutting down does not wait for them. Until it exits, they go on, for
 * the requests it still serves may wait for them.
 */
typedef struct {
    ngx_event_t                  event;
    /*
     * event.data: nginx's debug log reads the "fd" of what an event's
     * data points to, as in a connection: an ident after three pointers
     */
    void                        *pointers[3];
    ngx_socket_t                 ident;
    uint64_t                     token;
} ngx_proxy_wasm_timer_t;


static void
ngx_proxy_wasm_timer_handler(ngx_event_t *ev)
{
    uint64_t                   token;
    ngx_proxy_wasm_runtime_t  *rt;

    token = ((ngx_proxy_wasm_timer_t *) ev)->token;
    ngx_free(ev);

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    if (rt != NULL) {
        ngx_proxy_wasm_api.timer_fired(rt, token);
    }
}


static void *
ngx_proxy_wasm_timer_start(uint64_t token, uint64_t delay_ms,
    ngx_uint_t cancelable)
{
    ngx_event_t             *ev;
    ngx_proxy_wasm_timer_t  *timer;

    timer = ngx_calloc(sizeof(ngx_proxy_wasm_timer_t), ngx_cycle->log);
    if (timer == NULL) {
        return NULL;
    }

    timer->ident = (ngx_socket_t) -1;
    timer->token = token;

    ev = &timer->event;
    ev->data = timer->pointers;
    ev->handler = ngx_proxy_wasm_timer_handler;
    ev->log = ngx_cycle->log;
    ev->cancelable = cancelable;

    ngx_add_timer(ev, (ngx_msec_t) ngx_min(delay_ms, NGX_MAX_INT32_VALUE));

    return ev;
}


static void *
ngx_proxy_wasm_timer_add(uint64_t token, uint64_t delay_ms)
{
    return ngx_proxy_wasm_timer_start(token, delay_ms, 1);
}


/* a timer a worker that shuts down waits for */
static void *
ngx_proxy_wasm_timer_hold(uint64_t token, uint64_t delay_ms)
{
    return ngx_proxy_wasm_timer_start(token, delay_ms, 0);
}


/*
 * How a worker learns that it starts shutting down: nginx closes its idle
 * connections then, and this is one, on /dev/null, never in the event
 * loop.
 */
static ngx_connection_t  *ngx_proxy_wasm_shutdown_watch_conn;


static void
ngx_proxy_wasm_shutdown_watch_handler(ngx_event_t *ev)
{
    ngx_connection_t          *c = ev->data;
    ngx_proxy_wasm_runtime_t  *rt;

    if (!c->close) {
        return;
    }

    ngx_proxy_wasm_shutdown_watch_exit();

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    if (rt != NULL) {
        ngx_proxy_wasm_api.worker_shutdown(rt);
    }
}


void
ngx_proxy_wasm_shutdown_watch(ngx_cycle_t *cycle)
{
    ngx_fd_t           fd;
    ngx_connection_t  *c;

    fd = ngx_open_file("/dev/null", NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "proxy_wasm: cannot open /dev/null: root contexts "
                      "will not hear of the worker's shutdown");
        return;
    }

    c = ngx_get_connection(fd, cycle->log);
    if (c == NULL) {
        (void) ngx_close_file(fd);
        return;
    }

    c->idle = 1;
    c->read->handler = ngx_proxy_wasm_shutdown_watch_handler;
    c->read->log = cycle->log;
    c->write->log = cycle->log;

    ngx_proxy_wasm_shutdown_watch_conn = c;
}


void
ngx_proxy_wasm_shutdown_watch_exit(void)
{
    ngx_connection_t  *c = ngx_proxy_wasm_shutdown_watch_conn;

    if (c != NULL) {
        ngx_proxy_wasm_shutdown_watch_conn = NULL;
        ngx_close_connection(c);
    }
}


static void
ngx_proxy_wasm_timer_cancel(void *timer)
{
    ngx_event_t  *ev = timer;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    ngx_free(ev);
}


const ngx_proxy_wasm_host_t  ngx_proxy_wasm_host = {
    .log = ngx_proxy_wasm_log,
    .log_level = ngx_proxy_wasm_log_level,
    .headers_get = ngx_http_proxy_wasm_headers_get,
    .header_get = ngx_http_proxy_wasm_header_get,
    .header_set = ngx_http_proxy_wasm_header_set,
    .attribute_get = ngx_proxy_wasm_attribute_get,
    .variable_get = ngx_proxy_wasm_variable_get,
    .variable_set = ngx_proxy_wasm_variable_set,
    .static_property_get = ngx_proxy_wasm_static_property_get,
    .host_property_get = ngx_http_proxy_wasm_lua_property_get,
    .host_property_set = ngx_http_proxy_wasm_lua_property_set,
    .schedule_resume = ngx_proxy_wasm_schedule_resume,
    .timer_add = ngx_proxy_wasm_timer_add,
    .timer_hold = ngx_proxy_wasm_timer_hold,
    .timer_cancel = ngx_proxy_wasm_timer_cancel,
    .call_start = ngx_proxy_wasm_call_start_any,
    .call_cancel = ngx_proxy_wasm_call_cancel,
    .call_send = ngx_proxy_wasm_call_send_more,
    .zone_lock = ngx_proxy_wasm_zone_lock,
    .zone_unlock = ngx_proxy_wasm_zone_unlock,
    .kv_state = ngx_proxy_wasm_kv_state,
    .kv_read = ngx_proxy_wasm_kv_read,
    .kv_cas = ngx_proxy_wasm_kv_cas,
    .kv_write = ngx_proxy_wasm_kv_write,
    .queue_state = ngx_proxy_wasm_queue_state,
    .queue_push = ngx_proxy_wasm_queue_push,
    .queue_peek = ngx_proxy_wasm_queue_peek,
    .queue_drop = ngx_proxy_wasm_queue_drop,
    .queue_len = ngx_proxy_wasm_queue_len,
    .worker_pid = ngx_proxy_wasm_worker_pid,
    .wakeup_listen = ngx_proxy_wasm_wakeup_listen,
    .wake = ngx_proxy_wasm_wake,
    .metric_find_or_add = ngx_proxy_wasm_metric_find_or_add,
    .metric_add = ngx_proxy_wasm_metric_add,
    .metric_store = ngx_proxy_wasm_metric_store,
    .metric_load = ngx_proxy_wasm_metric_load,
};
