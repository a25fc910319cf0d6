/* Parameter table and PyTorch-default initialisation (see params.h). */
#include "nn/params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/check.h"
#include "core/rng.h"

const char *param_init_name(ParamInit init) {
    switch (init) {
    case PARAM_INIT_FAN_IN_UNIFORM: return "uniform(+-1/sqrt(fan_in))";
    case PARAM_INIT_ONES: return "ones";
    case PARAM_INIT_ZEROS: return "zeros";
    case PARAM_INIT_NORMAL: return "normal(0, 1)";
    }
    CHECK(0, "bad ParamInit %d", (int)init);
}

void param_table_init(ParamTable *table) { *table = (ParamTable){0}; }

void param_table_free(ParamTable *table) {
    free(table->entries);
    *table = (ParamTable){0};
}

size_t param_table_add(ParamTable *table, const char *name, int ndim, const size_t *shape, ParamInit init,
                       size_t fan_in) {
    CHECK(strlen(name) < PARAM_NAME_BYTES, "parameter name too long: %s", name);
    CHECK(ndim >= 1 && ndim <= TENSOR_MAX_DIMS, "parameter %s: %d dimensions", name, ndim);
    CHECK(param_table_find(table, name) < 0, "parameter %s added twice", name);
    CHECK(init != PARAM_INIT_FAN_IN_UNIFORM || fan_in > 0, "parameter %s: fan_in 0", name);
    if (table->n_entries == table->capacity) {
        table->capacity = table->capacity ? 2 * table->capacity : 64;
        table->entries = xrealloc(table->entries, table->capacity * sizeof *table->entries);
    }
    ParamEntry *e = &table->entries[table->n_entries];
    *e = (ParamEntry){.ndim = ndim, .numel = 1, .offset = table->n_floats, .init = init, .fan_in = fan_in};
    snprintf(e->name, sizeof e->name, "%s", name);
    for (int d = 0; d < ndim; d++) {
        CHECK(shape[d] > 0, "parameter %s: dimension %d is 0", name, d);
        e->shape[d] = shape[d];
        e->numel *= shape[d];
    }
    table->n_floats += e->numel;
    return table->n_entries++;
}

long param_table_find(const ParamTable *table, const char *name) {
    /* Linear: called while loading and wiring (hundreds of entries), never per step. */
    for (size_t i = 0; i < table->n_entries; i++)
        if (strcmp(table->entries[i].name, name) == 0) return (long)i;
    return -1;
}

Tensor param_table_view(const ParamTable *table, float *buffer, size_t index) {
    CHECK(index < table->n_entries, "parameter index %zu of %zu", index, table->n_entries);
    CHECK(buffer, "NULL parameter buffer");
    const ParamEntry *e = &table->entries[index];
    Tensor t = {.data = buffer + e->offset, .ndim = e->ndim};
    for (int d = 0; d < e->ndim; d++) t.shape[d] = e->shape[d];
    return t;
}

Tensor param_table_view_named(const ParamTable *table, float *buffer, const char *name) {
    long index = param_table_find(table, name);
    CHECK(index >= 0, "no parameter named %s", name);
    return param_table_view(table, buffer, (size_t)index);
}

const char *param_entry_shape_str(const ParamEntry *entry, char *buf, size_t buf_bytes) {
    size_t used = 0;
    used += (size_t)snprintf(buf, buf_bytes, "(");
    for (int d = 0; d < entry->ndim && used < buf_bytes; d++)
        used += (size_t)snprintf(buf + used, buf_bytes - used, "%s%zu", d ? ", " : "", entry->shape[d]);
    if (used < buf_bytes) snprintf(buf + used, buf_bytes - used, ")");
    return buf;
}

/* FNV-1a: a stable 64-bit key for a tensor name. */
static uint64_t name_hash(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

void param_table_fill_init(const ParamTable *table, float *params, uint64_t seed) {
    for (size_t i = 0; i < table->n_entries; i++) {
        const ParamEntry *e = &table->entries[i];
        float *out = params + e->offset;
        uint64_t stream = rng_stream(RNG_PURPOSE_INIT, name_hash(e->name), 0);
        switch (e->init) {
        case PARAM_INIT_FAN_IN_UNIFORM: {
            float bound = (float)(1.0 / sqrt((double)e->fan_in));
            rng_fill_uniform(out, e->numel, seed, stream, 0);
            for (size_t j = 0; j < e->numel; j++) out[j] = bound * (2.0f * out[j] - 1.0f);
            break;
        }
        case PARAM_INIT_ONES:
            for (size_t j = 0; j < e->numel; j++) out[j] = 1.0f;
            break;
        case PARAM_INIT_ZEROS: memset(out, 0, e->numel * sizeof *out); break;
        case PARAM_INIT_NORMAL: rng_fill_normal(out, e->numel, seed, stream, 0); break;
        }
    }
}
