/*
 * Declarations shared by the C shim's files. The boundary with Rust is in
 * ngx_proxy_wasm.h.
 */

#ifndef _NGX_PROXY_WASM_SHIM_H_INCLUDED_
#define _NGX_PROXY_WASM_SHIM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_proxy_wasm.h"


/* ngx_table_elt_t.next (header chains) exists from nginx 1.23.0 on */
#if (nginx_version >= 1023000)
#define NGX_PROXY_WASM_HEADER_CHAINS  1
#else
#define NGX_PROXY_WASM_HEADER_CHAINS  0
#endif


/* the compiled-code cache when wasm{} names none (./configure sets it) */
#ifndef NGX_PROXY_WASM_CACHE_PATH
#define NGX_PROXY_WASM_CACHE_PATH  "proxy_wasm_cache"
#endif


/* the wasm{} block */
typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   path;
    ngx_str_t                   vm_config;
    ngx_str_t                   file;        /* where the directive is */
    ngx_uint_t                  line;
} ngx_proxy_wasm_wasm_module_t;


typedef struct {
    ngx_proxy_wasm_runtime_t   *runtime;
    ngx_array_t                 modules;     /* ngx_proxy_wasm_wasm_module_t */
    ngx_uint_t                  compiler;
    ngx_flag_t                  backtraces;
    size_t                      memory_limit;
    ngx_msec_t                  callback_timeout;
    ngx_str_t                   cache;       /* empty: no cache */
    ngx_uint_t                  instance_pool;   /* 0: off */
    /* resolves HTTP calls' host names outside requests */
    ngx_resolver_t             *resolver;
    ngx_msec_t                  resolver_timeout;
    size_t                      http_call_max_body_size;
    ngx_uint_t                  http_call_failure_log;
    /* HTTP calls: how long connecting, sending, each read may take */
    ngx_msec_t                  socket_connect_timeout;
    ngx_msec_t                  socket_send_timeout;
    ngx_msec_t                  socket_read_timeout;
    /* HTTP calls over TLS */
    ngx_str_t                   tls_trusted_certificate;
    ngx_flag_t                  tls_verify_cert;
    ngx_flag_t                  tls_verify_host;
#if (NGX_SSL)
    ngx_ssl_t                  *ssl;
#endif
    /* shared memory: ngx_shm_zone_t * of shm_kv and shm_queue */
    ngx_array_t                 kv_zones;
    ngx_array_t                 queue_zones;
    ngx_shm_zone_t             *metrics_zone;
    size_t                      metrics_slab_size;
    size_t                      max_metric_name_length;
    ngx_array_t                *metric_tags;  /* ngx_proxy_wasm_pair_t */
    unsigned                    block:1;     /* a wasm{} block was seen */
    unsigned                    metrics_block:1;
} ngx_proxy_wasm_conf_t;


/* http{}, server{}, location{} */
typedef struct {
    ngx_array_t                *filters;     /* uint32_t filter ids */
    ngx_flag_t                  request_headers_in_access;
    ngx_bufs_t                  response_body_buffers;
    ngx_uint_t                  response_body_overflow;
    ngx_uint_t                  isolation;   /* ngx_proxy_wasm_isolation_e */
    ngx_uint_t                  failure;     /* ngx_proxy_wasm_failure_e */
    ngx_uint_t                  failure_status;
    /* how long a filter may hold a request in on_request_headers */
    ngx_msec_t                  hold_timeout;
    /* proxy_wasm_property: ngx_http_proxy_wasm_property_t, or NULL */
    ngx_array_t                *properties;
    /*
     * proxy_wasm_metrics: the modules (ngx_str_t) whose metrics it serves;
     * NULL: every module of the configuration
     */
    ngx_array_t                *metrics_modules;
} ngx_http_proxy_wasm_loc_conf_t;


typedef struct {
    /* some location runs filters, or Lua may attach them: the phase
     * handlers are needed */
    ngx_flag_t                  used;
} ngx_http_proxy_wasm_main_conf_t;


