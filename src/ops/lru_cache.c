/* A least-recently-used cache of built objects (see lru_cache.h). */
#include "ops/lru_cache.h"

#include "core/check.h"

void *lru_cache_get(LruCache *cache, const void *key) {
    CHECK(cache->capacity > 0 && cache->capacity <= LRU_CACHE_MAX_ENTRIES, "lru_cache_get: capacity %zu",
          cache->capacity);
    cache->clock++;
    size_t slot = 0; /* an empty slot, else the least recently used */
    for (size_t i = 0; i < cache->capacity; i++) {
        if (cache->entries[i] && cache->matches(cache->entries[i], key)) {
            cache->last_use[i] = cache->clock;
            return cache->entries[i];
        }
        if (!cache->entries[i] || (cache->entries[slot] && cache->last_use[i] < cache->last_use[slot])) slot = i;
    }
    if (cache->entries[slot]) cache->destroy(cache->entries[slot]);
    cache->entries[slot] = cache->create(key);
    cache->created++;
    cache->last_use[slot] = cache->clock;
    return cache->entries[slot];
}

void lru_cache_clear(LruCache *cache) {
    for (size_t i = 0; i < cache->capacity; i++) {
        if (cache->entries[i]) cache->destroy(cache->entries[i]);
        cache->entries[i] = NULL;
    }
}
