/* `diffuse train` end to end, as a user runs it: on Fashion-MNIST with a tiny model the loss falls; the run folder is
 * a diffusers pipeline; 2N straight steps equal N steps + resume + N steps byte for byte (with EMA and dropout on, so
 * every piece of state is exercised); Ctrl-C finishes the step, checkpoints and exits 0; and bad input (missing data,
 * corrupt or mislabelled files, a truncated checkpoint or one with an impossible step count, a model predicting other
 * channels than it takes, an unwritable folder, unknown options, non-numbers) is one line on stderr and exit 1, with
 * nothing written before lost; --precision bf16 trains close to fp32 and resumes exactly. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "core/alloc.h"
#include "harness.h"
#include "data/image_decode.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "ops/precision.h"

#define MODEL "--model tests/fixtures/train_tiny.json"
/* Small and fast: a 45k-parameter model, one thread so runs compare bit for bit on any machine. */
#define COMMON "train " MODEL " --data fashion-mnist --batch 8 --threads 1 --sample-n 0 --log-every 1000"

static char *read_file(const char *path, size_t *n) {
    Error err;
    return fs_read_text(path, (size_t)1 << 28, n, &err);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    fwrite(data, 1, n, f);
    fclose(f);
}

/* Rewrites the safetensors file at path with `from` replaced by `to` in its header (padded with spaces to 8
 * bytes); false when the header lacks `from`. */
static bool replace_in_header(const char *path, const char *from, const char *to) {
    size_t n;
    char *bytes = read_file(path, &n);
    uint64_t len = 0;
    for (int i = 0; bytes && n >= 8 && i < 8; i++) len |= (uint64_t)(unsigned char)bytes[i] << (8 * i);
    char *at = bytes && n >= 8 && len <= n - 8 ? strstr(bytes + 8, from) : NULL;
    if (!at || at + strlen(from) > bytes + 8 + len) {
        free(bytes);
        return false;
    }
    size_t grown = len + strlen(to) - strlen(from), padded = (grown + 7) / 8 * 8;
    char *out = xmalloc(8 + padded + (n - 8 - len));
    for (int i = 0; i < 8; i++) out[i] = (char)(padded >> (8 * i));
    size_t head = (size_t)(at - bytes);
    memcpy(out + 8, bytes + 8, head - 8);
    memcpy(out + head, to, strlen(to));
    memcpy(out + head + strlen(to), at + strlen(from), 8 + len - (head + strlen(from)));
    memset(out + 8 + grown, ' ', padded - grown);
    memcpy(out + 8 + padded, bytes + 8 + len, n - 8 - len);
    write_bytes(path, out, 8 + padded + (n - 8 - len));
    free(bytes), free(out);
    return true;
}

static bool same_bytes(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_file(a, &na), *y = read_file(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x), free(y);
    return same;
}