/* a request's state */
typedef struct {
    ngx_proxy_wasm_chain_t     *chain;
    ngx_http_request_t         *request;
    /* the filters the chain runs: the location's, or those Lua attached */
    ngx_array_t                *filters;
    /* Lua's start(): the semaphore it waits on (ngx.semaphore's) */
    void                       *lua_sema;
    /* Lua's attach(): its isolation; NGX_CONF_UNSET_UINT: the location's */
    ngx_uint_t                  lua_isolation;
    /* what start() came to (ngx_http_proxy_wasm_lua_outcome_e) */
    ngx_uint_t                  lua_outcome;
    /* posted when filters ask to come back to the request */
    ngx_event_t                 resume;
    /* proxy_wasm_hold_timeout, while the request headers are held */
    ngx_event_t                 hold_timer;
    /* nginx's body reader, while the chain holds the end of the body */
    ngx_http_event_handler_pt   body_read_handler;

    /* request body bytes passed on, to fix Content-Length */
    off_t                       request_body_out;
    /* response body bytes taken in and passed on */
    off_t                       response_in;
    off_t                       response_out;

    /* storage for header values built on the fly (":status", ...) */
    u_char                      status[NGX_INT_T_LEN];
    u_char                      content_length[NGX_OFF_T_LEN];
    u_char                      last_modified[sizeof("Mon, 28 Sep 1970 06:00:00 GMT")];

    unsigned                    request_headers_started:1;
    unsigned                    request_headers_done:1;
    /* a phase handler waits for the chain to continue the request */
    unsigned                    request_paused:1;
    unsigned                    request_body_wanted:1;
    unsigned                    request_body_reading:1;
    /* the chain holds the end of the request body: nginx waits for it */
    unsigned                    request_body_held:1;
    /* nginx's body reader is the request's read handler */
    unsigned                    request_body_reader_set:1;
    /* the body was read before the chain saw it: the chain replays it */
    unsigned                    request_body_replayed:1;
    unsigned                    local_response_pending:1;

    unsigned                    response_headers_started:1;
    unsigned                    response_body_wanted:1;
    /* the chain holds the response (headers, body): it waits for it */
    unsigned                    response_held:1;
    /* the response headers went to the client */
    unsigned                    response_sent:1;
    /* they carried the upstream's Content-Length: the body must match */
    unsigned                    response_length_committed:1;
    /* a local response replaced the response: drop the original body */
    unsigned                    response_replaced:1;
    unsigned                    failed:1;

    /* Lua attached the chain: it stays the request's chain */
    unsigned                    lua_attached:1;
    /* Lua's start() asked for on_request_headers; it waits for them */
    unsigned                    lua_start_pending:1;
    unsigned                    lua_waiting:1;
} ngx_http_proxy_wasm_ctx_t;


/*
 * The request is being freed (its pool's cleanups run): nothing can be
 * allocated for it any more, so host functions treat it as read-only.
 */
#define ngx_http_proxy_wasm_request_gone(r)  ((r)->pool == NULL)


/*
 * Header names compared without case, eight bytes at a time (ASCII
 * letters only, as ngx_strncasecmp): every filter's header lookup
 * compares names, and a byte loop cost more than the rest of a lookup.
 */
static ngx_inline uint64_t
ngx_proxy_wasm_lower8(uint64_t w)
{
    uint64_t  low7, from_a, past_z;

    low7 = w & 0x7f7f7f7f7f7f7f7fULL;
    from_a = low7 + 0x3f3f3f3f3f3f3f3fULL;    /* bit 7: byte >= 'A' */
    past_z = low7 + 0x2525252525252525ULL;    /* bit 7: byte > 'Z' */

    /* 0x20 in each ASCII byte from 'A' to 'Z' */
    return w | (((from_a ^ past_z) & ~w & 0x8080808080808080ULL) >> 2);
}


static ngx_inline ngx_uint_t
ngx_proxy_wasm_equal8_nocase(const u_char *a, const u_char *b)
{
    uint64_t  wa, wb;

    ngx_memcpy(&wa, a, 8);
    ngx_memcpy(&wb, b, 8);

    return ngx_proxy_wasm_lower8(wa) == ngx_proxy_wasm_lower8(wb);
}


