/*
 * Properties nginx holds: nginx variables (read and set by name), static
 * properties of proxy_wasm_property (keyed as Rust's property_key says),
 * and $proxy_wasm_property_<name>, which shows nginx what filters stored
 * with proxy_set_property. The facts behind Envoy's attributes are in
 * ngx_http_proxy_wasm_attributes.c.
 */

#include "ngx_proxy_wasm_shim.h"


#define NGX_HTTP_PROXY_WASM_PROPERTY_VAR  "proxy_wasm_property_"

/* variable names up to this length are lower-cased on the stack */
#define NGX_HTTP_PROXY_WASM_NAME_STACK  128


typedef struct {
    /* first, as ngx_proxy_wasm_property_add() wants */
    ngx_str_t                   key;
    ngx_http_complex_value_t    value;
} ngx_http_proxy_wasm_property_t;


/* proxy_wasm_property <path> <value> */
char *
ngx_http_proxy_wasm_property_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf = conf;

    ngx_str_t                         *value;
    ngx_http_proxy_wasm_property_t    *prop;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    prop = ngx_proxy_wasm_property_add(cf, &plcf->properties,
                                       sizeof(ngx_http_proxy_wasm_property_t));
    if (prop == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &prop->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_proxy_wasm_lookup_e
ngx_http_proxy_wasm_static_property_get(void *request,
    ngx_proxy_wasm_str_t key, ngx_proxy_wasm_str_t *value)
{
    ngx_http_request_t  *r = request;

    ngx_str_t                        v;
    ngx_http_conf_ctx_t             *http;
    ngx_http_proxy_wasm_loc_conf_t  *plcf;
    ngx_http_proxy_wasm_property_t  *prop;

    if (r != NULL) {
        plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

        if (ngx_http_proxy_wasm_request_gone(r)) {
            /* values with variables cannot be evaluated any more */
            r = NULL;
        }

    } else {
        /* a root context: the properties of http{} */
        if (!ngx_http_proxy_wasm_process_started) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        http = ngx_http_proxy_wasm_http_conf();
        if (http == NULL) {
            return NGX_PROXY_WASM_LOOKUP_ABSENT;
        }

        plcf = http->loc_conf[ngx_http_proxy_wasm_module.ctx_index];
    }

    if (plcf == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    prop = ngx_proxy_wasm_property_find(plcf->properties, key);

    if (prop == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    if (prop->value.lengths == NULL) {
        v = prop->value.value;

    } else if (r == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;

    } else if (ngx_http_complex_value(r, &prop->value, &v) != NGX_OK) {
        return NGX_PROXY_WASM_LOOKUP_ERROR;
    }

    value->data = v.data;
    value->len = v.len;

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


/*
 * Variables by name. The name is checked against nginx's variables first:
 * ngx_http_get_variable() logs an error for an unknown name, which is the
 * filter's business here, not nginx's.
 */
static ngx_http_variable_t *
ngx_http_proxy_wasm_find_variable(ngx_http_request_t *r, ngx_str_t *name,
    ngx_uint_t key, ngx_uint_t *prefix)
{
    ngx_uint_t                  i;
    ngx_http_variable_t        *v;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    *prefix = 0;

    v = ngx_hash_find(&cmcf->variables_hash, key, name->data, name->len);
    if (v != NULL) {
        return v;
    }

    v = cmcf->prefix_variables.elts;

    for (i = 0; i < cmcf->prefix_variables.nelts; i++) {
        if (name->len >= v[i].name.len
            && ngx_strncmp(name->data, v[i].name.data, v[i].name.len) == 0)
        {
            *prefix = 1;
            return &v[i];
        }
    }

    return NULL;
}


/*
 * A variable by name: lower-cased in buf (or the request's pool if it is
 * longer), with its hash key. NGX_DONE: no such variable; NGX_DECLINED:
 * the request is being freed.
 */
static ngx_int_t
ngx_http_proxy_wasm_lookup_variable(ngx_http_request_t *r,
    ngx_proxy_wasm_str_t in, u_char *buf, ngx_str_t *name, ngx_uint_t *key,
    ngx_http_variable_t **v, ngx_uint_t *prefix)
{
    if (r == NULL || ngx_http_proxy_wasm_request_gone(r)) {
        return NGX_DECLINED;
    }

    if (in.len == 0) {
        return NGX_DONE;
    }

    name->len = in.len;
    name->data = buf;

    if (in.len > NGX_HTTP_PROXY_WASM_NAME_STACK) {
        name->data = ngx_pnalloc(r->pool, in.len);
        if (name->data == NULL) {
            return NGX_ERROR;
        }
    }

    *key = ngx_hash_strlow(name->data, (u_char *) in.data, in.len);

    *v = ngx_http_proxy_wasm_find_variable(r, name, *key, prefix);

    return *v ? NGX_OK : NGX_DONE;
}


ngx_proxy_wasm_variable_e
ngx_http_proxy_wasm_variable_get(void *request, ngx_proxy_wasm_str_t in,
    ngx_proxy_wasm_str_t *value)
{
    ngx_http_request_t  *r = request;

    u_char                      buf[NGX_HTTP_PROXY_WASM_NAME_STACK];
    ngx_int_t                   rc;
    ngx_str_t                   name;
    ngx_uint_t                  key, prefix;
    ngx_http_variable_t        *v;
    ngx_http_variable_value_t  *vv;

    rc = ngx_http_proxy_wasm_lookup_variable(r, in, buf, &name, &key, &v,
                                             &prefix);
    switch (rc) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return NGX_PROXY_WASM_VARIABLE_NO_VALUE;
    case NGX_DONE:
        return NGX_PROXY_WASM_VARIABLE_UNKNOWN;
    default:
        return NGX_PROXY_WASM_VARIABLE_ERROR;
    }

    vv = ngx_http_get_variable(r, &name, key);
    if (vv == NULL) {
        return NGX_PROXY_WASM_VARIABLE_ERROR;
    }

    if (vv->not_found || !vv->valid) {
        return NGX_PROXY_WASM_VARIABLE_NO_VALUE;
    }

    value->data = vv->data;
    value->len = vv->len;

    return NGX_PROXY_WASM_VARIABLE_FOUND;
}


/* as ngx.var.<name> = value does in Lua */
ngx_proxy_wasm_change_e
ngx_http_proxy_wasm_variable_set(void *request, ngx_proxy_wasm_str_t in,
    ngx_proxy_wasm_str_t value)
{
    ngx_http_request_t  *r = request;

    u_char                     *data;
    u_char                      buf[NGX_HTTP_PROXY_WASM_NAME_STACK];
    ngx_int_t                   rc;
    ngx_str_t                   name;
    ngx_uint_t                  key, prefix;
    ngx_http_variable_t        *v;
    ngx_http_variable_value_t  *vv;

    rc = ngx_http_proxy_wasm_lookup_variable(r, in, buf, &name, &key, &v,
                                             &prefix);
    switch (rc) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    case NGX_DONE:
        return NGX_PROXY_WASM_CHANGE_UNKNOWN;
    default:
        return NGX_PROXY_WASM_CHANGE_ERROR;
    }

    if (prefix || !(v->flags & NGX_HTTP_VAR_CHANGEABLE)) {
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    }

    data = NULL;

    if (value.len) {
        data = ngx_pnalloc(r->pool, value.len);
        if (data == NULL) {
            return NGX_PROXY_WASM_CHANGE_ERROR;
        }

        ngx_memcpy(data, value.data, value.len);
    }

    if (v->set_handler) {
        vv = ngx_palloc(r->pool, sizeof(ngx_http_variable_value_t));
        if (vv == NULL) {
            return NGX_PROXY_WASM_CHANGE_ERROR;
        }

    } else if (v->flags & NGX_HTTP_VAR_INDEXED) {
        vv = &r->variables[v->index];

    } else {
        return NGX_PROXY_WASM_CHANGE_READ_ONLY;
    }

    vv->valid = 1;
    vv->not_found = 0;
    vv->no_cacheable = 0;
    vv->escape = 0;
    vv->len = value.len;
    vv->data = data;

    if (v->set_handler) {
        v->set_handler(r, vv, v->data);
    }

    return NGX_PROXY_WASM_CHANGE_DONE;
}


/* $proxy_wasm_property_<name>: what filters set on the request */
static ngx_int_t
ngx_http_proxy_wasm_property_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t  *name = (ngx_str_t *) data;

    ngx_proxy_wasm_str_t        path, value;
    ngx_http_proxy_wasm_ctx_t  *ctx;

    v->not_found = 1;

    ctx = ngx_http_proxy_wasm_get_ctx(r);
    if (ctx == NULL || ctx->chain == NULL) {
        return NGX_OK;
    }

    path.data = name->data + sizeof(NGX_HTTP_PROXY_WASM_PROPERTY_VAR) - 1;
    path.len = name->len - (sizeof(NGX_HTTP_PROXY_WASM_PROPERTY_VAR) - 1);

    if (ngx_proxy_wasm_api.chain_property(ctx->chain, path, &value)
        != NGX_PROXY_WASM_LOOKUP_FOUND)
    {
        return NGX_OK;
    }

    /* the chain lends it until its next call */
    v->data = ngx_pnalloc(r->pool, value.len + 1);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(v->data, value.data, value.len);
    v->len = value.len;
    v->valid = 1;
    v->not_found = 0;
    v->no_cacheable = 1;
    v->escape = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_proxy_wasm_add_variables(ngx_conf_t *cf)
{
    ngx_str_t             name = ngx_string(NGX_HTTP_PROXY_WASM_PROPERTY_VAR);
    ngx_http_variable_t  *v;

    v = ngx_http_add_variable(cf, &name,
                              NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX);
    if (v == NULL) {
        return NGX_ERROR;
    }

    v->get_handler = ngx_http_proxy_wasm_property_variable;

    return NGX_OK;
}