/* The values of one field of metrics.jsonl, in order. */
static size_t read_metric(const char *run, const char *field, double *values, size_t max) {
    char path[1024], key[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    snprintf(key, sizeof key, "\"%s\":", field);
    size_t n_bytes, n = 0, len = strlen(key);
    char *text = read_file(path, &n_bytes);
    for (char *p = text; p && (p = strstr(p, key)) && n < max; p += len) values[n++] = strtod(p + len, NULL);
    free(text);
    return n;
}

static size_t read_losses(const char *run, double *losses, size_t max) { return read_metric(run, "loss", losses, max); }

static double mean(const double *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s / (double)n;
}

static void test_loss_falls_and_run_folder_is_a_pipeline(void) {
    const char *run = harness_tmp_path("falls");
    char out[600];
    snprintf(out, sizeof out, "%s", run);
    const CliRun *r = cli_run(COMMON " --out %s --steps 60 --lr 3e-3 --lr-schedule constant --checkpoint-every 0 "
                              "--sample-n 16 --sample-steps 10", out);
    EXPECT(r->status == 0, "train exit %d: %s", r->status, r->err);
    double losses[100];
    size_t n = read_losses(out, losses, 100);
    EXPECT(n == 60, "metrics.jsonl has %zu losses, want 60", n);
    if (n == 60) {
        double first = mean(losses, 10), last = mean(losses + 50, 10);
        printf("  loss: first 10 steps %.4f, last 10 steps %.4f\n", first, last);
        EXPECT(last < 0.6 * first, "loss did not fall: first 10 steps %.4f, last 10 %.4f", first, last);
    }
    const char *files[] = {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                           "scheduler/scheduler_config.json", "train_config.json", "checkpoints/step-60/unet/config.json",
                           "checkpoints/step-60/training_state.safetensors", "samples/step-60.png"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[800];
        snprintf(path, sizeof path, "%s/%s", out, files[i]);
        EXPECT(fs_is_file(path), "run folder lacks %s", files[i]);
    }
    /* The grid: 16 images of 28x28 grey in a 4x4 grid with 2-pixel gaps around and between them. */
    char grid[800];
    snprintf(grid, sizeof grid, "%s/samples/step-60.png", out);
    DecodedImage image;
    Error err;
    if (image_decode_file(&image, grid, &err) == 0) {
        EXPECT(image.width == 4 * 28 + 5 * 2 && image.height == 4 * 28 + 5 * 2 && image.channels == 1,
               "grid is %zux%zux%zu", image.height, image.width, image.channels);
        image_decode_free(&image);
    } else {
        EXPECT(0, "the sample grid does not decode: %s", err.message);
    }
    /* The run folder is a model source for the other commands. */
    r = cli_run("info %s", out);
    EXPECT(r->status == 0 && strstr(r->out, "44,969"), "info on the run folder: %s%s", r->out, r->err);
}

/* The optimizer moments and counters of two training states (their saved configurations name different
 * run folders, so the files themselves differ). */
static bool same_training_state(const char *a, const char *b) {
    SafeTensors x, y;
    Error err;
    if (safetensors_open(&x, a, &err)) return false;
    if (safetensors_open(&y, b, &err)) {
        safetensors_close(&x);
        return false;
    }
    bool same = x.n_tensors == y.n_tensors && x.n_tensors > 0;
    for (size_t i = 0; same && i < x.n_tensors; i++)
        same = strcmp(x.tensors[i].name, y.tensors[i].name) == 0 && x.tensors[i].n_bytes == y.tensors[i].n_bytes &&
               memcmp(x.tensors[i].data, y.tensors[i].data, x.tensors[i].n_bytes) == 0;
    const char *keys[] = {"step", "updates", "data_epoch", "data_position", "bad_steps"};
    for (size_t k = 0; same && k < sizeof keys / sizeof keys[0]; k++) {
        const char *u = safetensors_meta_get(&x, keys[k]), *v = safetensors_meta_get(&y, keys[k]);
        same = u && v && strcmp(u, v) == 0;
    }
    safetensors_close(&x), safetensors_close(&y);
    return same;
}

static void test_resume_equals_uninterrupted(void) {
    char straight[600], resumed[600];
    snprintf(straight, sizeof straight, "%s", harness_tmp_path("straight"));
    snprintf(resumed, sizeof resumed, "%s", harness_tmp_path("resumed"));
    const char *args = COMMON " --steps 8 --checkpoint-every 4 --keep 5 --ema --warmup 2 --random-flip";
    const CliRun *r = cli_run("%s --out %s", args, straight);
    EXPECT(r->status == 0, "straight run: exit %d: %s", r->status, r->err);
    /* The resumed run starts from a copy of the straight run's step-4 checkpoint, nothing else. */
    char command[2000];
    snprintf(command, sizeof command, "mkdir -p %s/checkpoints && cp -r %s/checkpoints/step-4 %s/checkpoints/", resumed,
             straight, resumed);
    EXPECT(system(command) == 0, "%s", command);
    r = cli_run("%s --out %s --resume", args, resumed);
    EXPECT(r->status == 0, "resumed run: exit %d: %s", r->status, r->err);
    EXPECT(strstr(r->err, "resuming from") != NULL, "no resume message: %s", r->err);
    const char *files[] = {"unet/diffusion_pytorch_model.safetensors", "unet_ema/diffusion_pytorch_model.safetensors",
                           "checkpoints/step-8/training_state.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[800], b[800];
        snprintf(a, sizeof a, "%s/%s", straight, files[i]);
        snprintf(b, sizeof b, "%s/%s", resumed, files[i]);
        bool same = i < 2 ? same_bytes(a, b) : same_training_state(a, b);
        EXPECT(same, "%s differs between the straight and the resumed run", files[i]);
    }
    /* The learning rate of step k follows diffusers' cosine schedule with 2 warm-up steps over 8: factor(k - 1). */
    double lr[16];
    size_t n_lr = read_metric(straight, "lr", lr, 16);
    EXPECT(n_lr == 8, "%zu learning rates in metrics.jsonl", n_lr);
    for (size_t k = 1; k <= n_lr; k++) {
        double factor = k - 1 < 2 ? (double)(k - 1) / 2 : 0.5 * (1 + cos(3.141592653589793 * (double)(k - 3) / 6));
        EXPECT(fabs(lr[k - 1] - 1e-4 * factor) < 1e-10, "step %zu: lr %.6g, the schedule says %.6g", k, lr[k - 1],
               1e-4 * factor);
    }
    double la[16], lb[16];
    size_t na = read_losses(straight, la, 16), nb = read_losses(resumed, lb, 16);
    EXPECT(na == 8 && nb == 4 && memcmp(la + 4, lb, 4 * sizeof(double)) == 0,
           "losses of steps 5-8 differ (%zu and %zu losses)", na, nb);
    /* A truncated checkpoint is an error, and the files are left as they were. */
    char state[800];
    snprintf(state, sizeof state, "%s/checkpoints/step-8/training_state.safetensors", resumed);
    EXPECT(truncate(state, 100) == 0, "truncate");
    char args_resume[1400];
    snprintf(args_resume, sizeof args_resume, "%s --out %s --resume --steps 12", args, resumed);
    cli_expect_failure(args_resume, "training_state.safetensors");
    char unet[800];
    snprintf(unet, sizeof unet, "%s/unet/diffusion_pytorch_model.safetensors", resumed);
    snprintf(state, sizeof state, "%s/unet/diffusion_pytorch_model.safetensors", straight);
    EXPECT(same_bytes(unet, state), "a failed resume changed the run folder");
    /* A step count past what the counters hold is a damaged checkpoint, not a run to continue. */
    char tampered[600];
    snprintf(tampered, sizeof tampered, "%s", harness_tmp_path("tampered"));
    snprintf(command, sizeof command, "mkdir -p %s/checkpoints && cp -r %s/checkpoints/step-8 %s/checkpoints/",
             tampered, straight, tampered);
    EXPECT(system(command) == 0, "%s", command);
    snprintf(state, sizeof state, "%s/checkpoints/step-8/training_state.safetensors", tampered);
    EXPECT(replace_in_header(state, "\"step\":\"8\"", "\"step\":\"9223372036854775807\""), "no step in %s", state);
    snprintf(args_resume, sizeof args_resume, "%s --out %s --resume --steps 12", args, tampered);
    cli_expect_failure(args_resume, "metadata 'step' is '9223372036854775807'");
    /* Without --resume an existing run is not overwritten. */
    char again[1400];
    snprintf(again, sizeof again, "%s --out %s", args, straight);
    cli_expect_failure(again, "add --resume");
}

static void test_interrupt_checkpoints_and_exits_zero(void) {
    char run[600], metrics[700], log[700];
    snprintf(run, sizeof run, "%s", harness_tmp_path("interrupted"));
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", run);
    snprintf(log, sizeof log, "%s", harness_tmp_path("interrupted.log"));
    char command[2000];
    /* exec, so that the shell's pid is diffuse's */
    snprintf(command, sizeof command, "exec build/diffuse " COMMON " --out %s --steps 100000 >%s 2>&1", run, log);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    /* Wait for a few steps, then Ctrl-C. */
    for (int i = 0; i < 600; i++) {
        size_t n = 0;
        char *text = read_file(metrics, &n);
        int lines = 0;
        for (size_t j = 0; j < n; j++) lines += text[j] == '\n';
        free(text);
        if (lines >= 3) break;
        nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
    }
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    size_t n;
    char *text = read_file(log, &n);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "interrupted run: status %d: %s", status, text ? text : "");
    EXPECT(text && strstr(text, "interrupted: checkpoint of step"), "no interruption message: %s", text ? text : "");
    free(text);
    const CliRun *r = cli_run("info %s", run);
    EXPECT(r->status == 0, "the interrupted run folder does not load: %s", r->err);
}

