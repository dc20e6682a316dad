/*
 * Key-value zones (shm_kv): entries found by key in a red-black tree, and
 * kept in LRU lists that eviction= takes them from when the zone has no
 * room. Which entries a module may evict, which zone and key a module's
 * key is stored under and the CAS of each entry are Rust's; the last CAS
 * given is kept in the zone's state.
 */

#include "ngx_proxy_wasm_shim.h"


#define NGX_PROXY_WASM_KV_SLOTS          24
/* entries a module's write looks through for one of its own to evict */
#define NGX_PROXY_WASM_KV_EVICT_SCAN     1024


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
    ngx_proxy_wasm_kv_state_t    state;
    /* entries evicted to make room, ever */
    uint64_t                     evictions;
} ngx_proxy_wasm_kv_sh_t;


/* shm_zone->data of a key-value zone */
typedef struct {
    ngx_proxy_wasm_zone_t        zone;
    ngx_uint_t                   eviction;
} ngx_proxy_wasm_kv_t;


static ngx_int_t ngx_proxy_wasm_kv_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


/* shm_kv <name>|* <size> [eviction=slru|lru|none] [share=...] */
char *
ngx_proxy_wasm_shm_kv_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t            *value, s;
    ngx_uint_t            i;
    ngx_proxy_wasm_kv_t  *kv;

    value = cf->args->elts;

    kv = ngx_pcalloc(cf->pool, sizeof(ngx_proxy_wasm_kv_t));
    if (kv == NULL) {
        return NGX_CONF_ERROR;
    }

    kv->zone.kind = NGX_PROXY_WASM_ZONE_KV;
    kv->zone.name = value[1];
    kv->eviction = NGX_PROXY_WASM_EVICT_SLRU;

    for (i = 3; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "share=", 6) == 0) {
            if (ngx_proxy_wasm_zone_share(cf, &value[i], &kv->zone) != NGX_OK)
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

    if (ngx_proxy_wasm_zone_add(cf, &kv->zone, &value[2],
                                ngx_proxy_wasm_kv_init_zone)
        == NULL)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
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


static ngx_proxy_wasm_kv_sh_t *
ngx_proxy_wasm_kv_sh(ngx_proxy_wasm_kv_t *kv)
{
    return kv->zone.sh;
}


/* entries evicted from a zone, ever; read without the lock: a counter */
uint64_t
ngx_proxy_wasm_kv_evictions(ngx_proxy_wasm_zone_t *zone)
{
    return ((ngx_proxy_wasm_kv_sh_t *) zone->sh)->evictions;
}


static ngx_proxy_wasm_kv_entry_t *
ngx_proxy_wasm_kv_lookup(ngx_proxy_wasm_kv_t *kv, ngx_proxy_wasm_str_t key,
    uint32_t hash)
{
    ngx_str_t  k;

    k.data = (u_char *) key.data;
    k.len = key.len;

    return (ngx_proxy_wasm_kv_entry_t *)
           ngx_str_rbtree_lookup(&ngx_proxy_wasm_kv_sh(kv)->rbtree, &k, hash);
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
    ngx_proxy_wasm_kv_sh_t  *sh = ngx_proxy_wasm_kv_sh(kv);

    ngx_rbtree_insert(&sh->rbtree, &e->sn.node);
    ngx_queue_insert_head(&sh->lru, &e->lru);
    ngx_queue_insert_head(&sh->slots[e->slot], &e->slot_lru);
}


static void
ngx_proxy_wasm_kv_unlink(ngx_proxy_wasm_kv_t *kv,
    ngx_proxy_wasm_kv_entry_t *e)
{
    ngx_rbtree_delete(&ngx_proxy_wasm_kv_sh(kv)->rbtree, &e->sn.node);
    ngx_queue_remove(&e->lru);
    ngx_queue_remove(&e->slot_lru);
}


static void
ngx_proxy_wasm_kv_touch(ngx_proxy_wasm_kv_t *kv, ngx_proxy_wasm_kv_entry_t *e)
{
    ngx_proxy_wasm_kv_sh_t  *sh = ngx_proxy_wasm_kv_sh(kv);

    ngx_queue_remove(&e->lru);
    ngx_queue_insert_head(&sh->lru, &e->lru);
    ngx_queue_remove(&e->slot_lru);
    ngx_queue_insert_head(&sh->slots[e->slot], &e->slot_lru);
}


/*
 * The oldest entry of an LRU queue (its entries linked at `link`) whose
 * key starts with ns (empty: any), looking at *budget entries at most.
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
 * entries as possible go before a slab has room. Only entries of the
 * namespace ns are candidates, found among the oldest
 * NGX_PROXY_WASM_KV_EVICT_SCAN entries.
 */
static ngx_proxy_wasm_kv_entry_t *
ngx_proxy_wasm_kv_victim(ngx_proxy_wasm_kv_t *kv, ngx_uint_t slot,
    ngx_str_t *ns)
{
    ngx_int_t                   i;
    ngx_uint_t                  budget;
    ngx_proxy_wasm_kv_sh_t     *sh;
    ngx_proxy_wasm_kv_entry_t  *e;

    sh = ngx_proxy_wasm_kv_sh(kv);
    budget = NGX_PROXY_WASM_KV_EVICT_SCAN;

    if (kv->eviction == NGX_PROXY_WASM_EVICT_LRU) {
        return ngx_proxy_wasm_kv_oldest(&sh->lru,
                                    offsetof(ngx_proxy_wasm_kv_entry_t, lru),
                                    ns, &budget);
    }

    for (i = slot; i < NGX_PROXY_WASM_KV_SLOTS && budget > 0; i++) {
        e = ngx_proxy_wasm_kv_oldest(&sh->slots[i],
                               offsetof(ngx_proxy_wasm_kv_entry_t, slot_lru),
                               ns, &budget);
        if (e != NULL) {
            return e;
        }
    }

    for (i = (ngx_int_t) slot - 1; i >= 0 && budget > 0; i--) {
        e = ngx_proxy_wasm_kv_oldest(&sh->slots[i],
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
    ngx_slab_pool_t            *shpool;
    ngx_proxy_wasm_kv_entry_t  *victim;

    shpool = kv->zone.shpool;

    /* more than the zone's pages: evicting everything would not help */
    if (size > (size_t) (shpool->end - shpool->start)) {
        return NULL;
    }

    slot = ngx_proxy_wasm_kv_slot(shpool, size);

    for ( ;; ) {
        p = ngx_slab_alloc_locked(shpool, size);
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
        ngx_slab_free_locked(shpool, victim);
        ngx_proxy_wasm_kv_sh(kv)->evictions++;
    }
}


ngx_proxy_wasm_kv_state_t *
ngx_proxy_wasm_kv_state(void *zone)
{
    return &ngx_proxy_wasm_kv_sh(zone)->state;
}


ngx_proxy_wasm_lookup_e
ngx_proxy_wasm_kv_read(void *zone, ngx_proxy_wasm_str_t key,
    ngx_proxy_wasm_str_t *value, uint32_t *cas)
{
    ngx_proxy_wasm_kv_entry_t  *e;

    e = ngx_proxy_wasm_kv_lookup(zone, key,
                                 ngx_crc32_short((u_char *) key.data,
                                                 key.len));
    if (e == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    ngx_proxy_wasm_kv_touch(zone, e);

    value->data = e->data + e->sn.str.len;
    value->len = e->value_len;
    *cas = e->cas;

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


ngx_proxy_wasm_lookup_e
ngx_proxy_wasm_kv_cas(void *zone, ngx_proxy_wasm_str_t key, uint32_t *cas)
{
    ngx_proxy_wasm_kv_entry_t  *e;

    e = ngx_proxy_wasm_kv_lookup(zone, key,
                                 ngx_crc32_short((u_char *) key.data,
                                                 key.len));
    if (e == NULL) {
        return NGX_PROXY_WASM_LOOKUP_ABSENT;
    }

    *cas = e->cas;

    return NGX_PROXY_WASM_LOOKUP_FOUND;
}


ngx_proxy_wasm_store_e
ngx_proxy_wasm_kv_write(void *zone, ngx_proxy_wasm_str_t key,
    size_t namespace_len, ngx_proxy_wasm_str_t value, uint32_t cas)
{
    ngx_proxy_wasm_kv_t  *kv = zone;

    size_t                      size;
    uint32_t                    hash;
    ngx_str_t                   ns;
    ngx_proxy_wasm_kv_entry_t  *e, *old;

    hash = ngx_crc32_short((u_char *) key.data, key.len);

    old = ngx_proxy_wasm_kv_lookup(kv, key, hash);

    if (old && old->value_len == value.len) {
        ngx_memcpy(old->data + old->sn.str.len, value.data, value.len);
        ngx_proxy_wasm_kv_touch(kv, old);
        old->cas = cas;
        return NGX_PROXY_WASM_STORE_DONE;
    }

    /* the old entry is not a candidate for eviction, and comes back if
     * there is no room for the new one */
    if (old) {
        ngx_proxy_wasm_kv_unlink(kv, old);
    }

    ns.data = (u_char *) key.data;
    ns.len = ngx_min(namespace_len, key.len);

    size = offsetof(ngx_proxy_wasm_kv_entry_t, data) + key.len + value.len;

    e = ngx_proxy_wasm_kv_alloc(kv, size, &ns);

    if (e == NULL) {
        if (old) {
            ngx_proxy_wasm_kv_link(kv, old);
        }

        return NGX_PROXY_WASM_STORE_FULL;
    }

    if (old) {
        ngx_slab_free_locked(kv->zone.shpool, old);
    }

    e->sn.node.key = hash;
    e->sn.str.data = e->data;
    e->sn.str.len = key.len;
    e->value_len = value.len;
    e->slot = ngx_proxy_wasm_kv_slot(kv->zone.shpool, size);
    e->cas = cas;
    ngx_memcpy(e->data, key.data, key.len);
    ngx_memcpy(e->data + key.len, value.data, value.len);
    ngx_proxy_wasm_kv_link(kv, e);

    return NGX_PROXY_WASM_STORE_DONE;
}