static ngx_inline ngx_uint_t
ngx_proxy_wasm_equal_nocase(const u_char *a, const u_char *b, size_t len)
{
    size_t  i;

    if (len < 8) {
        for (i = 0; i < len; i++) {
            if (ngx_tolower(a[i]) != ngx_tolower(b[i])) {
                return 0;
            }
        }

        return 1;
    }

    for (i = 0; i + 8 < len; i += 8) {
        if (!ngx_proxy_wasm_equal8_nocase(a + i, b + i)) {
            return 0;
        }
    }

    /* the last eight bytes, overlapping those compared */
    return ngx_proxy_wasm_equal8_nocase(a + len - 8, b + len - 8);
}


extern ngx_module_t  ngx_proxy_wasm_module;
extern ngx_module_t  ngx_http_proxy_wasm_module;

extern const ngx_proxy_wasm_host_t  ngx_proxy_wasm_host;

/*
 * The Rust library's functions, for the stream module: with dynamic
 * modules it is another object, which sees the symbols of this one but
 * not those of the library (kept private to this one).
 */
extern const ngx_proxy_wasm_api_t  *ngx_proxy_wasm_library;


/*
 * What a "request" Rust hands back is: an HTTP request, or a stream{}
 * session (network filters). Both begin with nginx's signature of their
 * subsystem.
 */
#define NGX_PROXY_WASM_STREAM_SIGNATURE  0x4d525453     /* "STRM" */

#define ngx_proxy_wasm_is_session(request)                                   \
    ((request) != NULL                                                       \
     && *(uint32_t *) (request) == NGX_PROXY_WASM_STREAM_SIGNATURE)


/*
 * The host functions of stream{} sessions, which the stream module (maybe
 * another object, loaded later) registers when it is configured.
 */
typedef struct {
    ngx_log_t                 *(*log)(void *session);
    ngx_proxy_wasm_lookup_e    (*attribute_get)(void *session,
                                   ngx_proxy_wasm_attribute_e attribute,
                                   ngx_proxy_wasm_value_t *value);
    ngx_proxy_wasm_variable_e  (*variable_get)(void *session,
                                   ngx_proxy_wasm_str_t name,
                                   ngx_proxy_wasm_str_t *value);
    ngx_proxy_wasm_lookup_e    (*static_property_get)(void *session,
                                   ngx_proxy_wasm_str_t key,
                                   ngx_proxy_wasm_str_t *value);
    void                       (*schedule_resume)(void *session);
} ngx_proxy_wasm_stream_host_t;

extern const ngx_proxy_wasm_stream_host_t  *ngx_proxy_wasm_stream_host;

/*
 * The process serves its configuration (init_process ran): root contexts
 * that run before, while the configuration is checked, see no http{} yet.
 */
extern ngx_uint_t  ngx_http_proxy_wasm_process_started;


ngx_proxy_wasm_runtime_t *ngx_proxy_wasm_runtime(ngx_cycle_t *cycle);
char *ngx_proxy_wasm_conf_set_enum_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * proxy_wasm of http{} and stream{}: adds the line's filter to *filters
 * (made when NGX_CONF_UNSET_PTR); "block" names the block for errors.
 */
char *ngx_proxy_wasm_filter_directive(ngx_conf_t *cf, ngx_array_t **filters,
    const char *block);

/*
 * proxy_wasm_property of http{} and stream{}: arrays of elements that
 * begin with the property's key (ngx_str_t), followed by the subsystem's
 * value. _add checks the line's path and adds an element with its key
 * (NULL: the error is logged); _merge adds what a level inherits and does
 * not define itself; _find gives the element of a key, or NULL.
 */
void *ngx_proxy_wasm_property_add(ngx_conf_t *cf, ngx_array_t **properties,
    size_t size);
char *ngx_proxy_wasm_property_merge(ngx_conf_t *cf, ngx_array_t **conf,
    ngx_array_t *prev);
void *ngx_proxy_wasm_property_find(ngx_array_t *properties,
    ngx_proxy_wasm_str_t key);

