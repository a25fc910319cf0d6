/* Core: CHECK, errors, tensor views and their shape checks, the planned arena, the counter-based RNG, work
 * shares, half floats, threads, the JSON value bound, atomic files and the safetensors reader and
 * writer. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/error.h"
#include "core/half.h"
#include "core/json_values.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "core/work_steal.h"
#include "harness.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

/* ------------------------------------------------------------------------------------------------ */
/* CHECK and tensors */

static void call_failing_check(void *ctx) {
    int value = *(int *)ctx;
    CHECK(value == 0, "value is %d", value);
}

static void test_check_aborts_with_message(void) {
    int value = 42;
    expect_check_failure("CHECK(value == 0)", call_failing_check, &value, "value is 42");
}

static void expect_wrong_shape(void *ctx) {
    (void)ctx;
    float data[6];
    EXPECT_SHAPE(tensor_2d(data, 2, 3), "weight", 3, 2);
}

static void expect_null_data(void *ctx) {
    (void)ctx;
    EXPECT_NDIM(tensor_2d(NULL, 2, 3), "inp", 2);
}

static void expect_zero_dim(void *ctx) {
    (void)ctx;
    float data[1];
    EXPECT_NDIM(tensor_3d(data, 2, 0, 3), "inp", 3);
}

static void test_tensor_shape_checks(void) {
    float data[24];
    Tensor t = tensor_4d(data, 1, 2, 3, 4);
    EXPECT(tensor_numel(t) == 24, "numel %zu", tensor_numel(t));
    char buf[64];
    EXPECT(strcmp(tensor_shape_str(t, buf, sizeof buf), "(1, 2, 3, 4)") == 0, "shape string %s", buf);
    EXPECT(tensor_is_none(tensor_none()) && !tensor_is_none(t), "tensor_none");
    EXPECT_SHAPE(t, "t", 1, 2, 3, 4); /* must not abort */
    expect_check_failure("wrong shape", expect_wrong_shape, NULL, "weight has shape (2, 3), expected (3, 2)");
    expect_check_failure("NULL data", expect_null_data, NULL, "inp is NULL");
    expect_check_failure("zero dimension", expect_zero_dim, NULL, "inp has a zero dimension");
}

static void test_error_messages(void) {
    Error err;
    EXPECT(error_set(&err, "%s: bad %d", "file.json", 7) == -1, "error_set returns -1");
    error_prefix(&err, "loading %s", "model");
    EXPECT(strcmp(err.message, "loading model: file.json: bad 7") == 0, "message: %s", err.message);
    EXPECT(error_set(NULL, "ignored") == -1, "NULL error");
}

/* The bound on JSON values, one plus the commas, brackets and braces outside strings (their escaped quotes
 * and backslashes skipped): each text is taken at its bound and refused one below. */
