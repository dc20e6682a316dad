/*
 * Shared memory of the wasm{} block: the key-value zones (shm_kv) and the
 * queues (shm_queue) every worker reaches, and the wakeups that tell a
 * worker that an item waits in a queue it registered.
 *
 * Zones are nginx slab pools. They keep their contents across a reload
 * when they keep their name and size, as nginx reuses such zones.
 *
 * Modules are kept apart (filters often come from different vendors): a
 * zone without share= gives each module its own part. A key-value zone
 * stores a module's keys behind its name ("<module>\0<key>") and evicts
 * only that module's entries to make it room; a queue belongs to the
 * module that registered it first, and others may only resolve it (by
 * the owner's vm id) and enqueue to it, as Envoy's VMs do. A zone with
 * share= serves only the modules it names (every one for share=*), with
 * one key space and queue for them all.
 *
 * Wakeups: each worker that registered a queue binds a datagram socket
 * named after its pid (Linux abstract namespace). Enqueueing credits one
 * registered worker (in turn) under the zone's lock, then sends it one
 * byte; the worker's event loop then runs on_queue_ready once per credit
 * while items remain. Elsewhere than Linux, workers look for credits every
 * NGX_PROXY_WASM_QUEUE_POLL ms instead.
 */

#include "ngx_http_proxy_wasm.h"

#if (NGX_LINUX)
#include <sys/un.h>
#endif


#define NGX_PROXY_WASM_KV_SLOTS          24
#define NGX_PROXY_WASM_QUEUE_WORKERS     256
#define NGX_PROXY_WASM_VM_ID_MAX         128
#define NGX_PROXY_WASM_QUEUE_POLL        50
/* on_queue_ready calls per queue in a turn of the event loop */
#define NGX_PROXY_WASM_QUEUE_BATCH       64
/* entries a module's write looks through for one of its own to evict */
#define NGX_PROXY_WASM_KV_EVICT_SCAN     1024
/* namespaced keys up to this size are made on the stack */
#define NGX_PROXY_WASM_KV_KEY_STACK      512


typedef enum {
    NGX_PROXY_WASM_EVICT_SLRU = 0,
    NGX_PROXY_WASM_EVICT_LRU,
    NGX_PROXY_WASM_EVICT_NONE
} ngx_proxy_wasm_eviction_e;


/* an entry of a key-value zone; the key, then the value, follow it */
typedef struct {
    ngx_str_node_t               sn;          /* sn.str: the key */
    /* every entry, most recently used first */
    ngx_queue_t                  lru;
    /* the entries of one slab slot size, most recently used first */
    ngx_queue_t                  slot_lru;
    uint32_t                     cas;
    uint32_t                     slot;
    size_t                       value_len;
    u_char                       data[1];
} ngx_proxy_wasm_kv_entry_t;


typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  lru;
    ngx_queue_t                  slots[NGX_PROXY_WASM_KV_SLOTS];
    /* the last CAS given; never 0 */
    uint32_t                     cas;
    /* entries evicted to make room, ever */
    uint64_t                     evictions;
} ngx_proxy_wasm_kv_sh_t;


/* shm_zone->data of a key-value zone (ngx_proxy_wasm_zone_t first) */
typedef struct {
    ngx_str_t                    name;        /* as declared: "*" or a name */
    ngx_proxy_wasm_kv_sh_t      *sh;
    ngx_slab_pool_t             *shpool;
    ngx_array_t                 *share;
    ngx_str_t                    file;
    ngx_uint_t                   line;
    ngx_uint_t                   eviction;
} ngx_proxy_wasm_kv_t;


typedef struct {
    ngx_queue_t                  queue;
    size_t                       len;
    u_char                       data[1];
} ngx_proxy_wasm_queue_item_t;


/* a worker that registered a queue, and the items it was not told of */
typedef struct {
    ngx_pid_t                    pid;
    ngx_uint_t                   credits;
} ngx_proxy_wasm_queue_worker_t;


typedef struct {
    ngx_queue_t                  items;
    ngx_uint_t                   count;
    /* the vm id that registered the queue last; none: never registered */
    size_t                       owner_len;
    u_char                       owner[NGX_PROXY_WASM_VM_ID_MAX];
    /* the worker the next item is credited to, in turn */
    ngx_uint_t                   next;
    ngx_proxy_wasm_queue_worker_t  workers[NGX_PROXY_WASM_QUEUE_WORKERS];
} ngx_proxy_wasm_queue_sh_t;


/* shm_zone->data of a queue zone (ngx_proxy_wasm_zone_t first) */
typedef struct {
    ngx_str_t                    name;
    ngx_proxy_wasm_queue_sh_t   *sh;
    ngx_slab_pool_t             *shpool;
    ngx_array_t                 *share;
    ngx_str_t                    file;
    ngx_uint_t                   line;
} ngx_proxy_wasm_queue_t;


static ngx_int_t ngx_proxy_wasm_kv_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_proxy_wasm_queue_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_proxy_wasm_shm_share(ngx_conf_t *cf, ngx_str_t *value,
    ngx_proxy_wasm_zone_t *zone);
static ngx_shm_zone_t *ngx_proxy_wasm_shm_add(ngx_conf_t *cf,
    ngx_array_t *zones, const char *kind, ngx_str_t *name, ngx_str_t *size,
    void *data, ngx_shm_zone_init_pt init);
static void ngx_proxy_wasm_queue_notify(ngx_proxy_wasm_queue_t *q,
    ngx_pid_t pid);
static ngx_int_t ngx_proxy_wasm_wakeup_init(void);
static void ngx_proxy_wasm_wakeup_handler(ngx_event_t *ev);


ngx_proxy_wasm_conf_t  *ngx_proxy_wasm_shm_conf;


/* zone names nginx knows: by kind, so a kv and a queue may share a name */
#define NGX_PROXY_WASM_SHM_PREFIX  "proxy_wasm "


