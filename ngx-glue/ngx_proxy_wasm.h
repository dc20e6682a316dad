/*
 * The whole boundary between the C shim and the Rust Proxy-Wasm host.
 *
 * Two function tables cross it:
 *   - ngx_proxy_wasm_host_t: implemented in C (nginx), called by Rust to
 *     reach the request: logging, header maps, resuming a request, ...
 *   - ngx_proxy_wasm_api_t: implemented in Rust, called by C from directive
 *     handlers, worker start and request phases.
 *
 * Every fact that crosses is declared here once. build.rs runs bindgen
 * over this file: Rust gets its structs and function types as generated
 * code, and a Rust enum for every enum below (named after it: "_e" and
 * the common prefix of its values dropped) that it decodes exhaustively:
 * a value it does not know is an error, never a default.
 *
 * Enums cross as 32-bit integers (bindgen's view of a C enum); each
 * function returns the result enum of its kind of operation. It includes no nginx header: the Rust library does
 * not depend on the nginx version it is linked into.
 */

#ifndef _NGX_PROXY_WASM_H_INCLUDED_
#define _NGX_PROXY_WASM_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* A byte string; not NUL-terminated. */
typedef struct {
    const uint8_t                 *data;
    size_t                         len;
} ngx_proxy_wasm_str_t;


typedef struct {
    ngx_proxy_wasm_str_t           key;
    ngx_proxy_wasm_str_t           value;
} ngx_proxy_wasm_pair_t;


/* What a lookup of one value found (header_get, attribute_get, ...). */
typedef enum {
    NGX_PROXY_WASM_LOOKUP_FOUND = 0,
    /* no such thing, or it has no value now */
    NGX_PROXY_WASM_LOOKUP_ABSENT = 1,
    NGX_PROXY_WASM_LOOKUP_ERROR = 2
} ngx_proxy_wasm_lookup_e;


/* What headers_get did with the array it was given. */
typedef enum {
    NGX_PROXY_WASM_LIST_DONE = 0,
    /* the array is too small: *n holds the count needed */
    NGX_PROXY_WASM_LIST_TOO_SMALL = 1,
    NGX_PROXY_WASM_LIST_ERROR = 2
} ngx_proxy_wasm_list_e;


/* What a change of a header or a variable came to. */
typedef enum {
    NGX_PROXY_WASM_CHANGE_DONE = 0,
    /* it cannot be changed (a read-only pseudo-header or variable) */
    NGX_PROXY_WASM_CHANGE_READ_ONLY = 1,
    /* no variable has that name */
    NGX_PROXY_WASM_CHANGE_UNKNOWN = 2,
    NGX_PROXY_WASM_CHANGE_ERROR = 3
} ngx_proxy_wasm_change_e;


/* What variable_get found. */
typedef enum {
    NGX_PROXY_WASM_VARIABLE_FOUND = 0,
    /* the variable exists and has no value */
    NGX_PROXY_WASM_VARIABLE_NO_VALUE = 1,
    /* no variable has that name */
    NGX_PROXY_WASM_VARIABLE_UNKNOWN = 2,
    NGX_PROXY_WASM_VARIABLE_ERROR = 3
} ngx_proxy_wasm_variable_e;


/* What storing into shared memory came to. */
typedef enum {
    NGX_PROXY_WASM_STORE_DONE = 0,
    /* the zone has no room left (and nothing it may evict) */
    NGX_PROXY_WASM_STORE_FULL = 1,
    /* the zone is not mapped yet (the configuration is being checked) */
    NGX_PROXY_WASM_STORE_UNMAPPED = 2
} ngx_proxy_wasm_store_e;


/* Proxy-Wasm metric types, as in the ABI. */
typedef enum {
    NGX_PROXY_WASM_METRIC_COUNTER = 0,
    NGX_PROXY_WASM_METRIC_GAUGE = 1,
    NGX_PROXY_WASM_METRIC_HISTOGRAM = 2
} ngx_proxy_wasm_metric_type_e;


/* Proxy-Wasm log levels, as in the ABI. */
typedef enum {
    NGX_PROXY_WASM_LOG_TRACE = 0,
    NGX_PROXY_WASM_LOG_DEBUG = 1,
    NGX_PROXY_WASM_LOG_INFO = 2,
    NGX_PROXY_WASM_LOG_WARN = 3,
    NGX_PROXY_WASM_LOG_ERROR = 4,
    NGX_PROXY_WASM_LOG_CRITICAL = 5
} ngx_proxy_wasm_log_level_e;


/* The header maps nginx holds for a request. */
typedef enum {
    NGX_PROXY_WASM_HEADER_MAP_REQUEST = 0,
    NGX_PROXY_WASM_HEADER_MAP_RESPONSE = 1,
    NGX_PROXY_WASM_HEADER_MAP_RESPONSE_TRAILERS = 2
} ngx_proxy_wasm_header_map_e;


typedef enum {
    /* append a value, keeping existing ones */
    NGX_PROXY_WASM_HEADER_OP_ADD = 0,
    /* set the value: the first entry is updated, the others removed */
    NGX_PROXY_WASM_HEADER_OP_REPLACE = 1,
    /* remove every entry of that name */
    NGX_PROXY_WASM_HEADER_OP_REMOVE = 2
} ngx_proxy_wasm_header_op_e;


