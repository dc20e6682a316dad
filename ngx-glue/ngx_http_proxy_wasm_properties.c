/*
 * Properties: the request facts behind Envoy's attributes, nginx
 * variables (read and set by name), static properties of
 * proxy_wasm_property, and $proxy_wasm_property_<name>, which shows nginx
 * what filters stored with proxy_set_property.
 */

#include "ngx_http_proxy_wasm.h"


#define NGX_HTTP_PROXY_WASM_PROPERTY_VAR  "proxy_wasm_property_"

/* variable names up to this length are lower-cased on the stack */
#define NGX_HTTP_PROXY_WASM_NAME_STACK  128


typedef struct {
    ngx_str_t                   path;        /* dotted, canonical */
    ngx_http_complex_value_t    value;
} ngx_http_proxy_wasm_property_t;


/*
 * Attributes of Envoy's that filters cannot set: properties of these
 * namespaces come from nginx, not from proxy_wasm_property.
 */
static ngx_str_t  ngx_http_proxy_wasm_reserved[] = {
    ngx_string("request"),
    ngx_string("response"),
    ngx_string("source"),
    ngx_string("destination"),
    ngx_string("connection"),
    ngx_string("upstream"),
    ngx_string("ngx"),
    ngx_string("plugin_name"),
    ngx_string("plugin_root_id"),
    ngx_string("plugin_vm_id"),
    ngx_null_string
};


/* Envoy's former top-level names of xds.* attributes */
static ngx_str_t  ngx_http_proxy_wasm_legacy_xds[] = {
    ngx_string("node"),
    ngx_string("cluster_name"),
    ngx_string("cluster_metadata"),
    ngx_string("listener_direction"),
    ngx_string("listener_metadata"),
    ngx_string("route_name"),
    ngx_string("route_metadata"),
    ngx_string("upstream_host_metadata"),
    ngx_null_string
};


static ngx_int_t
ngx_http_proxy_wasm_first_segment_in(ngx_str_t *path, ngx_str_t *names)
{
    size_t  len;

    for ( /* void */ ; names->len; names++) {
        len = names->len;

        if (path->len >= len
            && ngx_strncmp(path->data, names->data, len) == 0
            && (path->len == len || path->data[len] == '.'))
        {
            return 1;
        }
    }

    return 0;
}