static void test_bad_input(void) {
    char args[2000];
    const char *tmp = harness_tmp_dir();
    snprintf(args, sizeof args, "train " MODEL " --data %s/none --out %s/r1 --steps 1", tmp, tmp);
    cli_expect_failure(args, "/none");
    snprintf(args, sizeof args, "train " MODEL " --data fashion-mnist --out %s/r2 --steps 1 --bogus", tmp);
    cli_expect_failure(args, "unknown option '--bogus'");
    snprintf(args, sizeof args, "train " MODEL " --data fashion-mnist --out %s/r3 --batch abc", tmp);
    cli_expect_failure(args, "--batch expects a whole number");
    snprintf(args, sizeof args, "train " MODEL " --data fashion-mnist --out %s/r3 --lr fast", tmp);
    cli_expect_failure(args, "--lr");
    snprintf(args, sizeof args, "train " MODEL " --data fashion-mnist --out %s/r3 --optimizer adam", tmp);
    cli_expect_failure(args, "unknown optimizer 'adam'");
    snprintf(args, sizeof args, "train --model no-such-preset --data fashion-mnist --out %s/r3", tmp);
    cli_expect_failure(args, "no-such-preset");
    /* A model predicting twice the channels (a learned variance) cannot be trained on the objective. */
    char config[600];
    snprintf(config, sizeof config, "%s/out2.json", tmp);
    const char *json = "{\"block_out_channels\": [8, 16], \"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\"], "
                       "\"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\"], \"norm_num_groups\": 4, "
                       "\"in_channels\": 1, \"out_channels\": 2, \"sample_size\": 28}";
    write_bytes(config, json, strlen(json));
    snprintf(args, sizeof args, "train --model %s --data fashion-mnist --out %s/r3 --steps 1", config, tmp);
    cli_expect_failure(args, "predicts 2 channels from 1: training needs out_channels = in_channels");
    /* An output folder inside a regular file cannot be created. */
    char blocker[600];
    snprintf(blocker, sizeof blocker, "%s/a-file", tmp);
    write_bytes(blocker, "x", 1);
    snprintf(args, sizeof args, COMMON " --out %s/run --steps 1", blocker);
    cli_expect_failure(args, "a-file");
    /* IDX with a wrong magic number. */
    char idx[600];
    snprintf(idx, sizeof idx, "%s/train-images-idx3-ubyte", tmp);
    unsigned char header[16] = {0, 0, 8, 4, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28};
    write_bytes(idx, header, sizeof header);
    snprintf(args, sizeof args, "train " MODEL " --data %s --out %s/r4 --steps 1", idx, tmp);
    cli_expect_failure(args, "magic");
    /* A folder with a corrupt JPEG among good images: skipped with a warning, or an error with --strict. */
    char folder[600], command[2000];
    snprintf(folder, sizeof folder, "%s/images", tmp);
    snprintf(command, sizeof command, "mkdir -p %s && cp tests/fixtures/data/grey.png tests/fixtures/data/rgb420.jpg %s/",
             folder, folder);
    EXPECT(system(command) == 0, "%s", command);
    char corrupt[700];
    snprintf(corrupt, sizeof corrupt, "%s/broken.jpg", folder);
    write_bytes(corrupt, "\xff\xd8\xff\xe0garbage", 11);
    snprintf(args, sizeof args, "train " MODEL " --data %s --out %s/r5 --steps 1 --batch 2 --threads 1 --strict", folder, tmp);
    cli_expect_failure(args, "broken.jpg");
    const CliRun *r = cli_run("train " MODEL " --data %s --out %s/r6 --steps 1 --batch 2 --threads 1 --sample-every 0",
                              folder, tmp);
    EXPECT(r->status == 0 && strstr(r->err, "1 unreadable images skipped"), "lenient folder: exit %d: %s", r->status,
           r->err);
}