/*
 * The facts of a request and its connection that only nginx knows, read
 * by the Envoy attributes (properties) filters ask for. Facts that live in
 * header maps are read through them.
 */
typedef enum {
    NGX_PROXY_WASM_ATTR_REQUEST_TIME = 0,        /* int: ns since the epoch */
    NGX_PROXY_WASM_ATTR_REQUEST_DURATION,        /* int: ns so far */
    NGX_PROXY_WASM_ATTR_REQUEST_PROTOCOL,        /* string: "HTTP/1.1", ... */
    NGX_PROXY_WASM_ATTR_REQUEST_SIZE,            /* int: body bytes */
    NGX_PROXY_WASM_ATTR_REQUEST_TOTAL_SIZE,      /* int: with the head */
    NGX_PROXY_WASM_ATTR_REQUEST_ID,              /* string: $request_id */
    NGX_PROXY_WASM_ATTR_RESPONSE_CODE,           /* int */
    NGX_PROXY_WASM_ATTR_RESPONSE_CODE_DETAILS,   /* string */
    NGX_PROXY_WASM_ATTR_RESPONSE_SIZE,           /* int: body bytes sent */
    NGX_PROXY_WASM_ATTR_RESPONSE_TOTAL_SIZE,     /* int: all bytes sent */
    NGX_PROXY_WASM_ATTR_RESPONSE_BACKEND_LATENCY,  /* int: ns */
    NGX_PROXY_WASM_ATTR_SOURCE_ADDRESS,          /* string: "ip:port" */
    NGX_PROXY_WASM_ATTR_SOURCE_PORT,             /* int */
    NGX_PROXY_WASM_ATTR_DESTINATION_ADDRESS,     /* string: "ip:port" */
    NGX_PROXY_WASM_ATTR_DESTINATION_PORT,        /* int */
    NGX_PROXY_WASM_ATTR_CONNECTION_ID,           /* int */
    NGX_PROXY_WASM_ATTR_CONNECTION_MTLS,         /* bool */
    NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME,  /* string */
    NGX_PROXY_WASM_ATTR_CONNECTION_TLS_VERSION,  /* string */
    NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_LOCAL_CERTIFICATE,
    NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE,
    NGX_PROXY_WASM_ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST,
    NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_LOCAL_CERTIFICATE,
    NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE,
    NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_LOCAL_CERTIFICATE,
    NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE,
    /* string: the client's certificate, PEM, URL-encoded */
    NGX_PROXY_WASM_ATTR_CONNECTION_PEER_CERTIFICATE,
    NGX_PROXY_WASM_ATTR_UPSTREAM_ADDRESS,        /* string: "ip:port" */
    NGX_PROXY_WASM_ATTR_UPSTREAM_PORT,           /* int */
    NGX_PROXY_WASM_ATTR_UPSTREAM_TLS_VERSION,    /* string */
    NGX_PROXY_WASM_ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT  /* int: tries */
} ngx_proxy_wasm_attribute_e;


typedef enum {
    NGX_PROXY_WASM_VALUE_STRING = 0,
    NGX_PROXY_WASM_VALUE_INT = 1,
    NGX_PROXY_WASM_VALUE_BOOL = 2
} ngx_proxy_wasm_value_kind_e;


/* An attribute's value: "string" or "integer" (bools: 0 or 1). */
typedef struct {
    ngx_proxy_wasm_value_kind_e    kind;
    int64_t                        integer;
    /* valid until the request's pool goes */
    ngx_proxy_wasm_str_t           string;
} ngx_proxy_wasm_value_t;


typedef enum {
    NGX_PROXY_WASM_DIRECTION_REQUEST = 0,
    NGX_PROXY_WASM_DIRECTION_RESPONSE = 1
} ngx_proxy_wasm_direction_e;


/* Who closed a side of a connection: proxy_peer_type_t. */
typedef enum {
    NGX_PROXY_WASM_PEER_UNKNOWN = 0,
    /* nginx closed it */
    NGX_PROXY_WASM_PEER_LOCAL = 1,
    /* the peer closed it (or reset it) */
    NGX_PROXY_WASM_PEER_REMOTE = 2
} ngx_proxy_wasm_peer_e;


/* What the C side does after the chain ran. */
typedef enum {
    /* go on with the next nginx handler or filter */
    NGX_PROXY_WASM_NEXT_CONTINUE = 0,
    /* a filter paused: hold the direction until the chain resumes it */
    NGX_PROXY_WASM_NEXT_PAUSE = 1,
    /* a filter produced a response: send it (see chain_local_response) */
    NGX_PROXY_WASM_NEXT_LOCAL_RESPONSE = 2,
    /* a filter failed: end the request with the configured error status */
    NGX_PROXY_WASM_NEXT_FAIL = 3,
    /* a filter closed the request: reset it */
    NGX_PROXY_WASM_NEXT_CLOSE = 4
} ngx_proxy_wasm_next_e;


/* The body data that left the chain. */
typedef enum {
    NGX_PROXY_WASM_OUTPUT_NOTHING = 0,
    /* exactly the data just handed in: pass nginx's own buffers on */
    NGX_PROXY_WASM_OUTPUT_UNCHANGED = 1,
    /* other data, in the step's "data" */
    NGX_PROXY_WASM_OUTPUT_DATA = 2
} ngx_proxy_wasm_output_e;


