/* β schedules and their derived tables (see schedule.h for the formulas and the precision rule). */
#include "diffusion/schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static const char *const BETA_SCHEDULE_NAMES[] = {
    [BETA_SCHEDULE_LINEAR] = "linear",
    [BETA_SCHEDULE_SCALED_LINEAR] = "scaled_linear",
    [BETA_SCHEDULE_SQUAREDCOS_CAP_V2] = "squaredcos_cap_v2",
};
#define N_BETA_SCHEDULES (sizeof BETA_SCHEDULE_NAMES / sizeof BETA_SCHEDULE_NAMES[0])

ScheduleConfig schedule_config_default(void) {
    return (ScheduleConfig){
        .num_train_timesteps = 1000,
        .beta_start = 1e-4,
        .beta_end = 0.02,
        .beta_schedule = BETA_SCHEDULE_LINEAR,
        .precision = SCHEDULE_PRECISION_DIFFUSERS,
    };
}

const char *beta_schedule_name(BetaSchedule s) {
    CHECK((size_t)s < N_BETA_SCHEDULES, "invalid BetaSchedule %d", (int)s);
    return BETA_SCHEDULE_NAMES[s];
}

int beta_schedule_from_name(const char *name, BetaSchedule *out, Error *err) {
    for (size_t i = 0; i < N_BETA_SCHEDULES; i++) {
        if (strcmp(name, BETA_SCHEDULE_NAMES[i]) == 0) {
            *out = (BetaSchedule)i;
            return 0;
        }
    }
    return error_set(err, "unknown beta_schedule '%s' (supported: linear, scaled_linear, squaredcos_cap_v2)", name);
}

double schedule_round(const Schedule *s, double x) {
    return s->precision == SCHEDULE_PRECISION_DIFFUSERS ? (double)(float)x : x;
}

/* ------------------------------------------------------------------------------------------------ */

/* Nichol & Dhariwal's ᾱ(t) for t in [0, 1], evaluated in the same operation order as diffusers'
 * betas_for_alpha_bar so the double results agree bit for bit. */
static double cosine_alpha_bar(double t) {
    double c = cos((t + 0.008) / 1.008 * 3.141592653589793 / 2);
    return c * c;
}

/* The point i of T evenly spaced from a to b, as torch.linspace defines it (a alone when T = 1). */
static double linspace_at(double a, double b, size_t i, size_t n) {
    return n == 1 ? a : a + (b - a) * (double)i / (double)(n - 1);
}

static void compute_betas(double *betas, const ScheduleConfig *cfg, const Schedule *s) {
    size_t T = cfg->num_train_timesteps;
    if (cfg->trained_betas) {
        for (size_t t = 0; t < T; t++) betas[t] = schedule_round(s, cfg->trained_betas[t]);
        return;
    }
    for (size_t t = 0; t < T; t++) {
        switch (cfg->beta_schedule) {
        case BETA_SCHEDULE_LINEAR:
            betas[t] = schedule_round(s, linspace_at(cfg->beta_start, cfg->beta_end, t, T));
            break;
        case BETA_SCHEDULE_SCALED_LINEAR: {
            /* diffusers squares the float32 linspace of square roots in float32. */
            double r = schedule_round(s, linspace_at(sqrt(cfg->beta_start), sqrt(cfg->beta_end), t, T));
            betas[t] = schedule_round(s, r * r);
            break;
        }
        case BETA_SCHEDULE_SQUAREDCOS_CAP_V2: {
            double b = 1 - cosine_alpha_bar((double)(t + 1) / (double)T) / cosine_alpha_bar((double)t / (double)T);
            betas[t] = schedule_round(s, fmin(b, 0.999));
            break;
        }
        default:
            CHECK(0, "invalid BetaSchedule %d", (int)cfg->beta_schedule);
        }
    }
}

