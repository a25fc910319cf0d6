/* diffusers model folders: config, weights in one file or in shards, saving (see model_folder.h). */
#define _POSIX_C_SOURCE 200809L
#include "io/model_folder.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/json_values.h"
#include "io/atomic_file.h"
#include "io/fs.h"
#include "io/safetensors.h"

/* Bigger than any config or shard index; a larger file is not one. */
#define MODEL_JSON_MAX_BYTES (16u * 1024u * 1024u)

/* ------------------------------------------------------------------------------------------------ */
/* Config and source */

int model_config_load(UNetConfig *cfg, const char *path, Error *err) {
    size_t n_bytes;
    char *text = fs_read_text(path, MODEL_JSON_MAX_BYTES, &n_bytes, err);
    if (!text) return -1;
    int rc = unet_config_from_json(cfg, text, n_bytes, path, err);
    free(text);
    return rc;
}

int model_source_resolve(ModelSource *src, UNetConfig *cfg, const char *spec, Error *err) {
    *src = (ModelSource){0};
    if (strlen(spec) + 32 >= sizeof src->path) return error_set(err, "%.200s...: path too long", spec);
    if (fs_is_folder(spec)) {
        char config[sizeof src->path + 32];
        snprintf(src->path, sizeof src->path, "%s", spec);
        fs_join(config, sizeof config, src->path, MODEL_CONFIG_FILE);
        if (!fs_is_file(config)) {
            /* A pipeline folder (model_index.json, unet/, scheduler/) holds the model in unet/. */
            char unet[sizeof src->path];
            fs_join(unet, sizeof unet, spec, "unet");
            fs_join(config, sizeof config, unet, MODEL_CONFIG_FILE);
            if (!fs_is_file(config))
                return error_set(err, "%s: no %s here or in unet/ (not a diffusers model or pipeline folder)", spec,
                                 MODEL_CONFIG_FILE);
            snprintf(src->path, sizeof src->path, "%s", unet);
        }
        src->kind = MODEL_SOURCE_FOLDER;
        return model_config_load(cfg, config, err);
    }
    if (fs_is_file(spec)) {
        src->kind = MODEL_SOURCE_CONFIG_FILE;
        snprintf(src->path, sizeof src->path, "%s", spec);
        return model_config_load(cfg, spec, err);
    }
    src->kind = MODEL_SOURCE_PRESET;
    snprintf(src->path, sizeof src->path, "%s", spec);
    if (unet_config_preset(cfg, spec, err) == 0) return 0;
    return error_prefix(err, "'%s' is not a file or folder, and", spec);
}

/* ------------------------------------------------------------------------------------------------ */
/* Loading weights */

typedef struct LoadState {
    const ParamTable *table;
    float *params;
    unsigned char *loaded; /* per table entry */
    ModelWeightsInfo info;
} LoadState;

