/* Model configuration and structure: config.json parsing and its errors, presets, the parameter table
 * against diffusers' state_dict (names, shapes, order, counts) for configs that together use every
 * supported field value, the FLOP count against hooks in PyTorch, the memory estimate, and the
 * initialisation's distribution. Expected values come from tests/fixtures/model_configs.json, written by
 * tools/make_model_fixtures.py from diffusers. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "harness.h"
#include "nn/params.h"
#include "nn/unet_config.h"
#include "nn/unet_cost.h"
#include "nn/unet_layout.h"

#define CONFIGS_FIXTURE "tests/fixtures/model_configs.json"

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s (run from the repository root; regenerate with python3 tools/make_model_fixtures.py)",
          path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = xmalloc((size_t)n + 1);
    CHECK(fread(text, 1, (size_t)n, f) == (size_t)n, "short read of %s", path);
    text[n] = '\0';
    fclose(f);
    return text;
}

static cJSON *load_configs_fixture(void) {
    char *text = read_file(CONFIGS_FIXTURE);
    cJSON *root = cJSON_Parse(text);
    free(text);
    CHECK(root, "%s is not valid JSON", CONFIGS_FIXTURE);
    return root;
}

static UNetLayout layout_of_preset(const char *name) {
    UNetConfig cfg;
    Error err;
    CHECK(unet_config_preset(&cfg, name, &err) == 0, "%s", err.message);
    UNetLayout layout;
    CHECK(unet_layout_init(&layout, &cfg, &err) == 0, "%s", err.message);
    return layout;
}

/* ------------------------------------------------------------------------------------------------ */
/* Parameter counts and state_dict equality */

static void test_preset_parameter_counts(void) {
    static const struct {
        const char *preset;
        size_t n_params, n_tensors;
    } cases[] = {
        {"default", 274056163, 432},        /* UNet2DModel(in_channels=3, out_channels=3) */
        {"ddpm-cifar10", 35746307, 328},    /* google/ddpm-cifar10-32: the paper's 35.7M */
        {"ddpm-celebahq-256", 113673219, 450}, /* google/ddpm-celebahq-256: the paper's 114M */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        UNetLayout layout = layout_of_preset(cases[i].preset);
        EXPECT(layout.params.n_floats == cases[i].n_params, "%s: %zu parameters, want %zu", cases[i].preset,
               layout.params.n_floats, cases[i].n_params);
        EXPECT(layout.params.n_entries == cases[i].n_tensors, "%s: %zu tensors, want %zu", cases[i].preset,
               layout.params.n_entries, cases[i].n_tensors);
        unet_layout_free(&layout);
    }
}

/* The fixture's config text with diffusers' spelling "swish" written as the "silu" we write. */
static char *normalised_config_text(const char *text) {
    const char *at = strstr(text, "\"swish\"");
    if (!at) return xstrdup(text);
    size_t n = strlen(text);
    char *copy = xmalloc(n + 1);
    snprintf(copy, n + 1, "%.*s\"silu\"%s", (int)(at - text), text, at + 7);
    return copy;
}

