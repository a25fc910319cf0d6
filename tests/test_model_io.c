/* Model folders: loading what diffusers' save_pretrained wrote (F32, F16, BF16, sharded, and with the legacy
 * attention names) and comparing with the values diffusers saved; saving and reloading; and every kind of malformed
 * folder (truncated or lying safetensors, wrong dtype size, misshaped, missing and extra tensors, broken or
 * unsupported config.json or one whose sizes multiply past the bounds, bad shard index, a shard that is a FIFO)
 * giving a one-line error that names the file and the problem. Fixtures: tests/fixtures/model_tiny*, from
 * tools/make_model_fixtures.py. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/half.h"
#include "harness.h"
#include "io/model_folder.h"
#include "io/safetensors.h"
#include "nn/unet_layout.h"

#define TINY "tests/fixtures/model_tiny"

typedef struct Model {
    UNetLayout layout;
    float *params;
    ModelWeightsInfo info;
} Model;

static int model_load(Model *m, const char *spec, Error *err) {
    *m = (Model){0};
    ModelSource src;
    UNetConfig cfg;
    if (model_source_resolve(&src, &cfg, spec, err)) return -1;
    if (unet_layout_init(&m->layout, &cfg, err)) return -1;
    m->params = alloc_floats(m->layout.params.n_floats);
    return model_weights_load(src.path, &m->layout.params, m->params, &m->info, err);
}

static void model_free(Model *m) {
    alloc_free(m->params);
    if (m->layout.layers) unet_layout_free(&m->layout);
    *m = (Model){0};
}

static Model load_ok(const char *spec) {
    Model m;
    Error err;
    CHECK(model_load(&m, spec, &err) == 0, "loading %s: %s", spec, err.message);
    return m;
}

static char *read_text(const char *path, size_t *n_bytes) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = xmalloc((size_t)n + 1);
    CHECK(fread(text, 1, (size_t)n, f) == (size_t)n, "short read of %s", path);
    text[n] = '\0';
    fclose(f);
    if (n_bytes) *n_bytes = (size_t)n;
    return text;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot create %s", path);
    CHECK(fwrite(data, 1, n, f) == n, "short write to %s", path);
    fclose(f);
}

static const char *path_in(const char *folder, const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    return path;
}

/* A fresh folder under the test's temporary folder. */
static const char *tmp_folder(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s", harness_tmp_path(name));
    CHECK(mkdir(path, 0777) == 0, "cannot create %s", path);
    return path;
}

/* ------------------------------------------------------------------------------------------------ */
/* Loading what diffusers wrote */

static void test_load_diffusers_folder(void) {
    Model m = load_ok(TINY);
    EXPECT(m.info.n_files == 1 && m.info.n_f32 == m.layout.params.n_entries && m.info.n_legacy_names == 0,
           "info: %zu files, %zu F32", m.info.n_files, m.info.n_f32);
    /* Every tensor's sum and sum of squares as torch computed them (in float64) from the model it saved. */
    char *text = read_text(TINY "/expected.json", NULL);
    cJSON *expected = cJSON_Parse(text);
    free(text);
    CHECK(expected, "expected.json is not JSON");
    EXPECT((size_t)cJSON_GetArraySize(expected) == m.layout.params.n_entries, "expected.json has %d tensors",
           cJSON_GetArraySize(expected));
    for (size_t i = 0; i < m.layout.params.n_entries; i++) {
        const ParamEntry *e = &m.layout.params.entries[i];
        const cJSON *want = cJSON_GetObjectItem(expected, e->name);
        if (!want) {
            EXPECT(0, "%s not in expected.json", e->name);
            continue;
        }
        double sum = 0, sum_sq = 0;
        for (size_t j = 0; j < e->numel; j++) {
            double v = m.params[e->offset + j];
            sum += v, sum_sq += v * v;
        }
        double want_sum = cJSON_GetObjectItem(want, "sum")->valuedouble;
        double want_sq = cJSON_GetObjectItem(want, "sum_squares")->valuedouble;
        EXPECT(fabs(sum - want_sum) <= 1e-9 * (1 + sqrt(want_sq * (double)e->numel)) &&
                   fabs(sum_sq - want_sq) <= 1e-9 * (1 + want_sq),
               "%s: sum %.12g / %.12g, sum of squares %.12g / %.12g", e->name, sum, want_sum, sum_sq, want_sq);
    }
    cJSON_Delete(expected);
    /* config.json as we would write it is diffusers' file, byte for byte. */
    char *ours = unet_config_to_json(&m.layout.config);
    char *theirs = read_text(TINY "/config.json", NULL);
    EXPECT(strcmp(ours, theirs) == 0, "config.json differs:\n%s\nvs diffusers'\n%s", ours, theirs);
    free(ours);
    free(theirs);
    EXPECT(m.layout.config.num_class_embeds == 3 && m.layout.layers[0].param[UNET_CLASS_EMBEDDING] >= 0,
           "class embedding");
    model_free(&m);
}