/* The outcome of handing headers, body data or trailers to the chain. */
typedef struct {
    ngx_proxy_wasm_next_e          next;
    /* the direction's headers have gone through the whole chain */
    uint32_t                       headers_done;
    ngx_proxy_wasm_output_e        output;
    /* the output ends the body */
    uint32_t                       end_of_stream;
    /* OUTPUT_DATA: valid until the next call on the chain */
    ngx_proxy_wasm_str_t           data;
    /* the body bytes of the direction the filters hold now */
    size_t                         held;
} ngx_proxy_wasm_step_t;


typedef enum {
    NGX_PROXY_WASM_COMPILER_AUTO = 0,
    NGX_PROXY_WASM_COMPILER_CRANELIFT = 1,
    NGX_PROXY_WASM_COMPILER_WINCH = 2
} ngx_proxy_wasm_compiler_e;


/* Settings of the wasm{} block that shape the runtime. */
typedef struct {
    ngx_proxy_wasm_compiler_e      compiler;
    uint32_t                       backtraces;  /* 0 or 1 */
    /* bytes of linear memory an instance may have */
    size_t                         memory_limit;
    /* how long a guest call may run */
    uint64_t                       callback_timeout_ms;
    /* the compiled-code cache directory; empty: none */
    ngx_proxy_wasm_str_t           cache;
    /* instances a worker may have at once from a pool; 0: no pool */
    uint32_t                       instance_pool;
    /* the largest body of an HTTP call's response */
    size_t                         http_call_max_body_size;
    /* the Proxy-Wasm level failed HTTP calls are logged at */
    ngx_proxy_wasm_log_level_e     http_call_failure_log;
    /* the longest metric name, with its filter's prefix */
    size_t                         max_metric_name_length;
    /* metrics { tag <name> <regex>; }: key the name, value the regex */
    const ngx_proxy_wasm_pair_t   *metric_tags;
    size_t                         nmetric_tags;
} ngx_proxy_wasm_runtime_conf_t;


/* A module line of the wasm{} block. */
typedef struct {
    ngx_proxy_wasm_str_t           name;
    ngx_proxy_wasm_str_t           path;
    ngx_proxy_wasm_str_t           vm_config;
} ngx_proxy_wasm_module_source_t;


typedef enum {
    /* fail the request; replace a failed instance (with a backoff) */
    NGX_PROXY_WASM_FAILURE_RELOAD = 0,
    /* fail the request; a failed instance stays failed */
    NGX_PROXY_WASM_FAILURE_FAIL_CLOSED = 1,
    /* skip the failed filter */
    NGX_PROXY_WASM_FAILURE_FAIL_OPEN = 2
} ngx_proxy_wasm_failure_policy_e;


typedef enum {
    /* the worker's instance of each module */
    NGX_PROXY_WASM_ISOLATION_NONE = 0,
    /* an instance of each module per request */
    NGX_PROXY_WASM_ISOLATION_REQUEST = 1,
    /* an instance per filter per request */
    NGX_PROXY_WASM_ISOLATION_FILTER = 2
} ngx_proxy_wasm_isolation_e;


/* How a location (or a stream{} server) runs its chain. */
typedef struct {
    /*
     * 1: a TCP connection of stream{} ("request" is its session): the
     * request direction carries the downstream's data (on_new_connection
     * is its "headers"), the response direction the upstream's
     */
    uint32_t                       connection;
    /* the most body data filters may hold of a response */
    size_t                         response_body_limit;
    /* beyond it: 0 fails the request, 1 passes the data on */
    uint32_t                       response_body_overflow_pass;
    ngx_proxy_wasm_failure_policy_e  failure;
    ngx_proxy_wasm_isolation_e     isolation;
} ngx_proxy_wasm_chain_conf_t;


/* An HTTP call to start (proxy_http_call). */
typedef struct {
    /* what the outcome is reported with (call_data, call_end) */
    uint32_t                       token;
    /* "ip:port", "host:port" (nginx's resolver), "unix:/path" */
    ngx_proxy_wasm_str_t           target;
    /* the request, as it goes on the wire */
    ngx_proxy_wasm_str_t           data;
    /* how long the call may take; 0: the default */
    uint64_t                       timeout_ms;
    /* over TLS (:scheme https), with this server name (SNI, checks) */
    uint32_t                       tls;
    ngx_proxy_wasm_str_t           server_name;
    /*
     * A connection kept open both ways (an HTTP/2 channel; ALPN h2 over
     * TLS): "data" is its first bytes and call_send adds more; every byte
     * read goes to call_data (PROGRESS_CLOSE: Rust forgot it, close it),
     * its end to call_end; no timeout but the sockets' connect and send.
     */
    uint32_t                       duplex;
} ngx_proxy_wasm_call_params_t;


