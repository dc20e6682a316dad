/*
 * The zones of wasm{}: shm_kv and shm_queue zones (and the metrics zone),
 * nginx slab pools declared by directives and mapped at start. A zone
 * keeps its contents across a reload when it keeps its name, its size and
 * whether it is shared, as nginx reuses such zones.
 *
 * Rust knows the zones by kind and index (zone_add, once the modules are
 * loaded: it checks share= against them) and works on them locked
 * (zone_lock). What each kind holds is in ngx_proxy_wasm_kv.c,
 * ngx_proxy_wasm_queue.c and ngx_proxy_wasm_metrics.c.
 */

#include "ngx_proxy_wasm_shim.h"


/* zone names nginx knows: by kind, so a kv and a queue may share a name */
#define NGX_PROXY_WASM_SHM_PREFIX  "proxy_wasm "


ngx_proxy_wasm_conf_t  *ngx_proxy_wasm_shm_conf;


/*
 * share=<module>,... or share=*: the modules that share a zone, checked
 * by Rust against the wasm{} block's modules once they are loaded.
 */
ngx_int_t
ngx_proxy_wasm_zone_share(ngx_conf_t *cf, ngx_str_t *value,
    ngx_proxy_wasm_zone_t *zone)
{
    u_char     *p, *end, *comma;
    ngx_str_t  *name;

    if (zone->share != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "duplicate \"share=\"");
        return NGX_ERROR;
    }

    zone->share = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
    if (zone->share == NULL) {
        return NGX_ERROR;
    }

    p = value->data + 6;
    end = value->data + value->len;

    for ( ;; ) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        if (comma == p) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"%V\": a module name is empty",
                               value);
            return NGX_ERROR;
        }

        name = ngx_array_push(zone->share);
        if (name == NULL) {
            return NGX_ERROR;
        }

        name->data = p;
        name->len = comma - p;

        if (comma == end) {
            break;
        }

        p = comma + 1;
    }

    return NGX_OK;
}


/*
 * Declares a zone of a kind to nginx, after checking its name and size;
 * zone (its shm_zone->data) has its name and share= set, init maps it.
 */
ngx_shm_zone_t *
ngx_proxy_wasm_zone_add(ngx_conf_t *cf, ngx_proxy_wasm_zone_t *zone,
    ngx_str_t *size, ngx_shm_zone_init_pt init)
{
    u_char           *p;
    ssize_t           n;
    const char       *kind, *mode;
    ngx_str_t         zname, *name;
    ngx_uint_t        i;
    ngx_array_t      *zones;
    ngx_shm_zone_t  **shm_zones, *shm_zone;

    ngx_proxy_wasm_zone_t  *other;

    name = &zone->name;

    if (name->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty zone name");
        return NULL;
    }

    for (p = name->data; p < name->data + name->len; p++) {
        /* nor what a Prometheus label value would have to escape */
        if (*p <= ' ' || *p == '/' || *p == '"' || *p == '\\'
            || *p >= 0x7f)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid zone name \"%V\": it may not hold "
                               "\"/\", quotes, backslashes, spaces or "
                               "control characters", name);
            return NULL;
        }
    }

    n = ngx_parse_size(size);

    if (n == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", size);
        return NULL;
    }

    if (n < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: it must be at least "
                           "%uzk", name, 8 * ngx_pagesize / 1024);
        return NULL;
    }

    zones = ngx_proxy_wasm_zones_of(ngx_proxy_wasm_shm_conf, zone->kind);
    kind = zone->kind == NGX_PROXY_WASM_ZONE_KV ? "kv" : "queue";

    if (zones->nalloc == 0
        && ngx_array_init(zones, cf->pool, 4, sizeof(ngx_shm_zone_t *))
           != NGX_OK)
    {
        return NULL;
    }

    shm_zones = zones->elts;

    for (i = 0; i < zones->nelts; i++) {
        other = shm_zones[i]->data;

        if (other->name.len == name->len
            && ngx_strncmp(other->name.data, name->data, name->len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate %s zone \"%V\"", kind, name);
            return NULL;
        }
    }

    zone->file = cf->conf_file->file.name;
    zone->line = cf->conf_file->line;

    /*
     * a shared zone and one split by module are not the same zone: a
     * reload that adds or removes share= starts it empty
     */
    mode = zone->share ? "" : "/module";

    zname.len = sizeof(NGX_PROXY_WASM_SHM_PREFIX) - 1 + ngx_strlen(kind)
                + ngx_strlen(mode) + 1 + name->len;
    zname.data = ngx_pnalloc(cf->pool, zname.len);
    if (zname.data == NULL) {
        return NULL;
    }

    ngx_sprintf(zname.data, NGX_PROXY_WASM_SHM_PREFIX "%s%s %V", kind, mode,
                name);

    shm_zone = ngx_shared_memory_add(cf, &zname, n, &ngx_proxy_wasm_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    shm_zone->init = init;
    shm_zone->data = zone;

    shm_zones = ngx_array_push(zones);
    if (shm_zones == NULL) {
        return NULL;
    }

    *shm_zones = shm_zone;

    return shm_zone;
}