static void expect_same_values(const char *what, const Model *got, const Model *want, double rtol, double atol) {
    EXPECT(got->layout.params.n_floats == want->layout.params.n_floats, "%s: sizes differ", what);
    if (got->layout.params.n_floats != want->layout.params.n_floats) return;
    expect_close(what, got->params, want->params, got->layout.params.n_floats, atol, rtol);
}

static void test_load_encodings(void) {
    Model f32 = load_ok(TINY);

    Model f16 = load_ok(TINY "_f16");
    EXPECT(f16.info.n_f16 == f16.layout.params.n_entries, "F16 tensors: %zu", f16.info.n_f16);
    /* Rounding to half: half an ulp, 2^-11 relative (2^-25 absolute below the normal range). */
    expect_same_values("F16 vs F32", &f16, &f32, 4.9e-4, 3e-8);

    Model bf16 = load_ok(TINY "_bf16");
    EXPECT(bf16.info.n_bf16 == bf16.layout.params.n_entries, "BF16 tensors: %zu", bf16.info.n_bf16);
    expect_same_values("BF16 vs F32", &bf16, &f32, 3.9e-3, 0);
    /* Exactly: torch rounds to nearest even, as float_to_bfloat16 does. */
    size_t n_differ = 0;
    for (size_t i = 0; i < f32.layout.params.n_floats; i++)
        n_differ += bfloat16_to_float(float_to_bfloat16(f32.params[i])) != bf16.params[i];
    EXPECT(n_differ == 0, "%zu BF16 values differ from the rounded F32 values", n_differ);

    Model sharded = load_ok(TINY "_sharded");
    EXPECT(sharded.info.n_files == 4, "%zu shards", sharded.info.n_files);
    expect_same_values("sharded vs single", &sharded, &f32, 0, 0);

    Model legacy = load_ok(TINY "_legacy");
    /* 4 attentions (down 1, up 0 twice, mid) x {query, key, value, proj_attn} x {weight, bias}. */
    EXPECT(legacy.info.n_legacy_names == 32, "%zu legacy names", legacy.info.n_legacy_names);
    expect_same_values("legacy names vs current", &legacy, &f32, 0, 0);

    /* Checking without reading. */
    Error err;
    EXPECT(model_weights_load(TINY "_f16", &f32.layout.params, NULL, NULL, &err) == 0, "check only: %s", err.message);

    model_free(&f32);
    model_free(&f16);
    model_free(&bf16);
    model_free(&sharded);
    model_free(&legacy);
}

/* ------------------------------------------------------------------------------------------------ */
/* Saving */