/* the values of proxy_wasm_isolation and proxy_wasm_failure */
extern ngx_conf_enum_t  ngx_proxy_wasm_isolations[];
extern ngx_conf_enum_t  ngx_proxy_wasm_failures[];

/* Attribute values, for attribute_get (ngx_http_proxy_wasm_attributes.c). */
void ngx_proxy_wasm_value_int(ngx_proxy_wasm_value_t *value, int64_t n);
void ngx_proxy_wasm_value_bool(ngx_proxy_wasm_value_t *value, ngx_uint_t b);
void ngx_proxy_wasm_value_str(ngx_proxy_wasm_value_t *value, u_char *data,
    size_t len);
/* "ip:port" ("[ip6]:port"; a unix socket's path), in the pool */
ngx_proxy_wasm_lookup_e ngx_proxy_wasm_address(ngx_pool_t *pool,
    struct sockaddr *sa, socklen_t socklen, ngx_proxy_wasm_value_t *value);
ngx_proxy_wasm_lookup_e ngx_proxy_wasm_port(struct sockaddr *sa,
    ngx_proxy_wasm_value_t *value);
/* source.*, destination.*, connection.id of a connection */
ngx_proxy_wasm_lookup_e ngx_proxy_wasm_endpoint(ngx_pool_t *pool,
    ngx_connection_t *c, ngx_proxy_wasm_attribute_e attribute,
    ngx_proxy_wasm_value_t *value);

/* http{}'s configuration in the running cycle, or NULL */
ngx_http_conf_ctx_t *ngx_http_proxy_wasm_http_conf(void);

ngx_http_proxy_wasm_ctx_t *ngx_http_proxy_wasm_get_ctx(ngx_http_request_t *r);
/* a new state for the request, chainless (NULL: no memory) */
ngx_http_proxy_wasm_ctx_t *ngx_http_proxy_wasm_new_ctx(ngx_http_request_t *r);
/* ends the state's chain (its contexts' on_done, on_delete) */
void ngx_http_proxy_wasm_end_chain(ngx_http_proxy_wasm_ctx_t *ctx);
ngx_http_proxy_wasm_ctx_t *ngx_http_proxy_wasm_request_ctx(
    ngx_http_request_t *r, ngx_int_t *rc);
void ngx_http_proxy_wasm_schedule_resume(void *request);
ngx_int_t ngx_http_proxy_wasm_failed(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx);

/* the request's side: ngx_http_proxy_wasm_request.c */
ngx_int_t ngx_http_proxy_wasm_request_init(ngx_conf_t *cf);
ngx_int_t ngx_http_proxy_wasm_preaccess_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_proxy_wasm_precontent_handler(ngx_http_request_t *r);
ngx_uint_t ngx_http_proxy_wasm_request_has_body(ngx_http_request_t *r);
void ngx_http_proxy_wasm_hold_expired(ngx_event_t *ev);
void ngx_http_proxy_wasm_resume_handler(ngx_event_t *ev);

/* body data of a chain of buffers: ngx_http_proxy_wasm_body.c */
/* body parts a chain of buffers has before they go to the pool */
#define NGX_HTTP_PROXY_WASM_STACK_PARTS  8
ngx_int_t ngx_http_proxy_wasm_body_parts(ngx_http_request_t *r,
    ngx_chain_t *in, ngx_array_t *parts, ngx_proxy_wasm_str_t *stack,
    off_t *size, ngx_uint_t *last);
void ngx_http_proxy_wasm_consume(ngx_chain_t *in);
ngx_chain_t *ngx_http_proxy_wasm_output(ngx_http_request_t *r,
    ngx_proxy_wasm_step_t *step, ngx_uint_t last);

/* the Lua API: ngx_http_proxy_wasm_lua.c */
/* the module name resty.proxy_wasm gives the metrics Lua owns */
#define NGX_PROXY_WASM_LUA_METRICS  "lua"

