/* Checkpoints and the run folder (see checkpoint.h). */
#define _POSIX_C_SOURCE 200809L
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/fs.h"
#include "io/model_folder.h"
#include "io/safetensors.h"

#define STATE_FILE "training_state.safetensors"
#define STATE_FORMAT "diffuse training state"
#define STATE_VERSION "1"

/* ------------------------------------------------------------------------------------------------ */
/* Listing */

/* N for a folder named exactly "step-N"; -1 otherwise. */
static long parse_step_name(const char *name) {
    if (strncmp(name, "step-", 5) != 0 || !name[5]) return -1;
    long step = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || step > 100000000000L) return -1;
        step = step * 10 + (*p - '0');
    }
    return step;
}

/* The steps of the complete checkpoints, ascending; returns the count (0 when the folder is missing). */
static size_t list_checkpoints(const char *run, long **steps_out) {
    char folder[4096];
    fs_join(folder, sizeof folder, run, "checkpoints");
    *steps_out = NULL;
    DIR *dir = opendir(folder);
    if (!dir) return 0;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        long step = parse_step_name(e->d_name);
        if (step < 0) continue;
        if (n == cap) steps = xrealloc(steps, (cap = cap ? 2 * cap : 16) * sizeof *steps);
        steps[n++] = step;
    }
    closedir(dir);
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of entries */
        for (size_t j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            long t = steps[j];
            steps[j] = steps[j - 1], steps[j - 1] = t;
        }
    *steps_out = steps;
    return n;
}

static void checkpoint_path(char *out, size_t out_bytes, const char *run, const char *prefix, long step,
                            const char *suffix) {
    snprintf(out, out_bytes, "%s/checkpoints/%sstep-%ld%s", run, prefix, step, suffix);
}

int checkpoint_find_latest(const char *run, char *path, size_t path_bytes, Error *err) {
    (void)err;
    long *steps;
    size_t n = list_checkpoints(run, &steps);
    if (n == 0) return 0;
    checkpoint_path(path, path_bytes, run, "", steps[n - 1], "");
    free(steps);
    return 1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Saving */

static int write_state(const char *path, const TrainState *state, const CheckpointModel *model,
                       const char *config_json, Error *err) {
    const Optimizer *opt = model->optimizer;
    SafeTensorsEntry entries[OPTIMIZER_MAX_STATE];
    char names[OPTIMIZER_MAX_STATE][64];
    for (int i = 0; i < opt->n_state; i++) {
        snprintf(names[i], sizeof names[i], "optimizer.%s", opt->state_names[i]);
        entries[i] = (SafeTensorsEntry){.name = names[i], .ndim = 1, .shape = {opt->n}, .data = opt->state[i]};
    }
    char step[32], updates[32], epoch[32], position[32], world[32], bad[32], n_params[32];
    snprintf(step, sizeof step, "%ld", state->step);
    snprintf(updates, sizeof updates, "%ld", opt->updates);
    snprintf(epoch, sizeof epoch, "%" PRIu64, state->cursor.epoch);
    snprintf(position, sizeof position, "%" PRIu64, state->cursor.position);
    snprintf(world, sizeof world, "%d", state->world_size);
    snprintf(bad, sizeof bad, "%ld", state->bad_steps_total);
    snprintf(n_params, sizeof n_params, "%zu", opt->n);
    SafeTensorsMeta meta[] = {
        {"format", STATE_FORMAT},   {"version", STATE_VERSION},
        {"step", step},             {"optimizer", (char *)optimizer_kind_name(opt->cfg.kind)},
        {"updates", updates},       {"data_epoch", epoch},
        {"data_position", position}, {"world_size", world},
        {"bad_steps", bad},         {"parameters", n_params},
        {"train_config", (char *)config_json},
    };
    return safetensors_write(path, entries, (size_t)opt->n_state, meta, sizeof meta / sizeof meta[0], err);
}

static void prune(const char *run, int keep) {
    long *steps;
    size_t n = list_checkpoints(run, &steps);
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        char path[4096];
        checkpoint_path(path, sizeof path, run, "", steps[i], "");
        Error ignored;
        fs_remove_tree(path, &ignored); /* a leftover old checkpoint is harmless */
    }
    free(steps);
}