/* shm_kv <name>|* <size> [eviction=slru|lru|none] */
char *
ngx_proxy_wasm_shm_kv_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t  *wcf = conf;

    ngx_str_t            *value, s;
    ngx_uint_t            i;
    ngx_proxy_wasm_kv_t  *kv;

    value = cf->args->elts;

    kv = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_kv_t));
    if (kv == NULL) {
        return NGX_CONF_ERROR;
    }

    kv->name = value[1];
    kv->eviction = NGX_PROXY_WASM_EVICT_SLRU;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "share=", 6) == 0) {
            if (ngx_proxy_wasm_shm_share(cf, &value[i],
                                         (ngx_proxy_wasm_zone_t *) kv)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "eviction=", 9) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", it must be "
                               "\"eviction=slru\", \"eviction=lru\", "
                               "\"eviction=none\" or \"share=...\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        s.data = value[i].data + 9;
        s.len = value[i].len - 9;

        if (s.len == 4 && ngx_strncmp(s.data, "slru", 4) == 0) {
            kv->eviction = NGX_PROXY_WASM_EVICT_SLRU;

        } else if (s.len == 3 && ngx_strncmp(s.data, "lru", 3) == 0) {
            kv->eviction = NGX_PROXY_WASM_EVICT_LRU;

        } else if (s.len == 4 && ngx_strncmp(s.data, "none", 4) == 0) {
            kv->eviction = NGX_PROXY_WASM_EVICT_NONE;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid eviction policy \"%V\", it must be "
                               "\"slru\", \"lru\" or \"none\"", &s);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_proxy_wasm_shm_add(cf, &wcf->kv_zones, "kv", &value[1], &value[2],
                               kv, ngx_proxy_wasm_kv_init_zone)
        == NULL)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* shm_queue <name> <size> [share=<module>,...|*] */
char *
ngx_proxy_wasm_shm_queue_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_proxy_wasm_conf_t  *wcf = conf;

    ngx_str_t               *value;
    ngx_proxy_wasm_queue_t  *q;

    value = cf->args->elts;

    q = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_queue_t));
    if (q == NULL) {
        return NGX_CONF_ERROR;
    }

    q->name = value[1];

    if (cf->args->nelts == 4) {
        if (ngx_strncmp(value[3].data, "share=", 6) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", it must be "
                               "\"share=...\"", &value[3]);
            return NGX_CONF_ERROR;
        }

        if (ngx_proxy_wasm_shm_share(cf, &value[3],
                                     (ngx_proxy_wasm_zone_t *) q)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_proxy_wasm_shm_add(cf, &wcf->queue_zones, "queue", &value[1],
                               &value[2], q, ngx_proxy_wasm_queue_init_zone)
        == NULL)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * share=<module>,... or share=*: the modules that share a zone, checked
 * against the wasm{} block's modules once it is read.
 */