static void test_json_value_bound(void) {
    static const struct {
        const char *text;
        size_t values;
    } cases[] = {
        {"1", 1}, {"[]", 2}, {"[1,2,3]", 4}, {"{\"a,[{\":\"x,y\"}", 2}, {"[\"a\\\",[\",1]", 3}, {"[\"\\\\\",1]", 3},
        {"{\"a\":{\"b\":[1,{}]}}", 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *text = cases[i].text;
        Error err = {{0}};
        EXPECT(json_check_values(text, strlen(text), cases[i].values, "t.json", &err) == 0, "%s: refused at %zu: %s",
               text, cases[i].values, err.message);
        EXPECT(json_check_values(text, strlen(text), cases[i].values - 1, "t.json", &err) == -1 &&
                   strstr(err.message, "t.json: more than"),
               "%s: taken at %zu values", text, cases[i].values - 1);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* The arena */

/* Buffers with disjoint lifetimes share memory; one that overlaps both goes after them, aligned. */
static void test_arena_shares_disjoint_lifetimes(void) {
    Arena arena = {0};
    float *ptr[3] = {0};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) arena_begin_count(&arena);
        else arena_allocate(&arena);
        arena_live(&arena, 0, 1);
        ptr[0] = arena_floats(&arena, 100);
        arena_live(&arena, 2, 3);
        ptr[1] = arena_floats(&arena, 100);
        arena_live(&arena, 1, 2);
        ptr[2] = arena_floats(&arena, 50);
    }
    EXPECT(ptr[0] == arena.base && ptr[1] == arena.base, "steps 0-1 and 2-3 should share offset 0: %td, %td",
           ptr[0] - arena.base, ptr[1] - arena.base);
    EXPECT(ptr[2] == arena.base + 112, "the buffer live at steps 1-2 is at %td, expected 112 (100 aligned to 16)",
           ptr[2] - arena.base);
    EXPECT(arena.capacity == 162, "capacity %zu floats, expected 162", arena.capacity);
    for (size_t i = 0; i < 50; i++) ptr[2][i] = 1.0f; /* within the allocation (the sanitizer build checks) */
    arena_free(&arena);
}

/* Random plans: buffers whose lifetimes overlap never overlap in memory, every buffer is 64-byte aligned,
 * and the layout spans no more than the buffers laid end to end. */
static void test_arena_random_plans_never_overlap(void) {
    enum { N = 300, STEPS = 40 };
    size_t n[N];
    int first[N], last[N];
    uint64_t state = 12345;
    for (int trial = 0; trial < 5; trial++) {
        size_t end_to_end = 0;
        for (int i = 0; i < N; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            n[i] = 1 + (state >> 33) % 5000;
            first[i] = (int)((state >> 20) % STEPS);
            last[i] = first[i] + (int)((state >> 8) % 8);
            end_to_end += (n[i] + 15) / 16 * 16;
        }
        Arena arena = {0};
        float *ptr[N];
        arena_begin_count(&arena);
        for (int i = 0; i < N; i++) arena_live(&arena, first[i], last[i]), arena_floats(&arena, n[i]);
        arena_allocate(&arena);
        for (int i = 0; i < N; i++) arena_live(&arena, first[i], last[i]), ptr[i] = arena_floats(&arena, n[i]);
        int overlaps = 0, misaligned = 0;
        for (int i = 0; i < N; i++) {
            misaligned += (uintptr_t)ptr[i] % 64 != 0;
            for (int j = 0; j < i; j++)
                if (first[i] <= last[j] && first[j] <= last[i] && ptr[i] < ptr[j] + n[j] && ptr[j] < ptr[i] + n[i])
                    overlaps++;
        }
        EXPECT(overlaps == 0, "trial %d: %d pairs of buffers in use at once share memory", trial, overlaps);
        EXPECT(misaligned == 0, "trial %d: %d buffers not 64-byte aligned", trial, misaligned);
        EXPECT(arena.capacity <= end_to_end && arena.capacity < end_to_end / 2,
               "trial %d: %zu floats for buffers that take %zu end to end", trial, arena.capacity, end_to_end);
        arena_free(&arena);
    }
}

static void replan_with_other_size(void *ctx) {
    (void)ctx;
    Arena arena = {0};
    arena_begin_count(&arena);
    arena_floats(&arena, 10);
    arena_allocate(&arena);
    arena_floats(&arena, 11);
}

static void test_arena_rejects_a_changed_plan(void) {
    expect_check_failure("a real pass that asks for other sizes", replan_with_other_size, NULL,
                         "plan changed between passes");
}

/* ------------------------------------------------------------------------------------------------ */
/* RNG */

static void test_philox_known_answer(void) {
    /* Known-answer vectors from the Random123 distribution (kat_vectors, philox4x32 10 rounds). */
    uint32_t out[4];
    philox4x32_10((uint32_t[4]){0, 0, 0, 0}, (uint32_t[2]){0, 0}, out);
    EXPECT(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u,
           "zero vector: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    philox4x32_10((uint32_t[4]){0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                  (uint32_t[2]){0xffffffffu, 0xffffffffu}, out);
    EXPECT(out[0] == 0x408f276du && out[1] == 0x41c83b0eu && out[2] == 0xa20bc7c6u && out[3] == 0x6d5451fdu,
           "ones vector: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    philox4x32_10((uint32_t[4]){0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                  (uint32_t[2]){0xa4093822u, 0x299f31d0u}, out);
    EXPECT(out[0] == 0xd16cfe09u && out[1] == 0x94fdccebu && out[2] == 0x5001e420u && out[3] == 0x24126ea1u,
           "pi vector: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
}

/* A fill (rng_fill_normal or rng_fill_uniform) and its one-draw twin agree, whatever the thread count and
 * window: windows from odd offsets and inside one Philox block (four uniform draws, two normal ones). */
typedef void (*RngFill)(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t first_index);
typedef float (*RngDraw)(uint64_t seed, uint64_t stream, uint64_t index);

static void expect_fill_addressable(const char *name, RngFill fill, RngDraw draw, float *a, float *b, size_t n) {
    int saved = threads_get();
    threads_set(1);
    fill(a, n, 7, 3, 0);
    threads_set(2);
    fill(b, n, 7, 3, 0);
    threads_set(saved);
    EXPECT(memcmp(a, b, n * sizeof(float)) == 0, "%s fill differs between 1 and 2 threads", name);
    fill(b, 1001, 7, 3, 12345);
    EXPECT(memcmp(a + 12345, b, 1001 * sizeof(float)) == 0, "windowed %s fill differs", name);
    fill(b, 1, 7, 3, 501);
    EXPECT(b[0] == a[501], "%s fill of one draw differs", name);
    EXPECT(draw(7, 3, 777) == a[777] && draw(7, 3, 12345 + 1000) == a[12345 + 1000], "one %s draw differs from the fill",
           name);
}

static void test_rng_addressable_and_thread_independent(void) {
    enum { N = 300001 };
    float *a = xmalloc(N * sizeof(float)), *b = xmalloc(N * sizeof(float));
    expect_fill_addressable("normal", rng_fill_normal, rng_normal, a, b, N);
    expect_fill_addressable("uniform", rng_fill_uniform, rng_uniform, a, b, N);
    /* Different seeds and streams differ. */
    EXPECT(rng_normal(7, 3, 0) != rng_normal(8, 3, 0) && rng_normal(7, 3, 0) != rng_normal(7, 4, 0),
           "seed or stream ignored");
    EXPECT(rng_stream(1, 2, 3) != rng_stream(1, 3, 2) && rng_stream(1, 2, 3) != rng_stream(2, 2, 3),
           "rng_stream collisions");
    free(a);
    free(b);
}

static void test_rng_distributions(void) {
    enum { N = 1000000 };
    float *x = xmalloc(N * sizeof(float));
    rng_fill_normal(x, N, 123, 0, 0);
    double mean = 0, var = 0, skew = 0, kurt = 0;
    for (size_t i = 0; i < N; i++) mean += x[i];
    mean /= N;
    for (size_t i = 0; i < N; i++) {
        double d = x[i] - mean;
        var += d * d, skew += d * d * d, kurt += d * d * d * d;
    }
    var /= N, skew /= N * pow(var, 1.5), kurt /= N * var * var;
    /* Standard errors for N = 1e6: mean 0.001, variance 0.0014, skewness 0.0024, kurtosis 0.005. */
    EXPECT(fabs(mean) < 0.005 && fabs(var - 1) < 0.007 && fabs(skew) < 0.012 && fabs(kurt - 3) < 0.025,
           "normal moments: mean %g var %g skew %g kurtosis %g", mean, var, skew, kurt);
    rng_fill_uniform(x, N, 123, 1, 0);
    double umin = 1, umax = 0, umean = 0;
    for (size_t i = 0; i < N; i++) umin = fmin(umin, x[i]), umax = fmax(umax, x[i]), umean += x[i];
    umean /= N;
    EXPECT(umin >= 0 && umax < 1 && fabs(umean - 0.5) < 0.002, "uniform: min %g max %g mean %g", umin, umax, umean);
    /* Integers below n: every value of a small range is hit about equally often. */
    int counts[10] = {0};
    for (uint64_t i = 0; i < 100000; i++) counts[rng_below(5, 9, i, 10)]++;
    for (int v = 0; v < 10; v++) EXPECT(abs(counts[v] - 10000) < 500, "rng_below: value %d drawn %d times", v, counts[v]);
    free(x);
}

/* ------------------------------------------------------------------------------------------------ */
/* Work shares */

/* Every unit runs exactly once and no piece exceeds `piece`, with as many threads as shares,
 * with fewer (their shares stolen whole), with a thread that runs slowly (stolen from) and with more shares
 * than units. */
static void expect_each_unit_once(size_t units, size_t shares_n, int threads, size_t piece, size_t least,
                                  bool slow_thread) {
    WorkShare *shares = alloc_aligned(shares_n * sizeof(WorkShare));
    int *runs = xcalloc(units + 1, sizeof(int));
    bool too_big = false;
    work_share_init(shares, shares_n, units);
#pragma omp parallel num_threads(threads)
    {
        const size_t id = (size_t)omp_get_thread_num();
        size_t b0, b1;
        while (work_share_next(shares, shares_n, id, piece, least, &b0, &b1)) {
            if (b1 - b0 > piece) {
#pragma omp atomic write
                too_big = true;
            }
            for (size_t u = b0; u < b1; u++) {
#pragma omp atomic
                runs[u]++;
            }
            if (slow_thread && id == 0)
                for (volatile int k = 0; k < 100000; k++) {}
        }
    }
    size_t wrong = 0;
    for (size_t u = 0; u < units; u++) wrong += runs[u] != 1;
    EXPECT(wrong == 0 && !too_big, "%zu units, %zu shares, %d threads, pieces of %zu: %zu units not run once%s",
           units, shares_n, threads, piece, wrong, too_big ? ", a piece too big" : "");
    free(runs);
    alloc_free(shares);
}

static void test_work_shares_run_each_unit_once(void) {
    expect_each_unit_once(1000, 2, 2, 17, 2, false);
    expect_each_unit_once(1000, 3, 3, 8, 1, true);
    expect_each_unit_once(777, 4, 2, 5, 2, false);  /* two shares without their thread */
    expect_each_unit_once(3, 4, 4, 1, 1, false);    /* empty shares */
    expect_each_unit_once(0, 2, 2, 4, 1, false);
    expect_each_unit_once(5000, 2, 2, 64, 4, true);
}

/* ------------------------------------------------------------------------------------------------ */
/* Half floats */

static void test_half_conversions(void) {
    EXPECT(half_to_float(0x3C00) == 1.0f && half_to_float(0xC000) == -2.0f, "half 1, -2");
    EXPECT(half_to_float(0x7BFF) == 65504.0f, "half max %g", half_to_float(0x7BFF));
    EXPECT(half_to_float(0x0001) == ldexpf(1, -24), "smallest subnormal half");
    EXPECT(isinf(half_to_float(0x7C00)) && isnan(half_to_float(0x7E00)), "half inf / NaN");
    EXPECT(bfloat16_to_float(0x3F80) == 1.0f && bfloat16_to_float(0xC0A0) == -5.0f, "bf16 1, -5");
    EXPECT(float_to_bfloat16(1.0f) == 0x3F80 && float_to_bfloat16(1.00390625f) == 0x3F80 &&
               float_to_bfloat16(1.01171875f) == 0x3F82,
           "bf16 round to nearest even");
    EXPECT(isnan(bfloat16_to_float(float_to_bfloat16(NAN))), "bf16 NaN stays NaN");
}

/* ------------------------------------------------------------------------------------------------ */
/* Files */

static const char *tmp_path(const char *name) { return harness_tmp_path(name); }

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_atomic_file_keeps_old_version_on_abort(void) {
    const char *path = tmp_path("atomic.txt");
    Error err;
    EXPECT(atomic_file_write_all(path, "first", 5, &err) == 0, "write: %s", err.message);
    AtomicFile af;
    EXPECT(atomic_file_open(&af, path, &err) == 0, "open: %s", err.message);
    atomic_file_write(&af, "second, unfinished", 18, &err);
    atomic_file_abort(&af);
    char buf[32] = {0};
    FILE *f = fopen(path, "rb");
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    EXPECT(got == 5 && strcmp(buf, "first") == 0, "after abort the file holds '%s'", buf);
    EXPECT(atomic_file_write_all("/nonexistent-folder/x", "a", 1, &err) == -1 && strstr(err.message, "/nonexistent-folder/x"),
           "unwritable path: %s", err.message);
}

static void test_safetensors_round_trip(void) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[1] = {-7.5f};
    SafeTensorsEntry entries[2] = {
        {.name = "layer.weight", .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "layer.bias", .ndim = 1, .shape = {1}, .data = b},
    };
    SafeTensorsMeta meta[1] = {{"format", "pt"}};
    const char *path = tmp_path("round.safetensors");
    Error err;
    EXPECT(safetensors_write(path, entries, 2, meta, 1, &err) == 0, "write: %s", err.message);
    SafeTensors st;
    if (safetensors_open(&st, path, &err)) {
        EXPECT(0, "open: %s", err.message);
        return;
    }
    EXPECT(st.n_tensors == 2, "n_tensors %zu", st.n_tensors);
    const char *format = safetensors_meta_get(&st, "format");
    EXPECT(format && strcmp(format, "pt") == 0, "metadata format");
    const SafeTensorInfo *w = safetensors_find(&st, "layer.weight");
    EXPECT(w && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3 && w->dtype == SAFETENSORS_F32, "weight info");
    float back[6];
    EXPECT(w && safetensors_read_f32(&st, w, back, 6, &err) == 0 && memcmp(back, a, sizeof a) == 0, "weight data");
    EXPECT(w && safetensors_read_f32(&st, w, back, 5, &err) == -1 && strstr(err.message, "has 6 elements, expected 5"),
           "count mismatch: %s", err.message);
    EXPECT((8 + *(uint64_t *)st.map) % 8 == 0, "data section not 8-byte aligned");
    safetensors_close(&st);
}

/* Writes a file with the given header and n_data bytes of data, then expects open to fail with `expected`. */
static void expect_bad_file(const char *what, const char *header, size_t n_data, const char *expected) {
    size_t header_bytes = strlen(header);
    size_t total = 8 + header_bytes + n_data;
    unsigned char *bytes = xcalloc(total, 1);
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));
    memcpy(bytes + 8, header, header_bytes);
    const char *path = tmp_path("bad.safetensors");
    write_bytes(path, bytes, total);
    free(bytes);
    SafeTensors st;
    Error err = {{0}};
    int rc = safetensors_open(&st, path, &err);
    EXPECT(rc == -1, "%s: opened a malformed file", what);
    if (rc == 0) safetensors_close(&st);
    else EXPECT(strstr(err.message, expected) && strstr(err.message, path), "%s: message '%s' lacks '%s'", what, err.message, expected);
}

static void test_safetensors_rejects_malformed_files(void) {
    expect_bad_file("invalid JSON", "{\"a\": {\"dtype\": ", 0, "not valid JSON");
    expect_bad_file("offsets past the end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
                    "outside the 8-byte data section");
    expect_bad_file("wrong dtype size", "{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
                    "data_offsets span 16 bytes");
    expect_bad_file("unknown dtype", "{\"a\":{\"dtype\":\"F8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unknown dtype F8");
    expect_bad_file("negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                    "not a non-negative integer");
    expect_bad_file("fractional offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0.5,1]}}", 2,
                    "data_offsets");
    expect_bad_file("overlap",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
    expect_bad_file("duplicate",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "appears twice");
    expect_bad_file("huge shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
                    4, "shape overflows");
    expect_bad_file("not an object", "[1,2,3]", 0, "not a JSON object");
    expect_bad_file("metadata not strings", "{\"__metadata__\":{\"format\":1}}", 0, "not a string");
    /* more values than cJSON should be asked to hold (4 MB of "0," here) */
    char *many = xmalloc(2 * JSON_MAX_VALUES + 16);
    size_t at = (size_t)sprintf(many, "{\"a\":[");
    for (size_t i = 0; i < JSON_MAX_VALUES; i++) at += (size_t)sprintf(many + at, "0,");
    strcpy(many + at, "0]}");
    expect_bad_file("too many values", many, 0, "more than 2097152 JSON values");
    free(many);

    /* Header length larger than the file, and a file shorter than the length field. */
    unsigned char lying[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_bytes(tmp_path("lying.safetensors"), lying, sizeof lying);
    SafeTensors st;
    Error err;
    EXPECT(safetensors_open(&st, tmp_path("lying.safetensors"), &err) == -1 && strstr(err.message, "does not fit"),
           "lying header length: %s", err.message);
    write_bytes(tmp_path("short.safetensors"), lying, 5);
    EXPECT(safetensors_open(&st, tmp_path("short.safetensors"), &err) == -1 && strstr(err.message, "too short"),
           "truncated file: %s", err.message);
    EXPECT(safetensors_open(&st, tmp_path("missing.safetensors"), &err) == -1 && strstr(err.message, "cannot open"),
           "missing file: %s", err.message);
}

static void test_safetensors_reads_half_types(void) {
    /* One F16 and one BF16 tensor of two elements each: 1.0, -2.0. */
    const char *header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}";
    size_t header_bytes = strlen(header);
    unsigned char bytes[512] = {0};
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)((uint64_t)header_bytes >> (8 * i));
    memcpy(bytes + 8, header, header_bytes);
    unsigned char data[8] = {0x00, 0x3C, 0x00, 0xC0, 0x80, 0x3F, 0x00, 0xC0};
    memcpy(bytes + 8 + header_bytes, data, 8);
    write_bytes(tmp_path("half.safetensors"), bytes, 8 + header_bytes + 8);
    SafeTensors st;
    Error err;
    if (safetensors_open(&st, tmp_path("half.safetensors"), &err)) {
        EXPECT(0, "open: %s", err.message);
        return;
    }
    float h[2], b[2];
    EXPECT(safetensors_read_f32(&st, safetensors_find(&st, "h"), h, 2, &err) == 0 && h[0] == 1 && h[1] == -2, "F16");
    EXPECT(safetensors_read_f32(&st, safetensors_find(&st, "b"), b, 2, &err) == 0 && b[0] == 1 && b[1] == -2, "BF16");
    safetensors_close(&st);
}

/* A plan too large to allocate is an error the caller can report (unet_plan names the batch), not a stop. */
static void test_arena_refuses_what_cannot_be_had(void) {
    EXPECT(alloc_floats_or_null(SIZE_MAX / 2, 3) == NULL, "an overflowing count allocated");
    float *small = alloc_floats_or_null(3, 5);
    EXPECT(small && small[14] == 0.0f, "15 zeroed floats refused");
    alloc_free(small);
    Arena arena = {0};
    arena_begin_count(&arena);
    arena_live(&arena, 0, 0);
    (void)arena_floats(&arena, SIZE_MAX / 2); /* more bytes than size_t holds */
    EXPECT(arena_allocate(&arena) == -1 && arena.base == NULL, "2^63 floats allocated");
    arena_free(&arena);
}

int main(void) {
    RUN(test_check_aborts_with_message);
    RUN(test_tensor_shape_checks);
    RUN(test_error_messages);
    RUN(test_json_value_bound);
    RUN(test_arena_shares_disjoint_lifetimes);
    RUN(test_arena_random_plans_never_overlap);
    RUN(test_arena_rejects_a_changed_plan);
    RUN(test_arena_refuses_what_cannot_be_had);
    RUN(test_philox_known_answer);
    RUN(test_rng_addressable_and_thread_independent);
    RUN(test_work_shares_run_each_unit_once);
    RUN(test_rng_distributions);
    RUN(test_half_conversions);
    RUN(test_atomic_file_keeps_old_version_on_abort);
    RUN(test_safetensors_round_trip);
    RUN(test_safetensors_rejects_malformed_files);
    RUN(test_safetensors_reads_half_types);
    return harness_finish();
}