ngx_int_t ngx_http_proxy_wasm_lua_init(ngx_conf_t *cf);
/* resumes the request's on_request_headers that Lua's start() waits for */
void ngx_http_proxy_wasm_lua_resume(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx);
/* proxy_wasm_hold_timeout expired while Lua's start() waits */
void ngx_http_proxy_wasm_lua_hold_expired(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx);
ngx_proxy_wasm_lookup_e ngx_http_proxy_wasm_lua_property_get(void *request,
    ngx_proxy_wasm_str_t path, ngx_proxy_wasm_str_t *value);
ngx_proxy_wasm_change_e ngx_http_proxy_wasm_lua_property_set(void *request,
    ngx_proxy_wasm_str_t path, ngx_proxy_wasm_str_t value);

/* responses: ngx_http_proxy_wasm_response.c */
ngx_int_t ngx_http_proxy_wasm_response_init(ngx_conf_t *cf);
ngx_int_t ngx_http_proxy_wasm_send_local_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx);
void ngx_http_proxy_wasm_resume_response(ngx_http_request_t *r,
    ngx_http_proxy_wasm_ctx_t *ctx);

/* properties: ngx_http_proxy_wasm_properties.c */
char *ngx_http_proxy_wasm_property_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
ngx_int_t ngx_http_proxy_wasm_add_variables(ngx_conf_t *cf);
ngx_proxy_wasm_lookup_e ngx_http_proxy_wasm_attribute_get(void *request,
    ngx_proxy_wasm_attribute_e attribute, ngx_proxy_wasm_value_t *value);
ngx_proxy_wasm_variable_e ngx_http_proxy_wasm_variable_get(void *request,
    ngx_proxy_wasm_str_t name, ngx_proxy_wasm_str_t *value);
ngx_proxy_wasm_change_e ngx_http_proxy_wasm_variable_set(void *request,
    ngx_proxy_wasm_str_t name, ngx_proxy_wasm_str_t value);
ngx_proxy_wasm_lookup_e ngx_http_proxy_wasm_static_property_get(
    void *request, ngx_proxy_wasm_str_t key, ngx_proxy_wasm_str_t *value);

/* HTTP calls: ngx_proxy_wasm_callout.c */
typedef struct {
    uint32_t                    token;
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_peer_connection_t       peer;
    ngx_str_t                   target;
    ngx_url_t                   url;
    ngx_resolver_ctx_t         *resolving;
    ngx_msec_t                  resolver_timeout;
    ngx_resolver_t             *resolver;
    ngx_str_t                   out;         /* the request */
    /* wasm{}'s socket_*_timeout */
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  send_timeout;
    ngx_msec_t                  read_timeout;
    /* TLS to this server name (NUL-terminated) */
    ngx_str_t                   server_name;
    unsigned                    tls:1;
    size_t                      sent;
    /* the call's own timeout */
    ngx_event_t                 deadline;
    /* posted to end the call from the event loop */
    ngx_event_t                 report;
    uint32_t                    why;         /* ngx_proxy_wasm_call_end_e */
    ngx_str_t                   detail;
    ngx_queue_t                 queue;       /* in ngx_proxy_wasm_calls */
    /* an upstream{} block's balancer */
    ngx_event_get_peer_pt       balancer_get;
    ngx_event_free_peer_pt      balancer_free;
    void                       *balancer_data;
    /* the balancer gave a server, not given back yet */
    unsigned                    peer_chosen:1;
    /* the server failed the call: the balancer counts it */
    unsigned                    peer_failed:1;
    unsigned                    reused:1;    /* an idle connection */
    unsigned                    received:1;  /* response bytes came */
    unsigned                    retried:1;
    /* kept open both ways (call_send): "out" is malloc'ed, out_size long */
    unsigned                    duplex:1;
    /* connected (and TLS done): what call_send adds goes out at once */
    unsigned                    connected:1;
    size_t                      out_size;
} ngx_proxy_wasm_call_t;

ngx_proxy_wasm_conf_t *ngx_proxy_wasm_calls_conf(void);
void ngx_proxy_wasm_call_ready(ngx_proxy_wasm_call_t *call);
void ngx_proxy_wasm_call_read_handler(ngx_event_t *rev);
void ngx_proxy_wasm_call_write_handler(ngx_event_t *wev);
void ngx_proxy_wasm_call_fail(ngx_proxy_wasm_call_t *call,
    ngx_proxy_wasm_call_end_e why, const char *detail);