static void test_save_and_reload(void) {
    Model original = load_ok(TINY "_legacy");
    const char *folder = harness_tmp_path("saved/nested");
    Error err;
    EXPECT(model_folder_save(folder, &original.layout.config, &original.layout.params, original.params, &err) == 0,
           "save: %s", err.message);
    Model back = load_ok(folder);
    expect_same_values("saved and reloaded", &back, &original, 0, 0);
    EXPECT(back.info.n_legacy_names == 0 && back.info.n_f32 == back.layout.params.n_entries, "written as F32 current");

    /* The file: F32, current names, metadata {"format": "pt"}, tensors in state_dict order, contiguous. */
    SafeTensors st;
    CHECK(safetensors_open(&st, path_in(folder, MODEL_WEIGHTS_FILE), &err) == 0, "%s", err.message);
    const char *format = safetensors_meta_get(&st, "format");
    EXPECT(format && strcmp(format, "pt") == 0 && st.n_meta == 1, "metadata format %s", format ? format : "(none)");
    EXPECT(safetensors_find(&st, "down_blocks.1.attentions.0.to_out.0.weight") &&
               !safetensors_find(&st, "down_blocks.1.attentions.0.proj_attn.weight"),
           "current names");
    const SafeTensorInfo *first = safetensors_find(&st, "conv_in.weight");
    EXPECT(first && first->dtype == SAFETENSORS_F32 && first->data == (const unsigned char *)st.map + st.map_bytes -
                                                                           back.layout.params.n_floats * 4,
           "conv_in.weight opens the data section");
    safetensors_close(&st);

    /* config.json: diffusers' text for this model. */
    char *saved = read_text(path_in(folder, MODEL_CONFIG_FILE), NULL);
    char *theirs = read_text(TINY "/config.json", NULL);
    EXPECT(strcmp(saved, theirs) == 0, "saved config.json differs from diffusers'");
    free(saved);
    free(theirs);

    /* Saving over a folder that holds a shard index removes it (diffusers would read the index first). */
    size_t n;
    char *index = read_text(TINY "_sharded/" MODEL_WEIGHTS_INDEX_FILE, &n);
    write_bytes(path_in(folder, MODEL_WEIGHTS_INDEX_FILE), index, n);
    free(index);
    EXPECT(model_weights_load(folder, &back.layout.params, NULL, NULL, &err) == -1, "stale index is read first");
    EXPECT(model_folder_save(folder, &back.layout.config, &back.layout.params, back.params, &err) == 0, "%s",
           err.message);
    struct stat info;
    EXPECT(stat(path_in(folder, MODEL_WEIGHTS_INDEX_FILE), &info) != 0, "stale index left behind");

    /* A freshly initialised model round-trips too. */
    param_table_fill_init(&back.layout.params, back.params, 3);
    EXPECT(model_folder_save(folder, &back.layout.config, &back.layout.params, back.params, &err) == 0, "%s",
           err.message);
    Model init = load_ok(folder);
    expect_same_values("initialised, saved, reloaded", &init, &back, 0, 0);

    model_free(&init);
    model_free(&back);
    model_free(&original);
}

static void test_sources(void) {
    UNetConfig cfg;
    ModelSource src;
    Error err;
    EXPECT(model_source_resolve(&src, &cfg, "ddpm-cifar10", &err) == 0 && src.kind == MODEL_SOURCE_PRESET &&
               cfg.block_out_channels[0] == 128,
           "preset: %s", err.message);
    EXPECT(model_source_resolve(&src, &cfg, TINY "/config.json", &err) == 0 && src.kind == MODEL_SOURCE_CONFIG_FILE,
           "config file: %s", err.message);
    EXPECT(model_source_resolve(&src, &cfg, TINY, &err) == 0 && src.kind == MODEL_SOURCE_FOLDER &&
               strcmp(src.path, TINY) == 0,
           "folder: %s", err.message);
    /* A pipeline folder holds the model in unet/. */
    Model m = load_ok(TINY);
    const char *pipe = tmp_folder("pipeline");
    char unet[600];
    snprintf(unet, sizeof unet, "%s/unet", pipe);
    CHECK(model_folder_save(unet, &m.layout.config, &m.layout.params, m.params, &err) == 0, "%s", err.message);
    EXPECT(model_source_resolve(&src, &cfg, pipe, &err) == 0 && src.kind == MODEL_SOURCE_FOLDER &&
               strcmp(src.path, unet) == 0,
           "pipeline folder: %s -> %s", err.message, src.path);
    model_free(&m);

    EXPECT(model_source_resolve(&src, &cfg, "no-such-thing", &err) == -1 &&
               strstr(err.message, "'no-such-thing' is not a file or folder") &&
               strstr(err.message, "presets: default, ddpm-cifar10"),
           "unknown source: %s", err.message);
    EXPECT(model_source_resolve(&src, &cfg, "tests/fixtures", &err) == -1 &&
               strstr(err.message, "tests/fixtures: no config.json here or in unet/"),
           "folder without config: %s", err.message);
}