/* --precision bf16: the run trains (finite losses near the fp32 run's), resumes byte for byte, and refuses to
 * resume in another precision; on a CPU without bf16 arithmetic it is a clear error instead. */
static void test_bf16_training(void) {
    char fp32[600], straight[600], resumed[600];
    snprintf(fp32, sizeof fp32, "%s", harness_tmp_path("fp32"));
    snprintf(straight, sizeof straight, "%s", harness_tmp_path("bf16-straight"));
    snprintf(resumed, sizeof resumed, "%s", harness_tmp_path("bf16-resumed"));
    const char *args = COMMON " --steps 8 --checkpoint-every 4 --keep 5 --warmup 2";
    if (!ops_bf16_supported()) {
        char line[1400];
        snprintf(line, sizeof line, "%s --precision bf16 --out %s", args, straight);
        cli_expect_failure(line, "no bf16 arithmetic");
        return;
    }
    const CliRun *r = cli_run("%s --out %s", args, fp32);
    EXPECT(r->status == 0, "fp32 run: exit %d: %s", r->status, r->err);
    r = cli_run("%s --precision bf16 --out %s", args, straight);
    EXPECT(r->status == 0, "bf16 run: exit %d: %s", r->status, r->err);
    double la[16], lb[16];
    size_t na = read_losses(fp32, la, 16), nb = read_losses(straight, lb, 16);
    EXPECT(na == 8 && nb == 8, "%zu and %zu losses", na, nb);
    /* Same data, noise and initial weights: bf16 operands move each loss by well under 1 %, never 0. */
    bool close = true, differs = false;
    for (size_t i = 0; i < 8 && i < na && i < nb; i++) {
        close = close && isfinite(lb[i]) && fabs(lb[i] - la[i]) <= 0.01 * la[i];
        differs = differs || lb[i] != la[i];
    }
    EXPECT(close && differs, "bf16 losses are not within 1 %% of fp32's, or equal them: step 8 %.6f vs %.6f", lb[7],
           la[7]);
    char command[2000];
    snprintf(command, sizeof command, "mkdir -p %s/checkpoints && cp -r %s/checkpoints/step-4 %s/checkpoints/", resumed,
             straight, resumed);
    EXPECT(system(command) == 0, "%s", command);
    char line[1400];
    snprintf(line, sizeof line, "%s --out %s --resume", args, resumed);
    cli_expect_failure(line, "precision \"bf16\", this run asks for \"fp32\"");
    r = cli_run("%s --precision bf16 --out %s --resume", args, resumed);
    EXPECT(r->status == 0, "resumed bf16 run: exit %d: %s", r->status, r->err);
    char a[800], b[800];
    snprintf(a, sizeof a, "%s/unet/diffusion_pytorch_model.safetensors", straight);
    snprintf(b, sizeof b, "%s/unet/diffusion_pytorch_model.safetensors", resumed);
    EXPECT(same_bytes(a, b), "bf16: the resumed run's weights differ from the straight run's");
    snprintf(line, sizeof line, "%s --precision fp16 --out %s/x", args, harness_tmp_dir());
    cli_expect_failure(line, "unknown --precision 'fp16'");
}