/* Why a call ended without call_data taking a whole response. */
typedef enum {
    /* the server closed the connection (a body may end so) */
    NGX_PROXY_WASM_CALL_END_CLOSED = 0,
    /* no connection could be made */
    NGX_PROXY_WASM_CALL_END_REFUSED = 1,
    NGX_PROXY_WASM_CALL_END_TIMEOUT = 2,
    /* the host name did not resolve */
    NGX_PROXY_WASM_CALL_END_RESOLVE = 3,
    /* a read or write failed */
    NGX_PROXY_WASM_CALL_END_RESET = 4,
    /* the TLS handshake or the server's certificate failed */
    NGX_PROXY_WASM_CALL_END_TLS = 5
} ngx_proxy_wasm_call_end_e;


/* What call_data says of the bytes it took. */
typedef enum {
    NGX_PROXY_WASM_CALL_PROGRESS_MORE = 0,
    /* the response is whole; the connection may serve another call */
    NGX_PROXY_WASM_CALL_PROGRESS_KEEP_ALIVE = 1,
    /* the response is whole, or broken: close the connection */
    NGX_PROXY_WASM_CALL_PROGRESS_CLOSE = 2
} ngx_proxy_wasm_call_progress_e;


/* What a metric operation of the proxy's own code does (metric_apply). */
typedef enum {
    NGX_PROXY_WASM_METRIC_OP_INCREMENT = 0,
    NGX_PROXY_WASM_METRIC_OP_RECORD = 1,
    NGX_PROXY_WASM_METRIC_OP_GET = 2
} ngx_proxy_wasm_metric_op_e;


/* What an operation on shared memory for the proxy's own code came to. */
typedef enum {
    NGX_PROXY_WASM_SHARED_DONE = 0,
    /* no such key, queue or metric (or an empty value) */
    NGX_PROXY_WASM_SHARED_ABSENT = 1,
    /* the CAS given is not the stored one */
    NGX_PROXY_WASM_SHARED_CAS_MISMATCH = 2,
    /* the cause is in *err */
    NGX_PROXY_WASM_SHARED_ERROR = 3
} ngx_proxy_wasm_shared_e;


/* What proxy_wasm_property makes of a path (property_key). */
typedef enum {
    NGX_PROXY_WASM_PROPERTY_KEY_VALID = 0,
    /* empty, or an empty segment */
    NGX_PROXY_WASM_PROPERTY_KEY_INVALID = 1,
    /* one of nginx's attributes: it cannot be defined */
    NGX_PROXY_WASM_PROPERTY_KEY_RESERVED = 2
} ngx_proxy_wasm_property_key_e;


/* A response produced by a filter with proxy_send_local_response. */
typedef struct {
    uint32_t                       status;
    ngx_proxy_wasm_str_t           body;
    ngx_proxy_wasm_str_t           details;
    const ngx_proxy_wasm_pair_t   *headers;
    size_t                         nheaders;
} ngx_proxy_wasm_local_response_t;


/*
 * Shared memory. nginx keeps the zones of wasm{} (slab pools, their locks,
 * trees and LRU lists, queue items, wakeups between workers); Rust keeps
 * the rules: which zone a key goes to and whose it is, CAS, who owns a
 * queue and which worker is told of its items, metric names and types.
 */

typedef enum {
    NGX_PROXY_WASM_ZONE_KV = 0,
    NGX_PROXY_WASM_ZONE_QUEUE = 1
} ngx_proxy_wasm_zone_kind_e;


/* A zone of wasm{} (shm_kv, shm_queue), as zone_add tells Rust of it. */
typedef struct {
    ngx_proxy_wasm_zone_kind_e     kind;
    /* its place among the zones of its kind: what zone_lock takes */
    uint32_t                       index;
    ngx_proxy_wasm_str_t           name;
    /*
     * share=: the modules that share the zone ("*": every one); without
     * it (shared 0) each module has its own part of the zone
     */
    uint32_t                       shared;
    const ngx_proxy_wasm_str_t    *share;
    size_t                         nshare;
} ngx_proxy_wasm_zone_conf_t;


/* What Rust keeps in a key-value zone, under its lock. */
typedef struct {
    /* the last CAS given; 0: none yet */
    uint32_t                       last_cas;
} ngx_proxy_wasm_kv_state_t;


/* A worker that registered a queue, and the items credited to it. */
typedef struct {
    /* 0: a free entry */
    int64_t                        pid;
    uint64_t                       credits;
} ngx_proxy_wasm_queue_worker_t;


/* What Rust keeps in a queue zone, under its lock. */
typedef struct {
    /* the vm id that registered the queue; none: owner_len 0 */
    uint8_t                        owner[128];
    uint32_t                       owner_len;
    /* the entry of workers the next item is credited to */
    uint32_t                       next;
    ngx_proxy_wasm_queue_worker_t  workers[256];
} ngx_proxy_wasm_queue_state_t;


/* What wake did. */
typedef enum {
    NGX_PROXY_WASM_WAKE_SENT = 0,
    /* the worker is gone (it exited without leaving its queues) */
    NGX_PROXY_WASM_WAKE_GONE = 1,
    /* it could not be told (logged): it finds the items when next woken */
    NGX_PROXY_WASM_WAKE_FAILED = 2
} ngx_proxy_wasm_wake_e;


/*
 * The most slots a metric may have (Rust's histograms have fewer): what
 * the metrics endpoint reads of a metric at once.
 */
#define NGX_PROXY_WASM_METRIC_SLOTS_MAX  64


/* A metric of the metrics zone as the endpoint read it: its stored name
 * and its slots. */