static ngx_int_t
ngx_proxy_wasm_shm_share(ngx_conf_t *cf, ngx_str_t *value,
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

    zone->file = cf->conf_file->file.name;
    zone->line = cf->conf_file->line;

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


/* whether a module of that name is one of wasm{} */
ngx_uint_t
ngx_proxy_wasm_module_declared(ngx_proxy_wasm_conf_t *wcf, u_char *name,
    size_t len)
{
    ngx_uint_t                     i;
    ngx_proxy_wasm_module_conf_t  *module;

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


static char *
ngx_proxy_wasm_zones_check_shares(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wcf,
    ngx_array_t *zones, const char *directive)
{
    ngx_str_t               *name;
    ngx_uint_t               i, k;
    ngx_shm_zone_t         **zone;
    ngx_proxy_wasm_zone_t   *z;

    zone = zones->elts;

    for (i = 0; i < zones->nelts; i++) {
        z = zone[i]->data;

        if (z->share == NULL) {
            continue;
        }

        name = z->share->elts;

        for (k = 0; k < z->share->nelts; k++) {
            if ((name[k].len == 1 && name[k].data[0] == '*'
                 && z->share->nelts == 1)
                || ngx_proxy_wasm_module_declared(wcf, name[k].data,
                                                  name[k].len))
            {
                continue;
            }

            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "%s \"%V\": share= names no module of wasm{}: "
                          "\"%V\" in %V:%ui", directive, &z->name, &name[k],
                          &z->file, z->line);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* every module a share= names is one of wasm{} ("*" stands alone) */
char *
ngx_proxy_wasm_shm_check_shares(ngx_conf_t *cf, ngx_proxy_wasm_conf_t *wcf)
{
    if (ngx_proxy_wasm_zones_check_shares(cf, wcf, &wcf->kv_zones, "shm_kv")
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return ngx_proxy_wasm_zones_check_shares(cf, wcf, &wcf->queue_zones,
                                             "shm_queue");
}


/* whether a zone with share= serves a module */
static ngx_uint_t
ngx_proxy_wasm_shm_shared_with(ngx_array_t *share, ngx_proxy_wasm_str_t vm_id)
{
    ngx_str_t   *name;
    ngx_uint_t   i;

    name = share->elts;

    for (i = 0; i < share->nelts; i++) {
        if ((name[i].len == 1 && name[i].data[0] == '*')
            || (name[i].len == vm_id.len
                && ngx_strncmp(name[i].data, vm_id.data, vm_id.len) == 0))
        {
            return 1;
        }
    }

    return 0;
}


/*
 * Declares a zone of a kind ("kv", "queue") to nginx, after checking its
 * name and size; data is its shm_zone->data (an ngx_proxy_wasm_zone_t
 * first), init maps it.
 */
static ngx_shm_zone_t *
ngx_proxy_wasm_shm_add(ngx_conf_t *cf, ngx_array_t *zones, const char *kind,
    ngx_str_t *name, ngx_str_t *size, void *data, ngx_shm_zone_init_pt init)
{
    u_char           *p;
    ssize_t           n;
    const char       *mode;
    ngx_str_t         zname, *other;
    ngx_uint_t        i;
    ngx_shm_zone_t  **zone, *shm_zone;

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

    if (zones->nalloc == 0
        && ngx_array_init(zones, cf->pool, 4, sizeof(ngx_shm_zone_t *))
           != NGX_OK)
    {
        return NULL;
    }

    zone = zones->elts;

    for (i = 0; i < zones->nelts; i++) {
        other = zone[i]->data;

        if (other->len == name->len
            && ngx_strncmp(other->data, name->data, name->len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate %s zone \"%V\"", kind, name);
            return NULL;
        }
    }

    /*
     * a shared zone and one split by module are not the same zone: a
     * reload that adds or removes share= starts it empty
     */
    mode = ((ngx_proxy_wasm_zone_t *) data)->share ? "" : "/module";

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
    shm_zone->data = data;

    zone = ngx_array_push(zones);
    if (zone == NULL) {
        return NULL;
    }

    *zone = shm_zone;

    return shm_zone;
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


static void
ngx_proxy_wasm_kv_init_sh(void *data)
{
    ngx_proxy_wasm_kv_sh_t  *sh = data;

    ngx_uint_t  i;

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->lru);

    for (i = 0; i < NGX_PROXY_WASM_KV_SLOTS; i++) {
        ngx_queue_init(&sh->slots[i]);
    }
}


static ngx_int_t
ngx_proxy_wasm_kv_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    return ngx_proxy_wasm_zone_init(shm_zone, data, "kv",
                                    sizeof(ngx_proxy_wasm_kv_sh_t),
                                    ngx_proxy_wasm_kv_init_sh);
}


static void
ngx_proxy_wasm_queue_init_sh(void *data)
{
    ngx_proxy_wasm_queue_sh_t  *sh = data;

    ngx_queue_init(&sh->items);
}


static ngx_int_t
ngx_proxy_wasm_queue_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    return ngx_proxy_wasm_zone_init(shm_zone, data, "queue",
                                    sizeof(ngx_proxy_wasm_queue_sh_t),
                                    ngx_proxy_wasm_queue_init_sh);
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
    ngx_uint_t                i;
    ngx_shm_zone_t          **kv, **queue;
    ngx_proxy_wasm_kv_t      *k;
    ngx_proxy_wasm_queue_t   *q;

    if (ngx_proxy_wasm_shm_conf == NULL) {
        return p;
    }

    kv = ngx_proxy_wasm_shm_conf->kv_zones.elts;
    queue = ngx_proxy_wasm_shm_conf->queue_zones.elts;

    p = ngx_sprintf(p, "# TYPE proxy_wasm_shm_free_bytes gauge\n");

    for (i = 0; i < ngx_proxy_wasm_shm_conf->kv_zones.nelts; i++) {
        p = ngx_proxy_wasm_shm_free(p, "kv", kv[i]->data);
    }

    for (i = 0; i < ngx_proxy_wasm_shm_conf->queue_zones.nelts; i++) {
        p = ngx_proxy_wasm_shm_free(p, "queue", queue[i]->data);
    }

    if (ngx_proxy_wasm_shm_conf->metrics_zone) {
        p = ngx_proxy_wasm_shm_free(p, "metrics",
                                ngx_proxy_wasm_shm_conf->metrics_zone->data);
    }

    if (ngx_proxy_wasm_shm_conf->kv_zones.nelts) {
        p = ngx_sprintf(p, "# TYPE proxy_wasm_kv_evictions_total counter\n");
    }

    for (i = 0; i < ngx_proxy_wasm_shm_conf->kv_zones.nelts; i++) {
        k = kv[i]->data;

        if (k->sh) {
            p = ngx_sprintf(p, "proxy_wasm_kv_evictions_total{zone=\"%V\"} "
                            "%uL\n", &k->name, k->sh->evictions);
        }
    }

    if (ngx_proxy_wasm_shm_conf->queue_zones.nelts) {
        p = ngx_sprintf(p, "# TYPE proxy_wasm_queue_items gauge\n");
    }

    for (i = 0; i < ngx_proxy_wasm_shm_conf->queue_zones.nelts; i++) {
        q = queue[i]->data;

        if (q->sh) {
            p = ngx_sprintf(p, "proxy_wasm_queue_items{queue=\"%V\"} %ui\n",
                            &q->name, q->sh->count);
        }
    }

    return p;
}


/* ---- key-value zones ---- */


/*
 * The zone of a key: "name/rest" belongs to the zone "name" if there is
 * one, every other key to the zone "*".
 */
static ngx_proxy_wasm_kv_t *
ngx_proxy_wasm_kv_zone(ngx_proxy_wasm_str_t key)
{
    u_char               *slash;
    size_t                len;
    ngx_uint_t            i;
    ngx_shm_zone_t      **zone;
    ngx_proxy_wasm_kv_t  *kv, *any;

    if (ngx_proxy_wasm_shm_conf == NULL) {
        return NULL;
    }

    slash = key.len ? ngx_strlchr((u_char *) key.data,
                                  (u_char *) key.data + key.len, '/')
                    : NULL;
    len = slash ? (size_t) (slash - key.data) : 0;
    any = NULL;

    zone = ngx_proxy_wasm_shm_conf->kv_zones.elts;

    for (i = 0; i < ngx_proxy_wasm_shm_conf->kv_zones.nelts; i++) {
        kv = zone[i]->data;

        if (slash && kv->name.len == len
            && ngx_strncmp(kv->name.data, key.data, len) == 0)
        {
            return kv;
        }

        if (kv->name.len == 1 && kv->name.data[0] == '*') {
            any = kv;
        }
    }

    return any;
}


static ngx_proxy_wasm_kv_entry_t *
ngx_proxy_wasm_kv_lookup(ngx_proxy_wasm_kv_t *kv, ngx_str_t *key,
    uint32_t hash)
{
    ngx_str_node_t  *sn;

    sn = ngx_str_rbtree_lookup(&kv->sh->rbtree, key, hash);

    return (ngx_proxy_wasm_kv_entry_t *) sn;
}


/* the slot of the slab allocator an allocation of that size comes from */
static ngx_uint_t
ngx_proxy_wasm_kv_slot(ngx_slab_pool_t *shpool, size_t size)
{
    size_t      s;
    ngx_uint_t  shift, slot;

    if (size > ngx_pagesize / 2) {
        /* whole pages: one class after the slots */
        slot = ngx_pagesize_shift - shpool->min_shift;

    } else if (size > shpool->min_size) {
        shift = 1;
        for (s = size - 1; s >>= 1; shift++) { /* void */ }
        slot = shift - shpool->min_shift;

    } else {
        slot = 0;
    }

    return ngx_min(slot, NGX_PROXY_WASM_KV_SLOTS - 1);
}


static void
ngx_proxy_wasm_kv_link(ngx_proxy_wasm_kv_t *kv, ngx_proxy_wasm_kv_entry_t *e)
{
    ngx_rbtree_insert(&kv->sh->rbtree, &e->sn.node);
    ngx_queue_insert_head(&kv->sh->lru, &e->lru);
    ngx_queue_insert_head(&kv->sh->slots[e->slot], &e->slot_lru);
}


static void
ngx_proxy_wasm_kv_unlink(ngx_proxy_wasm_kv_t *kv,
    ngx_proxy_wasm_kv_entry_t *e)
{
    ngx_rbtree_delete(&kv->sh->rbtree, &e->sn.node);
    ngx_queue_remove(&e->lru);
    ngx_queue_remove(&e->slot_lru);
}


static void
ngx_proxy_wasm_kv_touch(ngx_proxy_wasm_kv_t *kv, ngx_proxy_wasm_kv_entry_t *e)
{
    ngx_queue_remove(&e->lru);
    ngx_queue_insert_head(&kv->sh->lru, &e->lru);
    ngx_queue_remove(&e->slot_lru);
    ngx_queue_insert_head(&kv->sh->slots[e->slot], &e->slot_lru);
}


/*
 * The oldest entry of an LRU queue (its entries linked at `link`) in a
 * namespace (none: any), looking at *budget entries at most.
 */
static ngx_proxy_wasm_kv_entry_t *
ngx_proxy_wasm_kv_oldest(ngx_queue_t *queue, size_t link, ngx_str_t *ns,
    ngx_uint_t *budget)
{
    ngx_queue_t                *q;
    ngx_proxy_wasm_kv_entry_t  *e;

    for (q = ngx_queue_last(queue);
         q != ngx_queue_sentinel(queue) && *budget > 0;
         q = ngx_queue_prev(q), (*budget)--)
    {
        e = (ngx_proxy_wasm_kv_entry_t *) ((u_char *) q - link);

        if (ns->len == 0
            || (e->sn.str.len >= ns->len
                && ngx_memcmp(e->sn.str.data, ns->data, ns->len) == 0))
        {
            return e;
        }
    }

    return NULL;
}


/*
 * The entry to evict to make room for an allocation of a slot: the least
 * recently used of all (lru), or (slru) of the same slot, else of the
 * smallest larger slot, else of the largest smaller one, so that as few
 * entries as possible go before a slab has room. A module evicts only
 * entries of its own namespace (ns), found among the oldest
 * NGX_PROXY_WASM_KV_EVICT_SCAN entries.
 */
static ngx_proxy_wasm_kv_entry_t *
ngx_proxy_wasm_kv_victim(ngx_proxy_wasm_kv_t *kv, ngx_uint_t slot,
    ngx_str_t *ns)
{
    ngx_int_t                   i;
    ngx_uint_t                  budget;
    ngx_proxy_wasm_kv_entry_t  *e;

    budget = NGX_PROXY_WASM_KV_EVICT_SCAN;

    if (kv->eviction == NGX_PROXY_WASM_EVICT_LRU) {
        return ngx_proxy_wasm_kv_oldest(&kv->sh->lru,
                                    offsetof(ngx_proxy_wasm_kv_entry_t, lru),
                                    ns, &budget);
    }

    for (i = slot; i < NGX_PROXY_WASM_KV_SLOTS && budget > 0; i++) {
        e = ngx_proxy_wasm_kv_oldest(&kv->sh->slots[i],
                               offsetof(ngx_proxy_wasm_kv_entry_t, slot_lru),
                               ns, &budget);
        if (e != NULL) {
            return e;
        }
    }

    for (i = (ngx_int_t) slot - 1; i >= 0 && budget > 0; i--) {
        e = ngx_proxy_wasm_kv_oldest(&kv->sh->slots[i],
                               offsetof(ngx_proxy_wasm_kv_entry_t, slot_lru),
                               ns, &budget);
        if (e != NULL) {
            return e;
        }
    }

    return NULL;
}


/* an allocation in a locked zone, evicting entries per its policy */
static void *
ngx_proxy_wasm_kv_alloc(ngx_proxy_wasm_kv_t *kv, size_t size, ngx_str_t *ns)
{
    void                       *p;
    ngx_uint_t                  slot;
    ngx_proxy_wasm_kv_entry_t  *victim;

    /* more than the zone's pages: evicting everything would not help */
    if (size > (size_t) (kv->shpool->end - kv->shpool->start)) {
        return NULL;
    }

    slot = ngx_proxy_wasm_kv_slot(kv->shpool, size);

    for ( ;; ) {
        p = ngx_slab_alloc_locked(kv->shpool, size);
        if (p != NULL) {
            return p;
        }

        if (kv->eviction == NGX_PROXY_WASM_EVICT_NONE) {
            return NULL;
        }

        victim = ngx_proxy_wasm_kv_victim(kv, slot, ns);
        if (victim == NULL) {
            return NULL;
        }

        ngx_proxy_wasm_kv_unlink(kv, victim);
        ngx_slab_free_locked(kv->shpool, victim);
        kv->sh->evictions++;
    }
}


/*
 * The zone a module's key goes to, and the key it is stored under there:
 * the key itself in a zone with share= (DENIED unless it names the
 * module), else the key behind the module's name ("<module>\0<key>"),
 * made in buf (NGX_PROXY_WASM_KV_KEY_STACK bytes) if it fits, else
 * allocated: the caller frees k->data when it is neither buf nor the key.
 * ns: the part of the stored key that names the module (empty in a
 * shared zone).
 */
static ngx_proxy_wasm_shm_e
ngx_proxy_wasm_kv_key(ngx_proxy_wasm_str_t vm_id, ngx_proxy_wasm_str_t key,
    u_char *buf, ngx_proxy_wasm_kv_t **zone, ngx_str_t *k, ngx_str_t *ns)
{
    ngx_proxy_wasm_kv_t  *kv;

    kv = ngx_proxy_wasm_kv_zone(key);
    if (kv == NULL) {
        return NGX_PROXY_WASM_SHM_NO_ZONE;
    }

    *zone = kv;

    if (kv->share) {
        if (!ngx_proxy_wasm_shm_shared_with(kv->share, vm_id)) {
            return NGX_PROXY_WASM_SHM_DENIED;
        }

        k->data = (u_char *) key.data;
        k->len = key.len;
        ngx_str_null(ns);
        return NGX_PROXY_WASM_SHM_DONE;
    }

    if (kv->sh == NULL) {
        /* not mapped (configuration check): nothing is looked up */
        k->data = (u_char *) key.data;
        k->len = key.len;
        ngx_str_null(ns);
        return NGX_PROXY_WASM_SHM_DONE;
    }

    k->len = vm_id.len + 1 + key.len;
    k->data = k->len <= NGX_PROXY_WASM_KV_KEY_STACK
              ? buf : ngx_alloc(k->len, ngx_cycle->log);
    if (k->data == NULL) {
        return NGX_PROXY_WASM_SHM_ERROR;
    }

    ngx_memcpy(k->data, vm_id.data, vm_id.len);
    k->data[vm_id.len] = '\0';
    ngx_memcpy(k->data + vm_id.len + 1, key.data, key.len);

    ns->data = k->data;
    ns->len = vm_id.len + 1;

    return NGX_PROXY_WASM_SHM_DONE;
}


ngx_proxy_wasm_shm_e
ngx_proxy_wasm_kv_get(ngx_proxy_wasm_str_t vm_id, ngx_proxy_wasm_str_t key,
    uint8_t *buf, size_t size, size_t *len, uint32_t *cas)
{
    u_char                      stack[NGX_PROXY_WASM_KV_KEY_STACK];
    ngx_proxy_wasm_shm_e        rc;
    ngx_str_t                   k, ns;
    ngx_proxy_wasm_kv_t        *kv;
    ngx_proxy_wasm_kv_entry_t  *e;

    rc = ngx_proxy_wasm_kv_key(vm_id, key, stack, &kv, &k, &ns);
    if (rc != NGX_PROXY_WASM_SHM_DONE) {
        return rc;
    }

    if (kv->sh == NULL) {
        return NGX_PROXY_WASM_SHM_ABSENT;
    }

    ngx_shmtx_lock(&kv->shpool->mutex);

    e = ngx_proxy_wasm_kv_lookup(kv, &k, ngx_crc32_short(k.data, k.len));

    if (e == NULL) {
        rc = NGX_PROXY_WASM_SHM_ABSENT;

    } else if (e->value_len > size) {
        *len = e->value_len;
        rc = NGX_PROXY_WASM_SHM_TOO_SMALL;

    } else {
        *len = e->value_len;
        *cas = e->cas;
        ngx_memcpy(buf, e->data + e->sn.str.len, e->value_len);
        ngx_proxy_wasm_kv_touch(kv, e);
        rc = NGX_PROXY_WASM_SHM_DONE;
    }

    ngx_shmtx_unlock(&kv->shpool->mutex);

    if (k.data != stack && k.data != (u_char *) key.data) {
        ngx_free(k.data);
    }

    return rc;
}


ngx_proxy_wasm_shm_e
ngx_proxy_wasm_kv_set(ngx_proxy_wasm_str_t vm_id, ngx_proxy_wasm_str_t key,
    ngx_proxy_wasm_str_t value, uint32_t cas)
{
    u_char                      stack[NGX_PROXY_WASM_KV_KEY_STACK];
    size_t                      size;
    uint32_t                    hash;
    ngx_proxy_wasm_shm_e        rc;
    ngx_str_t                   k, ns;
    ngx_proxy_wasm_kv_t        *kv;
    ngx_proxy_wasm_kv_entry_t  *e, *old;

    rc = ngx_proxy_wasm_kv_key(vm_id, key, stack, &kv, &k, &ns);
    if (rc != NGX_PROXY_WASM_SHM_DONE) {
        return rc;
    }

    if (kv->sh == NULL) {
        return NGX_PROXY_WASM_SHM_DONE;
    }

    hash = ngx_crc32_short(k.data, k.len);

    ngx_shmtx_lock(&kv->shpool->mutex);

    old = ngx_proxy_wasm_kv_lookup(kv, &k, hash);

    if (old && cas != 0 && old->cas != cas) {
        rc = NGX_PROXY_WASM_SHM_CAS_MISMATCH;
        goto done;
    }

    if (old && old->value_len == value.len) {
        e = old;
        ngx_memcpy(e->data + e->sn.str.len, value.data, value.len);
        ngx_proxy_wasm_kv_touch(kv, e);
        goto stored;
    }

    /* the old entry is not a candidate for eviction, and comes back if
     * there is no room for the new one */
    if (old) {
        ngx_proxy_wasm_kv_unlink(kv, old);
    }

    size = offsetof(ngx_proxy_wasm_kv_entry_t, data) + k.len + value.len;

    e = ngx_proxy_wasm_kv_alloc(kv, size, &ns);

    if (e == NULL) {
        if (old) {
            ngx_proxy_wasm_kv_link(kv, old);
        }

        rc = NGX_PROXY_WASM_SHM_FULL;
        goto done;
    }

    if (old) {
        ngx_slab_free_locked(kv->shpool, old);
    }

    e->sn.node.key = hash;
    e->sn.str.data = e->data;
    e->sn.str.len = k.len;
    e->value_len = value.len;
    e->slot = ngx_proxy_wasm_kv_slot(kv->shpool, size);
    ngx_memcpy(e->data, k.data, k.len);
    ngx_memcpy(e->data + k.len, value.data, value.len);
    ngx_proxy_wasm_kv_link(kv, e);

stored:

    kv->sh->cas++;

    if (kv->sh->cas == 0) {
        kv->sh->cas = 1;
    }

    e->cas = kv->sh->cas;
    rc = NGX_PROXY_WASM_SHM_DONE;

done:

    ngx_shmtx_unlock(&kv->shpool->mutex);

    if (k.data != stack && k.data != (u_char *) key.data) {
        ngx_free(k.data);
    }

    return rc;
}


/* ---- queues ---- */


/* a queue zone by name, with its token (its index + 1) */
static ngx_proxy_wasm_queue_t *
ngx_proxy_wasm_queue_by_name(ngx_proxy_wasm_str_t name, uint32_t *token)
{
    ngx_uint_t               i;
    ngx_shm_zone_t         **zone;
    ngx_proxy_wasm_queue_t  *q;

    if (ngx_proxy_wasm_shm_conf == NULL) {
        return NULL;
    }

    zone = ngx_proxy_wasm_shm_conf->queue_zones.elts;

    for (i = 0; i < ngx_proxy_wasm_shm_conf->queue_zones.nelts; i++) {
        q = zone[i]->data;

        if (q->name.len == name.len
            && ngx_strncmp(q->name.data, name.data, name.len) == 0)
        {
            *token = i + 1;
            return q;
        }
    }

    return NULL;
}


static ngx_proxy_wasm_queue_t *
ngx_proxy_wasm_queue_by_token(uint32_t token)
{
    ngx_shm_zone_t  **zone;

    if (ngx_proxy_wasm_shm_conf == NULL
        || token == 0
        || token > ngx_proxy_wasm_shm_conf->queue_zones.nelts)
    {
        return NULL;
    }

    zone = ngx_proxy_wasm_shm_conf->queue_zones.elts;

    return zone[token - 1]->data;
}


/* this worker's entry among a locked queue's workers, if any */
static ngx_proxy_wasm_queue_worker_t *
ngx_proxy_wasm_queue_worker(ngx_proxy_wasm_queue_sh_t *sh, ngx_pid_t pid)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_PROXY_WASM_QUEUE_WORKERS; i++) {
        if (sh->workers[i].pid == pid) {
            return &sh->workers[i];
        }
    }

    return NULL;
}


/*
 * Credits a locked queue's next registered worker with n items; the pid
 * to wake, or 0 when no worker registered the queue (the items wait).
 */
static ngx_pid_t
ngx_proxy_wasm_queue_credit(ngx_proxy_wasm_queue_sh_t *sh, ngx_uint_t n)
{
    ngx_uint_t                      i, k;
    ngx_proxy_wasm_queue_worker_t  *w;

    for (k = 0; k < NGX_PROXY_WASM_QUEUE_WORKERS; k++) {
        i = (sh->next + k) % NGX_PROXY_WASM_QUEUE_WORKERS;
        w = &sh->workers[i];

        if (w->pid != 0) {
            w->credits += n;
            sh->next = i + 1;
            return w->pid;
        }
    }

    return 0;
}


/*
 * Takes a worker off a locked queue; its credits go to another one,
 * whose pid is returned (0: none).
 */
static ngx_pid_t
ngx_proxy_wasm_queue_leave(ngx_proxy_wasm_queue_sh_t *sh, ngx_pid_t pid)
{
    ngx_uint_t                      credits;
    ngx_proxy_wasm_queue_worker_t  *w;

    w = ngx_proxy_wasm_queue_worker(sh, pid);
    if (w == NULL) {
        return 0;
    }

    credits = w->credits;
    w->pid = 0;
    w->credits = 0;

    return credits ? ngx_proxy_wasm_queue_credit(sh, credits) : 0;
}


/* whether a locked queue's owner is that module (as register kept it) */
static ngx_uint_t
ngx_proxy_wasm_queue_owned_by(ngx_proxy_wasm_queue_sh_t *sh,
    ngx_proxy_wasm_str_t vm_id)
{
    size_t  len;

    len = ngx_min(vm_id.len, NGX_PROXY_WASM_VM_ID_MAX);

    return sh->owner_len != 0 && len == sh->owner_len
           && ngx_memcmp(vm_id.data, sh->owner, len) == 0;
}


ngx_proxy_wasm_shm_e
ngx_proxy_wasm_queue_register(ngx_proxy_wasm_str_t vm_id,
    ngx_proxy_wasm_str_t name, uint32_t *token)
{
    ngx_uint_t                      i, credited, credits;
    ngx_proxy_wasm_queue_t         *q;
    ngx_proxy_wasm_queue_sh_t      *sh;
    ngx_proxy_wasm_queue_worker_t  *w;

    q = ngx_proxy_wasm_queue_by_name(name, token);
    if (q == NULL) {
        return NGX_PROXY_WASM_SHM_NO_ZONE;
    }

    if (q->share && !ngx_proxy_wasm_shm_shared_with(q->share, vm_id)) {
        return NGX_PROXY_WASM_SHM_DENIED;
    }

    if (q->sh == NULL) {
        return NGX_PROXY_WASM_SHM_DONE;
    }

    if (ngx_proxy_wasm_wakeup_init() != NGX_OK) {
        return NGX_PROXY_WASM_SHM_ERROR;
    }

    sh = q->sh;

    ngx_shmtx_lock(&q->shpool->mutex);

    /*
     * without share=, a queue is its first registrant's, for as long as
     * the configuration has that module
     */
    if (q->share == NULL && sh->owner_len != 0
        && !ngx_proxy_wasm_queue_owned_by(sh, vm_id)
        && ngx_proxy_wasm_module_declared(ngx_proxy_wasm_shm_conf, sh->owner,
                                          sh->owner_len))
    {
        ngx_shmtx_unlock(&q->shpool->mutex);
        return NGX_PROXY_WASM_SHM_DENIED;
    }

    sh->owner_len = ngx_min(vm_id.len, NGX_PROXY_WASM_VM_ID_MAX);
    ngx_memcpy(sh->owner, vm_id.data, sh->owner_len);

    w = ngx_proxy_wasm_queue_worker(q->sh, ngx_pid);

    if (w == NULL) {
        w = ngx_proxy_wasm_queue_worker(q->sh, 0);

        if (w != NULL) {
            /* items no worker was told of (all left) are this one's */
            credited = 0;

            for (i = 0; i < NGX_PROXY_WASM_QUEUE_WORKERS; i++) {
                credited += q->sh->workers[i].credits;
            }

            w->pid = ngx_pid;
            w->credits = q->sh->count > credited ? q->sh->count - credited
                                                 : 0;
        }
    }

    credits = w ? w->credits : 0;

    ngx_shmtx_unlock(&q->shpool->mutex);

    if (credits) {
        ngx_proxy_wasm_queue_notify(q, ngx_pid);
    }

    if (w == NULL) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "proxy_wasm: more than %d workers registered queue "
                      "\"%V\": this one is not told of its items",
                      NGX_PROXY_WASM_QUEUE_WORKERS, &q->name);
    }

    return NGX_PROXY_WASM_SHM_DONE;
}