/* ngx_proxy_wasm_callout_tls.c */
#if (NGX_SSL)
ngx_proxy_wasm_conf_t *ngx_proxy_wasm_tls_conf(void);
void ngx_proxy_wasm_call_handshake(ngx_proxy_wasm_call_t *call);
#endif
/* ngx_proxy_wasm_callout_target.c */
ngx_http_upstream_srv_conf_t *ngx_proxy_wasm_call_upstream(ngx_str_t *name);
ngx_int_t ngx_proxy_wasm_call_balancer(ngx_proxy_wasm_call_t *call,
    ngx_http_upstream_srv_conf_t *uscf);
ngx_resolver_t *ngx_proxy_wasm_call_resolver(ngx_http_request_t *r,
    ngx_msec_t *timeout);
void *ngx_proxy_wasm_call_start(void *request,
    const ngx_proxy_wasm_call_params_t *params, ngx_proxy_wasm_str_t *err);
void ngx_proxy_wasm_call_cancel(void *call);
/* a worker's shutdown, told to Rust: ngx_proxy_wasm_host.c */
void ngx_proxy_wasm_shutdown_watch(ngx_cycle_t *cycle);
void ngx_proxy_wasm_shutdown_watch_exit(void);
int32_t ngx_proxy_wasm_call_send_more(void *call, ngx_proxy_wasm_str_t data);
void ngx_proxy_wasm_calls_exit(void);

/* idle connections of HTTP calls: ngx_proxy_wasm_callout_idle.c */
ngx_connection_t *ngx_proxy_wasm_idle_take(struct sockaddr *sa,
    socklen_t socklen, ngx_uint_t tls, ngx_str_t *server_name);
void ngx_proxy_wasm_idle_put(ngx_connection_t *c, struct sockaddr *sa,
    socklen_t socklen, ngx_uint_t tls, ngx_str_t *server_name);
void ngx_proxy_wasm_idle_exit(void);
void ngx_proxy_wasm_call_close(ngx_connection_t *c);

/*
 * What shm_zone->data of every zone of the module starts with: its name as
 * declared, its state in shared memory, its slab pool.
 */
typedef struct {
    ngx_proxy_wasm_zone_kind_e  kind;
    ngx_str_t                   name;
    void                       *sh;
    ngx_slab_pool_t            *shpool;
    /*
     * share=: the modules (ngx_str_t) that share the zone, "*" for every
     * one; NULL: each module has its own part of the zone
     */
    ngx_array_t                *share;
    /* where the zone was declared, for errors found later */
    ngx_str_t                   file;
    ngx_uint_t                  line;
} ngx_proxy_wasm_zone_t;

/* zones: ngx_proxy_wasm_zone.c */
/* the wasm{} configuration shared memory is found in */
extern ngx_proxy_wasm_conf_t  *ngx_proxy_wasm_shm_conf;
ngx_int_t ngx_proxy_wasm_zone_share(ngx_conf_t *cf, ngx_str_t *value,
    ngx_proxy_wasm_zone_t *zone);
ngx_shm_zone_t *ngx_proxy_wasm_zone_add(ngx_conf_t *cf,
    ngx_proxy_wasm_zone_t *zone, ngx_str_t *size, ngx_shm_zone_init_pt init);
ngx_array_t *ngx_proxy_wasm_zones_of(ngx_proxy_wasm_conf_t *wcf,
    ngx_proxy_wasm_zone_kind_e kind);
ngx_int_t ngx_proxy_wasm_zone_init(ngx_shm_zone_t *shm_zone, void *data,
    const char *kind, size_t size, void (*init)(void *sh));
char *ngx_proxy_wasm_zones_register(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wcf);
const ngx_proxy_wasm_str_t *ngx_proxy_wasm_zone_share_names(ngx_pool_t *pool,
    ngx_array_t *share);
ngx_uint_t ngx_proxy_wasm_has_wasm_module(ngx_proxy_wasm_conf_t *wcf,
    u_char *name, size_t len);
