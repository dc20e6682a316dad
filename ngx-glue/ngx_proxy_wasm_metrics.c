/*
 * Filters' metrics: counters, gauges and histograms in one shared memory
 * zone (wasm{ metrics { slab_size ...; } }), so every worker updates and
 * reads the same values; and proxy_wasm_metrics, a content handler that
 * serves them in the Prometheus text format.
 *
 * A metric is made under the zone's lock; updates are lock-free atomic
 * operations on its values.
 */

#include "ngx_http_proxy_wasm.h"


/*
 * Histogram buckets: Envoy's default bounds, as in its Prometheus output.
 * Values are integers, so "le 0.5" counts zeros: bounds are kept doubled.
 */
typedef struct {
    uint64_t                     twice;
    const char                  *le;
} ngx_proxy_wasm_bucket_t;


static const ngx_proxy_wasm_bucket_t  ngx_proxy_wasm_buckets[] = {
    { 1, "0.5" }, { 2, "1" }, { 10, "5" }, { 20, "10" }, { 50, "25" },
    { 100, "50" }, { 200, "100" }, { 500, "250" }, { 1000, "500" },
    { 2000, "1000" }, { 5000, "2500" }, { 10000, "5000" },
    { 20000, "10000" }, { 60000, "30000" }, { 120000, "60000" },
    { 600000, "300000" }, { 1200000, "600000" }, { 3600000, "1800000" },
    { 7200000, "3600000" }
};

#define NGX_PROXY_WASM_BUCKETS                                                \
    (sizeof(ngx_proxy_wasm_buckets) / sizeof(ngx_proxy_wasm_bucket_t))

/* a histogram's values: each bucket's count, +Inf's, the sum, the count */
#define NGX_PROXY_WASM_HISTOGRAM_VALUES  (NGX_PROXY_WASM_BUCKETS + 3)


/* a metric; its name follows its values */
/* a metric; its name, then the name of the module that made it, follow */
typedef struct {
    ngx_str_node_t               sn;          /* sn.str: the name */
    /* every metric, by name: the exposition's order */
    ngx_queue_t                  sorted;
    uint32_t                     type;        /* ngx_proxy_wasm_metric_type_e */
    uint32_t                     nvalues;
    uint32_t                     module_len;
    uint64_t                     values[1];
} ngx_proxy_wasm_metric_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  sorted;
} ngx_proxy_wasm_metrics_sh_t;


/* shm_zone->data of the metrics zone (ngx_proxy_wasm_zone_t first) */
typedef struct {
    ngx_str_t                    name;
    ngx_proxy_wasm_metrics_sh_t *sh;
    ngx_slab_pool_t             *shpool;
} ngx_proxy_wasm_metrics_t;


static char *ngx_proxy_wasm_check_metric_name_length(ngx_conf_t *cf,
    void *post, void *data);
static ngx_int_t ngx_proxy_wasm_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_proxy_wasm_metrics_handler(ngx_http_request_t *r);


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


/* metrics { slab_size <size>; max_metric_name_length <n>; } */
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


