/* `diffuse train`: trains a UNet2DModel on a data set into a run folder (train/trainer.h). Options and
 * their defaults follow diffusers' train_unconditional.py where it has one; the resolved configuration is
 * printed at the start and stored in the run folder. Under `mpirun -np N` every rank runs this command. */
#include <math.h>
#include <stdio.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "train/trainer.h"

/* Option values as the parser writes them (ints and doubles), turned into a TrainConfig after parsing. */
typedef struct TrainArgs {
    const char *resize, *optimizer, *lr_schedule, *beta_schedule, *prediction, *sample_sampler, *precision;
    int resolution, batch, grad_accum, steps, epochs, stop_at, warmup, train_timesteps, seed, threads;
    int sample_every, sample_n, sample_steps, checkpoint_every, keep, log_every, max_bad_steps;
    double lr, momentum, weight_decay, beta1, beta2, adam_eps, grad_clip;
    double ema_max_decay, ema_inv_gamma, ema_power, beta_start, beta_end;
} TrainArgs;

static int to_config(const TrainArgs *a, TrainConfig *cfg, Error *err) {
    if (a->resize && resize_filter_from_name(a->resize, &cfg->resize))
        return error_set(err, "unknown --resize '%s' (supported: bilinear, area)", a->resize);
    if (optimizer_kind_from_name(a->optimizer, &cfg->optimizer.kind, err)) return -1;
    if (lr_schedule_from_name(a->lr_schedule, &cfg->lr_schedule.kind, err)) return -1;
    if (beta_schedule_from_name(a->beta_schedule, &cfg->schedule.beta_schedule, err)) return -1;
    if (prediction_type_from_name(a->prediction, &cfg->prediction, err)) return -1;
    if (sampler_kind_from_name(a->sample_sampler, &cfg->sample_sampler, err)) return -1;
    if (ops_precision_from_name(a->precision, &cfg->precision, err)) return -1;
    const struct {
        const char *name;
        int value;
    } non_negative[] = {{"resolution", a->resolution}, {"batch", a->batch}, {"grad-accum", a->grad_accum},
                        {"steps", a->steps}, {"epochs", a->epochs}, {"stop-at", a->stop_at}, {"warmup", a->warmup},
                        {"train-timesteps", a->train_timesteps}, {"seed", a->seed}, {"threads", a->threads},
                        {"sample-every", a->sample_every}, {"sample-n", a->sample_n},
                        {"sample-steps", a->sample_steps}, {"checkpoint-every", a->checkpoint_every},
                        {"keep", a->keep}, {"log-every", a->log_every}, {"max-bad-steps", a->max_bad_steps}};
    for (size_t i = 0; i < sizeof non_negative / sizeof non_negative[0]; i++)
        if (non_negative[i].value < 0) return error_set(err, "--%s must not be negative", non_negative[i].name);
    cfg->resolution = (size_t)a->resolution;
    cfg->batch = (size_t)a->batch;
    cfg->grad_accum = (size_t)a->grad_accum;
    cfg->steps = a->steps;
    cfg->epochs = a->steps ? 0 : a->epochs;
    cfg->stop_at = a->stop_at;
    bool sgd = cfg->optimizer.kind == OPTIMIZER_SGD;
    cfg->lr = isnan(a->lr) ? (sgd ? 1e-2 : 1e-4) : a->lr;
    double weight_decay = isnan(a->weight_decay) ? (sgd ? 0.0 : 1e-6) : a->weight_decay;
    cfg->optimizer.sgd.momentum = (float)a->momentum;
    cfg->optimizer.sgd.weight_decay = (float)weight_decay;
    cfg->optimizer.adamw = (AdamWConfig){.beta1 = (float)a->beta1, .beta2 = (float)a->beta2, .eps = (float)a->adam_eps,
                                         .weight_decay = (float)weight_decay};
    cfg->lr_schedule.warmup_steps = a->warmup;
    cfg->grad_clip = a->grad_clip;
    cfg->ema_config.max_decay = a->ema_max_decay;
    cfg->ema_config.inv_gamma = a->ema_inv_gamma;
    cfg->ema_config.power = a->ema_power;
    cfg->schedule.num_train_timesteps = (size_t)a->train_timesteps;
    cfg->schedule.beta_start = a->beta_start;
    cfg->schedule.beta_end = a->beta_end;
    cfg->seed = (uint64_t)a->seed;
    cfg->threads = a->threads;
    cfg->sample_every = a->sample_every;
    cfg->sample_n = (size_t)a->sample_n;
    cfg->sample_steps = (size_t)a->sample_steps;
    cfg->checkpoint_every = a->checkpoint_every;
    cfg->keep = a->keep;
    cfg->log_every = a->log_every;
    cfg->max_bad_steps = a->max_bad_steps;
    return 0;
}

