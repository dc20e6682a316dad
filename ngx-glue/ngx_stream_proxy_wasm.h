/*
 * The stream module's own declarations (network filters): nginx's stream
 * headers are only there in builds with a stream module, so they stay out
 * of ngx_proxy_wasm_shim.h.
 */

#ifndef _NGX_STREAM_PROXY_WASM_H_INCLUDED_
#define _NGX_STREAM_PROXY_WASM_H_INCLUDED_


#include "ngx_proxy_wasm_shim.h"
#include <ngx_stream.h>


/* the chain holds data that goes to a connection */
#define NGX_STREAM_PROXY_WASM_BUFFERED  0x20

/* the longest variable name filters may ask for */
#define NGX_STREAM_PROXY_WASM_NAME_MAX  128

/* body parts handed to the chain at once without an allocation */
#define NGX_STREAM_PROXY_WASM_STACK_PARTS  8


typedef struct {
    ngx_array_t                    *filters;     /* uint32_t, or NULL */
    ngx_uint_t                      isolation;
    ngx_uint_t                      failure;
    size_t                          buffer_limit;
    ngx_msec_t                      hold_timeout;
    /* proxy_wasm_property: ngx_stream_proxy_wasm_property_t, or NULL */
    ngx_array_t                    *properties;
} ngx_stream_proxy_wasm_srv_conf_t;


typedef struct {
    /* first, as ngx_proxy_wasm_property_add() wants */
    ngx_str_t                       key;
    ngx_stream_complex_value_t      value;
} ngx_stream_proxy_wasm_property_t;


typedef struct {
    ngx_flag_t                      used;
} ngx_stream_proxy_wasm_main_conf_t;


/* One direction of the connection: the request direction is the
 * downstream's data, the response direction the upstream's. */
typedef struct {
    /* the proxy's buffers not handed to the chain yet (our links) */
    ngx_chain_t                    *pending;
    ngx_chain_t                   **pending_last;
    /* buffers of data the chain changed, and those being written */
    ngx_chain_t                    *free;
    ngx_chain_t                    *busy;
    /* what the filters hold */
    size_t                          held;
    /* the chain was asked to come back to this direction */
    unsigned                        resume:1;
    /* the data ended (handed to the chain) */
    unsigned                        ended:1;
    /* no filter has a data callback for it: it goes by the chain */
    unsigned                        bypass:1;
    /* its end went to the chain's close callback */
    unsigned                        reported:1;
} ngx_stream_proxy_wasm_flow_t;


typedef struct {
    ngx_stream_session_t           *session;
    ngx_proxy_wasm_chain_t         *chain;
    ngx_stream_proxy_wasm_flow_t    flows[2];
    ngx_event_t                     resume;
    ngx_event_t                     hold_timer;
    /* source.address, destination.address, once made */
    ngx_str_t                       addresses[2];
    /* on_new_connection went through the whole chain */
    unsigned                        connected:1;
    /* the chain failed or closed the connection */
    unsigned                        closing:1;
    unsigned                        logged:1;
} ngx_stream_proxy_wasm_ctx_t;


extern ngx_module_t  ngx_stream_proxy_wasm_module;

/* the host functions of sessions: ngx_stream_proxy_wasm_session.c */
extern const ngx_proxy_wasm_stream_host_t  ngx_stream_proxy_wasm_host;

/* the data path: ngx_stream_proxy_wasm_data.c */
extern ngx_stream_filter_pt  ngx_stream_proxy_wasm_next_filter;
ngx_int_t ngx_stream_proxy_wasm_filter(ngx_stream_session_t *s,
    ngx_chain_t *in, ngx_uint_t from_upstream);

/* filters ask to come back to the session (schedule_resume) */
void ngx_stream_proxy_wasm_schedule_resume(void *session);

/* where the data of a direction goes; NULL before the upstream connects */
ngx_connection_t *ngx_stream_proxy_wasm_destination(ngx_stream_session_t *s,
    ngx_uint_t from_upstream);


#endif /* _NGX_STREAM_PROXY_WASM_H_INCLUDED_ */