/*
 * Without share=, any module may resolve a queue by its owner's vm id, to
 * enqueue to it (Envoy's VMs send to each other so); with share=, only
 * the modules it names.
 */
ngx_proxy_wasm_shm_e
ngx_proxy_wasm_queue_resolve(ngx_proxy_wasm_str_t vm_id,
    ngx_proxy_wasm_str_t owner, ngx_proxy_wasm_str_t name, uint32_t *token)
{
    ngx_proxy_wasm_shm_e     rc;
    ngx_proxy_wasm_queue_t  *q;

    q = ngx_proxy_wasm_queue_by_name(name, token);
    if (q == NULL) {
        return NGX_PROXY_WASM_SHM_NO_ZONE;
    }

    if (q->share && !ngx_proxy_wasm_shm_shared_with(q->share, vm_id)) {
        return NGX_PROXY_WASM_SHM_DENIED;
    }

    if (q->sh == NULL) {
        return NGX_PROXY_WASM_SHM_DONE;
    }

    ngx_shmtx_lock(&q->shpool->mutex);

    rc = ngx_proxy_wasm_queue_owned_by(q->sh, owner)
         ? NGX_PROXY_WASM_SHM_DONE : NGX_PROXY_WASM_SHM_ABSENT;

    ngx_shmtx_unlock(&q->shpool->mutex);

    return rc;
}