int cmd_train(int argc, char **argv, Error *err) {
    TrainConfig cfg = train_config_defaults();
    TrainArgs a = {.resize = "bilinear", .optimizer = "adamw", .lr_schedule = "cosine", .beta_schedule = "linear",
                   .prediction = "epsilon", .sample_sampler = "ddpm", .precision = "fp32", .batch = 16, .grad_accum = 1,
                   .epochs = 100, .warmup = 500, .train_timesteps = 1000, .sample_every = 1000, .sample_n = 16,
                   .sample_steps = 100, .checkpoint_every = 500, .keep = 3, .log_every = 50, .max_bad_steps = 5,
                   .lr = NAN, .weight_decay = NAN, .beta1 = 0.95, .beta2 = 0.999, .adam_eps = 1e-8, .grad_clip = 1.0,
                   .ema_max_decay = 0.9999, .ema_inv_gamma = 1.0, .ema_power = 0.75, .beta_start = 1e-4,
                   .beta_end = 0.02};
    const Option options[] = {
        {"data", OPTION_STRING, &cfg.data, "SOURCE", "images: a folder (recursive PNG/JPEG), IDX or CIFAR files, a "
                                                     "file from diffuse prepare, or fashion-mnist"},
        {"model", OPTION_STRING, &cfg.model, "MODEL", "preset (default, ddpm-cifar10, fashion-mnist), config.json, or a "
                                                      "model folder whose weights start the run"},
        {"out", OPTION_STRING, &cfg.out, "FOLDER", "the run folder (a diffusers pipeline folder when done)"},
        {"resume", OPTION_FLAG, &cfg.resume, NULL, "continue from the latest checkpoint in --out"},
        {"resolution", OPTION_INT, &a.resolution, "N", "train at NxN (0: the model's sample_size)"},
        {"resize", OPTION_STRING, &a.resize, "FILTER", "bilinear or area, to bring images to the resolution"},
        {"random-flip", OPTION_FLAG, &cfg.random_flip, NULL, "mirror each image with probability 1/2"},
        {"strict", OPTION_FLAG, &cfg.strict, NULL, "an unreadable image is an error instead of being skipped"},
        {"drop-last", OPTION_FLAG, &cfg.drop_last, NULL, "with several ranks, drop the remainder of each epoch"},
        {"batch", OPTION_INT, &a.batch, "N", "images per step and rank"},
        {"grad-accum", OPTION_INT, &a.grad_accum, "N", "micro-batches per optimizer step"},
        {"steps", OPTION_INT, &a.steps, "N", "optimizer steps in all (overrides --epochs)"},
        {"epochs", OPTION_INT, &a.epochs, "N", "passes over the data"},
        {"stop-at", OPTION_INT, &a.stop_at, "STEP", "checkpoint and stop after this step, as Ctrl-C would (0: off)"},
        {"optimizer", OPTION_STRING, &a.optimizer, "NAME", "adamw or sgd"},
        {"lr", OPTION_FLOAT, &a.lr, "X", "learning rate (default 1e-4 for adamw, 1e-2 for sgd)"},
        {"momentum", OPTION_FLOAT, &a.momentum, "X", "sgd momentum"},
        {"nesterov", OPTION_FLAG, &cfg.optimizer.sgd.nesterov, NULL, "sgd with Nesterov momentum"},
        {"weight-decay", OPTION_FLOAT, &a.weight_decay, "X", "weight decay (default 1e-6 for adamw, 0 for sgd)"},
        {"beta1", OPTION_FLOAT, &a.beta1, "X", "adamw beta1"},
        {"beta2", OPTION_FLOAT, &a.beta2, "X", "adamw beta2"},
        {"adam-eps", OPTION_FLOAT, &a.adam_eps, "X", "adamw epsilon"},
        {"lr-schedule", OPTION_STRING, &a.lr_schedule, "NAME", "constant, constant_with_warmup, linear or cosine"},
        {"warmup", OPTION_INT, &a.warmup, "N", "learning-rate warm-up steps"},
        {"grad-clip", OPTION_FLOAT, &a.grad_clip, "X", "clip the gradient norm to X (0: off)"},
        {"ema", OPTION_FLAG, &cfg.ema, NULL, "keep an exponential moving average of the weights (unet_ema/)"},
        {"ema-max-decay", OPTION_FLOAT, &a.ema_max_decay, "X", "EMA decay ceiling"},
        {"ema-inv-gamma", OPTION_FLOAT, &a.ema_inv_gamma, "X", "EMA warm-up inv_gamma"},
        {"ema-power", OPTION_FLOAT, &a.ema_power, "X", "EMA warm-up power"},
        {"train-timesteps", OPTION_INT, &a.train_timesteps, "T", "diffusion steps T"},
        {"beta-schedule", OPTION_STRING, &a.beta_schedule, "NAME", "linear, scaled_linear or squaredcos_cap_v2"},
        {"beta-start", OPTION_FLOAT, &a.beta_start, "X", "first beta"},
        {"beta-end", OPTION_FLOAT, &a.beta_end, "X", "last beta"},
        {"prediction-type", OPTION_STRING, &a.prediction, "NAME", "epsilon, sample or v_prediction"},
        {"seed", OPTION_INT, &a.seed, "N", "seed of the initial weights, data order, noise and dropout"},
        {"threads", OPTION_INT, &a.threads, "N", "threads per rank (0: all cores)"},
        {"precision", OPTION_STRING, &a.precision, "NAME",
         "fp32, or bf16: convolutions on bf16 operands with fp32 results; weights, gradients and optimizer state "
         "stay fp32 (CPUs with AVX-512 BF16 or AMX)"},
        {"sample-every", OPTION_INT, &a.sample_every, "N", "write a sample grid every N steps (0: only at the end)"},
        {"sample-n", OPTION_INT, &a.sample_n, "N", "images in a sample grid (0: no grids)"},
        {"sample-steps", OPTION_INT, &a.sample_steps, "N", "sampler steps for the grids"},
        {"sample-sampler", OPTION_STRING, &a.sample_sampler, "NAME", "ddpm, ddim or dpm++, for the grids"},
        {"checkpoint-every", OPTION_INT, &a.checkpoint_every, "N", "write a checkpoint every N steps (0: only at the end)"},
        {"keep", OPTION_INT, &a.keep, "N", "checkpoints to keep"},
        {"log-every", OPTION_INT, &a.log_every, "N", "a progress line every N steps when not on a terminal"},
        {"max-bad-steps", OPTION_INT, &a.max_bad_steps, "N", "stop after N non-finite steps in a row"},
        {"verify-weights", OPTION_FLAG, &cfg.verify_weights, NULL, "check that every rank holds the same weights"},
        {0},
    };
    const OptionSpec spec = {
        .command = "train",
        .usage = "diffuse train --data SOURCE --model MODEL --out FOLDER [options]",
        .summary = "Trains a diffusers UNet2DModel with the DDPM objective (epsilon prediction, linear betas by\n"
                   "default) and writes a run folder that diffusers' DDPMPipeline loads: unet/, scheduler/,\n"
                   "unet_ema/ with --ema, checkpoints/, samples/, metrics.jsonl. Ctrl-C finishes the step,\n"
                   "writes a checkpoint and stops; --resume continues exactly where it stopped.",
        .options = options,
        .min_positional = 0,
        .max_positional = 0,
    };
    ParsedArgs parsed;
    if (options_parse(&spec, argc, argv, &parsed, err)) return -1;
    if (parsed.help) return 0;
    if (to_config(&a, &cfg, err)) return -1;
    TrainOutcome outcome;
    if (train_run(&cfg, &outcome, err)) return -1;
    if (outcome == TRAIN_COMPLETED) printf("done: %s is a diffusers pipeline folder\n", cfg.out);
    return 0;
}