static void check_against_diffusers(const cJSON *entry) {
    const char *name = cJSON_GetObjectItem(entry, "name")->valuestring;
    const char *config_json = cJSON_GetObjectItem(entry, "config_json")->valuestring;
    UNetConfig cfg;
    Error err;
    if (unet_config_from_json(&cfg, config_json, strlen(config_json), name, &err)) {
        EXPECT(0, "%s: diffusers' config does not parse: %s", name, err.message);
        return;
    }
    /* Writing the parsed config gives back diffusers' own text. */
    char *written = unet_config_to_json(&cfg);
    char *want = normalised_config_text(config_json);
    EXPECT(strcmp(written, want) == 0, "%s: config.json differs from diffusers'\n--- ours\n%s--- diffusers\n%s", name,
           written, want);
    free(written);
    free(want);
    if (cJSON_IsTrue(cJSON_GetObjectItem(entry, "preset"))) {
        UNetConfig preset;
        CHECK(unet_config_preset(&preset, name, &err) == 0, "%s", err.message);
        char *a = unet_config_to_json(&preset), *b = unet_config_to_json(&cfg);
        EXPECT(strcmp(a, b) == 0, "preset %s differs from the config in the fixture", name);
        free(a);
        free(b);
    }

    UNetLayout layout;
    if (unet_layout_init(&layout, &cfg, &err)) {
        EXPECT(0, "%s: %s", name, err.message);
        return;
    }
    double n_params = cJSON_GetObjectItem(entry, "n_params")->valuedouble;
    EXPECT((double)layout.params.n_floats == n_params, "%s: %zu parameters, diffusers has %.0f", name,
           layout.params.n_floats, n_params);
    const cJSON *state = cJSON_GetObjectItem(entry, "state_dict");
    size_t n = (size_t)cJSON_GetArraySize(state);
    EXPECT(layout.params.n_entries == n, "%s: %zu tensors, diffusers has %zu", name, layout.params.n_entries, n);
    size_t i = 0;
    for (const cJSON *row = state->child; row && i < layout.params.n_entries; row = row->next, i++) {
        const ParamEntry *e = &layout.params.entries[i];
        const char *want_name = cJSON_GetArrayItem(row, 0)->valuestring;
        const cJSON *shape = cJSON_GetArrayItem(row, 1);
        bool same = e->ndim == cJSON_GetArraySize(shape);
        for (int d = 0; same && d < e->ndim; d++) same = (double)e->shape[d] == cJSON_GetArrayItem(shape, d)->valuedouble;
        char buf[64];
        if (strcmp(e->name, want_name) != 0 || !same) {
            char *want_shape = cJSON_PrintUnformatted(shape);
            EXPECT(0, "%s: tensor %zu is %s %s, diffusers has %s %s", name, i, e->name,
                   param_entry_shape_str(e, buf, sizeof buf), want_name, want_shape);
            cJSON_free(want_shape);
            break;
        }
    }
    /* FLOPs at sample_size: exactly what hooks on every conv / linear and the attention count in PyTorch. */
    const cJSON *macs = cJSON_GetObjectItem(entry, "forward_macs");
    UNetCost cost = unet_cost(&layout, cfg.sample_height, cfg.sample_width);
    EXPECT((double)cost.conv_macs == cJSON_GetObjectItem(macs, "conv")->valuedouble &&
               (double)cost.linear_macs == cJSON_GetObjectItem(macs, "linear")->valuedouble &&
               (double)cost.attention_macs == cJSON_GetObjectItem(macs, "attention")->valuedouble,
           "%s: MACs conv %llu linear %llu attention %llu, PyTorch %.0f %.0f %.0f", name,
           (unsigned long long)cost.conv_macs, (unsigned long long)cost.linear_macs,
           (unsigned long long)cost.attention_macs, cJSON_GetObjectItem(macs, "conv")->valuedouble,
           cJSON_GetObjectItem(macs, "linear")->valuedouble, cJSON_GetObjectItem(macs, "attention")->valuedouble);
    unet_layout_free(&layout);
}