/* ------------------------------------------------------------------------------------------------ */
/* Malformed folders */

typedef enum Craft {
    CRAFT_OFFSETS_PAST_END,
    CRAFT_F16_WITH_F32_SIZE,
    CRAFT_MISSHAPED,
    CRAFT_MISSING,
    CRAFT_EXTRA,
    CRAFT_INTEGER_DTYPE,
} Craft;

/* Writes the tiny model's weights with one tensor (`target`) altered as `craft` says. */
static void write_crafted(const char *path, const Model *m, const char *target, Craft craft) {
    const ParamTable *t = &m->layout.params;
    cJSON *header = cJSON_CreateObject();
    size_t offset = 0;
    for (size_t i = 0; i < t->n_entries; i++) {
        const ParamEntry *e = &t->entries[i];
        bool is_target = strcmp(e->name, target) == 0;
        if (is_target && craft == CRAFT_MISSING) continue;
        cJSON *entry = cJSON_AddObjectToObject(header, e->name);
        const char *dtype = "F32";
        if (is_target && craft == CRAFT_F16_WITH_F32_SIZE) dtype = "F16";
        if (is_target && craft == CRAFT_INTEGER_DTYPE) dtype = "I32";
        cJSON_AddStringToObject(entry, "dtype", dtype);
        cJSON *shape = cJSON_AddArrayToObject(entry, "shape");
        for (int d = 0; d < e->ndim; d++) {
            int dim = is_target && craft == CRAFT_MISSHAPED ? e->ndim - 1 - d : d; /* reversed: same size */
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[dim]));
        }
        size_t end = offset + e->numel * 4;
        cJSON *offsets = cJSON_AddArrayToObject(entry, "data_offsets");
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(is_target && craft == CRAFT_OFFSETS_PAST_END
                                                                      ? end + 4096 : end)));
        offset = end;
    }
    if (craft == CRAFT_EXTRA) {
        cJSON *entry = cJSON_AddObjectToObject(header, "down_blocks.0.resnets.0.extra.weight");
        cJSON_AddStringToObject(entry, "dtype", "F32");
        cJSON_AddItemToObject(entry, "shape", cJSON_CreateIntArray((const int[]){2}, 1));
        cJSON_AddItemToObject(entry, "data_offsets", cJSON_CreateIntArray((const int[]){(int)offset, (int)offset + 8}, 2));
        offset += 8;
    }
    char *json = cJSON_PrintUnformatted(header);
    cJSON_Delete(header);
    size_t json_bytes = strlen(json);
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot create %s", path);
    unsigned char length[8];
    for (int i = 0; i < 8; i++) length[i] = (unsigned char)((uint64_t)json_bytes >> (8 * i));
    fwrite(length, 1, 8, f);
    fwrite(json, 1, json_bytes, f);
    for (size_t i = 0; i < t->n_entries; i++) {
        const ParamEntry *e = &t->entries[i];
        if (craft == CRAFT_MISSING && strcmp(e->name, target) == 0) continue;
        fwrite(m->params + e->offset, 4, e->numel, f);
    }
    if (craft == CRAFT_EXTRA) fwrite(m->params, 4, 2, f);
    fclose(f);
    cJSON_free(json);
}

