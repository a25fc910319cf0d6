/* The sampling noise file (see noise_file.h). */
#include "pipeline/noise_file.h"

#include <stdbool.h>
#include <string.h>

#include "core/alloc.h"
#include "io/safetensors.h"

static int read_tensor(float **out, const SafeTensors *st, const SafeTensorInfo *t, Error *err) {
    *out = alloc_floats(t->numel ? t->numel : 1);
    if (safetensors_read_f32(st, t, *out, t->numel, err)) {
        alloc_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int noise_file_read(NoiseFile *nf, const char *path, Error *err) {
    *nf = (NoiseFile){0};
    SafeTensors st;
    if (safetensors_open(&st, path, err)) return -1;
    int rc = 0;
    const SafeTensorInfo *x = safetensors_find(&st, NOISE_FILE_X_T), *noise = safetensors_find(&st, NOISE_FILE_STEPS);
    for (size_t i = 0; i < st.n_tensors && !rc; i++) {
        const char *name = st.tensors[i].name;
        if (strcmp(name, NOISE_FILE_X_T) && strcmp(name, NOISE_FILE_STEPS))
            rc = error_set(err, "%s: unexpected tensor '%s' (a noise file holds \"x_T\" (N, H, W, C) and optionally "
                                "\"noise\" (steps, N, H, W, C))", path, name);
    }
    if (!rc && !x)
        rc = error_set(err, "%s: no \"x_T\" tensor (a noise file holds \"x_T\" (N, H, W, C) and optionally \"noise\" "
                            "(steps, N, H, W, C))", path);
    if (!rc && (x->ndim != 4 || x->numel == 0))
        rc = error_set(err, "%s: \"x_T\" must have 4 non-zero dimensions (N, H, W, C), channels-last", path);
    if (!rc) {
        nf->n_images = x->shape[0], nf->height = x->shape[1], nf->width = x->shape[2], nf->channels = x->shape[3];
        if (noise) {
            bool ok = noise->ndim == 5 && noise->shape[0] > 0;
            for (int d = 0; ok && d < 4; d++) ok = noise->shape[d + 1] == x->shape[d];
            if (!ok)
                rc = error_set(err, "%s: \"noise\" must be (steps, %zu, %zu, %zu, %zu): steps, then the shape of x_T",
                               path, nf->n_images, nf->height, nf->width, nf->channels);
            else nf->n_steps = noise->shape[0];
        }
    }
    if (!rc) rc = read_tensor(&nf->x_T, &st, x, err);
    if (!rc && noise) rc = read_tensor(&nf->noise, &st, noise, err);
    safetensors_close(&st);
    if (rc) noise_file_free(nf);
    return rc;
}

void noise_file_free(NoiseFile *nf) {
    alloc_free(nf->x_T);
    alloc_free(nf->noise);
    *nf = (NoiseFile){0};
}

int noise_file_write(const char *path, const NoiseFile *nf, Error *err) {
    SafeTensorsEntry entries[2] = {
        {.name = NOISE_FILE_X_T, .ndim = 4, .shape = {nf->n_images, nf->height, nf->width, nf->channels},
         .data = nf->x_T},
        {.name = NOISE_FILE_STEPS, .ndim = 5,
         .shape = {nf->n_steps, nf->n_images, nf->height, nf->width, nf->channels}, .data = nf->noise},
    };
    return safetensors_write(path, entries, nf->n_steps > 0 ? 2 : 1, NULL, 0, err);
}