ngx_proxy_wasm_shm_e
ngx_proxy_wasm_metric_define(ngx_proxy_wasm_metric_type_e type,
    ngx_proxy_wasm_str_t module,
    ngx_proxy_wasm_str_t name, void **metric)
{
    ngx_str_t                  owner;
    uint32_t                   hash, nvalues;
    ngx_str_t                  n;
    ngx_queue_t               *q;
    ngx_str_node_t            *sn;
    ngx_proxy_wasm_metric_t   *e, *other;
    ngx_proxy_wasm_metrics_t  *m;

    *metric = NULL;

    m = ngx_proxy_wasm_metrics();

    if (m == NULL || m->sh == NULL) {
        return NGX_PROXY_WASM_SHM_DONE;
    }

    n.data = (u_char *) name.data;
    n.len = name.len;
    hash = ngx_crc32_short(n.data, n.len);

    ngx_shmtx_lock(&m->shpool->mutex);

    sn = ngx_str_rbtree_lookup(&m->sh->rbtree, &n, hash);

    if (sn != NULL) {
        e = (ngx_proxy_wasm_metric_t *) sn;
        ngx_shmtx_unlock(&m->shpool->mutex);

        owner = ngx_proxy_wasm_metric_module(e);

        if (owner.len != module.len
            || ngx_strncmp(owner.data, module.data, module.len) != 0)
        {
            return NGX_PROXY_WASM_SHM_DENIED;
        }

        if (e->type != type) {
            return NGX_PROXY_WASM_SHM_TYPE_CONFLICT;
        }

        *metric = e;
        return NGX_PROXY_WASM_SHM_DONE;
    }

    nvalues = type == NGX_PROXY_WASM_METRIC_HISTOGRAM
              ? NGX_PROXY_WASM_HISTOGRAM_VALUES : 1;

    e = ngx_slab_calloc_locked(m->shpool,
                               offsetof(ngx_proxy_wasm_metric_t, values)
                               + nvalues * sizeof(uint64_t) + name.len
                               + module.len);
    if (e == NULL) {
        ngx_shmtx_unlock(&m->shpool->mutex);
        return NGX_PROXY_WASM_SHM_FULL;
    }

    e->type = type;
    e->nvalues = nvalues;
    e->sn.node.key = hash;
    e->sn.str.data = ngx_proxy_wasm_metric_name(e);
    e->sn.str.len = name.len;
    ngx_memcpy(e->sn.str.data, name.data, name.len);
    e->module_len = module.len;
    ngx_memcpy(e->sn.str.data + name.len, module.data, module.len);

    ngx_rbtree_insert(&m->sh->rbtree, &e->sn.node);

    /* kept sorted by name: metrics are made rarely, served often */
    for (q = ngx_queue_head(&m->sh->sorted);
         q != ngx_queue_sentinel(&m->sh->sorted);
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

    ngx_shmtx_unlock(&m->shpool->mutex);

    *metric = e;

    return NGX_PROXY_WASM_SHM_DONE;
}


void
ngx_proxy_wasm_metric_update(void *metric, ngx_proxy_wasm_metric_op_e op,
    int64_t value)
{
    ngx_proxy_wasm_metric_t  *e = metric;

    ngx_uint_t  i;
    uint64_t    v;

    if (e == NULL) {
        return;
    }

    switch (op) {

    case NGX_PROXY_WASM_METRIC_ADD:
        __atomic_fetch_add(&e->values[0], (uint64_t) value, __ATOMIC_RELAXED);
        return;

    case NGX_PROXY_WASM_METRIC_SET:
        __atomic_store_n(&e->values[0], (uint64_t) value, __ATOMIC_RELAXED);
        return;

    default: /* NGX_PROXY_WASM_METRIC_OBSERVE */
        if (e->nvalues != NGX_PROXY_WASM_HISTOGRAM_VALUES) {
            return;
        }

        v = (uint64_t) value;

        for (i = 0; i < NGX_PROXY_WASM_BUCKETS; i++) {
            /* the one odd bound is 1 (0.5): v <= 0 */
            if (v <= ngx_proxy_wasm_buckets[i].twice / 2) {
                break;
            }
        }

        __atomic_fetch_add(&e->values[i], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&e->values[NGX_PROXY_WASM_BUCKETS + 1], v,
                           __ATOMIC_RELAXED);
        __atomic_fetch_add(&e->values[NGX_PROXY_WASM_BUCKETS + 2], 1,
                           __ATOMIC_RELAXED);
        return;
    }
}


uint64_t
ngx_proxy_wasm_metric_get(void *metric)
{
    ngx_proxy_wasm_metric_t  *e = metric;

    return e ? __atomic_load_n(&e->values[0], __ATOMIC_RELAXED) : 0;
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
        if (!ngx_proxy_wasm_module_declared(wcf, value[i].data,
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
 * the configuration's (metrics of modules removed since stay unserved)
 */
static ngx_uint_t
ngx_proxy_wasm_metric_served(ngx_http_proxy_wasm_loc_conf_t *plcf,
    ngx_proxy_wasm_metric_t *e)
{
    ngx_str_t   module, *name;
    ngx_uint_t  i;

    module = ngx_proxy_wasm_metric_module(e);

    if (plcf->metrics_modules == NULL) {
        return ngx_proxy_wasm_module_declared(ngx_proxy_wasm_shm_conf,
                                              module.data, module.len);
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


static const char *
ngx_proxy_wasm_metric_type_name(uint32_t type)
{
    switch (type) {
    case NGX_PROXY_WASM_METRIC_COUNTER:
        return "counter";
    case NGX_PROXY_WASM_METRIC_GAUGE:
        return "gauge";
    default:
        return "histogram";
    }
}


/* the room a metric's lines take at most */
static size_t
ngx_proxy_wasm_metric_size(ngx_proxy_wasm_metric_t *e)
{
    size_t  line;

    /* name, suffix, labels, value, newline */
    line = e->sn.str.len + sizeof("_bucket{le=\"3600000\"} ") - 1
           + NGX_INT64_LEN + 1;

    return sizeof("# TYPE  histogram\n") - 1 + e->sn.str.len
           + line * (e->type == NGX_PROXY_WASM_METRIC_HISTOGRAM
                     ? NGX_PROXY_WASM_BUCKETS + 3 : 1);
}


static u_char *
ngx_proxy_wasm_metric_format(u_char *p, ngx_proxy_wasm_metric_t *e)
{
    uint64_t    cumulative;
    ngx_str_t  *name;
    ngx_uint_t  i;

    name = &e->sn.str;

    p = ngx_sprintf(p, "# TYPE %V %s\n", name,
                    ngx_proxy_wasm_metric_type_name(e->type));

    switch (e->type) {

    case NGX_PROXY_WASM_METRIC_COUNTER:
        return ngx_sprintf(p, "%V %uL\n", name,
                           __atomic_load_n(&e->values[0], __ATOMIC_RELAXED));

    case NGX_PROXY_WASM_METRIC_GAUGE:
        return ngx_sprintf(p, "%V %L\n", name, (int64_t)
                           __atomic_load_n(&e->values[0], __ATOMIC_RELAXED));
    }

    cumulative = 0;

    for (i = 0; i <= NGX_PROXY_WASM_BUCKETS; i++) {
        cumulative += __atomic_load_n(&e->values[i], __ATOMIC_RELAXED);

        p = ngx_sprintf(p, "%V_bucket{le=\"%s\"} %uL\n", name,
                        i < NGX_PROXY_WASM_BUCKETS
                        ? ngx_proxy_wasm_buckets[i].le : "+Inf",
                        cumulative);
    }

    p = ngx_sprintf(p, "%V_sum %uL\n", name,
                    __atomic_load_n(&e->values[NGX_PROXY_WASM_BUCKETS + 1],
                                    __ATOMIC_RELAXED));

    /* _count matches the +Inf bucket, read once above */
    return ngx_sprintf(p, "%V_count %uL\n", name, cumulative);
}


static ngx_int_t
ngx_http_proxy_wasm_metrics_handler(ngx_http_request_t *r)
{
    size_t                     size;
    ngx_buf_t                 *b;
    ngx_int_t                  rc;
    ngx_chain_t                out;
    ngx_queue_t               *q;
    ngx_proxy_wasm_metric_t   *e;
    ngx_proxy_wasm_metrics_t  *m;

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

    ngx_shmtx_lock(&m->shpool->mutex);

    size = ngx_proxy_wasm_shm_stats_size();

    for (q = ngx_queue_head(&m->sh->sorted);
         q != ngx_queue_sentinel(&m->sh->sorted);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_proxy_wasm_metric_t, sorted);

        if (ngx_proxy_wasm_metric_served(plcf, e)) {
            size += ngx_proxy_wasm_metric_size(e);
        }
    }

    b = ngx_create_temp_buf(r->pool, ngx_max(size, 1));
    if (b == NULL) {
        ngx_shmtx_unlock(&m->shpool->mutex);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (q = ngx_queue_head(&m->sh->sorted);
         q != ngx_queue_sentinel(&m->sh->sorted);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_proxy_wasm_metric_t, sorted);

        if (ngx_proxy_wasm_metric_served(plcf, e)) {
            b->last = ngx_proxy_wasm_metric_format(b->last, e);
        }
    }

    ngx_shmtx_unlock(&m->shpool->mutex);

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
