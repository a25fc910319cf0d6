/* Loss and bits/dim of a model on a data set (see evaluate.h). */
#include "pipeline/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "data/loader.h"
#include "data/transform.h"
#include "diffusion/likelihood.h"
#include "diffusion/objective.h"
#include "pipeline/generate.h"

/* The model callback with a count of forward passes for the progress report. */
typedef struct CountingModel {
    UNetDenoiser den;
    const EvaluateOptions *opt;
    EvaluateProgress progress;
} CountingModel;

static int counting_fn(void *ctx, const float *x_t, const int64_t *t, size_t n, float *out, Error *err) {
    CountingModel *m = ctx;
    int rc = unet_denoiser_fn(&m->den, x_t, t, n, out, err);
    m->progress.model_calls_done++;
    if (m->opt->progress) m->opt->progress(m->opt->progress_ctx, &m->progress);
    return rc;
}

static VarianceType bound_variance(VarianceType v) {
    switch (v) {
    case VARIANCE_FIXED_SMALL:
    case VARIANCE_FIXED_SMALL_LOG: return VARIANCE_FIXED_SMALL;
    case VARIANCE_FIXED_LARGE:
    case VARIANCE_FIXED_LARGE_LOG: return VARIANCE_FIXED_LARGE;
    case VARIANCE_LEARNED_RANGE: return VARIANCE_LEARNED_RANGE;
    }
    CHECK(0, "invalid VarianceType %d", (int)v);
    return v;
}

/* Mean and standard error of the mean of n values. */
static void mean_std_error(const double *v, size_t n, double *mean, double *std_error) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m += v[i];
    m /= (double)n;
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (v[i] - m) * (v[i] - m);
    *mean = m;
    *std_error = n > 1 ? sqrt(ss / (double)(n - 1) / (double)n) : 0;
}