ngx_proxy_wasm_shm_e
ngx_proxy_wasm_queue_enqueue(ngx_proxy_wasm_str_t vm_id, uint32_t token,
    ngx_proxy_wasm_str_t value)
{
    ngx_pid_t                     pid;
    ngx_proxy_wasm_queue_t       *q;
    ngx_proxy_wasm_queue_item_t  *item;

    q = ngx_proxy_wasm_queue_by_token(token);
    if (q == NULL) {
        return NGX_PROXY_WASM_SHM_NO_ZONE;
    }

    if (q->share && !ngx_proxy_wasm_shm_shared_with(q->share, vm_id)) {
        return NGX_PROXY_WASM_SHM_DENIED;
    }

    if (q->sh == NULL) {
        return NGX_PROXY_WASM_SHM_DONE;
    }

    ngx_shmtx_lock(&q->shpool->mutex);

    item = ngx_slab_alloc_locked(q->shpool,
                                 offsetof(ngx_proxy_wasm_queue_item_t, data)
                                 + value.len);
    if (item == NULL) {
        ngx_shmtx_unlock(&q->shpool->mutex);
        return NGX_PROXY_WASM_SHM_FULL;
    }

    item->len = value.len;
    ngx_memcpy(item->data, value.data, value.len);
    ngx_queue_insert_tail(&q->sh->items, &item->queue);
    q->sh->count++;

    pid = ngx_proxy_wasm_queue_credit(q->sh, 1);

    ngx_shmtx_unlock(&q->shpool->mutex);

    if (pid) {
        ngx_proxy_wasm_queue_notify(q, pid);
    }

    return NGX_PROXY_WASM_SHM_DONE;
}


