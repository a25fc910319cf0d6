/* The communication layer of data-parallel training: which rank this process is, and the collectives a
 * training step needs (broadcast the initial weights, average the gradients, add up losses and metrics,
 * bring every rank down on a failure). Backend-neutral, so that a NCCL twin can sit beside the two
 * implementations: dist_mpi.c (the only file that includes <mpi.h>) and dist_single.c (one process:
 * rank 0 of a world of 1, every collective an identity). The Makefile builds exactly one of them.
 *
 * Determinism. Every reduction here gives bit-identical results on every rank, independent of timing,
 * message sizes and segmentation, so the weights of all ranks stay identical step after step:
 * element i of the result is, with x_r the buffer of rank r and P the world size,
 *     mean:  (float)(((((double)x_0[i] + x_1[i]) + x_2[i]) + ... + x_{P-1}[i]) * (1.0 / P))
 *     sum:   ((x_0[i] + x_1[i]) + x_2[i]) + ... + x_{P-1}[i]                         (doubles)
 * always in rank order. MPI_Allreduce promises neither (its algorithm, and so the order of additions,
 * may depend on the rank, the message size and the run). The scheme that gets it at the same traffic as
 * a ring all-reduce: the buffer is cut into P chunks; rank c receives chunk c of every rank, adds the P
 * contributions in rank order and sends the result back to every rank (a reduce-scatter with a fixed
 * order, then an all-gather that only moves bytes). Each rank sends and receives 2 (P-1)/P of the
 * buffer. Accumulating in double makes the mean of two ranks the correctly rounded one; multiplying by
 * 1/P (exact when P is a power of two) instead of dividing keeps the summing pass about as fast as a
 * float one (a double division per element made it 3x slower).
 *
 * Launch. dist_init joins the MPI job when the process was started by an MPI launcher (mpirun, or srun
 * with PMI/PMIx); a process started plainly runs as rank 0 of 1 even in the MPI build, without touching
 * MPI. After dist_init a failed CHECK on any rank ends the whole job (MPI_Abort), with a line naming the
 * rank. A rank that dies (a signal, an exit without dist_finalize) is detected by mpirun, which ends the
 * others; MPI errors are reported with the rank and the failing call, then abort the job.
 *
 * Every rank must make the same calls in the same order (collectives, and bucket creation too). */
#ifndef DIFFUSE_DIST_H
#define DIFFUSE_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "core/check.h"
#include "core/error.h"

/* ---- the job ------------------------------------------------------------------------------------ */

/* Joins the job when launched by an MPI launcher (MPI may remove its own arguments from argc/argv);
 * otherwise sets up a world of 1. Installs the CHECK abort hook. Call once, before any other dist_*. */
void dist_init(int *argc, char ***argv);
/* Leaves the job (MPI_Finalize when it was joined). Every rank must call it before exiting normally;
 * a rank that exits without it is treated by mpirun as failed. */
void dist_finalize(void);

int dist_rank(void);
int dist_world_size(void);
bool dist_is_root(void); /* rank 0: the one that writes checkpoints, samples, metrics and progress */
/* Ranks on this machine and this rank's index among them, e.g. to divide its cores between them. */
int dist_local_rank(void);
int dist_local_size(void);
/* The backend this program was built with: "mpi" or "single" (not whether a job was joined). */
const char *dist_backend_name(void);

/* Prints "diffuse: rank R of P: msg" on stderr and ends every rank of the job with exit status `code`
 * (1 when code is 0). */
DIFFUSE_NORETURN void dist_abort(int code, const char *msg);

/* ---- blocking collectives ----------------------------------------------------------------------- */

void dist_barrier(void);
/* Copies root's n floats into buf on every other rank. */
void dist_broadcast_floats(float *buf, size_t n, int root);
/* In place: buf = the rank-ordered mean of every rank's buf (see above). Bit-identical on every rank. */
void dist_allreduce_mean_floats(float *buf, size_t n);
/* In place: buf = the rank-ordered sum of every rank's buf. For losses, metrics and norms. */
void dist_allreduce_sum_doubles(double *buf, size_t n);
/* The MPI library's own all-reduce (sum, then divide by P): NOT rank-ordered, so its results may differ
 * between ranks and runs when P > 2. Only for bench/ to measure what determinism costs. */
void dist_allreduce_mean_floats_unordered(float *buf, size_t n);

/* 0 when buf holds the same bits on every rank; otherwise -1 and an error naming `what` and the ranks
 * whose checksum differs from rank 0's. Every rank gets the same answer. A debugging aid for training. */
int dist_verify_identical(const float *buf, size_t n, const char *what, Error *err);

/* ---- asynchronous all-reduce of buckets --------------------------------------------------------- */
/* A bucket is a fixed range of a buffer (e.g. the gradients of a few layers) averaged over the ranks as
 * one asynchronous all-reduce, so that a backward pass can start it as soon as those gradients are
 * final and go on computing. Its result is the same as dist_allreduce_mean_floats' on the range.
 * Buckets must be created in the same order on every rank (that order names their messages); their
 * working memory, (P-1)/P of the range, is allocated once by dist_bucket_init. Communication moves
 * forward only inside dist_* calls, so a caller that computes while a bucket is in flight calls
 * dist_allreduce_test now and then (e.g. after each layer). Between start and a completed test or wait
 * the range must not be read or written.
 * Measured on the 2-core development machine at 2 ranks (bench/dist_allreduce.c): overlapping a
 * simulated backward pass with its buckets saved under 1%. Open MPI's shared-memory copies run on the
 * ranks' own cores inside dist_* calls, so they only pay off with a spare core or a network card that
 * moves the data. */
typedef struct DistBucket DistBucket;

DistBucket *dist_bucket_init(float *data, size_t n);
void dist_bucket_free(DistBucket *bucket);
void dist_allreduce_start(DistBucket *bucket);
/* Moves the bucket's communication forward; true once its range holds the mean (and for a bucket that
 * was never started). */
bool dist_allreduce_test(DistBucket *bucket);
/* Moves every started, unfinished bucket forward: one call between layers of a backward pass. */
void dist_progress(void);
void dist_allreduce_wait(DistBucket *bucket);

#endif