int checkpoint_save(const char *run, const TrainState *state, const CheckpointModel *model, const char *config_json,
                    int keep, Error *err) {
    char partial[4096], final[4096], path[4096];
    checkpoint_path(partial, sizeof partial, run, ".", state->step, ".partial");
    checkpoint_path(final, sizeof final, run, "", state->step, "");
    if (fs_is_folder(partial) && fs_remove_tree(partial, err)) return -1;
    if (fs_make_folders(partial, err)) return -1;
    fs_join(path, sizeof path, partial, "unet");
    if (model_folder_save(path, model->config, model->table, model->params, err)) goto fail;
    if (model->ema) {
        fs_join(path, sizeof path, partial, "unet_ema");
        if (model_folder_save(path, model->config, model->table, model->ema, err)) goto fail;
    }
    fs_join(path, sizeof path, partial, STATE_FILE);
    if (write_state(path, state, model, config_json, err)) goto fail;
    /* A checkpoint of the same step (a resumed run interrupted again at once) is replaced. */
    if (fs_is_folder(final) && fs_remove_tree(final, err)) goto fail;
    if (fs_rename_folder(partial, final, err)) goto fail;
    prune(run, keep);
    return 0;
fail:
    error_prefix(err, "writing checkpoint %s (earlier checkpoints are intact)", final);
    Error ignored;
    fs_remove_tree(partial, &ignored);
    return -1;
}

/* ------------------------------------------------------------------------------------------------ */
/* Loading */

/* Counters up to 2^53 (exact as JSON numbers), so that no count read here overflows as training goes on. */
#define META_MAX_COUNT (1L << 53)

static int meta_long(const SafeTensors *st, const char *key, long max, long *out, Error *err) {
    const char *v = safetensors_meta_get(st, key);
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || errno || x < 0 || x > max)
        return error_set(err, "%s: metadata '%s' is %s%s%s; the checkpoint is damaged", st->path, key,
                         v ? "'" : "missing", v ? v : "", v ? "'" : "");
    *out = x;
    return 0;
}

static int load_state(const char *path, TrainState *state, const CheckpointModel *model, char **config_json,
                      Error *err) {
    SafeTensors st;
    if (safetensors_open(&st, path, err)) return -1;
    int rc = -1;
    Optimizer *opt = model->optimizer;
    const char *format = safetensors_meta_get(&st, "format");
    const char *version = safetensors_meta_get(&st, "version");
    const char *kind = safetensors_meta_get(&st, "optimizer");
    long n_params, updates, epoch, position, world, bad, step;
    if (!format || strcmp(format, STATE_FORMAT) != 0 || !version || strcmp(version, STATE_VERSION) != 0) {
        error_set(err, "%s: not a diffuse training state of version %s", path, STATE_VERSION);
        goto done;
    }
    if (meta_long(&st, "step", META_MAX_COUNT, &step, err) ||
        meta_long(&st, "updates", META_MAX_COUNT, &updates, err) ||
        meta_long(&st, "data_epoch", META_MAX_COUNT, &epoch, err) ||
        meta_long(&st, "data_position", META_MAX_COUNT, &position, err) ||
        meta_long(&st, "world_size", INT_MAX, &world, err) || meta_long(&st, "bad_steps", META_MAX_COUNT, &bad, err) ||
        meta_long(&st, "parameters", META_MAX_COUNT, &n_params, err))
        goto done;
    if (!kind || strcmp(kind, optimizer_kind_name(opt->cfg.kind)) != 0) {
        error_set(err, "%s: the run was trained with optimizer %s, not %s; resume with --optimizer %s", path,
                  kind ? kind : "?", optimizer_kind_name(opt->cfg.kind), kind ? kind : "?");
        goto done;
    }
    if ((size_t)n_params != opt->n) {
        error_set(err, "%s: saved for a model of %ld parameters, this one has %zu", path, n_params, opt->n);
        goto done;
    }
    for (int i = 0; i < opt->n_state; i++) {
        char name[64];
        snprintf(name, sizeof name, "optimizer.%s", opt->state_names[i]);
        const SafeTensorInfo *t = safetensors_find(&st, name);
        if (!t) {
            error_set(err, "%s: no tensor '%s' (saved with other optimizer settings?)", path, name);
            goto done;
        }
        if (safetensors_read_f32(&st, t, opt->state[i], opt->n, err)) goto done;
    }
    opt->updates = updates;
    *state = (TrainState){.step = step, .bad_steps_total = bad, .world_size = (int)world,
                          .cursor = {.epoch = (uint64_t)epoch, .position = (uint64_t)position}};
    if (config_json) {
        const char *cfg = safetensors_meta_get(&st, "train_config");
        *config_json = xstrdup(cfg ? cfg : "{}");
    }
    rc = 0;
done:
    safetensors_close(&st);
    return rc;
}

int checkpoint_load(const char *folder, TrainState *state, const CheckpointModel *model, char **config_json,
                    Error *err) {
    char path[4096];
    fs_join(path, sizeof path, folder, "unet");
    if (model_weights_load(path, model->table, model->params, NULL, err)) return -1;
    if (model->ema) {
        fs_join(path, sizeof path, folder, "unet_ema");
        if (!fs_is_folder(path))
            return error_set(err, "%s: the checkpoint has no EMA weights (the run was trained without --ema)", folder);
        if (model_weights_load(path, model->table, model->ema, NULL, err)) return -1;
    }
    fs_join(path, sizeof path, folder, STATE_FILE);
    return load_state(path, state, model, config_json, err);
}
