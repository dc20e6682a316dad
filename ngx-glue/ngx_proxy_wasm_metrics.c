/*
 * Filters' metrics: named slots of values in one shared memory zone
 * (wasm{ metrics { slab_size ...; } }), so every worker updates and reads
 * the same values; and proxy_wasm_metrics, a content handler that serves
 * them in the Prometheus text format. What a metric's slots mean (types,
 * histogram buckets), its name and its text are Rust's.
 *
 * A metric is made under the zone's lock; updates are lock-free atomic
 * operations on its slots.
 */

#include "ngx_proxy_wasm_shim.h"


/* a metric; its name, then the name of the module that made it, follow */
typedef struct {
    ngx_str_node_t               sn;          /* sn.str: the name */
    /* every metric, by name: the exposition's order */
    ngx_queue_t                  sorted;
    ngx_proxy_wasm_metric_type_e  type;
    uint32_t                     nvalues;
    uint32_t                     module_len;
    uint64_t                     values[1];
} ngx_proxy_wasm_metric_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  sorted;
} ngx_proxy_wasm_metrics_sh_t;


/* shm_zone->data of the metrics zone: sh is ngx_proxy_wasm_metrics_sh_t */
typedef ngx_proxy_wasm_zone_t  ngx_proxy_wasm_metrics_t;

#define ngx_proxy_wasm_metrics_sh(m)  ((ngx_proxy_wasm_metrics_sh_t *) (m)->sh)


static char *ngx_proxy_wasm_check_metric_name_length(ngx_conf_t *cf,
    void *post, void *data);
static ngx_int_t ngx_proxy_wasm_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_proxy_wasm_metrics_handler(ngx_http_request_t *r);
static char *ngx_proxy_wasm_metric_tag(ngx_conf_t *cf,
    ngx_proxy_wasm_conf_t *wcf);


static ngx_conf_post_t  ngx_proxy_wasm_metric_name_length_post = {
    ngx_proxy_wasm_check_metric_name_length
};


static ngx_command_t  ngx_proxy_wasm_metrics_commands[] = {

    { ngx_string("slab_size"),
      NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, metrics_slab_size),
      NULL },

    { ngx_string("max_metric_name_length"),
      NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      0,
      offsetof(ngx_proxy_wasm_conf_t, max_metric_name_length),
      &ngx_proxy_wasm_metric_name_length_post },

      ngx_null_command
};


/* the directives of metrics{}: parsed here, not through nginx's tables */
static char *
ngx_proxy_wasm_metrics_directive(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf)
{
    char           *rv;
    ngx_str_t      *value;
    ngx_command_t  *cmd;

    value = cf->args->elts;

    if (value[0].len == sizeof("tag") - 1
        && ngx_strcmp(value[0].data, "tag") == 0)
    {
        return ngx_proxy_wasm_metric_tag(cf, conf);
    }

    for (cmd = ngx_proxy_wasm_metrics_commands; cmd->name.len; cmd++) {
        if (cmd->name.len != value[0].len
            || ngx_strcmp(cmd->name.data, value[0].data) != 0)
        {
            continue;
        }

        if (cf->args->nelts != 2) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid number of arguments in \"%V\" "
                               "directive", &value[0]);
            return NGX_CONF_ERROR;
        }

        rv = cmd->set(cf, cmd, conf);

        if (rv == NGX_CONF_OK || rv == NGX_CONF_ERROR) {
            return rv;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" directive %s",
                           &value[0], rv);
        return NGX_CONF_ERROR;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in metrics{}", &value[0]);
    return NGX_CONF_ERROR;
}