/* A folder with the tiny model's config.json (or `config` when given) and no weights yet. */
static const char *case_folder(const char *name, const char *config) {
    const char *folder = tmp_folder(name);
    size_t n;
    char *text = config ? xstrdup(config) : read_text(TINY "/config.json", &n);
    write_bytes(path_in(folder, MODEL_CONFIG_FILE), text, strlen(text));
    free(text);
    return folder;
}

/* Loading `folder` fails with one line containing every one of the NULL-terminated `expected` strings. */
static void expect_load_error(const char *what, const char *folder, const char *const *expected) {
    Model m;
    Error err = {{0}};
    int rc = model_load(&m, folder, &err);
    model_free(&m);
    EXPECT(rc == -1, "%s: loaded", what);
    if (rc != -1) return;
    EXPECT(!strchr(err.message, '\n'), "%s: message has a newline: %s", what, err.message);
    for (int i = 0; expected[i]; i++)
        EXPECT(strstr(err.message, expected[i]), "%s: '%s' lacks '%s'", what, err.message, expected[i]);
}

#define EXPECT_LOAD_ERROR(what, folder, ...) expect_load_error(what, folder, (const char *const[]){__VA_ARGS__, NULL})

static void test_malformed_weights(void) {
    Model good = load_ok(TINY);
    size_t n_bytes;
    char *bytes = read_text(TINY "/" MODEL_WEIGHTS_FILE, &n_bytes);
    const char *folder;

    folder = case_folder("truncated", NULL);
    write_bytes(path_in(folder, MODEL_WEIGHTS_FILE), bytes, n_bytes / 2);
    EXPECT_LOAD_ERROR("truncated", folder, "truncated/diffusion_pytorch_model.safetensors", "truncated file");

    folder = case_folder("truncated_header", NULL);
    write_bytes(path_in(folder, MODEL_WEIGHTS_FILE), bytes, 100);
    EXPECT_LOAD_ERROR("truncated in the header", folder, "truncated_header/diffusion_pytorch_model.safetensors",
                      "does not fit");

    folder = case_folder("tiny_file", NULL);
    write_bytes(path_in(folder, MODEL_WEIGHTS_FILE), bytes, 5);
    EXPECT_LOAD_ERROR("5-byte file", folder, "tiny_file/diffusion_pytorch_model.safetensors", "too short");

    folder = case_folder("long_header", NULL);
    {
        char *lying = xmalloc(n_bytes);
        memcpy(lying, bytes, n_bytes);
        uint64_t length = n_bytes + 100;
        for (int i = 0; i < 8; i++) lying[i] = (char)(length >> (8 * i));
        write_bytes(path_in(folder, MODEL_WEIGHTS_FILE), lying, n_bytes);
        free(lying);
    }
    EXPECT_LOAD_ERROR("header longer than the file", folder, "long_header/diffusion_pytorch_model.safetensors",
                      "header length", "does not fit");

    folder = case_folder("past_end", NULL);
    write_crafted(path_in(folder, MODEL_WEIGHTS_FILE), &good, "conv_out.bias", CRAFT_OFFSETS_PAST_END);
    EXPECT_LOAD_ERROR("offsets past the end", folder, "past_end/diffusion_pytorch_model.safetensors",
                      "'conv_out.bias'", "outside");

    folder = case_folder("dtype_size", NULL);
    write_crafted(path_in(folder, MODEL_WEIGHTS_FILE), &good, "conv_in.weight", CRAFT_F16_WITH_F32_SIZE);
    EXPECT_LOAD_ERROR("wrong dtype size", folder, "dtype_size/diffusion_pytorch_model.safetensors", "'conv_in.weight'",
                      "F16 shape holds 216 elements (432 bytes) but data_offsets span 864 bytes");

    folder = case_folder("integer", NULL);
    write_crafted(path_in(folder, MODEL_WEIGHTS_FILE), &good, "conv_in.bias", CRAFT_INTEGER_DTYPE);
    EXPECT_LOAD_ERROR("integer tensor", folder, "integer/diffusion_pytorch_model.safetensors", "'conv_in.bias'",
                      "dtype I32");

    folder = case_folder("misshaped", NULL);
    write_crafted(path_in(folder, MODEL_WEIGHTS_FILE), &good, "up_blocks.0.resnets.1.conv1.weight", CRAFT_MISSHAPED);
    EXPECT_LOAD_ERROR("misshaped tensor", folder, "misshaped/diffusion_pytorch_model.safetensors",
                      "'up_blocks.0.resnets.1.conv1.weight' has shape (3, 3, 24, 16) but config.json implies (16, 24, 3, 3)");

    folder = case_folder("missing", NULL);
    write_crafted(path_in(folder, MODEL_WEIGHTS_FILE), &good, "mid_block.attentions.0.to_k.bias", CRAFT_MISSING);
    EXPECT_LOAD_ERROR("missing tensor", folder, "missing/diffusion_pytorch_model.safetensors",
                      "tensor 'mid_block.attentions.0.to_k.bias' is missing", "1 of 145");

    folder = case_folder("extra", NULL);
    write_crafted(path_in(folder, MODEL_WEIGHTS_FILE), &good, "", CRAFT_EXTRA);
    EXPECT_LOAD_ERROR("extra tensor", folder, "extra/diffusion_pytorch_model.safetensors",
                      "unexpected tensor 'down_blocks.0.resnets.0.extra.weight'");

    /* Weights of another config: the first mismatch is named. */
    folder = case_folder("other_config", "{\"sample_size\": 8, \"block_out_channels\": [16, 16], \"layers_per_block\": 1,"
                                         " \"down_block_types\": [\"DownBlock2D\", \"AttnDownBlock2D\"],"
                                         " \"up_block_types\": [\"AttnUpBlock2D\", \"UpBlock2D\"],"
                                         " \"norm_num_groups\": 4, \"num_class_embeds\": 3}");
    write_bytes(path_in(folder, MODEL_WEIGHTS_FILE), bytes, n_bytes);
    EXPECT_LOAD_ERROR("weights of another config", folder, "other_config/diffusion_pytorch_model.safetensors",
                      "has shape", "but config.json implies");

    folder = case_folder("no_weights", NULL);
    EXPECT_LOAD_ERROR("no weights", folder, "no_weights: no weights: expected diffusion_pytorch_model.safetensors");
    folder = case_folder("pickle", NULL);
    write_bytes(path_in(folder, "diffusion_pytorch_model.bin"), "PK", 2);
    EXPECT_LOAD_ERROR("pickle only", folder, "pickle/diffusion_pytorch_model.bin", "pickle weights are not read");

    free(bytes);
    model_free(&good);
}