static void test_tables_equal_diffusers_state_dicts(void) {
    cJSON *root = load_configs_fixture();
    const cJSON *configs = cJSON_GetObjectItem(root, "configs");
    EXPECT(cJSON_GetArraySize(configs) >= 9, "fixture has %d configs", cJSON_GetArraySize(configs));
    for (const cJSON *entry = configs->child; entry; entry = entry->next) check_against_diffusers(entry);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------------------------------------------ */
/* Config parsing */

static int parse(const char *json, UNetConfig *cfg, Error *err) {
    return unet_config_from_json(cfg, json, strlen(json), "dir/config.json", err);
}

/* The config parses and yields a config like the default one but for the given edits. */
static void expect_parses(const char *json) {
    UNetConfig cfg;
    Error err;
    EXPECT(parse(json, &cfg, &err) == 0, "%s: unexpected error: %s", json, err.message);
}

/* Parsing fails with a one-line message naming the file and containing `expected`. */
static void expect_parse_error(const char *json, const char *expected) {
    UNetConfig cfg;
    Error err = {{0}};
    if (parse(json, &cfg, &err) == 0) {
        EXPECT(0, "%s: parsed, expected an error containing '%s'", json, expected);
        return;
    }
    EXPECT(strstr(err.message, expected), "%s: message '%s' lacks '%s'", json, err.message, expected);
    EXPECT(strncmp(err.message, "dir/config.json: ", 17) == 0, "message does not name the file: %s", err.message);
    EXPECT(!strchr(err.message, '\n'), "message has a newline: %s", err.message);
}

static void test_config_fields_and_types(void) {
    UNetConfig cfg;
    Error err;
    /* An empty object is the class defaults. */
    EXPECT(parse("{}", &cfg, &err) == 0, "{}: %s", err.message);
    UNetConfig defaults = unet_config_defaults();
    char *a = unet_config_to_json(&cfg), *b = unet_config_to_json(&defaults);
    EXPECT(strcmp(a, b) == 0, "{} is not the defaults");
    free(a);
    free(b);
    EXPECT(cfg.sample_height == 0 && cfg.n_blocks == 4 && cfg.block_out_channels[3] == 896, "defaults");

    EXPECT(parse("{\"sample_size\": [16, 8], \"mid_block_scale_factor\": 1.5, \"dropout\": 0.25, \"norm_eps\": 1e-6,"
                 " \"attention_head_dim\": null, \"num_class_embeds\": 7, \"act_fn\": \"swish\","
                 " \"_name_or_path\": \"google/x\", \"_diffusers_version\": \"0.1\", \"_class_name\": \"UNet2DModel\"}",
                 &cfg, &err) == 0, "%s", err.message);
    EXPECT(cfg.sample_height == 16 && cfg.sample_width == 8, "sample_size [16, 8] -> %dx%d", cfg.sample_height,
           cfg.sample_width);
    EXPECT(cfg.mid_block_scale_factor == 1.5 && cfg.dropout == 0.25 && cfg.norm_eps == 1e-6, "numbers");
    EXPECT(cfg.attention_head_dim == 0 && cfg.num_class_embeds == 7 && cfg.act_fn == UNET_ACT_SILU, "nullable ints");
    char *json = unet_config_to_json(&cfg);
    EXPECT(strstr(json, "\"mid_block_scale_factor\": 1.5,") && strstr(json, "\"dropout\": 0.25,") &&
               strstr(json, "\"norm_eps\": 1e-06,") && strstr(json, "\"sample_size\": [\n    16,\n    8\n  ],") &&
               strstr(json, "\"act_fn\": \"silu\","),
           "written config:\n%s", json);
    UNetConfig again;
    EXPECT(unet_config_from_json(&again, json, strlen(json), "x", &err) == 0, "re-read: %s", err.message);
    char *json2 = unet_config_to_json(&again);
    EXPECT(strcmp(json, json2) == 0, "config does not round-trip");
    free(json);
    free(json2);

    /* diffusers takes the default for fields listed in _use_default_values, whatever their value. */
    EXPECT(parse("{\"_use_default_values\": [\"norm_eps\"], \"norm_eps\": \"junk\"}", &cfg, &err) == 0 &&
               cfg.norm_eps == 1e-5,
           "_use_default_values: %s", err.message);
    /* diffusers strips the "UNetRes" prefix from block names. */
    expect_parses("{\"down_block_types\": [\"UNetResDownBlock2D\", \"AttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]}");
    expect_parses("{\"mid_block_type\": null, \"attn_norm_num_groups\": 8, \"resnet_time_scale_shift\": \"scale_shift\"}");
    expect_parses("{\"downsample_type\": \"resnet\", \"upsample_type\": \"resnet\", \"downsample_padding\": 0}");

    expect_parse_error("{\"in_channels\": 3", "not valid JSON");
    expect_parse_error("[1, 2]", "not a JSON object");
    expect_parse_error("{\"foo\": 1}", "unknown field 'foo'");
    expect_parse_error("{\"foo\": 1}", "sample_size, in_channels");
    expect_parse_error("{\"cross_attention_dim\": 512}", "unknown field 'cross_attention_dim'");
    expect_parse_error("{\"in_channels\": \"3\"}", "field 'in_channels' must be an integer >= 1, got \"3\"");
    expect_parse_error("{\"in_channels\": 3.5}", "field 'in_channels' must be an integer");
    expect_parse_error("{\"in_channels\": 0}", "field 'in_channels' must be an integer >= 1, got 0");
    expect_parse_error("{\"in_channels\": 1e12}", "field 'in_channels' must be an integer");
    expect_parse_error("{\"flip_sin_to_cos\": \"yes\"}", "field 'flip_sin_to_cos' must be true or false");
    expect_parse_error("{\"norm_eps\": \"1e-5\"}", "field 'norm_eps' must be a number");
    expect_parse_error("{\"sample_size\": [1, 2, 3]}", "field 'sample_size' must be an integer >= 1, [height, width]");
    expect_parse_error("{\"attention_head_dim\": [8, 16]}", "field 'attention_head_dim' must be an integer >= 1 or null");
    expect_parse_error("{\"in_channels\": 3, \"in_channels\": 4}", "field 'in_channels' appears twice");
    expect_parse_error("{\"_class_name\": \"UNet2DConditionModel\"}", "only UNet2DModel configs");
    expect_parse_error("{\"_use_default_values\": \"norm_eps\"}", "_use_default_values");

    /* Values diffusers has but diffuse does not implement: named, with what is supported. */
    expect_parse_error("{\"act_fn\": \"gelu\"}", "field 'act_fn' = \"gelu\" is not supported (supported: \"silu\"");
    expect_parse_error("{\"time_embedding_type\": \"fourier\"}", "\"fourier\" is not supported (supported: \"positional\")");
    expect_parse_error("{\"class_embed_type\": \"timestep\"}", "field 'class_embed_type' = \"timestep\" is not supported");
    expect_parse_error("{\"mid_block_type\": \"UNetMidBlock2DCrossAttn\"}", "supported: \"UNetMidBlock2D\", null");
    expect_parse_error("{\"resnet_time_scale_shift\": \"spatial\"}", "supported: \"default\", \"scale_shift\"");
    expect_parse_error("{\"downsample_type\": \"fir\"}", "supported: \"conv\", \"resnet\"");
    expect_parse_error("{\"downsample_padding\": 2}", "field 'downsample_padding' = 2 is not supported (supported: 0, 1)");
    expect_parse_error("{\"down_block_types\": [\"CrossAttnDownBlock2D\", \"AttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]}",
                       "block type \"CrossAttnDownBlock2D\" is not supported (supported: DownBlock2D, AttnDownBlock2D)");
    expect_parse_error("{\"up_block_types\": [\"DownBlock2D\", \"UpBlock2D\", \"UpBlock2D\", \"UpBlock2D\"]}",
                       "field 'up_block_types': block type \"DownBlock2D\" is not supported (supported: UpBlock2D");
    expect_parse_error("{\"down_block_types\": [3]}", "field 'down_block_types' must be a list of block type names");
    expect_parse_error("{\"block_out_channels\": []}", "field 'block_out_channels' has 0 entries");

    /* Validation: structure and divisibility. */
    expect_parse_error("{\"block_out_channels\": [32, 64]}",
                       "block_out_channels, down_block_types and up_block_types must have the same length (got 2, 4 and 4)");
    expect_parse_error("{\"norm_num_groups\": 24}", "norm_num_groups 24 does not divide block_out_channels[0] = 224");
    expect_parse_error("{\"attention_head_dim\": 5}", "attention_head_dim 5 does not divide the 448 channels of the attention in down_blocks.1");
    expect_parse_error("{\"sample_size\": 36}", "sample_size 36x36 is not divisible by 2^(len(block_out_channels) - 1) = 8");
    expect_parse_error("{\"attn_norm_num_groups\": 5}", "attn_norm_num_groups 5 does not divide the mid block's 896 channels");
    expect_parse_error("{\"dropout\": 1.0}", "dropout must be in [0, 1)");
    expect_parse_error("{\"norm_eps\": 0}", "norm_eps must be a positive number");
    expect_parse_error("{\"freq_shift\": 112}", "freq_shift 112 must be >= 0 and below half the sinusoid size 112");
    expect_parse_error("{\"mid_block_scale_factor\": 0}", "mid_block_scale_factor must be a non-zero number");
    expect_parse_error("{\"in_channels\": 2147483647}", "in_channels = 2147483647 is above the supported maximum");
    expect_parse_error("{\"block_out_channels\": [2147483647, 64, 64, 64]}", "block_out_channels entry = 2147483647");
    expect_parse_error("{\"layers_per_block\": 100000}", "layers_per_block = 100000 is above");
}

static void test_presets(void) {
    const char *const *names = unet_config_preset_names();
    int n = 0;
    for (; names[n]; n++) {
        UNetConfig cfg;
        Error err;
        EXPECT(unet_config_preset(&cfg, names[n], &err) == 0, "%s: %s", names[n], err.message);
        EXPECT(unet_config_validate(&cfg, &err) == 0, "preset %s is invalid: %s", names[n], err.message);
        EXPECT(cfg.sample_height > 0, "preset %s has no sample size", names[n]);
    }
    EXPECT(n == 4, "%d presets", n);
    UNetConfig cfg;
    Error err;
    EXPECT(unet_config_preset(&cfg, "cifar", &err) == -1 && strstr(err.message, "'cifar' is not a preset") &&
               strstr(err.message, "default, ddpm-cifar10, ddpm-celebahq-256, fashion-mnist"),
           "unknown preset: %s", err.message);

    /* The Fashion-MNIST preset: 1 channel, 28x28 (7 * 2^2), under 2M parameters. */
    UNetLayout fm = layout_of_preset("fashion-mnist");
    EXPECT(fm.config.in_channels == 1 && fm.config.out_channels == 1 && fm.config.sample_height == 28, "fashion-mnist");
    EXPECT(fm.params.n_floats == 699633, "fashion-mnist has %zu parameters", fm.params.n_floats);
    unet_layout_free(&fm);
}

/* ------------------------------------------------------------------------------------------------ */
/* Layout structure */

static void test_layout_walks_like_diffusers(void) {
    const char *const presets[] = {"default", "ddpm-cifar10", "fashion-mnist"};
    for (size_t p = 0; p < 3; p++) {
        UNetLayout layout = layout_of_preset(presets[p]);
        const ParamTable *t = &layout.params;
        /* Every table entry belongs to exactly one layer slot. */
        int *owners = xcalloc(t->n_entries, sizeof(int));
        for (int i = 0; i < layout.n_layers; i++)
            for (int s = 0; s < UNET_N_PARAM_SLOTS; s++)
                if (layout.layers[i].param[s] >= 0) owners[layout.layers[i].param[s]]++;
        for (size_t i = 0; i < t->n_entries; i++)
            EXPECT(owners[i] == 1, "%s: %s belongs to %d layers", presets[p], t->entries[i].name, owners[i]);
        free(owners);

        /* Walking the layers in forward order: channels chain, skips pop what was pushed, levels move by
         * one at samplers, and each resnet's parameters have the shapes its channels imply. */
        int stack[256], n_stack = 0, channels = -1, level = 0;
        for (int i = 0; i < layout.n_layers; i++) {
            const UNetLayer *l = &layout.layers[i];
            if (l->kind == UNET_LAYER_TIME_EMBEDDING) continue;
            if (l->kind != UNET_LAYER_CONV_IN) {
                EXPECT(l->in_channels == channels, "%s: %s takes %d channels after %d", presets[p], l->module,
                       l->in_channels, channels);
                EXPECT(l->in_level == level, "%s: %s at level %d after %d", presets[p], l->module, l->in_level, level);
            }
            if (l->skip_channels) {
                EXPECT(n_stack > 0 && stack[n_stack - 1] == l->skip_channels, "%s: %s pops %d channels", presets[p],
                       l->module, l->skip_channels);
                n_stack--;
            }
            if (l->kind == UNET_LAYER_RESNET) {
                const ParamEntry *w = &t->entries[l->param[UNET_RESNET_CONV1_WEIGHT]];
                EXPECT(w->shape[0] == (size_t)l->out_channels && w->shape[1] == (size_t)(l->in_channels + l->skip_channels),
                       "%s: %s conv1", presets[p], l->module);
                bool shortcut = l->in_channels + l->skip_channels != l->out_channels;
                EXPECT((l->param[UNET_RESNET_SHORTCUT_WEIGHT] >= 0) == shortcut, "%s: %s shortcut", presets[p], l->module);
            }
            if (l->kind == UNET_LAYER_ATTENTION)
                EXPECT(l->n_heads * l->head_dim == l->out_channels, "%s: %s heads", presets[p], l->module);
            if (l->push_skip) stack[n_stack++] = l->out_channels;
            channels = l->out_channels;
            level = l->out_level;
        }
        EXPECT(n_stack == 0 && level == 0 && channels == layout.config.out_channels, "%s: walk ends with %d skips",
               presets[p], n_stack);
        unet_layout_free(&layout);
    }
    /* DDPM CIFAR-10: 37 layers; the 16x16 attention has one head of 256 channels. */
    UNetLayout cifar = layout_of_preset("ddpm-cifar10");
    EXPECT(cifar.n_layers == 37, "cifar has %d layers", cifar.n_layers);
    const UNetLayer *attn = NULL;
    for (int i = 0; i < cifar.n_layers && !attn; i++)
        if (cifar.layers[i].kind == UNET_LAYER_ATTENTION) attn = &cifar.layers[i];
    EXPECT(attn && strcmp(attn->module, "down_blocks.1.attentions.0") == 0 && attn->n_heads == 1 &&
               attn->head_dim == 256 && attn->norm_groups == 32 && attn->in_level == 1,
           "first attention");
    const UNetLayer *down = NULL;
    for (int i = 0; i < cifar.n_layers && !down; i++)
        if (cifar.layers[i].kind == UNET_LAYER_DOWNSAMPLE) down = &cifar.layers[i];
    EXPECT(down && down->padding == 0 && down->out_level == 1, "cifar downsample padding 0");
    unet_layout_free(&cifar);
}

static void test_param_views(void) {
    UNetLayout layout = layout_of_preset("fashion-mnist");
    float *params = alloc_floats(layout.params.n_floats);
    Tensor w = param_table_view_named(&layout.params, params, "conv_in.weight");
    EXPECT(w.data == params && w.ndim == 4 && w.shape[0] == 16 && w.shape[1] == 1 && w.shape[2] == 3, "conv_in view");
    Tensor last = param_table_view_named(&layout.params, params, "conv_out.bias");
    EXPECT(last.data + last.shape[0] == params + layout.params.n_floats, "the buffer ends with conv_out.bias");
    EXPECT(param_table_find(&layout.params, "nope") == -1, "missing name");
    EXPECT(layout.layers[0].param[UNET_CLASS_EMBEDDING] == -1, "no class embedding");
    alloc_free(params);
    unet_layout_free(&layout);
}

/* ------------------------------------------------------------------------------------------------ */
/* Costs */

static void test_cost_and_memory(void) {
    UNetLayout cifar = layout_of_preset("ddpm-cifar10");
    UNetCost cost = unet_cost(&cifar, 32, 32);
    /* 6.2 GMAC per 32x32 image (REFERENCE.md; the fixture pins it exactly). */
    EXPECT(unet_cost_total_macs(&cost) == 6221856768ull, "cifar MACs %llu", (unsigned long long)unet_cost_total_macs(&cost));
    UNetCost big = unet_cost(&cifar, 64, 64);
    EXPECT(big.conv_macs == 4 * cost.conv_macs, "conv cost scales with pixels");
    EXPECT(big.attention_macs == 16 * cost.attention_macs, "attention cost scales with pixels squared");
    UNetMemory m1 = unet_memory_estimate(&cifar, 32, 32, 1), m16 = unet_memory_estimate(&cifar, 32, 32, 16);
    size_t p = cifar.params.n_floats * 4;
    EXPECT(m1.params_bytes == p && m1.grads_bytes == p && m1.moments_bytes == 2 * p && m1.ema_bytes == p, "state");
    EXPECT(m16.activations_bytes == 16 * m1.activations_bytes && m1.activations_bytes == cost.saved_floats * 4,
           "activations scale with the batch");
    EXPECT(m16.total_bytes == 5 * p + m16.activations_bytes, "total");
    /* Saved activations are at least every layer's output (and far from the L^2 attention scores). */
    EXPECT(cost.saved_floats > 32 * 32 * 128 * 20 && cost.saved_floats < 32 * 32 * 128 * 200, "saved %llu floats",
           (unsigned long long)cost.saved_floats);
    unet_layout_free(&cifar);
}

/* ------------------------------------------------------------------------------------------------ */
/* Initialisation */

static void test_init_matches_pytorch_distribution(void) {
    UNetConfig cfg;
    Error err;
    CHECK(unet_config_preset(&cfg, "fashion-mnist", &err) == 0, "%s", err.message);
    cfg.num_class_embeds = 10;
    UNetLayout layout;
    CHECK(unet_layout_init(&layout, &cfg, &err) == 0, "%s", err.message);
    const ParamTable *t = &layout.params;
    float *a = alloc_floats(t->n_floats), *b = alloc_floats(t->n_floats);
    param_table_fill_init(t, a, 7);
    param_table_fill_init(t, b, 7);
    EXPECT(memcmp(a, b, t->n_floats * sizeof(float)) == 0, "same seed, same values");
    param_table_fill_init(t, b, 8);
    EXPECT(memcmp(a, b, t->n_floats * sizeof(float)) != 0, "another seed, other values");

    int n_checked = 0;
    for (size_t i = 0; i < t->n_entries; i++) {
        const ParamEntry *e = &t->entries[i];
        const float *x = a + e->offset;
        double sum = 0, sum_sq = 0, max = 0;
        for (size_t j = 0; j < e->numel; j++) sum += x[j], sum_sq += (double)x[j] * x[j], max = fmax(max, fabs(x[j]));
        double n = (double)e->numel, mean = sum / n, var = sum_sq / n - mean * mean;
        switch (e->init) {
        case PARAM_INIT_ONES: EXPECT(sum == n && max == 1, "%s not ones", e->name); break;
        case PARAM_INIT_ZEROS: EXPECT(max == 0, "%s not zeros", e->name); break;
        case PARAM_INIT_FAN_IN_UNIFORM: {
            double bound = 1 / sqrt((double)e->fan_in), want_var = bound * bound / 3;
            EXPECT(max <= bound, "%s: |x| %g > bound %g", e->name, max, bound);
            /* Mean and variance of U(-b, b) within 5 standard errors. */
            if (n >= 64) {
                EXPECT(fabs(mean) < 5 * sqrt(want_var / n), "%s: mean %g", e->name, mean);
                EXPECT(fabs(var - want_var) < 5 * want_var * sqrt(0.8 / n), "%s: var %g want %g", e->name, var, want_var);
                n_checked++;
            }
            break;
        }
        case PARAM_INIT_NORMAL:
            EXPECT(fabs(mean) < 5 / sqrt(n) && fabs(var - 1) < 5 * sqrt(2 / n), "%s: N(0,1)? mean %g var %g", e->name,
                   mean, var);
            n_checked++;
            break;
        }
    }
    EXPECT(n_checked > 50, "checked %d tensors", n_checked);
    /* fan_in as PyTorch computes it: C_in * kH * kW for convs, in_features for linears, weight's for biases. */
    const ParamEntry *conv1 = &t->entries[param_table_find(t, "up_blocks.0.resnets.0.conv1.weight")];
    const ParamEntry *conv1_bias = &t->entries[param_table_find(t, "up_blocks.0.resnets.0.conv1.bias")];
    EXPECT(conv1->fan_in == 128 * 9 && conv1_bias->fan_in == 128 * 9, "conv1 fan_in %zu", conv1->fan_in);
    const ParamEntry *proj = &t->entries[param_table_find(t, "down_blocks.0.resnets.0.time_emb_proj.weight")];
    EXPECT(proj->fan_in == 64, "time_emb_proj fan_in %zu", proj->fan_in);

    /* Values are keyed by name: conv_in.weight is the same with or without class embeddings. */
    UNetLayout plain = layout_of_preset("fashion-mnist");
    float *c = alloc_floats(plain.params.n_floats);
    param_table_fill_init(&plain.params, c, 7);
    Tensor x = param_table_view_named(t, a, "up_blocks.1.attentions.0.to_q.weight");
    Tensor y = param_table_view_named(&plain.params, c, "up_blocks.1.attentions.0.to_q.weight");
    EXPECT(memcmp(x.data, y.data, tensor_numel(x) * sizeof(float)) == 0, "init depends on other tensors");
    alloc_free(c);
    unet_layout_free(&plain);
    alloc_free(a);
    alloc_free(b);
    unet_layout_free(&layout);
}

int main(void) {
    RUN(test_preset_parameter_counts);
    RUN(test_tables_equal_diffusers_state_dicts);
    RUN(test_config_fields_and_types);
    RUN(test_presets);
    RUN(test_layout_walks_like_diffusers);
    RUN(test_param_views);
    RUN(test_cost_and_memory);
    RUN(test_init_matches_pytorch_distribution);
    return harness_finish();
}