int schedule_init(Schedule *s, const ScheduleConfig *cfg, Error *err) {
    memset(s, 0, sizeof *s);
    size_t T = cfg->num_train_timesteps;
    if (T == 0 || T > SCHEDULE_MAX_TIMESTEPS)
        return error_set(err, "num_train_timesteps %zu is outside 1 .. %d", T, SCHEDULE_MAX_TIMESTEPS);
    if (cfg->trained_betas && cfg->n_trained_betas != T)
        return error_set(err, "trained_betas has %zu values but num_train_timesteps is %zu", cfg->n_trained_betas, T);
    if ((unsigned)cfg->precision > SCHEDULE_PRECISION_DOUBLE)
        return error_set(err, "invalid schedule precision %d", (int)cfg->precision);
    if (!cfg->trained_betas) {
        if ((unsigned)cfg->beta_schedule >= N_BETA_SCHEDULES)
            return error_set(err, "invalid beta_schedule %d (supported: linear, scaled_linear, squaredcos_cap_v2)",
                             (int)cfg->beta_schedule);
        if (cfg->beta_schedule != BETA_SCHEDULE_SQUAREDCOS_CAP_V2 &&
            !(cfg->beta_start > 0 && cfg->beta_end > 0 && cfg->beta_start < 1 && cfg->beta_end < 1))
            return error_set(err, "beta_start %g and beta_end %g must lie in (0, 1)", cfg->beta_start, cfg->beta_end);
    }
    s->n_timesteps = T;
    s->precision = cfg->precision;
    double *block = xcalloc(10 * T, sizeof(double));
    s->betas = block;
    s->alphas = block + T;
    s->alphas_cumprod = block + 2 * T;
    s->alphas_cumprod_prev = block + 3 * T;
    s->sqrt_alphas_cumprod = block + 4 * T;
    s->sqrt_one_minus_alphas_cumprod = block + 5 * T;
    s->posterior_variance = block + 6 * T;
    s->posterior_log_variance_clipped = block + 7 * T;
    s->posterior_mean_coef1 = block + 8 * T;
    s->posterior_mean_coef2 = block + 9 * T;

    compute_betas(s->betas, cfg, s);
    for (size_t t = 0; t < T; t++) {
        if (!(s->betas[t] > 0 && s->betas[t] < 1)) {
            int rc = error_set(err, "beta_%zu = %g is outside (0, 1): check beta_start, beta_end or trained_betas", t,
                               s->betas[t]);
            schedule_free(s);
            return rc;
        }
    }
    /* torch.cumprod on the CPU accumulates float32 inputs in double and rounds each output. */
    double running = 1;
    for (size_t t = 0; t < T; t++) {
        s->alphas[t] = schedule_round(s, 1 - s->betas[t]);
        running *= s->alphas[t];
        s->alphas_cumprod[t] = schedule_round(s, running);
    }
    for (size_t t = 0; t < T; t++) {
        double ab = s->alphas_cumprod[t];
        double ab_prev = t > 0 ? s->alphas_cumprod[t - 1] : 1.0;
        s->alphas_cumprod_prev[t] = ab_prev;
        s->sqrt_alphas_cumprod[t] = sqrt(ab);
        s->sqrt_one_minus_alphas_cumprod[t] = sqrt(1 - ab);
        s->posterior_variance[t] = s->betas[t] * (1 - ab_prev) / (1 - ab);
        s->posterior_mean_coef1[t] = s->betas[t] * sqrt(ab_prev) / (1 - ab);
        s->posterior_mean_coef2[t] = (1 - ab_prev) * sqrt(s->alphas[t]) / (1 - ab);
    }
    /* β̃_0 = 0 has no logarithm; improved-diffusion (and the DDPM code) use β̃_1 there. With T = 1 there is
     * no β̃_1, and β_0 stands in. */
    for (size_t t = 0; t < T; t++) {
        double v = t > 0 ? s->posterior_variance[t] : (T > 1 ? s->posterior_variance[1] : s->betas[0]);
        s->posterior_log_variance_clipped[t] = log(v);
    }
    return 0;
}

void schedule_free(Schedule *s) {
    free(s->betas);
    memset(s, 0, sizeof *s);
}