/* the shm_kv or shm_queue zones (ngx_shm_zone_t *) of a configuration */
ngx_array_t *
ngx_proxy_wasm_zones_of(ngx_proxy_wasm_conf_t *wcf,
    ngx_proxy_wasm_zone_kind_e kind)
{
    return kind == NGX_PROXY_WASM_ZONE_KV ? &wcf->kv_zones
                                          : &wcf->queue_zones;
}


/*
 * Maps a zone's state (shm_zone->data, an ngx_proxy_wasm_zone_t first):
 * the state a zone of the previous configuration left (a reload keeps
 * zones of the same name and size), or size bytes of a new zone's slab
 * pool, zeroed, then set up by init.
 */
ngx_int_t
ngx_proxy_wasm_zone_init(ngx_shm_zone_t *shm_zone, void *data,
    const char *kind, size_t size, void (*init)(void *sh))
{
    ngx_proxy_wasm_zone_t  *old = data;

    size_t                  len;
    ngx_slab_pool_t        *shpool;
    ngx_proxy_wasm_zone_t  *zone;

    zone = shm_zone->data;

    if (old) {
        zone->sh = old->sh;
        zone->shpool = old->shpool;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    zone->shpool = shpool;

    if (shm_zone->shm.exists || shpool->data != NULL) {
        zone->sh = shpool->data;
        return NGX_OK;
    }

    /* "no room" is reported by the caller, with the zone's name */
    shpool->log_nomem = 0;

    len = sizeof(" in proxy_wasm  zone \"\"") + ngx_strlen(kind)
          + zone->name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in proxy_wasm %s zone \"%V\"%Z",
                kind, &zone->name);

    zone->sh = ngx_slab_calloc(shpool, size);
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    init(zone->sh);
    shpool->data = zone->sh;

    return NGX_OK;
}


/* Tells Rust of every zone of wasm{}, once the modules are loaded. */
char *
ngx_proxy_wasm_zones_register(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wcf)
{
    ngx_uint_t                   i, kind;
    ngx_array_t                 *zones;
    ngx_shm_zone_t             **shm_zones;
    ngx_proxy_wasm_str_t         err;
    ngx_proxy_wasm_zone_t       *zone;
    ngx_proxy_wasm_zone_conf_t   conf;

    for (kind = NGX_PROXY_WASM_ZONE_KV; kind <= NGX_PROXY_WASM_ZONE_QUEUE;
         kind++)
    {
        zones = ngx_proxy_wasm_zones_of(wcf, kind);
        shm_zones = zones->elts;

        for (i = 0; i < zones->nelts; i++) {
            zone = shm_zones[i]->data;

            conf.kind = kind;
            conf.index = (uint32_t) i;
            conf.name.data = zone->name.data;
            conf.name.len = zone->name.len;
            conf.shared = zone->share != NULL;
            conf.share = NULL;
            conf.nshare = 0;

            if (zone->share) {
                conf.share = ngx_proxy_wasm_zone_share_names(cf->pool,
                                                             zone->share);
                if (conf.share == NULL) {
                    return NGX_CONF_ERROR;
                }

                conf.nshare = zone->share->nelts;
            }

            ngx_str_null(&err);

            if (ngx_proxy_wasm_api.zone_add(wcf->runtime, &conf, &err) != 0)
            {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "%s \"%V\": %*s in %V:%ui",
                              kind == NGX_PROXY_WASM_ZONE_KV ? "shm_kv"
                                                             : "shm_queue",
                              &zone->name, (size_t) err.len, err.data,
                              &zone->file, zone->line);
                return NGX_CONF_ERROR;
            }
        }
    }

    return NGX_CONF_OK;
}


/* the names of share=, as the boundary's strings */
const ngx_proxy_wasm_str_t *
ngx_proxy_wasm_zone_share_names(ngx_pool_t *pool, ngx_array_t *share)
{
    ngx_str_t             *name;
    ngx_uint_t             i;
    ngx_proxy_wasm_str_t  *names;

    names = ngx_palloc(pool, share->nelts * sizeof(ngx_proxy_wasm_str_t));
    if (names == NULL) {
        return NULL;
    }

    name = share->elts;

    for (i = 0; i < share->nelts; i++) {
        names[i].data = name[i].data;
        names[i].len = name[i].len;
    }

    return names;
}


