/*
 * The wasm{} block: Wasm modules and runtime settings. Modules are
 * compiled once, at the end of the block, in the master process; workers
 * instantiate them when they start.
 */

#include "ngx_proxy_wasm_shim.h"


/* directives allowed inside wasm{} */
#define NGX_PROXY_WASM_CONF  0x02000000


static ngx_int_t ngx_proxy_wasm_init_module(ngx_cycle_t *cycle);
static void *ngx_proxy_wasm_create_conf(ngx_cycle_t *cycle);
static char *ngx_proxy_wasm_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_proxy_wasm_module_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_proxy_wasm_cache_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_proxy_wasm_instance_pool_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_proxy_wasm_resolver_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_proxy_wasm_load_modules(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wcf);
static void ngx_proxy_wasm_runtime_cleanup(void *data);
static char *ngx_proxy_wasm_init_tls(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wcf);


static char *ngx_proxy_wasm_check_memory_limit(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_proxy_wasm_check_callback_timeout(ngx_conf_t *cf,
    void *post, void *data);

static ngx_conf_post_t  ngx_proxy_wasm_memory_limit_post = {
    ngx_proxy_wasm_check_memory_limit
};

static ngx_conf_post_t  ngx_proxy_wasm_callback_timeout_post = {
    ngx_proxy_wasm_check_callback_timeout
};


static ngx_conf_enum_t  ngx_proxy_wasm_compilers[] = {
    { ngx_string("auto"), NGX_PROXY_WASM_COMPILER_AUTO },
    { ngx_string("cranelift"), NGX_PROXY_WASM_COMPILER_CRANELIFT },
    { ngx_string("winch"), NGX_PROXY_WASM_COMPILER_WINCH },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_proxy_wasm_log_levels[] = {
    { ngx_string("debug"), NGX_PROXY_WASM_LOG_DEBUG },
    { ngx_string("info"), NGX_PROXY_WASM_LOG_INFO },
    { ngx_string("warn"), NGX_PROXY_WASM_LOG_WARN },
    { ngx_string("error"), NGX_PROXY_WASM_LOG_ERROR },
    { ngx_string("crit"), NGX_PROXY_WASM_LOG_CRITICAL },
    { ngx_null_string, 0 }
};


ngx_conf_enum_t  ngx_proxy_wasm_isolations[] = {
    { ngx_string("none"), NGX_PROXY_WASM_ISOLATION_NONE },
    { ngx_string("request"), NGX_PROXY_WASM_ISOLATION_REQUEST },
    /* the former name of "request" */
    { ngx_string("stream"), NGX_PROXY_WASM_ISOLATION_REQUEST },
    { ngx_string("filter"), NGX_PROXY_WASM_ISOLATION_FILTER },
    { ngx_null_string, 0 }
};


ngx_conf_enum_t  ngx_proxy_wasm_failures[] = {
    { ngx_string("reload"), NGX_PROXY_WASM_FAILURE_RELOAD },
    { ngx_string("fail_closed"), NGX_PROXY_WASM_FAILURE_FAIL_CLOSED },
    { ngx_string("fail_open"), NGX_PROXY_WASM_FAILURE_FAIL_OPEN },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_proxy_wasm_commands[] = {

    { ngx_string("wasm"),
      NGX_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_NOARGS,
      ngx_proxy_wasm_block,
      0,
      0,
      NULL },

    { ngx_string("module"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE23,
      ngx_proxy_wasm_module_directive,
      0,
      0,
      NULL },

    { ngx_string("compiler"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, compiler),
      &ngx_proxy_wasm_compilers },

    { ngx_string("backtraces"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, backtraces),
      NULL },

    { ngx_string("memory_limit"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, memory_limit),
      &ngx_proxy_wasm_memory_limit_post },

    { ngx_string("callback_timeout"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, callback_timeout),
      &ngx_proxy_wasm_callback_timeout_post },

    { ngx_string("cache"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_cache_directive,
      0,
      0,
      NULL },

    { ngx_string("resolver"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_1MORE,
      ngx_proxy_wasm_resolver_directive,
      0,
      0,
      NULL },

    { ngx_string("resolver_timeout"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, resolver_timeout),
      NULL },

    { ngx_string("http_call_max_body_size"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, http_call_max_body_size),
      NULL },

    { ngx_string("http_call_failure_log"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_conf_set_enum_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, http_call_failure_log),
      &ngx_proxy_wasm_log_levels },

    { ngx_string("socket_connect_timeout"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, socket_connect_timeout),
      NULL },

    { ngx_string("socket_send_timeout"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, socket_send_timeout),
      NULL },

    { ngx_string("socket_read_timeout"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, socket_read_timeout),
      NULL },

    { ngx_string("tls_trusted_certificate"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, tls_trusted_certificate),
      NULL },

    { ngx_string("tls_verify_cert"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, tls_verify_cert),
      NULL },

    { ngx_string("tls_verify_host"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, tls_verify_host),
      NULL },

    { ngx_string("shm_kv"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE2|NGX_CONF_TAKE3|NGX_CONF_TAKE4,
      ngx_proxy_wasm_shm_kv_directive,
      0,
      0,
      NULL },

    { ngx_string("shm_queue"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE23,
      ngx_proxy_wasm_shm_queue_directive,
      0,
      0,
      NULL },

    { ngx_string("metrics"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_BLOCK|NGX_CONF_NOARGS,
      ngx_proxy_wasm_metrics_block,
      0,
      0,
      NULL },

    { ngx_string("instance_pool"),
      NGX_PROXY_WASM_CONF|NGX_DIRECT_CONF|NGX_CONF_TAKE1,
      ngx_proxy_wasm_instance_pool_directive,
      0,
      offsetof(ngx_proxy_wasm_conf_t, instance_pool),
      NULL },

      ngx_null_command
};


static ngx_core_module_t  ngx_proxy_wasm_module_ctx = {
    ngx_string("proxy_wasm"),
    ngx_proxy_wasm_create_conf,
    NULL
};


ngx_module_t  ngx_proxy_wasm_module = {
    NGX_MODULE_V1,
    &ngx_proxy_wasm_module_ctx,            /* module context */
    ngx_proxy_wasm_commands,               /* module directives */
    NGX_CORE_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_proxy_wasm_init_module,            /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* Says which module and runtime a (re)started configuration runs. */
static ngx_int_t
ngx_proxy_wasm_init_module(ngx_cycle_t *cycle)
{
    ngx_proxy_wasm_str_t  version;

    ngx_proxy_wasm_api.version(&version);

    ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0, "%*s",
                  (size_t) version.len, version.data);

    return NGX_OK;
}


static void *
ngx_proxy_wasm_create_conf(ngx_cycle_t *cycle)
{
    ngx_proxy_wasm_conf_t  *wcf;

    wcf = ngx_pcalloc(cycle->pool, sizeof(ngx_proxy_wasm_conf_t));
    if (wcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&wcf->modules, cycle->pool, 4,
                       sizeof(ngx_proxy_wasm_wasm_module_t))
        != NGX_OK)
    {
        return NULL;
    }

    wcf->compiler = NGX_CONF_UNSET_UINT;
    wcf->backtraces = NGX_CONF_UNSET;
    wcf->memory_limit = NGX_CONF_UNSET_SIZE;
    wcf->callback_timeout = NGX_CONF_UNSET_MSEC;
    wcf->instance_pool = NGX_CONF_UNSET_UINT;
    wcf->resolver_timeout = NGX_CONF_UNSET_MSEC;
    wcf->http_call_max_body_size = NGX_CONF_UNSET_SIZE;
    wcf->http_call_failure_log = NGX_CONF_UNSET_UINT;
    wcf->socket_connect_timeout = NGX_CONF_UNSET_MSEC;
    wcf->socket_send_timeout = NGX_CONF_UNSET_MSEC;
    wcf->socket_read_timeout = NGX_CONF_UNSET_MSEC;
    wcf->tls_verify_cert = NGX_CONF_UNSET;
    wcf->tls_verify_host = NGX_CONF_UNSET;
    wcf->metrics_slab_size = NGX_CONF_UNSET_SIZE;
    wcf->max_metric_name_length = NGX_CONF_UNSET_SIZE;
    ngx_str_null(&wcf->cache);

    return wcf;
}


char *
ngx_proxy_wasm_filter_directive(ngx_conf_t *cf, ngx_array_t **filters,
    const char *block)
{
    int32_t                    id;
    uint32_t                  *filter;
    ngx_str_t                 *value;
    ngx_proxy_wasm_str_t       module, config, err;
    ngx_proxy_wasm_runtime_t  *rt;

    value = cf->args->elts;

    rt = ngx_proxy_wasm_runtime(cf->cycle);
    if (rt == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no wasm{} block is defined before %s{}: "
                           "module \"%V\" is unknown", block, &value[1]);
        return NGX_CONF_ERROR;
    }

    if (*filters == NGX_CONF_UNSET_PTR) {
        *filters = ngx_array_create(cf->pool, 2, sizeof(uint32_t));
        if (*filters == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    module.data = value[1].data;
    module.len = value[1].len;

    if (cf->args->nelts == 3) {
        config.data = value[2].data;
        config.len = value[2].len;

    } else {
        config.data = NULL;
        config.len = 0;
    }

    ngx_str_null(&err);

    id = ngx_proxy_wasm_api.filter_add(rt, module, config, &err);
    if (id < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%*s",
                           (size_t) err.len, err.data);
        return NGX_CONF_ERROR;
    }

    filter = ngx_array_push(*filters);
    if (filter == NULL) {
        return NGX_CONF_ERROR;
    }

    *filter = (uint32_t) id;

    return NGX_CONF_OK;
}


void *
ngx_proxy_wasm_property_add(ngx_conf_t *cf, ngx_array_t **properties,
    size_t size)
{
    size_t                 len;
    u_char                *elt;
    ngx_str_t             *value, key;
    ngx_proxy_wasm_str_t   path;

    value = cf->args->elts;

    path.data = value[1].data;
    path.len = value[1].len;

    /* the key: "node.id" is "xds.node.id", as in Envoy */
    key.data = ngx_pnalloc(cf->pool, path.len + 4);
    if (key.data == NULL) {
        return NULL;
    }

    switch (ngx_proxy_wasm_api.property_key(path, key.data, &len)) {

    case NGX_PROXY_WASM_PROPERTY_KEY_VALID:
        key.len = len;
        break;

    case NGX_PROXY_WASM_PROPERTY_KEY_RESERVED:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "property \"%V\" is one of nginx's attributes "
                           "and cannot be defined", &value[1]);
        return NULL;

    default:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid property path \"%V\": segments are "
                           "joined by single dots", &value[1]);
        return NULL;
    }

    if (*properties == NGX_CONF_UNSET_PTR) {
        *properties = ngx_array_create(cf->pool, 4, size);
        if (*properties == NULL) {
            return NULL;
        }
    }

    path.data = key.data;
    path.len = key.len;

    if (ngx_proxy_wasm_property_find(*properties, path) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "property \"%V\" is already defined here",
                           &value[1]);
        return NULL;
    }

    elt = ngx_array_push(*properties);
    if (elt == NULL) {
        return NULL;
    }

    ngx_memzero(elt, size);
    *(ngx_str_t *) elt = key;

    return elt;
}


char *
ngx_proxy_wasm_property_merge(ngx_conf_t *cf, ngx_array_t **conf,
    ngx_array_t *prev)
{
    u_char                *inherited, *elt;
    ngx_uint_t             i;
    ngx_str_t             *key;
    ngx_proxy_wasm_str_t   k;

    if (prev == NGX_CONF_UNSET_PTR) {
        prev = NULL;
    }

    if (*conf == NGX_CONF_UNSET_PTR) {
        *conf = prev;
        return NGX_CONF_OK;
    }

    if (prev == NULL) {
        return NGX_CONF_OK;
    }

    /* a level adds to what it inherits, and its own lines win */
    inherited = prev->elts;

    for (i = 0; i < prev->nelts; i++) {
        key = (ngx_str_t *) (inherited + i * prev->size);
        k.data = key->data;
        k.len = key->len;

        if (ngx_proxy_wasm_property_find(*conf, k) != NULL) {
            continue;
        }

        elt = ngx_array_push(*conf);
        if (elt == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(elt, key, prev->size);
    }

    return NGX_CONF_OK;
}


void *
ngx_proxy_wasm_property_find(ngx_array_t *properties, ngx_proxy_wasm_str_t key)
{
    u_char      *elts;
    ngx_str_t   *own;
    ngx_uint_t   i;

    if (properties == NULL || properties == NGX_CONF_UNSET_PTR) {
        return NULL;
    }

    elts = properties->elts;

    for (i = 0; i < properties->nelts; i++) {
        own = (ngx_str_t *) (elts + i * properties->size);

        if (own->len == key.len
            && ngx_strncmp(own->data, key.data, key.len) == 0)
        {
            return own;
        }
    }

    return NULL;
}


ngx_proxy_wasm_runtime_t *
ngx_proxy_wasm_runtime(ngx_cycle_t *cycle)
{
    ngx_proxy_wasm_conf_t  *wcf;

    wcf = (ngx_proxy_wasm_conf_t *) ngx_get_conf(cycle->conf_ctx,
                                                 ngx_proxy_wasm_module);

    return wcf ? wcf->runtime : NULL;
}


static char *
ngx_proxy_wasm_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_proxy_wasm_conf_t  *wcf = *(ngx_proxy_wasm_conf_t **) conf;

    char        *rv;
    ngx_conf_t   pcf;

    if (wcf->block) {
        return "is duplicate";
    }

    wcf->block = 1;

    /* filters checked while http{} is parsed find its zones here */
    ngx_proxy_wasm_shm_conf = wcf;

    pcf = *cf;
    cf->cmd_type = NGX_PROXY_WASM_CONF;

    rv = ngx_conf_parse(cf, NULL);

    *cf = pcf;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    ngx_conf_init_msec_value(wcf->resolver_timeout, 30000);
    ngx_conf_init_size_value(wcf->http_call_max_body_size, 8 * 1024 * 1024);
    ngx_conf_init_uint_value(wcf->http_call_failure_log,
                             NGX_PROXY_WASM_LOG_ERROR);
    ngx_conf_init_msec_value(wcf->socket_connect_timeout, 60000);
    ngx_conf_init_msec_value(wcf->socket_send_timeout, 60000);
    ngx_conf_init_msec_value(wcf->socket_read_timeout, 60000);

    rv = ngx_proxy_wasm_init_tls(cf, wcf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ngx_proxy_wasm_metrics_init(cf, wcf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    rv = ngx_proxy_wasm_load_modules(cf, wcf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_proxy_wasm_zones_register(cf, wcf);
}


/* the TLS client context of HTTP calls to https:// services */
static char *
ngx_proxy_wasm_init_tls(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wcf)
{
#if (NGX_SSL)
    ngx_pool_cleanup_t  *cln;

    ngx_conf_init_value(wcf->tls_verify_cert, 1);
    ngx_conf_init_value(wcf->tls_verify_host, 1);

    wcf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (wcf->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    wcf->ssl->log = cf->log;

    if (ngx_ssl_create(wcf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(wcf->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = wcf->ssl;

    if (wcf->tls_trusted_certificate.len) {
        if (ngx_ssl_trusted_certificate(cf, wcf->ssl,
                                        &wcf->tls_trusted_certificate, 10)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

    } else if (SSL_CTX_set_default_verify_paths(wcf->ssl->ctx) != 1) {
        ngx_ssl_error(NGX_LOG_WARN, cf->log, 0,
                      "no system CA certificates for HTTP calls over TLS");
    }
#else
    if (wcf->tls_trusted_certificate.len) {
        return "needs nginx built with OpenSSL";
    }
#endif

    return NGX_CONF_OK;
}


static char *
ngx_proxy_wasm_module_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t  *wcf = conf;

    u_char                        *p;
    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_proxy_wasm_wasm_module_t  *module;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty module name";
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!(isalnum(*p) || *p == '_' || *p == '-' || *p == '.')) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid module name \"%V\": use letters, "
                               "digits, \"_\", \"-\" and \".\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    module = wcf->modules.elts;

    for (i = 0; i < wcf->modules.nelts; i++) {
        if (module[i].name.len == value[1].len
            && ngx_strncmp(module[i].name.data, value[1].data,
                           value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate module name \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    module = ngx_array_push(&wcf->modules);
    if (module == NULL) {
        return NGX_CONF_ERROR;
    }

    module->name = value[1];
    module->path = value[2];

    if (ngx_conf_full_name(cf->cycle, &module->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 4) {
        module->vm_config = value[3];

    } else {
        ngx_str_null(&module->vm_config);
    }

    module->file = cf->conf_file->file.name;
    module->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static char *
ngx_proxy_wasm_check_memory_limit(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *size = data;

    if (*size < 64 * 1024) {
        return "must be at least 64k (one Wasm page)";
    }

    return NGX_CONF_OK;
}


static char *
ngx_proxy_wasm_check_callback_timeout(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *timeout = data;

    if (*timeout == 0) {
        return "must be more than 0";
    }

    return NGX_CONF_OK;
}


/*
 * ngx_conf_set_enum_slot, naming the values allowed in its error (as
 * nginx does for flags): invalid value "x" in "name" directive, it must be
 * "a", "b" or "c"
 */
char *
ngx_proxy_wasm_conf_set_enum_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    u_char           *a, *last;
    ngx_str_t        *value;
    ngx_uint_t       *np, i;
    ngx_conf_enum_t  *e;
    u_char            allowed[NGX_MAX_CONF_ERRSTR];

    np = (ngx_uint_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    e = cmd->post;

    for (i = 0; e[i].name.len; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcasecmp(e[i].name.data, value[1].data) == 0)
        {
            *np = e[i].value;
            return NGX_CONF_OK;
        }
    }

    a = allowed;
    last = allowed + sizeof(allowed);

    for (i = 0; e[i].name.len; i++) {
        a = ngx_slprintf(a, last, "%s\"%V\"",
                         i == 0 ? "" : e[i + 1].name.len ? ", " : " or ",
                         &e[i].name);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\" directive, "
                       "it must be %*s", &value[1], &cmd->name,
                       (size_t) (a - allowed), allowed);

    return NGX_CONF_ERROR;
}


/* resolver <address> ... [valid=time] [ipv6=on|off]: as http{}'s */
static char *
ngx_proxy_wasm_resolver_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t  *wcf = conf;

    ngx_str_t  *value;

    if (wcf->resolver) {
        return "is duplicate";
    }

    value = cf->args->elts;

    wcf->resolver = ngx_resolver_create(cf, &value[1], cf->args->nelts - 1);
    if (wcf->resolver == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* instance_pool <number> | off */
static char *
ngx_proxy_wasm_instance_pool_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t  *wcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (wcf->instance_pool != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        wcf->instance_pool = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n <= 0 || n > 100000) {
        return "must be \"off\" or a number of instances from 1 to 100000";
    }

    wcf->instance_pool = n;

    return NGX_CONF_OK;
}


/* cache <dir> | off */
static char *
ngx_proxy_wasm_cache_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_proxy_wasm_conf_t  *wcf = conf;

    ngx_str_t  *value;

    if (wcf->cache.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        wcf->cache.data = (u_char *) "";
        return NGX_CONF_OK;
    }

    wcf->cache = value[1];

    if (ngx_conf_full_name(cf->cycle, &wcf->cache, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* Reports an error of a directive seen earlier, as ngx_conf_log_error. */
static void
ngx_proxy_wasm_module_error(ngx_conf_t *cf,
    ngx_proxy_wasm_wasm_module_t *module, ngx_proxy_wasm_str_t *err)
{
    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "wasm module \"%V\": %*s in %V:%ui",
                  &module->name, (size_t) err->len, err->data,
                  &module->file, module->line);
}


static char *
ngx_proxy_wasm_load_modules(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wcf)
{
    size_t                           failed;
    ngx_uint_t                       i;
    ngx_pool_cleanup_t              *cln;
    ngx_proxy_wasm_str_t             err;
    ngx_proxy_wasm_runtime_conf_t    rconf;
    ngx_proxy_wasm_wasm_module_t    *module;
    ngx_proxy_wasm_module_source_t  *sources;

    ngx_conf_init_uint_value(wcf->compiler, NGX_PROXY_WASM_COMPILER_AUTO);
    ngx_conf_init_value(wcf->backtraces, 0);
    ngx_conf_init_size_value(wcf->memory_limit, 128 * 1024 * 1024);
    ngx_conf_init_msec_value(wcf->callback_timeout, 500);
    ngx_conf_init_uint_value(wcf->instance_pool, 0);

    rconf.compiler = (ngx_proxy_wasm_compiler_e) wcf->compiler;
    rconf.backtraces = (uint32_t) wcf->backtraces;
    rconf.memory_limit = wcf->memory_limit;
    rconf.callback_timeout_ms = wcf->callback_timeout;
    if (wcf->cache.data == NULL) {
        /* on by default, under the prefix unless the build says otherwise */
        ngx_str_set(&wcf->cache, NGX_PROXY_WASM_CACHE_PATH);

        if (ngx_conf_full_name(cf->cycle, &wcf->cache, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    rconf.cache.data = wcf->cache.data;
    rconf.cache.len = wcf->cache.len;
    rconf.instance_pool = (uint32_t) wcf->instance_pool;
    rconf.http_call_max_body_size = wcf->http_call_max_body_size;
    rconf.http_call_failure_log =
                      (ngx_proxy_wasm_log_level_e) wcf->http_call_failure_log;
    rconf.max_metric_name_length = wcf->max_metric_name_length;
    rconf.metric_tags = wcf->metric_tags ? wcf->metric_tags->elts : NULL;
    rconf.nmetric_tags = wcf->metric_tags ? wcf->metric_tags->nelts : 0;

    ngx_str_null(&err);

    wcf->runtime = ngx_proxy_wasm_api.runtime_new(&ngx_proxy_wasm_host);
    if (wcf->runtime == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot start the wasm runtime: the library "
                           "does not match the module");
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_proxy_wasm_api.runtime_free(wcf->runtime);
        wcf->runtime = NULL;
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_proxy_wasm_runtime_cleanup;
    cln->data = wcf->runtime;

    if (ngx_proxy_wasm_api.runtime_configure(wcf->runtime, &rconf, &err) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot start the wasm runtime: %*s",
                           (size_t) err.len, err.data);
        return NGX_CONF_ERROR;
    }

    module = wcf->modules.elts;

    if (wcf->modules.nelts == 0) {
        return NGX_CONF_OK;
    }

    sources = ngx_pcalloc(cf->temp_pool,
                          wcf->modules.nelts * sizeof(*sources));
    if (sources == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < wcf->modules.nelts; i++) {
        sources[i].name.data = module[i].name.data;
        sources[i].name.len = module[i].name.len;
        sources[i].path.data = module[i].path.data;
        sources[i].path.len = module[i].path.len;
        sources[i].vm_config.data = module[i].vm_config.data;
        sources[i].vm_config.len = module[i].vm_config.len;
    }

    failed = 0;

    if (ngx_proxy_wasm_api.modules_load(wcf->runtime, sources,
                                        wcf->modules.nelts, &err, &failed)
        != 0)
    {
        ngx_proxy_wasm_module_error(cf,
                                    &module[ngx_min(failed,
                                                    wcf->modules.nelts - 1)],
                                    &err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_proxy_wasm_runtime_cleanup(void *data)
{
    ngx_proxy_wasm_api.runtime_free(data);
}