void *ngx_proxy_wasm_zone_lock(ngx_proxy_wasm_zone_kind_e kind,
    uint32_t index);
void ngx_proxy_wasm_zone_unlock(void *zone);
size_t ngx_proxy_wasm_shm_stats_size(void);
u_char *ngx_proxy_wasm_shm_stats(u_char *p);

/* key-value zones: ngx_proxy_wasm_kv.c */
char *ngx_proxy_wasm_shm_kv_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
uint64_t ngx_proxy_wasm_kv_evictions(ngx_proxy_wasm_zone_t *zone);
ngx_proxy_wasm_kv_state_t *ngx_proxy_wasm_kv_state(void *zone);
ngx_proxy_wasm_lookup_e ngx_proxy_wasm_kv_read(void *zone,
    ngx_proxy_wasm_str_t key, ngx_proxy_wasm_str_t *value, uint32_t *cas);
ngx_proxy_wasm_lookup_e ngx_proxy_wasm_kv_cas(void *zone,
    ngx_proxy_wasm_str_t key, uint32_t *cas);
ngx_proxy_wasm_store_e ngx_proxy_wasm_kv_write(void *zone,
    ngx_proxy_wasm_str_t key, size_t namespace_len,
    ngx_proxy_wasm_str_t value, uint32_t cas);

/* queue zones and wakeups: ngx_proxy_wasm_queue.c */
char *ngx_proxy_wasm_shm_queue_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
size_t ngx_proxy_wasm_queue_items(ngx_proxy_wasm_zone_t *zone);
ngx_proxy_wasm_queue_state_t *ngx_proxy_wasm_queue_state(void *zone);
ngx_proxy_wasm_store_e ngx_proxy_wasm_queue_push(void *zone,
    ngx_proxy_wasm_str_t value);
ngx_proxy_wasm_lookup_e ngx_proxy_wasm_queue_peek(void *zone,
    ngx_proxy_wasm_str_t *value);
void ngx_proxy_wasm_queue_drop(void *zone);
size_t ngx_proxy_wasm_queue_len(void *zone);
int64_t ngx_proxy_wasm_worker_pid(void);
int32_t ngx_proxy_wasm_wakeup_listen(void);
ngx_proxy_wasm_wake_e ngx_proxy_wasm_wake(int64_t pid,
    ngx_proxy_wasm_str_t queue);
void ngx_proxy_wasm_queues_exit(void);

/* metrics: ngx_proxy_wasm_metrics.c */
char *ngx_proxy_wasm_metrics_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_proxy_wasm_metrics_init(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wcf);
ngx_proxy_wasm_store_e ngx_proxy_wasm_metric_find_or_add(
    ngx_proxy_wasm_str_t name, ngx_proxy_wasm_metric_type_e type,
    ngx_proxy_wasm_str_t owner, size_t slots,
    ngx_proxy_wasm_metric_found_t *found);
void ngx_proxy_wasm_metric_add(void *metric, size_t slot, uint64_t delta);
void ngx_proxy_wasm_metric_store(void *metric, size_t slot, uint64_t value);
uint64_t ngx_proxy_wasm_metric_load(void *metric, size_t slot);
char *ngx_http_proxy_wasm_metrics_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);

ngx_proxy_wasm_list_e ngx_http_proxy_wasm_headers_get(void *request,
    ngx_proxy_wasm_header_map_e map, ngx_proxy_wasm_pair_t *pairs,
    size_t npairs, size_t *n);
ngx_proxy_wasm_lookup_e ngx_http_proxy_wasm_header_get(void *request,
    ngx_proxy_wasm_header_map_e map, ngx_proxy_wasm_str_t key,
    ngx_proxy_wasm_str_t *value);
ngx_proxy_wasm_change_e ngx_http_proxy_wasm_header_set(void *request,
    ngx_proxy_wasm_header_map_e map, ngx_proxy_wasm_header_op_e op,
    ngx_proxy_wasm_str_t key, ngx_proxy_wasm_str_t value);


#endif /* _NGX_PROXY_WASM_SHIM_H_INCLUDED_ */
