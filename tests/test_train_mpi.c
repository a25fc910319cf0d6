/* Data-parallel training as PyTorch DDP does it, end to end through `mpirun -np 2 diffuse train`:
 * 2 ranks x batch 8 equal 1 rank x batch 16 from the same seed (the loss of every step and the final
 * weights within 1e-5 relative: the same samples, noise and dropout masks, only summation order differs);
 * resume under 2 ranks equals an uninterrupted 2-rank run bit for bit; resuming with another number of
 * ranks is a clear error. Reported as skipped when the build has no MPI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/alloc.h"
#include "harness.h"
#include "io/fs.h"
#include "io/safetensors.h"

#define TOL 1e-5
/* The tiny model of test_train (dropout on) trained as the reference set-up is: SGD at lr 1e-2, constant
 * rate. (AdamW divides by the root of tiny second moments, which turns the last-bit differences of
 * near-zero gradients into full-size steps: a fair comparison of data parallelism needs SGD.) */
#define ARGS "train --model tests/fixtures/train_tiny.json --data fashion-mnist --threads 1 " \
             "--log-every 1000 --sample-n 0 --optimizer sgd --lr 1e-2 --lr-schedule constant --ema"

static size_t read_losses(const char *run, double *losses, size_t max) {
    char path[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    size_t n_bytes, n = 0;
    Error err;
    char *text = fs_read_text(path, (size_t)1 << 24, &n_bytes, &err);
    for (char *p = text; p && (p = strstr(p, "\"loss\":")) && n < max; p += 7) losses[n++] = strtod(p + 7, NULL);
    free(text);
    return n;
}

/* max |a - b| / max |a| over every tensor of two weight files (1 when they cannot be compared). */
static double weights_difference(const char *a_path, const char *b_path) {
    SafeTensors a, b;
    Error err;
    if (safetensors_open(&a, a_path, &err)) return 1;
    if (safetensors_open(&b, b_path, &err)) {
        safetensors_close(&a);
        return 1;
    }
    double diff = 0, scale = 0;
    bool comparable = a.n_tensors == b.n_tensors;
    for (size_t i = 0; comparable && i < a.n_tensors; i++) {
        const SafeTensorInfo *x = &a.tensors[i], *y = safetensors_find(&b, x->name);
        if (!y || y->numel != x->numel) {
            comparable = false;
            break;
        }
        float *u = xmalloc(x->numel * sizeof(float)), *v = xmalloc(x->numel * sizeof(float));
        safetensors_read_f32(&a, x, u, x->numel, &err);
        safetensors_read_f32(&b, y, v, y->numel, &err);
        for (size_t j = 0; j < x->numel; j++) {
            diff = fmax(diff, fabs((double)u[j] - v[j]));
            scale = fmax(scale, fabs((double)u[j]));
        }
        free(u), free(v);
    }
    safetensors_close(&a), safetensors_close(&b);
    return comparable && scale > 0 ? diff / scale : 1;
}

static bool skip_without_mpi(void) {
    if (cli_have_mpi()) return false;
    printf("  skipped: built without MPI (install libopenmpi-dev and rebuild)\n");
    return true;
}

static void test_two_ranks_equal_one_rank_with_the_same_global_batch(void) {
    if (skip_without_mpi()) return;
    char one[600], two[600];
    snprintf(one, sizeof one, "%s", harness_tmp_path("one_rank"));
    snprintf(two, sizeof two, "%s", harness_tmp_path("two_ranks"));
    const CliRun *r = cli_run(ARGS " --batch 16 --steps 5 --out %s", one);
    EXPECT(r->status == 0, "1 rank: exit %d: %s", r->status, r->err);
    r = cli_run_ranks(2, ARGS " --batch 8 --steps 5 --out %s --verify-weights", two);
    EXPECT(r->status == 0, "2 ranks: exit %d: %s", r->status, r->err);
    double la[8], lb[8];
    size_t na = read_losses(one, la, 8), nb = read_losses(two, lb, 8);
    EXPECT(na == 5 && nb == 5, "metrics: %zu and %zu losses, want 5 each", na, nb);
    for (size_t i = 0; i < 5 && i < na && i < nb; i++)
        EXPECT(fabs(la[i] - lb[i]) <= TOL * fabs(la[i]), "step %zu: loss %.9g on 1 rank, %.9g on 2", i + 1, la[i], lb[i]);
    const char *files[] = {"unet/diffusion_pytorch_model.safetensors", "unet_ema/diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char a[800], b[800];
        snprintf(a, sizeof a, "%s/%s", one, files[i]);
        snprintf(b, sizeof b, "%s/%s", two, files[i]);
        double d = weights_difference(a, b);
        printf("  %s: 2 ranks vs 1 rank differ by %.2e of the largest weight\n", files[i], d);
        EXPECT(d <= TOL, "%s: 2 ranks differ from 1 rank by %.3g relative (tolerance %g)", files[i], d, TOL);
    }
}

static void test_resume_under_two_ranks(void) {
    if (skip_without_mpi()) return;
    char straight[600], resumed[600], command[2000];
    snprintf(straight, sizeof straight, "%s", harness_tmp_path("straight2"));
    snprintf(resumed, sizeof resumed, "%s", harness_tmp_path("resumed2"));
    const char *more = "--batch 4 --steps 6 --checkpoint-every 3 --keep 4";
    const CliRun *r = cli_run_ranks(2, ARGS " %s --out %s", more, straight);
    EXPECT(r->status == 0, "straight 2-rank run: exit %d: %s", r->status, r->err);
    snprintf(command, sizeof command, "mkdir -p %s/checkpoints && cp -r %s/checkpoints/step-3 %s/checkpoints/", resumed,
             straight, resumed);
    EXPECT(system(command) == 0, "%s", command);
    r = cli_run_ranks(2, ARGS " %s --out %s --resume", more, resumed);
    EXPECT(r->status == 0, "resumed 2-rank run: exit %d: %s", r->status, r->err);
    char a[800], b[800];
    snprintf(a, sizeof a, "%s/unet/diffusion_pytorch_model.safetensors", straight);
    snprintf(b, sizeof b, "%s/unet/diffusion_pytorch_model.safetensors", resumed);
    EXPECT(weights_difference(a, b) == 0, "resumed 2-rank weights differ from the straight run's");
    /* Another number of ranks cannot continue the run. */
    char args[2000];
    snprintf(args, sizeof args, ARGS " %s --out %s --resume --steps 9", more, resumed);
    cli_expect_failure(args, "written by 2 ranks");
}

int main(int argc, char **argv) {
    (void)argc;
    if (!cli_init(argv[0])) {
        printf("RESULT 0 1\n");
        return 1;
    }
    RUN(test_two_ranks_equal_one_rank_with_the_same_global_batch);
    RUN(test_resume_under_two_ranks);
    return harness_finish();
}