/* whether a Wasm module of that name is one of wasm{} */
ngx_uint_t
ngx_proxy_wasm_has_wasm_module(ngx_proxy_wasm_conf_t *wcf, u_char *name,
    size_t len)
{
    ngx_uint_t                     i;
    ngx_proxy_wasm_wasm_module_t  *module;

    module = wcf->modules.elts;

    for (i = 0; i < wcf->modules.nelts; i++) {
        if (module[i].name.len == len
            && ngx_strncmp(module[i].name.data, name, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* A zone, locked; NULL if it is not mapped (the configuration check). */
void *
ngx_proxy_wasm_zone_lock(ngx_proxy_wasm_zone_kind_e kind, uint32_t index)
{
    ngx_array_t            *zones;
    ngx_shm_zone_t        **shm_zones;
    ngx_proxy_wasm_zone_t  *zone;

    if (ngx_proxy_wasm_shm_conf == NULL) {
        return NULL;
    }

    zones = ngx_proxy_wasm_zones_of(ngx_proxy_wasm_shm_conf, kind);

    if (index >= zones->nelts) {
        return NULL;
    }

    shm_zones = zones->elts;
    zone = shm_zones[index]->data;

    if (zone->sh == NULL) {
        return NULL;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    return zone;
}


void
ngx_proxy_wasm_zone_unlock(void *zone)
{
    ngx_shmtx_unlock(&((ngx_proxy_wasm_zone_t *) zone)->shpool->mutex);
}


/* ---- zone statistics, for the metrics endpoint ---- */


/* the room the two lines of each of these zones need at most */
static size_t
ngx_proxy_wasm_zones_stats_size(ngx_array_t *zones)
{
    size_t           size;
    ngx_uint_t       i;
    ngx_shm_zone_t **zone;

    size = 0;
    zone = zones->elts;

    for (i = 0; i < zones->nelts; i++) {
        size += 2 * (sizeof("proxy_wasm_kv_evictions_total{kind=\"queue\","
                            "zone=\"\"} \n")
                     + ((ngx_proxy_wasm_zone_t *) zone[i]->data)->name.len
                     + NGX_INT64_LEN);
    }

    return size;
}


/* the room ngx_proxy_wasm_shm_stats() needs at most */
size_t
ngx_proxy_wasm_shm_stats_size(void)
{
    size_t  size;

    /* the families' TYPE lines, the metrics zone's line */
    size = 3 * sizeof("# TYPE proxy_wasm_kv_evictions_total counter\n")
           + sizeof("proxy_wasm_shm_free_bytes{kind=\"metrics\","
                    "zone=\"metrics\"} \n") + NGX_INT64_LEN;

    if (ngx_proxy_wasm_shm_conf == NULL) {
        return size;
    }

    return size
           + ngx_proxy_wasm_zones_stats_size(&ngx_proxy_wasm_shm_conf->kv_zones)
           + ngx_proxy_wasm_zones_stats_size(
                                        &ngx_proxy_wasm_shm_conf->queue_zones);
}


/* one zone's free pages, in bytes; read without the lock: a gauge */
static u_char *
ngx_proxy_wasm_shm_free(u_char *p, const char *kind,
    ngx_proxy_wasm_zone_t *z)
{
    if (z->shpool == NULL) {
        return p;
    }

    return ngx_sprintf(p, "proxy_wasm_shm_free_bytes{kind=\"%s\","
                       "zone=\"%V\"} %uL\n", kind, &z->name,
                       (uint64_t) z->shpool->pfree * ngx_pagesize);
}


/*
 * The zones' statistics in the Prometheus text format: free pages of
 * every zone, evictions of key-value zones, items waiting in queues.
 */
u_char *
ngx_proxy_wasm_shm_stats(u_char *p)
{
    ngx_uint_t               i;
    ngx_shm_zone_t         **kv, **queue;
    ngx_proxy_wasm_zone_t   *z;
    ngx_proxy_wasm_conf_t   *wcf;

    wcf = ngx_proxy_wasm_shm_conf;

    if (wcf == NULL) {
        return p;
    }

    kv = wcf->kv_zones.elts;
    queue = wcf->queue_zones.elts;

    p = ngx_sprintf(p, "# TYPE proxy_wasm_shm_free_bytes gauge\n");

    for (i = 0; i < wcf->kv_zones.nelts; i++) {
        p = ngx_proxy_wasm_shm_free(p, "kv", kv[i]->data);
    }

    for (i = 0; i < wcf->queue_zones.nelts; i++) {
        p = ngx_proxy_wasm_shm_free(p, "queue", queue[i]->data);
    }

    if (wcf->metrics_zone) {
        p = ngx_proxy_wasm_shm_free(p, "metrics", wcf->metrics_zone->data);
    }

    if (wcf->kv_zones.nelts) {
        p = ngx_sprintf(p, "# TYPE proxy_wasm_kv_evictions_total counter\n");
    }

    for (i = 0; i < wcf->kv_zones.nelts; i++) {
        z = kv[i]->data;

        if (z->sh) {
            p = ngx_sprintf(p, "proxy_wasm_kv_evictions_total{zone=\"%V\"} "
                            "%uL\n", &z->name, ngx_proxy_wasm_kv_evictions(z));
        }
    }

    if (wcf->queue_zones.nelts) {
        p = ngx_sprintf(p, "# TYPE proxy_wasm_queue_items gauge\n");
    }

    for (i = 0; i < wcf->queue_zones.nelts; i++) {
        z = queue[i]->data;

        if (z->sh) {
            p = ngx_sprintf(p, "proxy_wasm_queue_items{queue=\"%V\"} %uz\n",
                            &z->name, ngx_proxy_wasm_queue_items(z));
        }
    }

    return p;
}