/* A full disk while a checkpoint is written: the run stops with an error and the previous checkpoint still
 * resumes. The disk is made "full" with a file-size limit (writes past it fail with EFBIG; the shell
 * ignores SIGXFSZ, so the process sees the error instead of being killed). */
static void test_full_disk_keeps_previous_checkpoint(void) {
    char run[600];
    snprintf(run, sizeof run, "%s", harness_tmp_path("full_disk"));
    const char *args = COMMON " --steps 6 --checkpoint-every 2";
    const CliRun *r = cli_run("%s --out %s --stop-at 2", args, run);
    EXPECT(r->status == 0, "first part: exit %d: %s", r->status, r->err);
    char command[2000], log[700];
    snprintf(log, sizeof log, "%s", harness_tmp_path("full_disk.log"));
    /* 100 blocks of 512 bytes: more than metrics.jsonl needs, less than a checkpoint's weights. */
    snprintf(command, sizeof command, "trap '' XFSZ; ulimit -f 100; exec build/diffuse %s --out %s --resume >%s 2>&1",
             args, run, log);
    int status = system(command);
    size_t n;
    char *text = read_file(log, &n);
    EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 1, "out of disk: status %d: %s", status, text ? text : "");
    EXPECT(text && strstr(text, "earlier checkpoints are intact"), "message: %s", text ? text : "");
    free(text);
    char partial[800];
    snprintf(partial, sizeof partial, "%s/checkpoints/.step-4.partial", run);
    EXPECT(!fs_is_folder(partial), "the unfinished checkpoint was left behind");
    r = cli_run("%s --out %s --resume", args, run);
    EXPECT(r->status == 0 && strstr(r->err, "resuming from") && strstr(r->err, "step-2"),
           "resuming after the full disk: exit %d: %s", r->status, r->err);
}

static void test_divergence_stops_with_checkpoint_intact(void) {
    char run[600];
    snprintf(run, sizeof run, "%s", harness_tmp_path("diverge"));
    const CliRun *r = cli_run(COMMON " --out %s --steps 40 --optimizer sgd --lr 1e12 --grad-clip 0 --lr-schedule constant "
                              "--max-bad-steps 2 --checkpoint-every 1", run);
    EXPECT(r->status == 1, "a diverging run exited %d", r->status);
    EXPECT(strstr(r->err, "not finite for 2 steps in a row") && strstr(r->err, "is intact"), "message: %s", r->err);
}

int main(int argc, char **argv) {
    (void)argc;
    if (!cli_init(argv[0])) {
        printf("RESULT 0 1\n");
        return 1;
    }
    RUN(test_loss_falls_and_run_folder_is_a_pipeline);
    RUN(test_resume_equals_uninterrupted);
    RUN(test_interrupt_checkpoints_and_exits_zero);
    RUN(test_bad_input);
    RUN(test_bf16_training);
    RUN(test_full_disk_keeps_previous_checkpoint);
    RUN(test_divergence_stops_with_checkpoint_intact);
    return harness_finish();
}