ngx_proxy_wasm_shm_e
ngx_proxy_wasm_queue_dequeue(ngx_proxy_wasm_str_t vm_id, uint32_t token,
    uint8_t *buf, size_t size, size_t *len)
{
    ngx_proxy_wasm_shm_e          rc;
    ngx_queue_t                  *head;
    ngx_proxy_wasm_queue_t       *q;
    ngx_proxy_wasm_queue_item_t  *item;

    q = ngx_proxy_wasm_queue_by_token(token);
    if (q == NULL) {
        return NGX_PROXY_WASM_SHM_NO_ZONE;
    }

    if (q->share && !ngx_proxy_wasm_shm_shared_with(q->share, vm_id)) {
        return NGX_PROXY_WASM_SHM_DENIED;
    }

    if (q->sh == NULL) {
        return NGX_PROXY_WASM_SHM_ABSENT;
    }

    ngx_shmtx_lock(&q->shpool->mutex);

    if (q->share == NULL && !ngx_proxy_wasm_queue_owned_by(q->sh, vm_id)) {
        rc = NGX_PROXY_WASM_SHM_DENIED;
        goto done;
    }

    if (ngx_queue_empty(&q->sh->items)) {
        rc = NGX_PROXY_WASM_SHM_ABSENT;
        goto done;
    }

    head = ngx_queue_head(&q->sh->items);
    item = ngx_queue_data(head, ngx_proxy_wasm_queue_item_t, queue);
    *len = item->len;

    if (item->len > size) {
        rc = NGX_PROXY_WASM_SHM_TOO_SMALL;
        goto done;
    }

    ngx_memcpy(buf, item->data, item->len);
    ngx_queue_remove(head);
    ngx_slab_free_locked(q->shpool, item);
    q->sh->count--;
    rc = NGX_PROXY_WASM_SHM_DONE;

done:

    ngx_shmtx_unlock(&q->shpool->mutex);

    return rc;
}


