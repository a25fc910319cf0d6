/* Scheduler configurations and scheduler_config.json (see scheduler_config.h).
 *
 * Reading follows diffusers' from_config: keys starting with "_" are metadata, and keys the class does not
 * know (another class's options, options of newer or older diffusers versions) are ignored, as diffusers
 * ignores them with a warning. Every key the class knows is checked for its type and value; a value that
 * diffusers accepts but diffuse does not implement is an error naming the supported values.
 * Writing reproduces diffusers' save_config byte for byte: keys sorted, json.dumps(indent=2) layout,
 * Python's repr of floats, -Infinity for lambda_min_clipped. */
#include "diffusion/scheduler_config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_values.h"
#include "io/atomic_file.h"
#include "io/fs.h"

/* ------------------------------------------------------------------------------------------------ */
/* Names */

typedef struct NameTable {
    const char *what;      /* the option, for messages */
    const char *const *names;
    size_t n;
    const char *supported; /* "a, b, c" */
} NameTable;

static const char *table_name(const NameTable *t, int value) {
    CHECK(value >= 0 && (size_t)value < t->n, "invalid %s %d", t->what, value);
    return t->names[value];
}

static int table_lookup(const NameTable *t, const char *name, int *out, Error *err) {
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(name, t->names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return error_set(err, "unknown %s '%s' (supported: %s)", t->what, name, t->supported);
}

#define NAME_TABLE(var, what_, supported_, ...)                                                   \
    static const char *const var##_NAMES[] = {__VA_ARGS__};                                       \
    static const NameTable var = {what_, var##_NAMES, sizeof var##_NAMES / sizeof var##_NAMES[0], \
                                  supported_}

NAME_TABLE(KIND_TABLE, "sampler", "ddpm, ddim, dpm++", [SAMPLER_DDPM] = "ddpm", [SAMPLER_DDIM] = "ddim",
           [SAMPLER_DPM_SOLVER] = "dpm++");
NAME_TABLE(CLASS_TABLE, "_class_name", "DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler",
           [SAMPLER_DDPM] = "DDPMScheduler", [SAMPLER_DDIM] = "DDIMScheduler",
           [SAMPLER_DPM_SOLVER] = "DPMSolverMultistepScheduler");
NAME_TABLE(SPACING_TABLE, "timestep_spacing", "leading, linspace, trailing",
           [TIMESTEP_SPACING_LEADING] = "leading", [TIMESTEP_SPACING_LINSPACE] = "linspace",
           [TIMESTEP_SPACING_TRAILING] = "trailing");
NAME_TABLE(VARIANCE_TABLE, "variance_type", "fixed_small, fixed_small_log, fixed_large, fixed_large_log, learned_range",
           [VARIANCE_FIXED_SMALL] = "fixed_small", [VARIANCE_FIXED_SMALL_LOG] = "fixed_small_log",
           [VARIANCE_FIXED_LARGE] = "fixed_large", [VARIANCE_FIXED_LARGE_LOG] = "fixed_large_log",
           [VARIANCE_LEARNED_RANGE] = "learned_range");
NAME_TABLE(SOLVER_TABLE, "solver_type", "midpoint, heun", [SOLVER_MIDPOINT] = "midpoint", [SOLVER_HEUN] = "heun");
NAME_TABLE(FINAL_SIGMAS_TABLE, "final_sigmas_type", "zero, sigma_min", [FINAL_SIGMAS_ZERO] = "zero",
           [FINAL_SIGMAS_SIGMA_MIN] = "sigma_min");

const char *sampler_kind_name(SamplerKind k) { return table_name(&KIND_TABLE, (int)k); }
const char *sampler_kind_class_name(SamplerKind k) { return table_name(&CLASS_TABLE, (int)k); }
const char *timestep_spacing_name(TimestepSpacing s) { return table_name(&SPACING_TABLE, (int)s); }
const char *variance_type_name(VarianceType v) { return table_name(&VARIANCE_TABLE, (int)v); }
const char *solver_type_name(SolverType s) { return table_name(&SOLVER_TABLE, (int)s); }
const char *final_sigmas_name(FinalSigmas f) { return table_name(&FINAL_SIGMAS_TABLE, (int)f); }

#define LOOKUP(table, type, name, out, err)                     \
    do {                                                        \
        int value_;                                             \
        if (table_lookup(&(table), (name), &value_, (err))) return -1; \
        *(out) = (type)value_;                                  \
        return 0;                                               \
    } while (0)

int sampler_kind_from_name(const char *name, SamplerKind *out, Error *err) {
    /* The solver's longer names, as people write them. */
    if (strcmp(name, "dpm-solver") == 0 || strcmp(name, "dpm-solver++") == 0 || strcmp(name, "dpm") == 0) name = "dpm++";
    LOOKUP(KIND_TABLE, SamplerKind, name, out, err);
}
int sampler_kind_from_class_name(const char *name, SamplerKind *out, Error *err) {
    LOOKUP(CLASS_TABLE, SamplerKind, name, out, err);
}
int timestep_spacing_from_name(const char *name, TimestepSpacing *out, Error *err) {
    LOOKUP(SPACING_TABLE, TimestepSpacing, name, out, err);
}
int variance_type_from_name(const char *name, VarianceType *out, Error *err) {
    LOOKUP(VARIANCE_TABLE, VarianceType, name, out, err);
}
int solver_type_from_name(const char *name, SolverType *out, Error *err) {
    LOOKUP(SOLVER_TABLE, SolverType, name, out, err);
}
int final_sigmas_from_name(const char *name, FinalSigmas *out, Error *err) {
    LOOKUP(FINAL_SIGMAS_TABLE, FinalSigmas, name, out, err);
}

/* ------------------------------------------------------------------------------------------------ */
/* Defaults and validation */

SchedulerConfig scheduler_config_default(SamplerKind kind) {
    SchedulerConfig c = {
        .kind = kind,
        .schedule = schedule_config_default(),
        .prediction_type = PREDICTION_EPSILON,
        .timestep_spacing = kind == SAMPLER_DPM_SOLVER ? TIMESTEP_SPACING_LINSPACE : TIMESTEP_SPACING_LEADING,
        .clip_sample = true,
        .clip_sample_range = 1.0,
        .variance_type = VARIANCE_FIXED_SMALL,
        .set_alpha_to_one = true,
        .solver_order = 2,
        .solver_type = SOLVER_MIDPOINT,
        .lower_order_final = true,
        .euler_at_final = false,
        .final_sigmas_type = FINAL_SIGMAS_ZERO,
    };
    return c;
}

void scheduler_config_free(SchedulerConfig *cfg) {
    free(cfg->owned_trained_betas);
    cfg->owned_trained_betas = NULL;
    cfg->schedule.trained_betas = NULL;
    cfg->schedule.n_trained_betas = 0;
}

int scheduler_config_validate(const SchedulerConfig *cfg, Error *err) {
    if ((unsigned)cfg->kind >= KIND_TABLE.n) return error_set(err, "invalid sampler kind %d", (int)cfg->kind);
    if (cfg->schedule.num_train_timesteps < 1 || cfg->schedule.num_train_timesteps > SCHEDULE_MAX_TIMESTEPS)
        return error_set(err, "num_train_timesteps %zu is outside 1 .. %d", cfg->schedule.num_train_timesteps,
                         SCHEDULE_MAX_TIMESTEPS);
    if (!cfg->schedule.trained_betas && (unsigned)cfg->schedule.beta_schedule > BETA_SCHEDULE_SQUAREDCOS_CAP_V2)
        return error_set(err, "invalid beta_schedule %d (supported: linear, scaled_linear, squaredcos_cap_v2)",
                         (int)cfg->schedule.beta_schedule);
    if ((unsigned)cfg->prediction_type > PREDICTION_V)
        return error_set(err, "invalid prediction_type %d (supported: epsilon, sample, v_prediction)",
                         (int)cfg->prediction_type);
    if ((unsigned)cfg->timestep_spacing >= SPACING_TABLE.n)
        return error_set(err, "invalid timestep_spacing %d (supported: %s)", (int)cfg->timestep_spacing,
                         SPACING_TABLE.supported);
    if (cfg->steps_offset >= cfg->schedule.num_train_timesteps)
        return error_set(err, "steps_offset %zu must be below num_train_timesteps %zu", cfg->steps_offset,
                         cfg->schedule.num_train_timesteps);
    if (cfg->clip_sample && !(cfg->clip_sample_range > 0))
        return error_set(err, "clip_sample_range %g must be positive", cfg->clip_sample_range);
    if ((unsigned)cfg->variance_type >= VARIANCE_TABLE.n)
        return error_set(err, "invalid variance_type %d (supported: %s)", (int)cfg->variance_type,
                         VARIANCE_TABLE.supported);
    if (cfg->kind == SAMPLER_DPM_SOLVER) {
        if (cfg->solver_order < 1 || cfg->solver_order > 3)
            return error_set(err, "solver_order %d is not supported (supported: 1, 2, 3)", cfg->solver_order);
        if ((unsigned)cfg->solver_type >= SOLVER_TABLE.n)
            return error_set(err, "invalid solver_type %d (supported: midpoint, heun)", (int)cfg->solver_type);
        if ((unsigned)cfg->final_sigmas_type >= FINAL_SIGMAS_TABLE.n)
            return error_set(err, "invalid final_sigmas_type %d (supported: zero, sigma_min)",
                             (int)cfg->final_sigmas_type);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* Reading */

typedef struct ParseCtx {
    const char *what;
    Error *err;
} ParseCtx;

static int expect_bool(ParseCtx *p, const cJSON *v, bool *out) {
    if (!cJSON_IsBool(v)) return error_set(p->err, "%s: \"%s\" must be true or false", p->what, v->string);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int expect_number(ParseCtx *p, const cJSON *v, double *out) {
    if (!cJSON_IsNumber(v)) return error_set(p->err, "%s: \"%s\" must be a number", p->what, v->string);
    *out = v->valuedouble;
    return 0;
}

static int expect_size(ParseCtx *p, const cJSON *v, size_t min, size_t *out) {
    double d = 0;
    if (expect_number(p, v, &d)) return -1;
    if (!(d >= (double)min && d <= 1e9 && d == floor(d)))
        return error_set(p->err, "%s: \"%s\" must be an integer >= %zu, not %g", p->what, v->string, min, d);
    *out = (size_t)d;
    return 0;
}

static const char *expect_string(ParseCtx *p, const cJSON *v) {
    if (!cJSON_IsString(v)) {
        error_set(p->err, "%s: \"%s\" must be a string", p->what, v->string);
        return NULL;
    }
    return v->valuestring;
}

/* An option diffuse does not implement: only its default value is accepted. */
static int expect_false(ParseCtx *p, const cJSON *v, const char *why) {
    bool b = false;
    if (expect_bool(p, v, &b)) return -1;
    if (b)
        return error_set(p->err, "%s: \"%s\": true is not supported (%s; supported: false)", p->what, v->string, why);
    return 0;
}

/* A name parsed with one of the *_from_name functions, the error prefixed with the file. */
#define PARSE_NAME(p, v, from_name, out)                                      \
    do {                                                                      \
        const char *s_ = expect_string((p), (v));                             \
        if (!s_) return -1;                                                   \
        if (from_name(s_, (out), (p)->err)) return error_prefix((p)->err, "%s", (p)->what); \
    } while (0)

/* Keys known to each class: a bit per class. */
enum { IN_DDPM = 1 << SAMPLER_DDPM, IN_DDIM = 1 << SAMPLER_DDIM, IN_DPM = 1 << SAMPLER_DPM_SOLVER, IN_ALL = 7 };

static int key_in(const char *key, const char *name, unsigned classes, SamplerKind kind) {
    return strcmp(key, name) == 0 && (classes & (1u << kind));
}

static int parse_trained_betas(ParseCtx *p, const cJSON *v, SchedulerConfig *cfg) {
    if (cJSON_IsNull(v)) return 0;
    if (!cJSON_IsArray(v)) return error_set(p->err, "%s: \"trained_betas\" must be null or a list of numbers", p->what);
    size_t n = (size_t)cJSON_GetArraySize(v);
    double *betas = xmalloc((n ? n : 1) * sizeof(double));
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsNumber(item)) {
            free(betas);
            return error_set(p->err, "%s: \"trained_betas\"[%zu] is not a number", p->what, i);
        }
        betas[i++] = item->valuedouble;
    }
    free(cfg->owned_trained_betas);
    cfg->owned_trained_betas = betas;
    cfg->schedule.trained_betas = betas;
    cfg->schedule.n_trained_betas = n;
    return 0;
}

static int parse_key(ParseCtx *p, const cJSON *v, SchedulerConfig *cfg) {
    const char *k = v->string;
    SamplerKind kind = cfg->kind;
    ScheduleConfig *sc = &cfg->schedule;
    if (key_in(k, "num_train_timesteps", IN_ALL, kind)) return expect_size(p, v, 1, &sc->num_train_timesteps);
    if (key_in(k, "beta_start", IN_ALL, kind)) return expect_number(p, v, &sc->beta_start);
    if (key_in(k, "beta_end", IN_ALL, kind)) return expect_number(p, v, &sc->beta_end);
    if (key_in(k, "beta_schedule", IN_ALL, kind)) {
        PARSE_NAME(p, v, beta_schedule_from_name, &sc->beta_schedule);
        return 0;
    }
    if (key_in(k, "trained_betas", IN_ALL, kind)) return parse_trained_betas(p, v, cfg);
    if (key_in(k, "prediction_type", IN_ALL, kind)) {
        PARSE_NAME(p, v, prediction_type_from_name, &cfg->prediction_type);
        return 0;
    }
    if (key_in(k, "timestep_spacing", IN_ALL, kind)) {
        PARSE_NAME(p, v, timestep_spacing_from_name, &cfg->timestep_spacing);
        return 0;
    }
    if (key_in(k, "steps_offset", IN_ALL, kind)) return expect_size(p, v, 0, &cfg->steps_offset);
    if (key_in(k, "thresholding", IN_ALL, kind)) return expect_false(p, v, "dynamic thresholding is not implemented");
    if (key_in(k, "rescale_betas_zero_snr", IN_ALL, kind))
        return expect_false(p, v, "zero-terminal-SNR rescaling is not implemented");
    /* Used only with thresholding, which must be off: any number is accepted. */
    if (key_in(k, "dynamic_thresholding_ratio", IN_ALL, kind) || key_in(k, "sample_max_value", IN_ALL, kind)) {
        double ignored;
        return expect_number(p, v, &ignored);
    }
    if (key_in(k, "clip_sample", IN_DDPM | IN_DDIM, kind)) return expect_bool(p, v, &cfg->clip_sample);
    if (key_in(k, "clip_sample_range", IN_DDPM | IN_DDIM, kind)) return expect_number(p, v, &cfg->clip_sample_range);
    if (key_in(k, "variance_type", IN_DDPM, kind)) {
        PARSE_NAME(p, v, variance_type_from_name, &cfg->variance_type);
        return 0;
    }
    if (key_in(k, "set_alpha_to_one", IN_DDIM, kind)) return expect_bool(p, v, &cfg->set_alpha_to_one);
    if (kind != SAMPLER_DPM_SOLVER) return 0;

    if (strcmp(k, "variance_type") == 0) {
        /* null: the model predicts no variance; learned / learned_range: drop the variance channels. */
        if (cJSON_IsNull(v)) return 0;
        const char *s = expect_string(p, v);
        if (!s) return -1;
        if (strcmp(s, "learned") && strcmp(s, "learned_range"))
            return error_set(p->err, "%s: unknown variance_type '%s' for DPMSolverMultistepScheduler (supported: null, "
                             "learned, learned_range)", p->what, s);
        cfg->variance_type = VARIANCE_LEARNED_RANGE;
        return 0;
    }
    if (strcmp(k, "solver_order") == 0) {
        size_t order;
        if (expect_size(p, v, 1, &order)) return -1;
        if (order > 3)
            return error_set(p->err, "%s: solver_order %zu is not supported (supported: 1, 2, 3)", p->what, order);
        cfg->solver_order = (int)order;
        return 0;
    }
    if (strcmp(k, "algorithm_type") == 0) {
        const char *s = expect_string(p, v);
        if (!s) return -1;
        if (strcmp(s, "dpmsolver++"))
            return error_set(p->err, "%s: algorithm_type '%s' is not supported (supported: dpmsolver++)", p->what, s);
        return 0;
    }
    if (strcmp(k, "solver_type") == 0) {
        PARSE_NAME(p, v, solver_type_from_name, &cfg->solver_type);
        return 0;
    }
    if (strcmp(k, "final_sigmas_type") == 0) {
        PARSE_NAME(p, v, final_sigmas_from_name, &cfg->final_sigmas_type);
        return 0;
    }
    if (strcmp(k, "lower_order_final") == 0) return expect_bool(p, v, &cfg->lower_order_final);
    if (strcmp(k, "euler_at_final") == 0) return expect_bool(p, v, &cfg->euler_at_final);
    static const char *const unsupported_flags[] = {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                                                    "use_lu_lambdas", "use_flow_sigmas", "use_dynamic_shifting"};
    for (size_t i = 0; i < sizeof unsupported_flags / sizeof unsupported_flags[0]; i++)
        if (strcmp(k, unsupported_flags[i]) == 0)
            return expect_false(p, v, "only the default sigma spacing is implemented");
    if (strcmp(k, "lambda_min_clipped") == 0) {
        double d = 0;
        if (expect_number(p, v, &d)) return -1;
        if (!(isinf(d) && d < 0))
            return error_set(p->err, "%s: lambda_min_clipped %g is not supported (supported: -Infinity)", p->what, d);
        return 0;
    }
    /* Only meaningful with the flow or dynamic-shifting options, which must be off. */
    if (strcmp(k, "flow_shift") == 0) {
        double ignored;
        return expect_number(p, v, &ignored);
    }
    return 0;
}

/* Python's json writes ±Infinity and NaN, which are not JSON. Outside strings, -Infinity and Infinity become
 * numbers that strtod reads as infinite (padded to the same length); NaN is left to fail the parse. */
static char *replace_infinities(const char *json) {
    char *s = xstrdup(json);
    int in_string = 0;
    for (char *c = s; *c; c++) {
        if (in_string) {
            if (*c == '\\' && c[1]) c++;
            else if (*c == '"') in_string = 0;
            continue;
        }
        if (*c == '"') {
            in_string = 1;
        } else if (strncmp(c, "Infinity", 8) == 0) {
            memcpy(c, "1e99999 ", 8);
            c += 7;
        }
    }
    return s;
}

/* Whether from_config into `target` keeps a file's variance_type (see scheduler_config_parse_as): DDIM has
 * none; DPM-Solver reads DDPM's fixed variances as "no variance channels" (its default, null); DDPM reads
 * DPM-Solver's null as its own default. */
static bool variance_type_carries(const cJSON *v, SamplerKind file_kind, SamplerKind target) {
    if (file_kind == target) return true;
    if (target == SAMPLER_DDIM) return false;
    if (cJSON_IsNull(v)) return false;
    if (target == SAMPLER_DPM_SOLVER && cJSON_IsString(v))
        return strcmp(v->valuestring, "learned") == 0 || strcmp(v->valuestring, "learned_range") == 0;
    return true;
}

/* as_kind NULL: the file's own class. */
static int parse_config(SchedulerConfig *cfg, const char *json, const SamplerKind *as_kind, const char *what,
                        Error *err) {
    if (json_check_values(json, strlen(json), JSON_MAX_VALUES, what, err)) return -1;
    char *text = replace_infinities(json);
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return error_set(err, "%s: not valid JSON (diffusers' scheduler_config.json expected)", what);
    int rc = 0;
    SamplerKind kind;
    const cJSON *class_name = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "_class_name") : NULL;
    if (!cJSON_IsObject(root)) {
        rc = error_set(err, "%s: the top level must be a JSON object", what);
    } else if (!cJSON_IsString(class_name)) {
        rc = error_set(err, "%s: no \"_class_name\" (supported: %s)", what, CLASS_TABLE.supported);
    } else if (sampler_kind_from_class_name(class_name->valuestring, &kind, err)) {
        rc = error_prefix(err, "%s", what);
    } else {
        SamplerKind target = as_kind ? *as_kind : kind;
        *cfg = scheduler_config_default(target);
        ParseCtx p = {.what = what, .err = err};
        const cJSON *item;
        cJSON_ArrayForEach(item, root) {
            if (item->string[0] == '_') continue; /* _class_name, _diffusers_version, _name_or_path */
            if (strcmp(item->string, "variance_type") == 0 && !variance_type_carries(item, kind, target)) continue;
            if ((rc = parse_key(&p, item, cfg))) break;
        }
        if (!rc && cfg->schedule.trained_betas && cfg->schedule.n_trained_betas != cfg->schedule.num_train_timesteps)
            rc = error_set(err, "%s: trained_betas has %zu values but num_train_timesteps is %zu", what,
                           cfg->schedule.n_trained_betas, cfg->schedule.num_train_timesteps);
        if (!rc && scheduler_config_validate(cfg, err)) rc = error_prefix(err, "%s", what);
        if (rc) scheduler_config_free(cfg);
    }
    cJSON_Delete(root);
    return rc;
}

int scheduler_config_parse(SchedulerConfig *cfg, const char *json, const char *what, Error *err) {
    return parse_config(cfg, json, NULL, what, err);
}

int scheduler_config_parse_as(SchedulerConfig *cfg, const char *json, SamplerKind kind, const char *what,
                              Error *err) {
    return parse_config(cfg, json, &kind, what, err);
}

static int read_config(SchedulerConfig *cfg, const char *path, const SamplerKind *as_kind, Error *err) {
    char *json = fs_read_text(path, (size_t)64 << 20, NULL, err);
    if (!json) return error_prefix(err, "scheduler config");
    int rc = parse_config(cfg, json, as_kind, path, err);
    free(json);
    return rc;
}

int scheduler_config_read(SchedulerConfig *cfg, const char *path, Error *err) {
    return read_config(cfg, path, NULL, err);
}

int scheduler_config_read_as(SchedulerConfig *cfg, const char *path, SamplerKind kind, Error *err) {
    return read_config(cfg, path, &kind, err);
}

/* ------------------------------------------------------------------------------------------------ */
/* Writing */

typedef struct Text {
    char *s;
    size_t len, cap;
} Text;

static void text_add(Text *t, const char *s) {
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1);
        t->s = xrealloc(t->s, t->cap);
    }
    memcpy(t->s + t->len, s, n + 1);
    t->len += n;
}

