/*
 * The host functions of stream{} sessions, which ngx_proxy_wasm_host.c
 * calls for a "request" that is a session: its log, its variables, the
 * facts behind Envoy's connection attributes.
 */

#include "ngx_stream_proxy_wasm.h"


static ngx_log_t *
ngx_stream_proxy_wasm_log_of(void *session)
{
    return ((ngx_stream_session_t *) session)->connection->log;
}


/*
 * A variable by name (any case). The name is lower-cased on the stack: a
 * session's pool lives as long as its connection, and filters may read
 * variables with every read of data.
 */
static ngx_proxy_wasm_variable_e
ngx_stream_proxy_wasm_variable_get(void *session, ngx_proxy_wasm_str_t name,
    ngx_proxy_wasm_str_t *value)
{
    u_char                        lowcase[NGX_STREAM_PROXY_WASM_NAME_MAX];
    ngx_str_t                     var;
    ngx_uint_t                    key;
    ngx_stream_session_t         *s = session;
    ngx_stream_variable_value_t  *vv;
    ngx_stream_core_main_conf_t  *cmcf;

    if (name.len > sizeof(lowcase)) {
        /* longer than any variable's name */
        return NGX_PROXY_WASM_VARIABLE_UNKNOWN;
    }

    key = ngx_hash_strlow(lowcase, (u_char *) name.data, name.len);
    var.data = lowcase;
    var.len = name.len;

    cmcf = ngx_stream_get_module_main_conf(s, ngx_stream_core_module);

    if (ngx_hash_find(&cmcf->variables_hash, key, var.data, var.len) == NULL) {
        return NGX_PROXY_WASM_VARIABLE_UNKNOWN;
    }

    vv = ngx_stream_get_variable(s, &var, key);

    if (vv == NULL) {
        return NGX_PROXY_WASM_VARIABLE_ERROR;
    }

    if (vv->not_found) {
        return NGX_PROXY_WASM_VARIABLE_NO_VALUE;
    }

    value->data = vv->data;
    value->len = vv->len;

    return NGX_PROXY_WASM_VARIABLE_FOUND;
}