/* ---- wakeups ---- */


/* this worker's wakeup: a socket (Linux) or a poll timer, and a posted
 * event for items this worker enqueued for itself */
static ngx_connection_t  *ngx_proxy_wasm_wakeup_conn;
/* what a worker that registered no queue sends wakeups with */
static ngx_socket_t       ngx_proxy_wasm_wakeup_sender = (ngx_socket_t) -1;
static ngx_event_t        ngx_proxy_wasm_wakeup_posted;
static ngx_event_t        ngx_proxy_wasm_wakeup_poll;
static ngx_uint_t         ngx_proxy_wasm_wakeup_ready;


#if (NGX_LINUX)

/* "\0ngx_proxy_wasm <pid>": the abstract name of a worker's socket */
static socklen_t
ngx_proxy_wasm_wakeup_addr(struct sockaddr_un *sun, ngx_pid_t pid)
{
    u_char  *p;

    ngx_memzero(sun, sizeof(struct sockaddr_un));
    sun->sun_family = AF_UNIX;

    p = ngx_snprintf((u_char *) sun->sun_path + 1,
                     sizeof(sun->sun_path) - 1, "ngx_proxy_wasm %P", pid);

    return offsetof(struct sockaddr_un, sun_path)
           + (p - (u_char *) sun->sun_path);
}

#endif