/* The current name of a legacy attention tensor ("....attentions.0.query.weight"), or NULL. */
static const char *legacy_to_current(const char *name, char *buf, size_t buf_bytes) {
    static const struct {
        const char *legacy, *current;
    } renames[] = {{".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}};
    if (!strstr(name, ".attentions.")) return NULL;
    for (size_t i = 0; i < sizeof renames / sizeof renames[0]; i++) {
        const char *at = strstr(name, renames[i].legacy);
        if (!at) continue;
        const char *rest = at + strlen(renames[i].legacy);
        if (strcmp(rest, "weight") != 0 && strcmp(rest, "bias") != 0) continue;
        snprintf(buf, buf_bytes, "%.*s%s%s", (int)(at - name), name, renames[i].current, rest);
        return buf;
    }
    return NULL;
}

static void shape_str(const size_t *shape, int ndim, char *buf, size_t buf_bytes) {
    size_t used = (size_t)snprintf(buf, buf_bytes, "(");
    for (int d = 0; d < ndim && used < buf_bytes; d++)
        used += (size_t)snprintf(buf + used, buf_bytes - used, "%s%zu", d ? ", " : "", shape[d]);
    if (used < buf_bytes) snprintf(buf + used, buf_bytes - used, ")");
}

static int load_tensor(LoadState *s, const SafeTensors *st, const SafeTensorInfo *t, Error *err) {
    char renamed[PARAM_NAME_BYTES + 16];
    long index = param_table_find(s->table, t->name);
    bool legacy = false;
    if (index < 0) {
        const char *current = legacy_to_current(t->name, renamed, sizeof renamed);
        if (current) index = param_table_find(s->table, current);
        legacy = index >= 0;
    }
    if (index < 0)
        return error_set(err, "%s: unexpected tensor '%s': the model described by %s has no such parameter "
                         "(extra tensor, or a config that does not match these weights)",
                         st->path, t->name, MODEL_CONFIG_FILE);
    const ParamEntry *e = &s->table->entries[index];
    if (s->loaded[index])
        return error_set(err, "%s: tensor '%s' is stored twice (under its current and its legacy name, or in two "
                         "shards)", st->path, e->name);
    bool same = t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
    if (!same) {
        char got[128], want[128];
        shape_str(t->shape, t->ndim, got, sizeof got);
        shape_str(e->shape, e->ndim, want, sizeof want);
        return error_set(err, "%s: tensor '%s' has shape %s but %s implies %s (misshaped tensor, or a config that "
                         "does not match these weights)", st->path, t->name, got, MODEL_CONFIG_FILE, want);
    }
    switch (t->dtype) {
    case SAFETENSORS_F32: s->info.n_f32++; break;
    case SAFETENSORS_F16: s->info.n_f16++; break;
    case SAFETENSORS_BF16: s->info.n_bf16++; break;
    default:
        return error_set(err, "%s: tensor '%s' has dtype %s; model weights must be F32, F16 or BF16", st->path,
                         t->name, safetensors_dtype_name(t->dtype));
    }
    if (s->params && safetensors_read_f32(st, t, s->params + e->offset, e->numel, err)) return -1;
    s->loaded[index] = 1;
    s->info.n_tensors++;
    if (legacy) s->info.n_legacy_names++;
    return 0;
}

static int load_file(LoadState *s, const char *path, Error *err) {
    SafeTensors st;
    if (safetensors_open(&st, path, err)) return -1;
    int rc = 0;
    for (size_t i = 0; i < st.n_tensors && rc == 0; i++) rc = load_tensor(s, &st, &st.tensors[i], err);
    safetensors_close(&st);
    s->info.n_files++;
    return rc;
}

/* Shard file names must stay inside the folder. */
static bool plain_file_name(const char *name) {
    return name[0] && name[0] != '.' && !strchr(name, '/') && !strchr(name, '\\');
}

static int load_shards(LoadState *s, const char *folder, const char *index_path, Error *err) {
    size_t n_bytes;
    char *text = fs_read_text(index_path, MODEL_JSON_MAX_BYTES, &n_bytes, err);
    if (!text) return -1;
    if (json_check_values(text, n_bytes, JSON_MAX_VALUES, index_path, err)) {
        free(text);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(text, n_bytes);
    free(text);
    if (!root) return error_set(err, "%s: not valid JSON", index_path);
    int rc = 0;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        rc = error_set(err, "%s: no \"weight_map\" object (not a shard index)", index_path);
        goto done;
    }
    /* Each shard once, in the order first named. */
    for (const cJSON *entry = map->child; entry && rc == 0; entry = entry->next) {
        if (!cJSON_IsString(entry) || !plain_file_name(entry->valuestring)) {
            rc = error_set(err, "%s: weight_map entry for '%s' is not a file name in this folder", index_path,
                           entry->string);
            break;
        }
        bool seen = false;
        for (const cJSON *prev = map->child; prev != entry && !seen; prev = prev->next)
            seen = strcmp(prev->valuestring, entry->valuestring) == 0;
        if (seen) continue;
        char path[8192];
        fs_join(path, sizeof path, folder, entry->valuestring);
        rc = load_file(s, path, err);
    }
    /* Every tensor the index names must have been found where it says. */
    for (const cJSON *entry = map->child; entry && rc == 0; entry = entry->next) {
        char renamed[PARAM_NAME_BYTES + 16];
        long index = param_table_find(s->table, entry->string);
        if (index < 0) {
            const char *current = legacy_to_current(entry->string, renamed, sizeof renamed);
            if (current) index = param_table_find(s->table, current);
        }
        if (index < 0 || !s->loaded[index])
            rc = error_set(err, "%s: lists tensor '%s' in %s, which does not hold it", index_path, entry->string,
                           entry->valuestring);
    }
done:
    cJSON_Delete(root);
    return rc;
}

int model_weights_load(const char *folder, const ParamTable *table, float *params, ModelWeightsInfo *info,
                       Error *err) {
    char single[8192], index[8192], pickle[8192];
    fs_join(single, sizeof single, folder, MODEL_WEIGHTS_FILE);
    fs_join(index, sizeof index, folder, MODEL_WEIGHTS_INDEX_FILE);
    fs_join(pickle, sizeof pickle, folder, "diffusion_pytorch_model.bin");
    LoadState s = {.table = table, .params = params, .loaded = xcalloc(table->n_entries + 1, 1)};
    int rc;
    /* diffusers prefers the shard index when both exist. */
    if (fs_is_file(index)) rc = load_shards(&s, folder, index, err);
    else if (fs_is_file(single)) rc = load_file(&s, single, err);
    else if (fs_is_file(pickle))
        rc = error_set(err, "%s: PyTorch pickle weights are not read (they can run code); convert them in Python "
                       "with UNet2DModel.from_pretrained(folder).save_pretrained(folder), which writes %s", pickle,
                       MODEL_WEIGHTS_FILE);
    else rc = error_set(err, "%s: no weights: expected %s or %s", folder, MODEL_WEIGHTS_FILE, MODEL_WEIGHTS_INDEX_FILE);
    if (rc == 0) {
        size_t n_missing = 0, first = 0;
        for (size_t i = 0; i < table->n_entries; i++)
            if (!s.loaded[i] && n_missing++ == 0) first = i;
        if (n_missing)
            rc = error_set(err, "%s: tensor '%s' is missing%s (%zu of %zu tensors missing; a config that does not "
                           "match these weights?)", fs_is_file(index) ? index : single, table->entries[first].name,
                           n_missing > 1 ? ", and more" : "", n_missing, table->n_entries);
    }
    if (info) *info = s.info;
    free(s.loaded);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Saving */

int model_folder_save(const char *folder, const UNetConfig *cfg, const ParamTable *table, const float *params,
                      Error *err) {
    if (fs_make_folders(folder, err)) return -1;
    char path[8192];
    fs_join(path, sizeof path, folder, MODEL_WEIGHTS_INDEX_FILE);
    if (fs_is_file(path) && unlink(path) != 0)
        return error_set(err, "%s: cannot remove the old shard index: %s", path, strerror(errno));

    SafeTensorsEntry *entries = xcalloc(table->n_entries + 1, sizeof *entries);
    for (size_t i = 0; i < table->n_entries; i++) {
        const ParamEntry *e = &table->entries[i];
        entries[i] = (SafeTensorsEntry){.name = e->name, .ndim = e->ndim, .data = params + e->offset};
        for (int d = 0; d < e->ndim; d++) entries[i].shape[d] = e->shape[d];
    }
    const SafeTensorsMeta meta = {.key = "format", .value = "pt"};
    fs_join(path, sizeof path, folder, MODEL_WEIGHTS_FILE);
    int rc = safetensors_write(path, entries, table->n_entries, &meta, 1, err);
    free(entries);
    if (rc) return -1;

    char *json = unet_config_to_json(cfg);
    fs_join(path, sizeof path, folder, MODEL_CONFIG_FILE);
    rc = atomic_file_write_all(path, json, strlen(json), err);
    free(json);
    return rc;
}