typedef struct {
    ngx_proxy_wasm_metric_type_e   type;
    ngx_proxy_wasm_str_t           name;
    const uint64_t                *slots;
    size_t                         nslots;
} ngx_proxy_wasm_metric_view_t;


/* A metric of the metrics zone, as metric_find_or_add found it. */
typedef struct {
    void                          *metric;
    /* the type and module it was made with */
    ngx_proxy_wasm_metric_type_e   type;
    ngx_proxy_wasm_str_t           owner;
} ngx_proxy_wasm_metric_found_t;


/*
 * Functions the C shim provides to Rust. "request" is an opaque
 * ngx_http_request_t pointer handed to Rust by chain_new; NULL means "no
 * request" (e.g. a root context), where it is allowed.
 */
typedef struct {
    /*
     * Log a message at a Proxy-Wasm level, attributed to a filter and a
     * context id (0: none). The request's log is used when there is one.
     */
    void      (*log)(void *request, ngx_proxy_wasm_log_level_e level,
                     ngx_proxy_wasm_str_t filter, uint32_t context_id,
                     ngx_proxy_wasm_str_t message);

    /* The Proxy-Wasm level at and above which log() writes anything. */
    ngx_proxy_wasm_log_level_e  (*log_level)(void *request);

    /*
     * All entries of a header map, pseudo-headers first. The pairs point
     * into nginx memory and stay valid until the map is changed. With a
     * too small array, returns TOO_SMALL and sets *n to the count needed.
     */
    ngx_proxy_wasm_list_e  (*headers_get)(void *request,
                                ngx_proxy_wasm_header_map_e map,
                                ngx_proxy_wasm_pair_t *pairs, size_t npairs,
                                size_t *n);

    /*
     * The first value of a header (the key is matched case-insensitively),
     * without gathering the map.
     */
    ngx_proxy_wasm_lookup_e  (*header_get)(void *request,
                                  ngx_proxy_wasm_header_map_e map,
                                  ngx_proxy_wasm_str_t key,
                                  ngx_proxy_wasm_str_t *value);

    /* Change a header map; the key is matched case-insensitively. */
    ngx_proxy_wasm_change_e  (*header_set)(void *request,
                                  ngx_proxy_wasm_header_map_e map,
                                  ngx_proxy_wasm_header_op_e op,
                                  ngx_proxy_wasm_str_t key,
                                  ngx_proxy_wasm_str_t value);

    /* An attribute of a request. ABSENT: no value now (no TLS, ...). */
    ngx_proxy_wasm_lookup_e  (*attribute_get)(void *request,
                                  ngx_proxy_wasm_attribute_e attribute,
                                  ngx_proxy_wasm_value_t *value);

    /* An nginx variable by name (any case), as $name would give it. */
    ngx_proxy_wasm_variable_e  (*variable_get)(void *request,
                                    ngx_proxy_wasm_str_t name,
                                    ngx_proxy_wasm_str_t *value);

    /* Sets a changeable nginx variable (set $name, $args, $limit_rate...). */
    ngx_proxy_wasm_change_e  (*variable_set)(void *request,
                                  ngx_proxy_wasm_str_t name,
                                  ngx_proxy_wasm_str_t value);

    /*
     * A static property of proxy_wasm_property, by its key (property_key):
     * the request's location's, or without a request those of http{}
     * whose values have no variables.
     */
    ngx_proxy_wasm_lookup_e  (*static_property_get)(void *request,
                                  ngx_proxy_wasm_str_t key,
                                  ngx_proxy_wasm_str_t *value);

    /*
     * A property of the namespace the proxy's own code serves (Lua's
     * set_host_properties_handlers), by its dotted path: its value lent
     * until the next call; ERROR: the handler failed (the shim logs why).
     */
    ngx_proxy_wasm_lookup_e  (*host_property_get)(void *request,
                                  ngx_proxy_wasm_str_t path,
                                  ngx_proxy_wasm_str_t *value);
    /* Sets one: READ_ONLY if the handler refused it, ERROR if it failed. */
    ngx_proxy_wasm_change_e  (*host_property_set)(void *request,
                                  ngx_proxy_wasm_str_t path,
                                  ngx_proxy_wasm_str_t value);

    /*
     * Come back to the request (chain_resume) once the current guest call
     * has returned: a filter continued, closed or answered it from outside
     * its own callbacks.
     */
    void      (*schedule_resume)(void *request);

    /*
     * Start a one-shot timer: after delay_ms, from the event loop, the shim
     * calls timer_fired(token) on the cycle's runtime. A worker shutting
     * down does not wait for it. Returns the timer, or NULL.
     */
    void     *(*timer_add)(uint64_t token, uint64_t delay_ms);
    /*
     * As timer_add, but a worker that shuts down waits for it (root
     * contexts finishing their work after on_done).
     */
    void     *(*timer_hold)(uint64_t token, uint64_t delay_ms);
    /* Stop a timer that has not fired. */
    void      (*timer_cancel)(void *timer);

    /*
     * Start an HTTP call: connect, send, and hand the response's bytes to
     * call_data, or its failure to call_end, always from the event loop
     * (never from within this function). NULL with *err (static text): the
     * target is not valid. "request" (may be NULL) picks the resolver.
     */
    void     *(*call_start)(void *request,
                            const ngx_proxy_wasm_call_params_t *params,
                            ngx_proxy_wasm_str_t *err);
    /* Drop a call that has not ended: nothing more is reported. */
    void      (*call_cancel)(void *call);
    /*
     * More bytes for a duplex call, sent as the connection takes them
     * (copied); never calls Rust. -1: the connection is broken (call_end
     * reports it from the event loop).
     */
    int32_t   (*call_send)(void *call, ngx_proxy_wasm_str_t data);

    /*
     * A zone of wasm{}, locked: the functions below that take a zone work
     * on it until zone_unlock. NULL: the zone is not mapped (while the
     * configuration is checked).
     */
    void     *(*zone_lock)(ngx_proxy_wasm_zone_kind_e kind, uint32_t index);
    void      (*zone_unlock)(void *zone);

    /* Key-value zones. */
    ngx_proxy_wasm_kv_state_t  *(*kv_state)(void *zone);
    /*
     * A key's value, lent until the zone is unlocked, and its CAS; counts
     * as a use of the entry (eviction=lru, slru).
     */
    ngx_proxy_wasm_lookup_e  (*kv_read)(void *zone, ngx_proxy_wasm_str_t key,
                                  ngx_proxy_wasm_str_t *value,
                                  uint32_t *cas);
    /* A key's CAS, without counting a use. */
    ngx_proxy_wasm_lookup_e  (*kv_cas)(void *zone, ngx_proxy_wasm_str_t key,
                                  uint32_t *cas);
    /*
     * Stores a key's value with its CAS. To make room it evicts, per the
     * zone's eviction=, only entries whose keys start with the key's first
     * namespace_len bytes (0: any entry).
     */
    ngx_proxy_wasm_store_e  (*kv_write)(void *zone, ngx_proxy_wasm_str_t key,
                                 size_t namespace_len,
                                 ngx_proxy_wasm_str_t value, uint32_t cas);

    /* Queue zones. */
    ngx_proxy_wasm_queue_state_t  *(*queue_state)(void *zone);
    ngx_proxy_wasm_store_e  (*queue_push)(void *zone,
                                 ngx_proxy_wasm_str_t item);
    /* The oldest item, lent until the zone is unlocked. */
    ngx_proxy_wasm_lookup_e  (*queue_peek)(void *zone,
                                  ngx_proxy_wasm_str_t *item);
    /* Removes the oldest item. */
    void      (*queue_drop)(void *zone);
    size_t    (*queue_len)(void *zone);

    /* This worker process. */
    int64_t   (*worker_pid)(void);
    /*
     * This worker starts listening for wakeups (once; it registered a
     * queue); 0 on success.
     */
    int32_t   (*wakeup_listen)(void);
    /*
     * Tells a worker (maybe this one) that it was credited items of a
     * queue: the shim calls queues_wakeup in that worker.
     */
    ngx_proxy_wasm_wake_e  (*wake)(int64_t pid, ngx_proxy_wasm_str_t queue);

    /*
     * The metric of that name in the metrics zone; made, its slots zeroed,
     * of that type for that module if it is new.
     */
    ngx_proxy_wasm_store_e  (*metric_find_or_add)(ngx_proxy_wasm_str_t name,
                                 ngx_proxy_wasm_metric_type_e type,
                                 ngx_proxy_wasm_str_t owner, size_t slots,
                                 ngx_proxy_wasm_metric_found_t *found);
    /* Lock-free operations on a slot of a metric (others are ignored). */
    void      (*metric_add)(void *metric, size_t slot, uint64_t delta);
    void      (*metric_store)(void *metric, size_t slot, uint64_t value);
    uint64_t  (*metric_load)(void *metric, size_t slot);
} ngx_proxy_wasm_host_t;