static ngx_int_t
ngx_proxy_wasm_wakeup_init(void)
{
#if (NGX_LINUX)
    ngx_socket_t         s;
    socklen_t            len;
    ngx_connection_t    *c;
    struct sockaddr_un   sun;
#endif

    if (ngx_proxy_wasm_wakeup_ready) {
        return NGX_OK;
    }

    ngx_proxy_wasm_wakeup_posted.handler = ngx_proxy_wasm_wakeup_handler;
    ngx_proxy_wasm_wakeup_posted.log = ngx_cycle->log;

#if (NGX_LINUX)

    s = socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_socket_errno,
                      "proxy_wasm: socket() for queue wakeups failed");
        return NGX_ERROR;
    }

    len = ngx_proxy_wasm_wakeup_addr(&sun, ngx_pid);

    if (bind(s, (struct sockaddr *) &sun, len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_socket_errno,
                      "proxy_wasm: bind() of the queue wakeup socket failed");
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    c = ngx_get_connection(s, ngx_cycle->log);
    if (c == NULL) {
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    /* a worker that starts shutting down closes it (and leaves its
     * queues) with its other idle connections */
    c->idle = 1;
    c->read->handler = ngx_proxy_wasm_wakeup_handler;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    ngx_proxy_wasm_wakeup_conn = c;

#else

    ngx_proxy_wasm_wakeup_poll.handler = ngx_proxy_wasm_wakeup_handler;
    ngx_proxy_wasm_wakeup_poll.log = ngx_cycle->log;
    ngx_proxy_wasm_wakeup_poll.cancelable = 1;
    ngx_add_timer(&ngx_proxy_wasm_wakeup_poll, NGX_PROXY_WASM_QUEUE_POLL);

#endif

    ngx_proxy_wasm_wakeup_ready = 1;

    return NGX_OK;
}


/*
 * Wakes this worker at its event loop's next turn: a filter that enqueues
 * from on_queue_ready cannot keep it from its other events.
 */
static void
ngx_proxy_wasm_wakeup_post(void)
{
    if (ngx_proxy_wasm_wakeup_ready && !ngx_proxy_wasm_wakeup_posted.posted) {
        ngx_post_event(&ngx_proxy_wasm_wakeup_posted, &ngx_posted_next_events);
    }
}


#if (NGX_LINUX)

/*
 * Sends another worker its wakeup: 0, or the error (ECONNREFUSED: no such
 * socket, the worker is gone).
 */
static ngx_err_t
ngx_proxy_wasm_wakeup_send(ngx_pid_t pid)
{
    u_char              byte;
    socklen_t           len;
    ngx_err_t           err;
    ngx_socket_t        s;
    struct sockaddr_un  sun;

    /* a worker that registered no queue sends from a socket of its own */
    if (ngx_proxy_wasm_wakeup_conn) {
        s = ngx_proxy_wasm_wakeup_conn->fd;

    } else {
        if (ngx_proxy_wasm_wakeup_sender == (ngx_socket_t) -1) {
            ngx_proxy_wasm_wakeup_sender = socket(AF_UNIX,
                                    SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
            if (ngx_proxy_wasm_wakeup_sender == (ngx_socket_t) -1) {
                return ngx_socket_errno;
            }
        }

        s = ngx_proxy_wasm_wakeup_sender;
    }

    len = ngx_proxy_wasm_wakeup_addr(&sun, pid);
    byte = 1;

    if (sendto(s, &byte, 1, 0, (struct sockaddr *) &sun, len) == 1) {
        return 0;
    }

    err = ngx_socket_errno;

    /* a full socket holds wakeups its worker has not read: it will look */
    return err == NGX_EAGAIN ? 0 : err;
}

#endif


/* tells a worker (maybe this one) that it was credited items */
static void
ngx_proxy_wasm_queue_notify(ngx_proxy_wasm_queue_t *q, ngx_pid_t pid)
{
#if (NGX_LINUX)
    ngx_err_t   err;
    ngx_uint_t  tries;

    for (tries = 0; pid && tries < NGX_PROXY_WASM_QUEUE_WORKERS; tries++) {
        if (pid == ngx_pid) {
            ngx_proxy_wasm_wakeup_post();
            return;
        }

        err = ngx_proxy_wasm_wakeup_send(pid);

        if (err == 0) {
            return;
        }

        if (err != NGX_ECONNREFUSED && err != NGX_ENOENT) {
            /* the items wait for the worker's next wakeup */
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, err,
                          "proxy_wasm: cannot wake worker %P for queue "
                          "\"%V\"", pid, &q->name);
            return;
        }

        /* the worker is gone without leaving: its credits go on */
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, err,
                      "proxy_wasm: worker %P of queue \"%V\" is gone",
                      pid, &q->name);

        ngx_shmtx_lock(&q->shpool->mutex);
        pid = ngx_proxy_wasm_queue_leave(q->sh, pid);
        ngx_shmtx_unlock(&q->shpool->mutex);
    }
#else
    /* other workers look at their credits on their own */
    if (pid == ngx_pid) {
        ngx_proxy_wasm_wakeup_post();
    }
#endif
}


/*
 * Runs on_queue_ready for the items this worker was credited, one call per
 * item, as long as items remain.
 */
static void
ngx_proxy_wasm_queues_deliver(void)
{
    uint32_t                        token;
    ngx_uint_t                      credits, more;
    ngx_proxy_wasm_queue_t         *q;
    ngx_proxy_wasm_runtime_t       *rt;
    ngx_proxy_wasm_queue_worker_t  *w;

    rt = ngx_proxy_wasm_runtime((ngx_cycle_t *) ngx_cycle);

    if (rt == NULL) {
        return;
    }

    more = 0;

    for (token = 1; (q = ngx_proxy_wasm_queue_by_token(token)); token++) {
        if (q->sh == NULL) {
            continue;
        }

        /* a turn delivers a batch: a long queue does not keep the
         * worker from its other events */
        ngx_shmtx_lock(&q->shpool->mutex);

        w = ngx_proxy_wasm_queue_worker(q->sh, ngx_pid);
        credits = w ? ngx_min(w->credits, NGX_PROXY_WASM_QUEUE_BATCH) : 0;

        if (w) {
            w->credits -= credits;
            more = more || w->credits;
        }

        ngx_shmtx_unlock(&q->shpool->mutex);

        while (credits--) {
            if (q->sh->count == 0) {
                /* read without the lock: a hint; others drained it */
                break;
            }

            ngx_proxy_wasm_api.queue_ready(rt, token);
        }
    }

    if (more) {
        ngx_proxy_wasm_wakeup_post();
    }
}


static void
ngx_proxy_wasm_wakeup_handler(ngx_event_t *ev)
{
#if (NGX_LINUX)
    u_char             buf[64];
    ngx_connection_t  *c;

    c = ngx_proxy_wasm_wakeup_conn;

    if (ev == c->read) {
        if (c->close) {
            ngx_proxy_wasm_queues_exit();
            return;
        }

        while (recv(c->fd, buf, sizeof(buf), 0) > 0) { /* drain */ }

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "proxy_wasm: cannot wait for queue wakeups");
        }
    }
#else
    if (ev == &ngx_proxy_wasm_wakeup_poll) {
        ngx_add_timer(ev, NGX_PROXY_WASM_QUEUE_POLL);
    }
#endif

    ngx_proxy_wasm_queues_deliver();
}


/*
 * The worker leaves its queues (at exit, or when it starts shutting
 * down): items credited to it go to other workers.
 */
void
ngx_proxy_wasm_queues_exit(void)
{
    uint32_t                  token;
    ngx_pid_t                 heir;
    ngx_proxy_wasm_queue_t   *q;

    if (ngx_proxy_wasm_wakeup_sender != (ngx_socket_t) -1) {
        ngx_close_socket(ngx_proxy_wasm_wakeup_sender);
        ngx_proxy_wasm_wakeup_sender = (ngx_socket_t) -1;
    }

    if (!ngx_proxy_wasm_wakeup_ready) {
        return;
    }

    ngx_proxy_wasm_wakeup_ready = 0;

    if (ngx_proxy_wasm_wakeup_posted.posted) {
        ngx_delete_posted_event(&ngx_proxy_wasm_wakeup_posted);
    }

    if (ngx_proxy_wasm_wakeup_poll.timer_set) {
        ngx_del_timer(&ngx_proxy_wasm_wakeup_poll);
    }

    if (ngx_proxy_wasm_wakeup_conn) {
        ngx_close_connection(ngx_proxy_wasm_wakeup_conn);
        ngx_proxy_wasm_wakeup_conn = NULL;
    }

    for (token = 1; (q = ngx_proxy_wasm_queue_by_token(token)); token++) {
        if (q->sh == NULL) {
            continue;
        }

        ngx_shmtx_lock(&q->shpool->mutex);
        heir = ngx_proxy_wasm_queue_leave(q->sh, ngx_pid);
        ngx_shmtx_unlock(&q->shpool->mutex);

        if (heir) {
            ngx_proxy_wasm_queue_notify(q, heir);
        }
    }
}