/* Python's repr of a float: the shortest digits that read back to x, in fixed notation with ".0" for
 * integral values when the exponent is in [-4, 16), else "d.ddde-XX". */
static void python_float_repr(double x, char *out, size_t cap) {
    if (isinf(x)) {
        snprintf(out, cap, "%s", x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (isnan(x)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (x == 0) {
        snprintf(out, cap, "%s", signbit(x) ? "-0.0" : "0.0");
        return;
    }
    char buf[64];
    int digits;
    for (digits = 1; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*e", digits - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    /* buf = [-]d[.ddd]e±XX */
    const char *p = buf;
    int negative = *p == '-';
    if (negative) p++;
    char mant[32];
    size_t nm = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') mant[nm++] = *p;
    mant[nm] = 0;
    int exp10 = atoi(p + 1);
    char res[64];
    size_t r = 0;
    if (negative) res[r++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            res[r++] = '0';
            res[r++] = '.';
            for (int z = 0; z < -exp10 - 1; z++) res[r++] = '0';
            for (size_t i = 0; i < nm; i++) res[r++] = mant[i];
        } else {
            size_t int_digits = (size_t)exp10 + 1;
            for (size_t i = 0; i < int_digits; i++) res[r++] = i < nm ? mant[i] : '0';
            res[r++] = '.';
            if (nm > int_digits)
                for (size_t i = int_digits; i < nm; i++) res[r++] = mant[i];
            else
                res[r++] = '0';
        }
        res[r] = 0;
    } else {
        res[r++] = mant[0];
        if (nm > 1) {
            res[r++] = '.';
            for (size_t i = 1; i < nm; i++) res[r++] = mant[i];
        }
        res[r] = 0;
        snprintf(res + r, sizeof res - r, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    snprintf(out, cap, "%s", res);
}

typedef enum FieldKind { F_STRING, F_BOOL, F_INT, F_FLOAT, F_NULL, F_BETAS } FieldKind;
typedef struct Field {
    const char *key;
    FieldKind kind;
    const char *s;
    double d;
} Field;

static void add_field(Text *t, const Field *f, int last, const SchedulerConfig *cfg) {
    char buf[128];
    text_add(t, "  \"");
    text_add(t, f->key);
    text_add(t, "\": ");
    switch (f->kind) {
    case F_STRING:
        text_add(t, "\"");
        text_add(t, f->s);
        text_add(t, "\"");
        break;
    case F_BOOL:
        text_add(t, f->d != 0 ? "true" : "false");
        break;
    case F_INT:
        snprintf(buf, sizeof buf, "%.0f", f->d);
        text_add(t, buf);
        break;
    case F_FLOAT:
        python_float_repr(f->d, buf, sizeof buf);
        text_add(t, buf);
        break;
    case F_NULL:
        text_add(t, "null");
        break;
    case F_BETAS:
        if (!cfg->schedule.trained_betas) {
            text_add(t, "null");
        } else if (cfg->schedule.n_trained_betas == 0) {
            text_add(t, "[]");
        } else {
            text_add(t, "[\n");
            for (size_t i = 0; i < cfg->schedule.n_trained_betas; i++) {
                python_float_repr(cfg->schedule.trained_betas[i], buf, sizeof buf);
                text_add(t, "    ");
                text_add(t, buf);
                text_add(t, i + 1 < cfg->schedule.n_trained_betas ? ",\n" : "\n");
            }
            text_add(t, "  ]");
        }
        break;
    }
    text_add(t, last ? "\n" : ",\n");
}

char *scheduler_config_to_json(const SchedulerConfig *cfg) {
    Error err;
    CHECK(scheduler_config_validate(cfg, &err) == 0, "%s", err.message);
    const ScheduleConfig *sc = &cfg->schedule;
    SamplerKind kind = cfg->kind;
    /* Every field diffusers' class writes, in its sorted order; options diffuse does not implement carry
     * diffusers' defaults. */
    Field f[40];
    size_t n = 0;
#define FIELD(key_, kind_, s_, d_) (f[n++] = (Field){.key = (key_), .kind = (kind_), .s = (s_), .d = (d_)})
    FIELD("_class_name", F_STRING, sampler_kind_class_name(kind), 0);
    FIELD("_diffusers_version", F_STRING, SCHEDULER_CONFIG_DIFFUSERS_VERSION, 0);
    if (kind == SAMPLER_DPM_SOLVER) FIELD("algorithm_type", F_STRING, "dpmsolver++", 0);
    FIELD("beta_end", F_FLOAT, NULL, sc->beta_end);
    FIELD("beta_schedule", F_STRING, beta_schedule_name(sc->beta_schedule), 0);
    FIELD("beta_start", F_FLOAT, NULL, sc->beta_start);
    if (kind != SAMPLER_DPM_SOLVER) {
        FIELD("clip_sample", F_BOOL, NULL, cfg->clip_sample);
        FIELD("clip_sample_range", F_FLOAT, NULL, cfg->clip_sample_range);
    }
    FIELD("dynamic_thresholding_ratio", F_FLOAT, NULL, 0.995);
    if (kind == SAMPLER_DPM_SOLVER) {
        FIELD("euler_at_final", F_BOOL, NULL, cfg->euler_at_final);
        FIELD("final_sigmas_type", F_STRING, final_sigmas_name(cfg->final_sigmas_type), 0);
        FIELD("flow_shift", F_FLOAT, NULL, 1.0);
        FIELD("lambda_min_clipped", F_FLOAT, NULL, -INFINITY);
        FIELD("lower_order_final", F_BOOL, NULL, cfg->lower_order_final);
    }
    FIELD("num_train_timesteps", F_INT, NULL, (double)sc->num_train_timesteps);
    FIELD("prediction_type", F_STRING, prediction_type_name(cfg->prediction_type), 0);
    FIELD("rescale_betas_zero_snr", F_BOOL, NULL, 0);
    FIELD("sample_max_value", F_FLOAT, NULL, 1.0);
    if (kind == SAMPLER_DDIM) FIELD("set_alpha_to_one", F_BOOL, NULL, cfg->set_alpha_to_one);
    if (kind == SAMPLER_DPM_SOLVER) {
        FIELD("solver_order", F_INT, NULL, cfg->solver_order);
        FIELD("solver_type", F_STRING, solver_type_name(cfg->solver_type), 0);
    }
    FIELD("steps_offset", F_INT, NULL, (double)cfg->steps_offset);
    FIELD("thresholding", F_BOOL, NULL, 0);
    if (kind == SAMPLER_DPM_SOLVER) FIELD("time_shift_type", F_STRING, "exponential", 0);
    FIELD("timestep_spacing", F_STRING, timestep_spacing_name(cfg->timestep_spacing), 0);
    FIELD("trained_betas", F_BETAS, NULL, 0);
    if (kind == SAMPLER_DPM_SOLVER) {
        FIELD("use_beta_sigmas", F_BOOL, NULL, 0);
        FIELD("use_dynamic_shifting", F_BOOL, NULL, 0);
        FIELD("use_exponential_sigmas", F_BOOL, NULL, 0);
        FIELD("use_flow_sigmas", F_BOOL, NULL, 0);
        FIELD("use_karras_sigmas", F_BOOL, NULL, 0);
        FIELD("use_lu_lambdas", F_BOOL, NULL, 0);
        if (cfg->variance_type == VARIANCE_LEARNED_RANGE)
            FIELD("variance_type", F_STRING, "learned_range", 0);
        else
            FIELD("variance_type", F_NULL, NULL, 0);
    }
    if (kind == SAMPLER_DDPM) FIELD("variance_type", F_STRING, variance_type_name(cfg->variance_type), 0);
#undef FIELD
    Text t = {0};
    text_add(&t, "{\n");
    for (size_t i = 0; i < n; i++) add_field(&t, &f[i], i + 1 == n, cfg);
    text_add(&t, "}\n");
    return t.s;
}

int scheduler_config_write(const SchedulerConfig *cfg, const char *path, Error *err) {
    if (scheduler_config_validate(cfg, err)) return error_prefix(err, "%s", path);
    char *json = scheduler_config_to_json(cfg);
    int rc = atomic_file_write_all(path, json, strlen(json), err);
    free(json);
    return rc;
}