typedef struct ngx_proxy_wasm_runtime_s  ngx_proxy_wasm_runtime_t;
/* a request's run through the filter chain of its location */
typedef struct ngx_proxy_wasm_chain_s    ngx_proxy_wasm_chain_t;


/*
 * Functions the Rust library provides to C. Calls that can fail at
 * configuration time return 0 on success and -1 on failure, with the cause
 * in *err (owned by the runtime, valid until its next call).
 */
typedef struct {
    /* "ngx_proxy_wasm <version>, wasmtime <version>", static. */
    void      (*version)(ngx_proxy_wasm_str_t *out);

    /*
     * The key a proxy_wasm_property path is stored under (its dotted
     * form; "xds." before Envoy's former top-level names), in buf of
     * path.len + 4 bytes; needs no runtime.
     */
    ngx_proxy_wasm_property_key_e  (*property_key)(ngx_proxy_wasm_str_t path,
                                        uint8_t *buf, size_t *len);

    /*
     * Runtime: one per configuration cycle, created in the master. NULL:
     * the host table lacks a function.
     */
    ngx_proxy_wasm_runtime_t *(*runtime_new)(const ngx_proxy_wasm_host_t *host);
    /* The engine, with the wasm{} block's settings. */
    int32_t   (*runtime_configure)(ngx_proxy_wasm_runtime_t *rt,
                                   const ngx_proxy_wasm_runtime_conf_t *conf,
                                   ngx_proxy_wasm_str_t *err);
    void      (*runtime_free)(ngx_proxy_wasm_runtime_t *rt);

    /*
     * Compile the Wasm modules (.wasm, or .wat text), in parallel on
     * threads joined before it returns, and check their Proxy-Wasm ABI.
     * On failure, *failed is the index of the module the error is about.
     */
    int32_t   (*modules_load)(ngx_proxy_wasm_runtime_t *rt,
                              const ngx_proxy_wasm_module_source_t *modules,
                              size_t n, ngx_proxy_wasm_str_t *err,
                              size_t *failed);

    /*
     * A filter: a root context of a Wasm module with a plugin
     * configuration. Identical (module, configuration) pairs share one
     * filter. Runs the filter once (on_vm_start, on_configure) so a failing
     * one is caught at configuration time. Returns the filter id, or -1.
     */
    int32_t   (*filter_add)(ngx_proxy_wasm_runtime_t *rt,
                            ngx_proxy_wasm_str_t module,
                            ngx_proxy_wasm_str_t config,
                            ngx_proxy_wasm_str_t *err);

    /* Per worker: instantiate the modules and start every filter. */
    void      (*worker_init)(ngx_proxy_wasm_runtime_t *rt);
    void      (*worker_exit)(ngx_proxy_wasm_runtime_t *rt);
    /* The worker starts shutting down (gracefully). */
    void      (*worker_shutdown)(ngx_proxy_wasm_runtime_t *rt);
    /* A timer of timer_add fired. */
    void      (*timer_fired)(ngx_proxy_wasm_runtime_t *rt, uint64_t token);
    /* Bytes of a call's response. */
    ngx_proxy_wasm_call_progress_e  (*call_data)(ngx_proxy_wasm_runtime_t *rt,
                                         uint32_t token,
                                         ngx_proxy_wasm_str_t data);
    /* A call ended without a whole response. */
    void      (*call_end)(ngx_proxy_wasm_runtime_t *rt, uint32_t token,
                          ngx_proxy_wasm_call_end_e why,
                          ngx_proxy_wasm_str_t detail);
    /*
     * A zone of wasm{}, after the modules are loaded: -1 with *err when its
     * share= names no module.
     */
    int32_t   (*zone_add)(ngx_proxy_wasm_runtime_t *rt,
                          const ngx_proxy_wasm_zone_conf_t *zone,
                          ngx_proxy_wasm_str_t *err);
    /*
     * This worker was woken (wake): on_queue_ready for the items it was
     * credited, a batch per queue. 1: more are left, wake it again.
     */
    uint32_t  (*queues_wakeup)(ngx_proxy_wasm_runtime_t *rt);
    /*
     * This worker leaves its queues (it exits, or starts shutting down):
     * the items credited to it go to other workers.
     */
    void      (*queues_leave)(ngx_proxy_wasm_runtime_t *rt);
    /*
     * The metrics in the Prometheus text format, from their slots (read by
     * the caller), in the zone's order; the length it takes. With a too
     * small buf (or NULL) nothing is written.
     */
    size_t    (*metrics_text)(const ngx_proxy_wasm_metric_view_t *metrics,
                              size_t n, uint8_t *buf, size_t size);
    /*
     * Checks a metrics tag rule (a name and a regular expression): 0 if it
     * is one, else the length of why not, written into buf (cut at size).
     */
    size_t    (*metric_tag_check)(ngx_proxy_wasm_str_t name,
                                  ngx_proxy_wasm_str_t regex, uint8_t *buf,
                                  size_t size);

    /* Per request: the chain of filters configured for its location. */
    ngx_proxy_wasm_chain_t *(*chain_new)(ngx_proxy_wasm_runtime_t *rt,
                                  void *request, const uint32_t *filters,
                                  size_t nfilters,
                                  const ngx_proxy_wasm_chain_conf_t *conf);
    /* Whether a filter of the chain looks at bodies of that direction. */
    uint32_t  (*chain_wants_body)(ngx_proxy_wasm_chain_t *c,
                                  ngx_proxy_wasm_direction_e direction);
    void      (*chain_on_headers)(ngx_proxy_wasm_chain_t *c,
                                  ngx_proxy_wasm_direction_e direction,
                                  uint32_t end_of_stream,
                                  ngx_proxy_wasm_step_t *step);
    /* A chunk of body data, in parts; end_of_stream on the last one. */
    void      (*chain_on_body)(ngx_proxy_wasm_chain_t *c,
                               ngx_proxy_wasm_direction_e direction,
                               const ngx_proxy_wasm_str_t *parts,
                               size_t nparts, uint32_t end_of_stream,
                               ngx_proxy_wasm_step_t *step);
    /* The response trailers, after a body that ended without end_of_stream. */
    void      (*chain_on_trailers)(ngx_proxy_wasm_chain_t *c,
                                   ngx_proxy_wasm_direction_e direction,
                                   ngx_proxy_wasm_step_t *step);
    /* After schedule_resume: what the filters asked for, for a direction. */
    void      (*chain_resume)(ngx_proxy_wasm_chain_t *c,
                              ngx_proxy_wasm_direction_e direction,
                              ngx_proxy_wasm_step_t *step);
    /*
     * A side of a connection closed (the request direction: the
     * downstream's): its close callback, once.
     */
    void      (*chain_on_close)(ngx_proxy_wasm_chain_t *c,
                                ngx_proxy_wasm_direction_e direction,
                                ngx_proxy_wasm_peer_e peer);
    /* The response headers went out: no local response can replace them. */
    void      (*chain_response_sent)(ngx_proxy_wasm_chain_t *c);
    /* The response to send after NEXT_LOCAL_RESPONSE; 0 on success. */
    int32_t   (*chain_local_response)(ngx_proxy_wasm_chain_t *c,
                                      ngx_proxy_wasm_local_response_t *out);
    /*
     * The request is complete (its log phase): on_log, then on_done and
     * on_delete of every context, while the request can still be read.
     */
    void      (*chain_on_log)(ngx_proxy_wasm_chain_t *c);
    /*
     * A property filters set on the request (proxy_set_property) by its
     * key, lent until the next call on the chain.
     */
    ngx_proxy_wasm_lookup_e  (*chain_property)(ngx_proxy_wasm_chain_t *c,
                                  ngx_proxy_wasm_str_t key,
                                  ngx_proxy_wasm_str_t *value);
    /* Ends every context of the chain (on_done, on_delete) and frees it. */
    void      (*chain_free)(ngx_proxy_wasm_chain_t *c);

    /*
     * What the proxy's own code (the Lua API) reaches. Failures come with
     * their cause in *err, as configuration calls do; nothing here runs
     * guest code but filter_add (above, which in a running worker also
     * starts the filter there).
     */

    /*
     * The first segment of the property paths host_property_get and
     * host_property_set serve, in this worker: 0, or -1 with *err when it
     * cannot be one (a path of nginx's attributes, ...).
     */
    int32_t   (*host_properties_namespace)(ngx_proxy_wasm_runtime_t *rt,
                                           ngx_proxy_wasm_str_t ns,
                                           ngx_proxy_wasm_str_t *err);
    /*
     * A property of a request (NULL: none) as its filters see it, from its
     * chain when it has one (c may be NULL): its value lent until the next
     * call on the runtime. The host namespace is not served here.
     */
    ngx_proxy_wasm_lookup_e  (*property_get)(ngx_proxy_wasm_runtime_t *rt,
                                  void *request, ngx_proxy_wasm_chain_t *c,
                                  ngx_proxy_wasm_str_t path,
                                  ngx_proxy_wasm_str_t *value,
                                  ngx_proxy_wasm_str_t *err);
    /* Sets one: 0, or -1 with *err. Stored values need a chain. */
    int32_t   (*property_set)(ngx_proxy_wasm_runtime_t *rt, void *request,
                              ngx_proxy_wasm_chain_t *c,
                              ngx_proxy_wasm_str_t path,
                              ngx_proxy_wasm_str_t value,
                              ngx_proxy_wasm_str_t *err);
    /*
     * Shared memory, acting for a module ("owner"; empty: the proxy's own
     * part of per-module zones, and every zone with share=). Values are
     * lent until the next call on the runtime.
     */
    ngx_proxy_wasm_shared_e  (*kv_get)(ngx_proxy_wasm_runtime_t *rt,
                                  ngx_proxy_wasm_str_t owner,
                                  ngx_proxy_wasm_str_t key,
                                  ngx_proxy_wasm_str_t *value, uint32_t *cas,
                                  ngx_proxy_wasm_str_t *err);
    ngx_proxy_wasm_shared_e  (*kv_set)(ngx_proxy_wasm_runtime_t *rt,
                                  ngx_proxy_wasm_str_t owner,
                                  ngx_proxy_wasm_str_t key,
                                  ngx_proxy_wasm_str_t value, uint32_t cas,
                                  ngx_proxy_wasm_str_t *err);
    /* Into the queue "name" registered by queue_owner (empty: whoever). */
    ngx_proxy_wasm_shared_e  (*queue_enqueue)(ngx_proxy_wasm_runtime_t *rt,
                                  ngx_proxy_wasm_str_t owner,
                                  ngx_proxy_wasm_str_t queue_owner,
                                  ngx_proxy_wasm_str_t name,
                                  ngx_proxy_wasm_str_t item,
                                  ngx_proxy_wasm_str_t *err);
    /* A metric named as the owner's filters name it; its id. */
    ngx_proxy_wasm_shared_e  (*metric_define)(ngx_proxy_wasm_runtime_t *rt,
                                  ngx_proxy_wasm_str_t owner,
                                  ngx_proxy_wasm_metric_type_e type,
                                  ngx_proxy_wasm_str_t name, uint32_t *id,
                                  ngx_proxy_wasm_str_t *err);
    /* GET writes the value into *value. */
    ngx_proxy_wasm_shared_e  (*metric_apply)(ngx_proxy_wasm_runtime_t *rt,
                                  ngx_proxy_wasm_str_t owner, uint32_t id,
                                  ngx_proxy_wasm_metric_op_e op, int64_t arg,
                                  uint64_t *value, ngx_proxy_wasm_str_t *err);
} ngx_proxy_wasm_api_t;


/* The Rust library's only exported symbol. */
extern const ngx_proxy_wasm_api_t  ngx_proxy_wasm_api;


#endif /* _NGX_PROXY_WASM_H_INCLUDED_ */