/* A fact read from a variable of nginx's (those of the SSL modules). */
static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_from_variable(ngx_stream_session_t *s, char *name,
    ngx_proxy_wasm_value_t *value)
{
    ngx_proxy_wasm_str_t  var, v;

    var.data = (uint8_t *) name;
    var.len = ngx_strlen(name);

    if (ngx_stream_proxy_wasm_variable_get(s, var, &v)
        != NGX_PROXY_WASM_VARIABLE_FOUND
        || v.len == 0)
    {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    ngx_proxy_wasm_value_str(value, (u_char *) v.data, v.len);

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


/*
 * source.address, destination.address: made once per session (its pool
 * lives as long as the connection), then lent.
 */
static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_address(ngx_stream_session_t *s,
    ngx_proxy_wasm_attribute_e attribute, ngx_proxy_wasm_value_t *value)
{
    ngx_str_t                    *known;
    ngx_connection_t             *c;
    ngx_proxy_wasm_lookup_e       rc;
    ngx_stream_proxy_wasm_ctx_t  *ctx;

    c = s->connection;
    ctx = ngx_stream_get_module_ctx(s, ngx_stream_proxy_wasm_module);

    if (ctx == NULL) {
        return ngx_proxy_wasm_endpoint(c->pool, c, attribute, value);
    }

    known = &ctx->addresses[attribute == NGX_PROXY_WASM_ATTR_DESTINATION_ADDRESS];

    if (known->data != NULL) {
        ngx_proxy_wasm_value_str(value, known->data, known->len);
        return NGX_PROXY_WASM_LOOKUP_FOUND;
    }

    rc = ngx_proxy_wasm_endpoint(c->pool, c, attribute, value);

    if (rc == NGX_PROXY_WASM_LOOKUP_FOUND) {
        known->data = (u_char *) value->string.data;
        known->len = value->string.len;
    }

    return rc;
}


static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_attribute_get(void *session,
    ngx_proxy_wasm_attribute_e attribute, ngx_proxy_wasm_value_t *value)
{
    ngx_connection_t         *c;
    ngx_stream_session_t     *s = session;
    ngx_stream_upstream_t    *u;
    ngx_proxy_wasm_lookup_e   rc;

    c = s->connection;
    u = s->upstream;

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_SOURCE_ADDRESS:
    case NGX_PROXY_WASM_ATTR_DESTINATION_ADDRESS:
        return ngx_stream_proxy_wasm_address(s, attribute, value);

    case NGX_PROXY_WASM_ATTR_SOURCE_PORT:
    case NGX_PROXY_WASM_ATTR_DESTINATION_PORT:
    case NGX_PROXY_WASM_ATTR_CONNECTION_ID:
        return ngx_proxy_wasm_endpoint(c->pool, c, attribute, value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_MTLS:
        if (ngx_stream_proxy_wasm_from_variable(s, "ssl_client_verify", value)
            != NGX_PROXY_WASM_LOOKUP_FOUND)
        {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        ngx_proxy_wasm_value_bool(value, value->string.len == 7
                                  && ngx_strncmp(value->string.data,
                                                 "SUCCESS", 7) == 0);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME:
        rc = ngx_stream_proxy_wasm_from_variable(s, "ssl_server_name", value);

        if (rc != NGX_PROXY_WASM_LOOKUP_FOUND) {
            rc = ngx_stream_proxy_wasm_from_variable(s,
                                                     "ssl_preread_server_name",
                                                     value);
        }

        return rc;

    case NGX_PROXY_WASM_ATTR_CONNECTION_TLS_VERSION:
        return ngx_stream_proxy_wasm_from_variable(s, "ssl_protocol", value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE:
        return ngx_stream_proxy_wasm_from_variable(s, "ssl_client_s_dn",
                                                   value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_PEER_CERTIFICATE:
        return ngx_stream_proxy_wasm_from_variable(s, "ssl_client_escaped_cert",
                                                   value);

    case NGX_PROXY_WASM_ATTR_UPSTREAM_ADDRESS:
        if (u == NULL || u->peer.name == NULL) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        ngx_proxy_wasm_value_str(value, u->peer.name->data,
                                 u->peer.name->len);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    case NGX_PROXY_WASM_ATTR_UPSTREAM_PORT:
        if (u == NULL) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        return ngx_proxy_wasm_port(u->peer.sockaddr, value);

    case NGX_PROXY_WASM_ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT:
        if (u == NULL || s->upstream_states == NULL) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        ngx_proxy_wasm_value_int(value, s->upstream_states->nelts);
        return NGX_PROXY_WASM_LOOKUP_FOUND;

    default:
        /* the facts of HTTP requests */
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }
}


/* A property of proxy_wasm_property, with the session's variables. */
static ngx_proxy_wasm_lookup_e
ngx_stream_proxy_wasm_static_property_get(void *session,
    ngx_proxy_wasm_str_t key, ngx_proxy_wasm_str_t *value)
{
    ngx_str_t                          v;
    ngx_stream_session_t              *s = session;
    ngx_stream_proxy_wasm_property_t  *prop;
    ngx_stream_proxy_wasm_srv_conf_t  *pscf;

    pscf = ngx_stream_get_module_srv_conf(s, ngx_stream_proxy_wasm_module);
    prop = ngx_proxy_wasm_property_find(pscf->properties, key);

    if (prop == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    if (ngx_stream_complex_value(s, &prop->value, &v) != NGX_OK) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    value->data = v.data;
    value->len = v.len;

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


const ngx_proxy_wasm_stream_host_t  ngx_stream_proxy_wasm_host = {
    .log = ngx_stream_proxy_wasm_log_of,
    .attribute_get = ngx_stream_proxy_wasm_attribute_get,
    .variable_get = ngx_stream_proxy_wasm_variable_get,
    .static_property_get = ngx_stream_proxy_wasm_static_property_get,
    .schedule_resume = ngx_stream_proxy_wasm_schedule_resume,
};