/* tag <name> <regex>: checked by Rust now, used when the runtime starts */
static char *
ngx_proxy_wasm_metric_tag(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wcf)
{
    u_char                  why[256];
    size_t                  len;
    ngx_str_t              *value;
    ngx_proxy_wasm_pair_t  *tag;

    value = cf->args->elts;

    if (cf->args->nelts != 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of arguments in \"tag\" "
                           "directive: tag <name> <regular expression>");
        return NGX_CONF_ERROR;
    }

    if (wcf->metric_tags == NULL) {
        wcf->metric_tags = ngx_array_create(cf->pool, 4,
                                            sizeof(ngx_proxy_wasm_pair_t));
        if (wcf->metric_tags == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    tag = ngx_array_push(wcf->metric_tags);
    if (tag == NULL) {
        return NGX_CONF_ERROR;
    }

    tag->key.data = value[1].data;
    tag->key.len = value[1].len;
    tag->value.data = value[2].data;
    tag->value.len = value[2].len;

    len = ngx_proxy_wasm_api.metric_tag_check(tag->key, tag->value, why,
                                              sizeof(why));
    if (len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%*s", len, why);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* metrics { slab_size <size>; max_metric_name_length <n>; tag ...; } */
char *
ngx_proxy_wasm_metrics_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_proxy_wasm_conf_t  *wcf = conf;

    char        *rv;
    ngx_conf_t   pcf;

    if (wcf->metrics_block) {
        return "is duplicate";
    }

    wcf->metrics_block = 1;

    pcf = *cf;
    cf->handler = ngx_proxy_wasm_metrics_directive;
    cf->handler_conf = conf;

    rv = ngx_conf_parse(cf, NULL);

    *cf = pcf;

    return rv;
}


static char *
ngx_proxy_wasm_check_metric_name_length(ngx_conf_t *cf, void *post,
    void *data)
{
    size_t  *len = data;

    if (*len < 16 || *len > 65536) {
        return "must be from 16 to 65536";
    }

    return NGX_CONF_OK;
}


/* at the end of wasm{}: the metrics zone, always there */
char *
ngx_proxy_wasm_metrics_init(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wcf)
{
    ngx_str_t                  name;
    ngx_proxy_wasm_metrics_t  *m;

    ngx_conf_init_size_value(wcf->metrics_slab_size, 5 * 1024 * 1024);
    ngx_conf_init_size_value(wcf->max_metric_name_length, 256);

    if (wcf->metrics_slab_size < 8 * ngx_pagesize) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "metrics slab_size must be at least %uzk",
                           8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    m = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_metrics_t));
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&m->name, "metrics");
    ngx_str_set(&name, "proxy_wasm metrics");

    wcf->metrics_zone = ngx_shared_memory_add(cf, &name,
                                              wcf->metrics_slab_size,
                                              &ngx_proxy_wasm_module);
    if (wcf->metrics_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    wcf->metrics_zone->init = ngx_proxy_wasm_metrics_init_zone;
    wcf->metrics_zone->data = m;

    return NGX_CONF_OK;
}


static void
ngx_proxy_wasm_metrics_init_sh(void *data)
{
    ngx_proxy_wasm_metrics_sh_t  *sh = data;

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->sorted);
}


static ngx_int_t
ngx_proxy_wasm_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    return ngx_proxy_wasm_zone_init(shm_zone, data, "metrics",
                                    sizeof(ngx_proxy_wasm_metrics_sh_t),
                                    ngx_proxy_wasm_metrics_init_sh);
}


static ngx_proxy_wasm_metrics_t *
ngx_proxy_wasm_metrics(void)
{
    if (ngx_proxy_wasm_shm_conf == NULL
        || ngx_proxy_wasm_shm_conf->metrics_zone == NULL)
    {
        return NULL;
    }

    return ngx_proxy_wasm_shm_conf->metrics_zone->data;
}


static u_char *
ngx_proxy_wasm_metric_name(ngx_proxy_wasm_metric_t *metric)
{
    return (u_char *) &metric->values[metric->nvalues];
}


/* the module that made a metric */
static ngx_str_t
ngx_proxy_wasm_metric_module(ngx_proxy_wasm_metric_t *metric)
{
    ngx_str_t  module;

    module.data = metric->sn.str.data + metric->sn.str.len;
    module.len = metric->module_len;

    return module;
}