int evaluate_model(EvaluateResult *r, UNet *net, const SchedulerConfig *scheduler, const Dataset *ds,
                   const EvaluateOptions *opt, Error *err) {
    *r = (EvaluateResult){0};
    const UNetConfig *cfg = &net->layout.config;
    size_t h = ds->height, w = ds->width, c = ds->channels, D = h * w * c;
    if (c != (size_t)cfg->in_channels)
        return error_set(err, "%s has %zu channels but the model takes %d", ds->source, c, cfg->in_channels);
    bool learned = scheduler->variance_type == VARIANCE_LEARNED_RANGE;
    if ((size_t)cfg->out_channels != (learned ? 2 : 1) * c)
        return error_set(err, "the model predicts %d channels for %zu input channels%s", cfg->out_channels, c,
                         learned ? " but the scheduler's learned_range variance needs twice as many" : "");
    if (cfg->num_class_embeds > 0 && !ds->labels)
        return error_set(err, "the model is class-conditional but %s has no labels", ds->source);
    if (scheduler->schedule.num_train_timesteps > 0 && opt->n_timesteps > scheduler->schedule.num_train_timesteps)
        return error_set(err, "%zu timesteps per image exceed the schedule's %zu", opt->n_timesteps,
                         scheduler->schedule.num_train_timesteps);
    size_t n = opt->n_images && opt->n_images < ds->count ? opt->n_images : ds->count;
    size_t batch = opt->batch_size ? opt->batch_size : 16;
    if (batch > n) batch = n;
    Schedule s;
    if (schedule_init(&s, &scheduler->schedule, err)) return -1;
    size_t T = s.n_timesteps;

    size_t *order = xmalloc(ds->count * sizeof(size_t));
    loader_permutation(order, ds->count, opt->seed, 0, false);
    float *x0 = alloc_floats(batch * D), *noise = alloc_floats(batch * D), *x_t = alloc_floats(batch * D);
    float *pred = alloc_floats(batch * D * (learned ? 2 : 1)), *target = alloc_floats(batch * D);
    int64_t *t = xmalloc(batch * sizeof(int64_t));
    int *labels = cfg->num_class_embeds > 0 ? xmalloc(batch * sizeof(int)) : NULL;
    double *loss = xmalloc(n * sizeof(double)), *bpd = xmalloc(n * sizeof(double));
    double prior = 0, decoder = 0, mc_var = 0;
    CountingModel model = {.opt = opt};
    unet_denoiser_init(&model.den, net, h, w);
    model.den.class_labels = labels;
    size_t n_batches = (n + batch - 1) / batch;
    model.progress = (EvaluateProgress){
        .n_model_calls = n_batches * (1 + (opt->skip_bpd ? 0 : opt->n_timesteps ? opt->n_timesteps : T)),
        .n_images = n,
    };
    LikelihoodOptions lopt = {
        .prediction_type = scheduler->prediction_type,
        .variance_type = bound_variance(scheduler->variance_type),
        .n_channels = c,
        .clip_denoised = scheduler->clip_sample,
        .n_timesteps_sampled = opt->n_timesteps,
        .seed = opt->seed,
    };
    int rc = 0;
    for (size_t first = 0; first < n && !rc; first += batch) {
        size_t nb = n - first < batch ? n - first : batch;
        for (size_t i = 0; i < nb; i++) {
            size_t index = order[first + i];
            transform_image_to_float(x0 + i * D, dataset_image(ds, index), h, w, c, 0);
            if (labels) {
                int label = ds->labels[index];
                if (label < 0 || label >= cfg->num_class_embeds) {
                    rc = error_set(err, "%s: image %zu has label %d but the model has classes 0 .. %d", ds->source,
                                   index, label, cfg->num_class_embeds - 1);
                    break;
                }
                labels[i] = label;
            }
        }
        if (rc) break;
        /* The loss: one (t, ε) draw per image. */
        objective_sample_timesteps(t, nb, &s, opt->seed, 0, first);
        objective_sample_noise(noise, nb, D, opt->seed, 0, first);
        objective_q_sample(x_t, x0, noise, t, nb, D, &s);
        objective_target(target, scheduler->prediction_type, x0, noise, t, nb, D, &s);
        if ((rc = counting_fn(&model, x_t, t, nb, pred, err))) break;
        for (size_t i = 0; i < nb; i++) {
            if (!learned) {
                loss[first + i] = objective_loss_forward(pred + i * D, target + i * D, NULL, 1, D);
                continue;
            }
            /* Only the C mean channels of each position enter L_simple. */
            double sum = 0;
            for (size_t p = 0; p < h * w; p++)
                for (size_t k = 0; k < c; k++) {
                    double d = (double)pred[(i * h * w + p) * 2 * c + k] - target[i * D + p * c + k];
                    sum += d * d;
                }
            loss[first + i] = sum / (double)D;
        }
        if (!opt->skip_bpd) {
            LikelihoodResult lr;
            likelihood_result_init(&lr, nb);
            lopt.first_sample = first;
            rc = likelihood_bpd(&lr, counting_fn, &model, &s, x0, nb, D, &lopt, err);
            for (size_t i = 0; !rc && i < nb; i++) {
                bpd[first + i] = lr.total[i];
                prior += lr.prior[i];
                decoder += lr.decoder[i];
                mc_var += lr.std_error[i] * lr.std_error[i];
            }
            likelihood_result_free(&lr);
        }
        model.progress.images_done = first + nb;
    }
    if (!rc) {
        r->n_images = n;
        mean_std_error(loss, n, &r->loss_mean, &r->loss_std_error);
        if (!opt->skip_bpd) {
            mean_std_error(bpd, n, &r->bpd_mean, &r->bpd_std_error);
            r->bpd_mc_std_error = sqrt(mc_var) / (double)n;
            r->prior_bpd_mean = prior / (double)n;
            r->decoder_bpd_mean = decoder / (double)n;
        }
    }
    unet_denoiser_free(&model.den);
    schedule_free(&s);
    free(order);
    alloc_free(x0);
    alloc_free(noise);
    alloc_free(x_t);
    alloc_free(pred);
    alloc_free(target);
    free(t);
    free(labels);
    free(loss);
    free(bpd);
    return rc;
}
