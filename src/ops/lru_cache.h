/* A cache of a few built objects (oneDNN primitives with their memory objects), found by the key they were
 * built for; when it is full, the least recently used is destroyed to make room. conv2d_dnnl.c,
 * attention_bf16.c and linear_dnnl.c keep theirs in one: a warmed-up call builds nothing. */
#ifndef DIFFUSE_LRU_CACHE_H
#define DIFFUSE_LRU_CACHE_H

#include <stdbool.h>
#include <stddef.h>

enum { LRU_CACHE_MAX_ENTRIES = 256 };

typedef struct LruCache {
    size_t capacity; /* <= LRU_CACHE_MAX_ENTRIES */
    bool (*matches)(const void *entry, const void *key);
    void *(*create)(const void *key);
    void (*destroy)(void *entry);
    /* the entries (NULL where none) and when each was last used */
    void *entries[LRU_CACHE_MAX_ENTRIES];
    unsigned long last_use[LRU_CACHE_MAX_ENTRIES];
    unsigned long clock;
    unsigned long created; /* entries built so far (misses) */
} LruCache;

/* The entry for key, created on first use. */
void *lru_cache_get(LruCache *cache, const void *key);
/* Destroys every entry; the cache stays usable. */
void lru_cache_clear(LruCache *cache);

#endif