ngx_proxy_wasm_store_e
ngx_proxy_wasm_metric_find_or_add(ngx_proxy_wasm_str_t name,
    ngx_proxy_wasm_metric_type_e type, ngx_proxy_wasm_str_t owner,
    size_t slots, ngx_proxy_wasm_metric_found_t *found)
{
    uint32_t                   hash;
    ngx_str_t                  n, module;
    ngx_queue_t               *q;
    ngx_str_node_t            *sn;
    ngx_proxy_wasm_metric_t   *e, *other;
    ngx_proxy_wasm_metrics_t  *m;

    m = ngx_proxy_wasm_metrics();

    if (m == NULL || m->sh == NULL) {
        return NGX_PROXY_WASM_STORE_UNMAPPED;
    }

    n.data = (u_char *) name.data;
    n.len = name.len;
    hash = ngx_crc32_short(n.data, n.len);

    ngx_shmtx_lock(&m->shpool->mutex);

    sn = ngx_str_rbtree_lookup(&ngx_proxy_wasm_metrics_sh(m)->rbtree, &n, hash);

    if (sn != NULL) {
        e = (ngx_proxy_wasm_metric_t *) sn;
        goto found;
    }

    e = ngx_slab_calloc_locked(m->shpool,
                               offsetof(ngx_proxy_wasm_metric_t, values)
                               + slots * sizeof(uint64_t) + name.len
                               + owner.len);
    if (e == NULL) {
        ngx_shmtx_unlock(&m->shpool->mutex);
        return NGX_PROXY_WASM_STORE_FULL;
    }

    e->type = type;
    e->nvalues = slots;
    e->sn.node.key = hash;
    e->sn.str.data = ngx_proxy_wasm_metric_name(e);
    e->sn.str.len = name.len;
    ngx_memcpy(e->sn.str.data, name.data, name.len);
    e->module_len = owner.len;
    ngx_memcpy(e->sn.str.data + name.len, owner.data, owner.len);

    ngx_rbtree_insert(&ngx_proxy_wasm_metrics_sh(m)->rbtree, &e->sn.node);

    /* kept sorted by name: metrics are made rarely, served often */
    for (q = ngx_queue_head(&ngx_proxy_wasm_metrics_sh(m)->sorted);
         q != ngx_queue_sentinel(&ngx_proxy_wasm_metrics_sh(m)->sorted);
         q = ngx_queue_next(q))
    {
        other = ngx_queue_data(q, ngx_proxy_wasm_metric_t, sorted);

        if (ngx_memn2cmp(other->sn.str.data, n.data, other->sn.str.len,
                         n.len)
            > 0)
        {
            break;
        }
    }

    /* before q (ngx_queue_insert_before is not in nginx 1.22) */
    ngx_queue_insert_tail(q, &e->sorted);

found:

    ngx_shmtx_unlock(&m->shpool->mutex);

    /* a metric's type and module never change: read without the lock */
    module = ngx_proxy_wasm_metric_module(e);

    found->metric = e;
    found->type = e->type;
    found->owner.data = module.data;
    found->owner.len = module.len;

    return NGX_PROXY_WASM_STORE_DONE;
}


void
ngx_proxy_wasm_metric_add(void *metric, size_t slot, uint64_t delta)
{
    ngx_proxy_wasm_metric_t  *e = metric;

    if (slot < e->nvalues) {
        __atomic_fetch_add(&e->values[slot], delta, __ATOMIC_RELAXED);
    }
}


void
ngx_proxy_wasm_metric_store(void *metric, size_t slot, uint64_t value)
{
    ngx_proxy_wasm_metric_t  *e = metric;

    if (slot < e->nvalues) {
        __atomic_store_n(&e->values[slot], value, __ATOMIC_RELAXED);
    }
}


uint64_t
ngx_proxy_wasm_metric_load(void *metric, size_t slot)
{
    ngx_proxy_wasm_metric_t  *e = metric;

    return slot < e->nvalues
           ? __atomic_load_n(&e->values[slot], __ATOMIC_RELAXED) : 0;
}


/* ---- the Prometheus endpoint ---- */