static void test_malformed_shards(void) {
    const char *folder = case_folder("shard_escape", NULL);
    const char *index = "{\"metadata\": {}, \"weight_map\": {\"conv_in.weight\": \"../model_tiny/x.safetensors\"}}";
    write_bytes(path_in(folder, MODEL_WEIGHTS_INDEX_FILE), index, strlen(index));
    EXPECT_LOAD_ERROR("shard outside the folder", folder, "shard_escape/" MODEL_WEIGHTS_INDEX_FILE,
                      "'conv_in.weight' is not a file name in this folder");

    folder = case_folder("shard_json", NULL);
    write_bytes(path_in(folder, MODEL_WEIGHTS_INDEX_FILE), "{\"weight_map\": [", 16);
    EXPECT_LOAD_ERROR("broken index", folder, "shard_json/" MODEL_WEIGHTS_INDEX_FILE, "not valid JSON");

    folder = case_folder("shard_missing_file", NULL);
    index = "{\"weight_map\": {\"conv_in.weight\": \"diffusion_pytorch_model-00001-of-00002.safetensors\"}}";
    write_bytes(path_in(folder, MODEL_WEIGHTS_INDEX_FILE), index, strlen(index));
    EXPECT_LOAD_ERROR("missing shard", folder, "shard_missing_file/diffusion_pytorch_model-00001-of-00002.safetensors",
                      "cannot open");

    /* An index that names a tensor in a shard that lacks it. */
    folder = case_folder("shard_lies", NULL);
    Model good = load_ok(TINY);
    Error err;
    CHECK(model_folder_save(harness_tmp_path("shard_lies_src"), &good.layout.config, &good.layout.params, good.params,
                            &err) == 0, "%s", err.message);
    size_t n;
    char *bytes = read_text(path_in(harness_tmp_path("shard_lies_src"), MODEL_WEIGHTS_FILE), &n);
    write_bytes(path_in(folder, "part.safetensors"), bytes, n);
    free(bytes);
    index = "{\"weight_map\": {\"conv_in.weight\": \"part.safetensors\", \"conv_in.bias\": \"part.safetensors\","
            " \"conv_out.bias\": \"other.safetensors\"}}";
    write_bytes(path_in(folder, MODEL_WEIGHTS_INDEX_FILE), index, strlen(index));
    EXPECT_LOAD_ERROR("index pointing to the wrong shard", folder, "other.safetensors", "cannot open");
    model_free(&good);

    /* A shard that is a FIFO: refused at once rather than waited on forever. */
    folder = case_folder("shard_fifo", NULL);
    EXPECT(mkfifo(path_in(folder, "part.safetensors"), 0600) == 0, "mkfifo");
    index = "{\"weight_map\": {\"conv_in.weight\": \"part.safetensors\"}}";
    write_bytes(path_in(folder, MODEL_WEIGHTS_INDEX_FILE), index, strlen(index));
    EXPECT_LOAD_ERROR("FIFO shard", folder, "shard_fifo/part.safetensors", "not a regular file");
}