/* proxy_wasm_property <path> <value> */
char *
ngx_http_proxy_wasm_property_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf = conf;

    u_char                            *p;
    ngx_str_t                         *value, path;
    ngx_uint_t                         i;
    ngx_http_proxy_wasm_property_t    *prop;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;
    path = value[1];

    if (path.len == 0 || path.data[0] == '.' || path.data[path.len - 1] == '.'
        || ngx_strnstr(path.data, "..", path.len) != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid property path \"%V\": segments are "
                           "joined by single dots", &path);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_proxy_wasm_first_segment_in(&path,
                                             ngx_http_proxy_wasm_reserved))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "property \"%V\" is one of nginx's attributes "
                           "and cannot be defined", &path);
        return NGX_CONF_ERROR;
    }

    /* "node.id" is "xds.node.id", as in Envoy */
    if (ngx_http_proxy_wasm_first_segment_in(&path,
                                             ngx_http_proxy_wasm_legacy_xds))
    {
        p = ngx_pnalloc(cf->pool, path.len + 4);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(p, "xds.", 4);
        ngx_memcpy(p + 4, path.data, path.len);
        path.data = p;
        path.len += 4;
    }

    if (plcf->properties == NGX_CONF_UNSET_PTR) {
        plcf->properties = ngx_array_create(cf->pool, 4,
                                    sizeof(ngx_http_proxy_wasm_property_t));
        if (plcf->properties == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    prop = plcf->properties->elts;

    for (i = 0; i < plcf->properties->nelts; i++) {
        if (prop[i].path.len == path.len
            && ngx_strncmp(prop[i].path.data, path.data, path.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "property \"%V\" is already defined here",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    prop = ngx_array_push(plcf->properties);
    if (prop == NULL) {
        return NGX_CONF_ERROR;
    }

    prop->path = path;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &prop->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * A level's properties, then those it inherits that it does not define
 * itself: a location adds to its server's and http's.
 */
char *
ngx_http_proxy_wasm_merge_properties(ngx_conf_t *cf,
    ngx_http_proxy_wasm_loc_conf_t *prev, ngx_http_proxy_wasm_loc_conf_t *conf)
{
    ngx_uint_t                       i, j;
    ngx_http_proxy_wasm_property_t  *own, *inherited, *prop;

    if (conf->properties == NGX_CONF_UNSET_PTR) {
        conf->properties = (prev->properties == NGX_CONF_UNSET_PTR)
                           ? NULL : prev->properties;
        return NGX_CONF_OK;
    }

    if (prev->properties == NGX_CONF_UNSET_PTR || prev->properties == NULL) {
        return NGX_CONF_OK;
    }

    inherited = prev->properties->elts;

    for (i = 0; i < prev->properties->nelts; i++) {
        own = conf->properties->elts;

        for (j = 0; j < conf->properties->nelts; j++) {
            if (own[j].path.len == inherited[i].path.len
                && ngx_strncmp(own[j].path.data, inherited[i].path.data,
                               own[j].path.len) == 0)
            {
                break;
            }
        }

        if (j < conf->properties->nelts) {
            continue;
        }

        prop = ngx_array_push(conf->properties);
        if (prop == NULL) {
            return NGX_CONF_ERROR;
        }

        *prop = inherited[i];
    }

    return NGX_CONF_OK;
}


uint32_t
ngx_http_proxy_wasm_static_property_get(void *request,
    ngx_proxy_wasm_str_t path, ngx_proxy_wasm_str_t *value)
{
    ngx_http_request_t  *r = request;

    ngx_str_t                        v;
    ngx_uint_t                       i;
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
            return NGX_PROXY_WASM_HOST_DECLINED;
        }

        http = ngx_http_proxy_wasm_http_conf();
        if (http == NULL) {
            return NGX_PROXY_WASM_HOST_DECLINED;
        }

        plcf = http->loc_conf[ngx_http_proxy_wasm_module.ctx_index];
    }

    if (plcf == NULL || plcf->properties == NULL
        || plcf->properties == NGX_CONF_UNSET_PTR)
    {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    prop = plcf->properties->elts;

    for (i = 0; i < plcf->properties->nelts; i++) {
        if (prop[i].path.len != path.len
            || ngx_strncmp(prop[i].path.data, path.data, path.len) != 0)
        {
            continue;
        }

        if (prop[i].value.lengths == NULL) {
            v = prop[i].value.value;

        } else if (r == NULL) {
            return NGX_PROXY_WASM_HOST_DECLINED;

        } else if (ngx_http_complex_value(r, &prop[i].value, &v) != NGX_OK) {
            return NGX_PROXY_WASM_HOST_ERROR;
        }

        value->data = v.data;
        value->len = v.len;
        return NGX_PROXY_WASM_HOST_OK;
    }

    return NGX_PROXY_WASM_HOST_DECLINED;
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
 * longer), with its hash key. NOT_FOUND: no such variable.
 */
static uint32_t
ngx_http_proxy_wasm_lookup_variable(ngx_http_request_t *r,
    ngx_proxy_wasm_str_t in, u_char *buf, ngx_str_t *name, ngx_uint_t *key,
    ngx_http_variable_t **v, ngx_uint_t *prefix)
{
    if (r == NULL || ngx_http_proxy_wasm_request_gone(r)) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    if (in.len == 0) {
        return NGX_PROXY_WASM_HOST_NOT_FOUND;
    }

    name->len = in.len;
    name->data = buf;

    if (in.len > NGX_HTTP_PROXY_WASM_NAME_STACK) {
        name->data = ngx_pnalloc(r->pool, in.len);
        if (name->data == NULL) {
            return NGX_PROXY_WASM_HOST_ERROR;
        }
    }

    *key = ngx_hash_strlow(name->data, (u_char *) in.data, in.len);

    *v = ngx_http_proxy_wasm_find_variable(r, name, *key, prefix);

    return *v ? NGX_PROXY_WASM_HOST_OK : NGX_PROXY_WASM_HOST_NOT_FOUND;
}


uint32_t
ngx_http_proxy_wasm_variable_get(void *request, ngx_proxy_wasm_str_t in,
    ngx_proxy_wasm_str_t *value)
{
    ngx_http_request_t  *r = request;

    u_char                      buf[NGX_HTTP_PROXY_WASM_NAME_STACK];
    uint32_t                    rc;
    ngx_str_t                   name;
    ngx_uint_t                  key, prefix;
    ngx_http_variable_t        *v;
    ngx_http_variable_value_t  *vv;

    rc = ngx_http_proxy_wasm_lookup_variable(r, in, buf, &name, &key, &v,
                                             &prefix);
    if (rc != NGX_PROXY_WASM_HOST_OK) {
        return rc;
    }

    vv = ngx_http_get_variable(r, &name, key);
    if (vv == NULL) {
        return NGX_PROXY_WASM_HOST_ERROR;
    }

    if (vv->not_found || !vv->valid) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    value->data = vv->data;
    value->len = vv->len;

    return NGX_PROXY_WASM_HOST_OK;
}


/* as ngx.var.<name> = value does in Lua */
uint32_t
ngx_http_proxy_wasm_variable_set(void *request, ngx_proxy_wasm_str_t in,
    ngx_proxy_wasm_str_t value)
{
    ngx_http_request_t  *r = request;

    u_char                     *data;
    u_char                      buf[NGX_HTTP_PROXY_WASM_NAME_STACK];
    uint32_t                    rc;
    ngx_str_t                   name;
    ngx_uint_t                  key, prefix;
    ngx_http_variable_t        *v;
    ngx_http_variable_value_t  *vv;

    rc = ngx_http_proxy_wasm_lookup_variable(r, in, buf, &name, &key, &v,
                                             &prefix);
    if (rc != NGX_PROXY_WASM_HOST_OK) {
        return rc;
    }

    if (prefix || !(v->flags & NGX_HTTP_VAR_CHANGEABLE)) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    data = NULL;

    if (value.len) {
        data = ngx_pnalloc(r->pool, value.len);
        if (data == NULL) {
            return NGX_PROXY_WASM_HOST_ERROR;
        }

        ngx_memcpy(data, value.data, value.len);
    }

    if (v->set_handler) {
        vv = ngx_palloc(r->pool, sizeof(ngx_http_variable_value_t));
        if (vv == NULL) {
            return NGX_PROXY_WASM_HOST_ERROR;
        }

    } else if (v->flags & NGX_HTTP_VAR_INDEXED) {
        vv = &r->variables[v->index];

    } else {
        return NGX_PROXY_WASM_HOST_DECLINED;
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

    return NGX_PROXY_WASM_HOST_OK;
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
    if (ctx == NULL || ctx->stream == NULL) {
        return NGX_OK;
    }

    path.data = name->data + sizeof(NGX_HTTP_PROXY_WASM_PROPERTY_VAR) - 1;
    path.len = name->len - (sizeof(NGX_HTTP_PROXY_WASM_PROPERTY_VAR) - 1);

    if (ngx_proxy_wasm_api.stream_property(ctx->stream, path, &value)
        != NGX_PROXY_WASM_HOST_OK)
    {
        return NGX_OK;
    }

    /* the stream lends it until its next call */
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


/* attributes */

static void
ngx_http_proxy_wasm_value_int(ngx_proxy_wasm_value_t *value, int64_t n)
{
    value->kind = NGX_PROXY_WASM_VALUE_INT;
    value->integer = n;
}


static void
ngx_http_proxy_wasm_value_bool(ngx_proxy_wasm_value_t *value, ngx_uint_t b)
{
    value->kind = NGX_PROXY_WASM_VALUE_BOOL;
    value->integer = b ? 1 : 0;
}


static void
ngx_http_proxy_wasm_value_str(ngx_proxy_wasm_value_t *value, u_char *data,
    size_t len)
{
    value->kind = NGX_PROXY_WASM_VALUE_STRING;
    value->string.data = data;
    value->string.len = len;
}


/* "ip:port" ("[ip6]:port"; a unix socket's path) */
static uint32_t
ngx_http_proxy_wasm_address(ngx_http_request_t *r, struct sockaddr *sa,
    socklen_t socklen, ngx_proxy_wasm_value_t *value)
{
    u_char  *p;
    size_t   len;

    if (sa == NULL) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    p = ngx_pnalloc(r->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_PROXY_WASM_HOST_ERROR;
    }

    len = ngx_sock_ntop(sa, socklen, p, NGX_SOCKADDR_STRLEN, 1);

#if (NGX_HAVE_UNIX_DOMAIN)
    if (sa->sa_family == AF_UNIX && len > 5) {
        /* "unix:/path": Envoy names a pipe by its path */
        p += 5;
        len -= 5;
    }
#endif

    ngx_http_proxy_wasm_value_str(value, p, len);

    return NGX_PROXY_WASM_HOST_OK;
}


static uint32_t
ngx_http_proxy_wasm_port(struct sockaddr *sa, ngx_proxy_wasm_value_t *value)
{
    if (sa == NULL
        || (sa->sa_family != AF_INET
#if (NGX_HAVE_INET6)
            && sa->sa_family != AF_INET6
#endif
        ))
    {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    ngx_http_proxy_wasm_value_int(value, ngx_inet_get_port(sa));

    return NGX_PROXY_WASM_HOST_OK;
}


static uint32_t
ngx_http_proxy_wasm_protocol(ngx_http_request_t *r,
    ngx_proxy_wasm_value_t *value)
{
    ngx_str_t  s;

    switch (r->http_version) {
    case NGX_HTTP_VERSION_9:
        ngx_str_set(&s, "HTTP/0.9");
        break;
    case NGX_HTTP_VERSION_10:
        ngx_str_set(&s, "HTTP/1.0");
        break;
    case NGX_HTTP_VERSION_11:
        ngx_str_set(&s, "HTTP/1.1");
        break;
    case NGX_HTTP_VERSION_20:
        ngx_str_set(&s, "HTTP/2");
        break;
#ifdef NGX_HTTP_VERSION_30
    case NGX_HTTP_VERSION_30:
        ngx_str_set(&s, "HTTP/3");
        break;
#endif
    default:
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    ngx_http_proxy_wasm_value_str(value, s.data, s.len);

    return NGX_PROXY_WASM_HOST_OK;
}


/* an attribute that is an nginx variable's value ("request_id", ...) */
static uint32_t
ngx_http_proxy_wasm_variable_value(ngx_http_request_t *r, const char *name,
    ngx_proxy_wasm_value_t *value)
{
    uint32_t              rc;
    ngx_proxy_wasm_str_t  var, v;

    var.data = (const uint8_t *) name;
    var.len = ngx_strlen(name);

    rc = ngx_http_proxy_wasm_variable_get(r, var, &v);
    if (rc != NGX_PROXY_WASM_HOST_OK) {
        return rc == NGX_PROXY_WASM_HOST_ERROR ? rc
                                               : NGX_PROXY_WASM_HOST_DECLINED;
    }

    ngx_http_proxy_wasm_value_str(value, (u_char *) v.data, v.len);

    return NGX_PROXY_WASM_HOST_OK;
}


#if (NGX_HTTP_SSL)

static uint32_t
ngx_http_proxy_wasm_copy_bio(ngx_http_request_t *r, BIO *bio,
    ngx_proxy_wasm_value_t *value)
{
    u_char  *p;
    size_t   len;

    len = BIO_pending(bio);

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_PROXY_WASM_HOST_ERROR;
    }

    if (len && BIO_read(bio, p, (int) len) != (int) len) {
        return NGX_PROXY_WASM_HOST_ERROR;
    }

    ngx_http_proxy_wasm_value_str(value, p, len);

    return NGX_PROXY_WASM_HOST_OK;
}


/* the subject in RFC 2253 form, as Envoy gives it; "" without a certificate */
static uint32_t
ngx_http_proxy_wasm_subject(ngx_http_request_t *r, X509 *cert,
    ngx_proxy_wasm_value_t *value)
{
    BIO       *bio;
    uint32_t   rc;

    if (cert == NULL) {
        ngx_http_proxy_wasm_value_str(value, (u_char *) "", 0);
        return NGX_PROXY_WASM_HOST_OK;
    }

    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        return NGX_PROXY_WASM_HOST_ERROR;
    }

    if (X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0,
                           XN_FLAG_RFC2253) < 0)
    {
        BIO_free(bio);
        return NGX_PROXY_WASM_HOST_ERROR;
    }

    rc = ngx_http_proxy_wasm_copy_bio(r, bio, value);
    BIO_free(bio);

    return rc;
}


/* the first subject alternative name of a type (GEN_DNS, GEN_URI) */
static uint32_t
ngx_http_proxy_wasm_san(ngx_http_request_t *r, X509 *cert, int type,
    ngx_proxy_wasm_value_t *value)
{
    int               i, n;
    u_char           *p;
    uint32_t          rc;
    GENERAL_NAME     *name;
    GENERAL_NAMES    *names;
    ASN1_IA5STRING   *s;

    if (cert == NULL) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (names == NULL) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    rc = NGX_PROXY_WASM_HOST_DECLINED;
    n = sk_GENERAL_NAME_num(names);

    for (i = 0; i < n; i++) {
        name = sk_GENERAL_NAME_value(names, i);

        if (name->type != type) {
            continue;
        }

        s = (type == GEN_DNS) ? name->d.dNSName
                              : name->d.uniformResourceIdentifier;

        p = ngx_pnalloc(r->pool, ASN1_STRING_length(s) + 1);
        if (p == NULL) {
            rc = NGX_PROXY_WASM_HOST_ERROR;
            break;
        }

        ngx_memcpy(p, ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
        ngx_http_proxy_wasm_value_str(value, p, ASN1_STRING_length(s));
        rc = NGX_PROXY_WASM_HOST_OK;
        break;
    }

    GENERAL_NAMES_free(names);

    return rc;
}


static uint32_t
ngx_http_proxy_wasm_sha256(ngx_http_request_t *r, X509 *cert,
    ngx_proxy_wasm_value_t *value)
{
    u_char        *p;
    u_char         md[EVP_MAX_MD_SIZE];
    unsigned int   n;

    if (cert == NULL) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    if (X509_digest(cert, EVP_sha256(), md, &n) == 0) {
        return NGX_PROXY_WASM_HOST_ERROR;
    }

    p = ngx_pnalloc(r->pool, 2 * n);
    if (p == NULL) {
        return NGX_PROXY_WASM_HOST_ERROR;
    }

    ngx_hex_dump(p, md, n);
    ngx_http_proxy_wasm_value_str(value, p, 2 * n);

    return NGX_PROXY_WASM_HOST_OK;
}


static uint32_t
ngx_http_proxy_wasm_tls(ngx_http_request_t *r, uint32_t attribute,
    ngx_proxy_wasm_value_t *value)
{
    SSL         *ssl;
    X509        *peer;
    uint32_t     rc;
    const char  *s;

    if (r->connection->ssl == NULL) {
        switch (attribute) {
        case NGX_PROXY_WASM_ATTR_CONNECTION_MTLS:
            ngx_http_proxy_wasm_value_bool(value, 0);
            return NGX_PROXY_WASM_HOST_OK;
        case NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME:
            ngx_http_proxy_wasm_value_str(value, (u_char *) "", 0);
            return NGX_PROXY_WASM_HOST_OK;
        default:
            return NGX_PROXY_WASM_HOST_DECLINED;
        }
    }

    ssl = r->connection->ssl->connection;

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME:
#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME
        s = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
#else
        s = NULL;
#endif
        s = s ? s : "";
        ngx_http_proxy_wasm_value_str(value, (u_char *) s, ngx_strlen(s));
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_CONNECTION_TLS_VERSION:
        s = SSL_get_version(ssl);
        ngx_http_proxy_wasm_value_str(value, (u_char *) s, ngx_strlen(s));
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_LOCAL_CERTIFICATE:
        return ngx_http_proxy_wasm_subject(r, SSL_get_certificate(ssl), value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_LOCAL_CERTIFICATE:
        return ngx_http_proxy_wasm_san(r, SSL_get_certificate(ssl), GEN_DNS,
                                       value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_LOCAL_CERTIFICATE:
        return ngx_http_proxy_wasm_san(r, SSL_get_certificate(ssl), GEN_URI,
                                       value);
    }

    /* the peer's certificate: a reference to drop */
    peer = SSL_get_peer_certificate(ssl);

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_CONNECTION_MTLS:
        ngx_http_proxy_wasm_value_bool(value, peer != NULL);
        rc = NGX_PROXY_WASM_HOST_OK;
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE:
        rc = ngx_http_proxy_wasm_subject(r, peer, value);
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST:
        rc = ngx_http_proxy_wasm_sha256(r, peer, value);
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE:
        rc = ngx_http_proxy_wasm_san(r, peer, GEN_DNS, value);
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE:
        rc = ngx_http_proxy_wasm_san(r, peer, GEN_URI, value);
        break;

    case NGX_PROXY_WASM_ATTR_CONNECTION_PEER_CERTIFICATE:
        /* Envoy's URL-encoded PEM */
        rc = peer ? ngx_http_proxy_wasm_variable_value(r,
                                                  "ssl_client_escaped_cert",
                                                  value)
                  : NGX_PROXY_WASM_HOST_DECLINED;
        break;

    default:
        rc = NGX_PROXY_WASM_HOST_DECLINED;
    }

    if (peer) {
        X509_free(peer);
    }

    return rc;
}

#endif


/*
 * Envoy's time from the first byte to the upstream to its last one back:
 * $upstream_response_time of the last server tried, once it answered.
 */
static uint32_t
ngx_http_proxy_wasm_backend_latency(ngx_http_request_t *r,
    ngx_proxy_wasm_value_t *value)
{
    ngx_http_upstream_state_t  *state;

    if (r->upstream_states == NULL || r->upstream_states->nelts == 0) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    state = r->upstream_states->elts;
    state = &state[r->upstream_states->nelts - 1];

    if (state->response_time == (ngx_msec_t) -1) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    ngx_http_proxy_wasm_value_int(value,
                                  (int64_t) state->response_time * 1000000);

    return NGX_PROXY_WASM_HOST_OK;
}


static uint32_t
ngx_http_proxy_wasm_upstream(ngx_http_request_t *r, uint32_t attribute,
    ngx_proxy_wasm_value_t *value)
{
    const char            *s;
    ngx_http_upstream_t   *u;

    if (attribute == NGX_PROXY_WASM_ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT) {
        /* one state per upstream server tried */
        ngx_http_proxy_wasm_value_int(value, r->upstream_states
                                             ? r->upstream_states->nelts : 0);
        return NGX_PROXY_WASM_HOST_OK;
    }

    u = r->upstream;

    if (u == NULL || u->peer.sockaddr == NULL) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_UPSTREAM_ADDRESS:
        return ngx_http_proxy_wasm_address(r, u->peer.sockaddr,
                                           u->peer.socklen, value);

    case NGX_PROXY_WASM_ATTR_UPSTREAM_PORT:
        return ngx_http_proxy_wasm_port(u->peer.sockaddr, value);

    case NGX_PROXY_WASM_ATTR_UPSTREAM_TLS_VERSION:
#if (NGX_HTTP_SSL)
        if (u->peer.connection && u->peer.connection->ssl) {
            s = SSL_get_version(u->peer.connection->ssl->connection);
            ngx_http_proxy_wasm_value_str(value, (u_char *) s, ngx_strlen(s));
            return NGX_PROXY_WASM_HOST_OK;
        }
#endif
        (void) s;
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    return NGX_PROXY_WASM_HOST_DECLINED;
}


uint32_t
ngx_http_proxy_wasm_attribute_get(void *request, uint32_t attribute,
    ngx_proxy_wasm_value_t *value)
{
    ngx_http_request_t  *r = request;

    off_t              sent;
    ngx_msec_int_t     ms;
    ngx_time_t        *tp;
    ngx_connection_t  *c;

    if (r == NULL || ngx_http_proxy_wasm_request_gone(r)) {
        return NGX_PROXY_WASM_HOST_DECLINED;
    }

    c = r->connection;

    switch (attribute) {

    case NGX_PROXY_WASM_ATTR_REQUEST_TIME:
        ngx_http_proxy_wasm_value_int(value,
                                      (int64_t) r->start_sec * 1000000000
                                      + (int64_t) r->start_msec * 1000000);
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_REQUEST_DURATION:
        tp = ngx_timeofday();
        ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                               + (tp->msec - r->start_msec));
        ngx_http_proxy_wasm_value_int(value, (int64_t) ngx_max(ms, 0)
                                             * 1000000);
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_REQUEST_PROTOCOL:
        return ngx_http_proxy_wasm_protocol(r, value);

    case NGX_PROXY_WASM_ATTR_REQUEST_SIZE:
        if (r->headers_in.content_length_n >= 0) {
            ngx_http_proxy_wasm_value_int(value,
                                          r->headers_in.content_length_n);

        } else {
            ngx_http_proxy_wasm_value_int(value, r->request_body
                                          ? r->request_body->received : 0);
        }

        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_REQUEST_TOTAL_SIZE:
        ngx_http_proxy_wasm_value_int(value, r->request_length);
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_REQUEST_ID:
        return ngx_http_proxy_wasm_variable_value(r, "request_id", value);

    case NGX_PROXY_WASM_ATTR_RESPONSE_CODE:
        if (r->headers_out.status == 0) {
            return NGX_PROXY_WASM_HOST_DECLINED;
        }

        ngx_http_proxy_wasm_value_int(value, r->headers_out.status);
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_RESPONSE_CODE_DETAILS:
        if (r->headers_out.status == 0) {
            return NGX_PROXY_WASM_HOST_DECLINED;
        }

        if (r->upstream && r->upstream->headers_in.status_n) {
            ngx_http_proxy_wasm_value_str(value, (u_char *) "via_upstream",
                                          sizeof("via_upstream") - 1);

        } else {
            ngx_http_proxy_wasm_value_str(value, (u_char *) "direct_response",
                                          sizeof("direct_response") - 1);
        }

        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_RESPONSE_SIZE:
        sent = c->sent - r->header_size;
        ngx_http_proxy_wasm_value_int(value, ngx_max(sent, 0));
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_RESPONSE_TOTAL_SIZE:
        ngx_http_proxy_wasm_value_int(value, c->sent);
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_RESPONSE_BACKEND_LATENCY:
        return ngx_http_proxy_wasm_backend_latency(r, value);

    case NGX_PROXY_WASM_ATTR_SOURCE_ADDRESS:
        return ngx_http_proxy_wasm_address(r, c->sockaddr, c->socklen, value);

    case NGX_PROXY_WASM_ATTR_SOURCE_PORT:
        return ngx_http_proxy_wasm_port(c->sockaddr, value);

    case NGX_PROXY_WASM_ATTR_DESTINATION_ADDRESS:
    case NGX_PROXY_WASM_ATTR_DESTINATION_PORT:
        if (ngx_connection_local_sockaddr(c, NULL, 0) != NGX_OK) {
            return NGX_PROXY_WASM_HOST_ERROR;
        }

        if (attribute == NGX_PROXY_WASM_ATTR_DESTINATION_PORT) {
            return ngx_http_proxy_wasm_port(c->local_sockaddr, value);
        }

        return ngx_http_proxy_wasm_address(r, c->local_sockaddr,
                                           c->local_socklen, value);

    case NGX_PROXY_WASM_ATTR_CONNECTION_ID:
        ngx_http_proxy_wasm_value_int(value, (int64_t) c->number);
        return NGX_PROXY_WASM_HOST_OK;

    case NGX_PROXY_WASM_ATTR_CONNECTION_MTLS:
    case NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME:
    case NGX_PROXY_WASM_ATTR_CONNECTION_TLS_VERSION:
    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_LOCAL_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST:
    case NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_LOCAL_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_LOCAL_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE:
    case NGX_PROXY_WASM_ATTR_CONNECTION_PEER_CERTIFICATE:
#if (NGX_HTTP_SSL)
        return ngx_http_proxy_wasm_tls(r, attribute, value);
#else
        if (attribute == NGX_PROXY_WASM_ATTR_CONNECTION_MTLS) {
            ngx_http_proxy_wasm_value_bool(value, 0);
            return NGX_PROXY_WASM_HOST_OK;
        }

        return NGX_PROXY_WASM_HOST_DECLINED;
#endif

    case NGX_PROXY_WASM_ATTR_UPSTREAM_ADDRESS:
    case NGX_PROXY_WASM_ATTR_UPSTREAM_PORT:
    case NGX_PROXY_WASM_ATTR_UPSTREAM_TLS_VERSION:
    case NGX_PROXY_WASM_ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT:
        return ngx_http_proxy_wasm_upstream(r, attribute, value);
    }

    return NGX_PROXY_WASM_HOST_DECLINED;
}