/* proxy_wasm_metrics [<module> ...]; (location) */
char *
ngx_http_proxy_wasm_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_proxy_wasm_loc_conf_t  *plcf = conf;

    ngx_str_t                 *value, *module;
    ngx_uint_t                 i;
    ngx_proxy_wasm_conf_t     *wcf;
    ngx_http_core_loc_conf_t  *clcf;

    wcf = (ngx_proxy_wasm_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                                 ngx_proxy_wasm_module);

    if (wcf == NULL || wcf->runtime == NULL) {
        return "needs a wasm{} block";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (!ngx_proxy_wasm_has_wasm_module(wcf, value[i].data,
                                            value[i].len))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown module \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (plcf->metrics_modules == NULL) {
            plcf->metrics_modules = ngx_array_create(cf->pool, 2,
                                                     sizeof(ngx_str_t));
            if (plcf->metrics_modules == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        module = ngx_array_push(plcf->metrics_modules);
        if (module == NULL) {
            return NGX_CONF_ERROR;
        }

        *module = value[i];
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_proxy_wasm_metrics_handler;

    return NGX_CONF_OK;
}


/*
 * Whether a location serves a metric: one of the modules it names, or of
 * the configuration's and Lua's own (metrics of modules removed since stay
 * unserved)
 */
static ngx_uint_t
ngx_proxy_wasm_metric_served(ngx_http_proxy_wasm_loc_conf_t *plcf,
    ngx_proxy_wasm_metric_t *e)
{
    ngx_str_t   module, *name;
    ngx_uint_t  i;

    module = ngx_proxy_wasm_metric_module(e);

    if (plcf->metrics_modules == NULL) {
        return ngx_proxy_wasm_has_wasm_module(ngx_proxy_wasm_shm_conf,
                                              module.data, module.len)
               || (module.len == sizeof(NGX_PROXY_WASM_LUA_METRICS) - 1
                   && ngx_strncmp(module.data, NGX_PROXY_WASM_LUA_METRICS,
                                  module.len) == 0);
    }

    name = plcf->metrics_modules->elts;

    for (i = 0; i < plcf->metrics_modules->nelts; i++) {
        if (name[i].len == module.len
            && ngx_strncmp(name[i].data, module.data, module.len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_proxy_wasm_metrics_handler(ngx_http_request_t *r)
{
    size_t                         size, len, n, nvalues, names, i;
    u_char                        *text;
    uint64_t                      *values;
    ngx_buf_t                     *b;
    ngx_int_t                      rc;
    ngx_chain_t                    out;
    ngx_queue_t                   *q;
    ngx_proxy_wasm_metric_t       *e;
    ngx_proxy_wasm_metrics_t      *m;
    ngx_proxy_wasm_metric_view_t  *views, *v;

    ngx_http_proxy_wasm_loc_conf_t  *plcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    m = ngx_proxy_wasm_metrics();

    if (m == NULL || m->sh == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_wasm_module);

    /* the served metrics' names and values, read under the lock */

    ngx_shmtx_lock(&m->shpool->mutex);

    n = 0;
    nvalues = 0;
    names = 0;

    for (q = ngx_queue_head(&ngx_proxy_wasm_metrics_sh(m)->sorted);
         q != ngx_queue_sentinel(&ngx_proxy_wasm_metrics_sh(m)->sorted);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_proxy_wasm_metric_t, sorted);

        if (ngx_proxy_wasm_metric_served(plcf, e)) {
            n++;
            nvalues += ngx_min(e->nvalues, NGX_PROXY_WASM_METRIC_SLOTS_MAX);
            names += e->sn.str.len;
        }
    }

    views = ngx_palloc(r->pool, ngx_max(n, 1) * sizeof(*views));
    values = ngx_palloc(r->pool, ngx_max(nvalues, 1) * sizeof(uint64_t));
    text = ngx_pnalloc(r->pool, ngx_max(names, 1));

    if (views == NULL || values == NULL || text == NULL) {
        ngx_shmtx_unlock(&m->shpool->mutex);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = views;

    for (q = ngx_queue_head(&ngx_proxy_wasm_metrics_sh(m)->sorted);
         q != ngx_queue_sentinel(&ngx_proxy_wasm_metrics_sh(m)->sorted);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_proxy_wasm_metric_t, sorted);

        if (!ngx_proxy_wasm_metric_served(plcf, e)) {
            continue;
        }

        v->type = e->type;
        v->name.data = text;
        v->name.len = e->sn.str.len;
        text = ngx_cpymem(text, e->sn.str.data, e->sn.str.len);
        v->slots = values;
        v->nslots = ngx_min(e->nvalues, NGX_PROXY_WASM_METRIC_SLOTS_MAX);

        for (i = 0; i < v->nslots; i++) {
            *values++ = __atomic_load_n(&e->values[i], __ATOMIC_RELAXED);
        }

        v++;
    }

    ngx_shmtx_unlock(&m->shpool->mutex);

    /* the text, by Rust */

    size = ngx_proxy_wasm_api.metrics_text(views, n, NULL, 0)
           + ngx_proxy_wasm_shm_stats_size();

    b = ngx_create_temp_buf(r->pool, ngx_max(size, 1));
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_proxy_wasm_api.metrics_text(views, n, b->last,
                                          b->end - b->last);

    if (len <= (size_t) (b->end - b->last)) {
        b->last += len;
    }

    b->last = ngx_proxy_wasm_shm_stats(b->last);

    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->method == NGX_HTTP_HEAD || b->last == b->pos) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