static void test_malformed_configs(void) {
    const char *folder = case_folder("bad_json", "{\"sample_size\": 8,, }");
    EXPECT_LOAD_ERROR("invalid JSON", folder, "bad_json/config.json: not valid JSON");
    folder = case_folder("bad_block", "{\"down_block_types\": [\"DownBlock2D\", \"SkipDownBlock2D\", \"DownBlock2D\","
                                      " \"DownBlock2D\"]}");
    EXPECT_LOAD_ERROR("unknown block type", folder, "bad_block/config.json",
                      "block type \"SkipDownBlock2D\" is not supported");
    folder = case_folder("bad_value", "{\"act_fn\": \"gelu\"}");
    EXPECT_LOAD_ERROR("unsupported value", folder, "bad_value/config.json", "'act_fn' = \"gelu\" is not supported");
    folder = case_folder("bad_field", "{\"cross_attention_dim\": 768}");
    EXPECT_LOAD_ERROR("unsupported field", folder, "bad_field/config.json", "unknown field 'cross_attention_dim'");
    folder = case_folder("empty_config", "");
    EXPECT_LOAD_ERROR("empty config", folder, "empty_config/config.json", "not valid JSON");
    /* Sizes each within its bound whose product is not: refused before anything is allocated. */
    folder = case_folder("huge_sample", "{\"sample_size\": 65536, \"block_out_channels\": [32, 64, 64, 64]}");
    EXPECT_LOAD_ERROR("huge sample_size", folder, "huge_sample/config.json", "65536x65536x3 values per image");
}

int main(void) {
    RUN(test_load_diffusers_folder);
    RUN(test_load_encodings);
    RUN(test_save_and_reload);
    RUN(test_sources);
    RUN(test_malformed_weights);
    RUN(test_malformed_shards);
    RUN(test_malformed_configs);
    return harness_finish();
}
