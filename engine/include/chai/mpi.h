/* chai — MPI: the group of processes of a distributed run (data-parallel training, distributed
 * search). chai builds with Open MPI by default; built with -DCHAI_MPI=OFF every function here
 * behaves as a group of one process and chai_mpi_available() is false.
 *
 * The group is MPI_COMM_WORLD; ranks are 0-based in C. MPI starts with chai_mpi_init (thread
 * level MPI_THREAD_FUNNELED: only the thread that started it calls these functions, never an
 * OpenMP region). Before chai_mpi_init, and after chai_mpi_finalize, the group is this process
 * alone: rank 0 of 1, and every collective is a copy or nothing.
 *
 * Failure rules. A caller's mistake (a root outside the group, an unsupported dtype, ranks that
 * pass different sizes or call different collectives) returns CHAI_ERR_ARG on EVERY rank alike:
 * each collective first exchanges a small description of the call, so the ranks stay in step and
 * can all raise the same error. A failure of MPI itself (a peer died, a link broke) cannot be
 * survived by the others: chai prints the call, this rank and MPI's message on stderr and ends
 * every rank with MPI_Abort, so a run never hangs on it. */
#ifndef CHAI_MPI_H
#define CHAI_MPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"
#include "chai/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether this chai was built with MPI. */
bool chai_mpi_available(void);

/* Whether a launcher started this process as one rank of several: mpirun/mpiexec (Open MPI's
 * OMPI_COMM_WORLD_SIZE, MPICH's PMI_SIZE/PMI_RANK) or Slurm's srun (PMI_RANK, PMIX_RANK). *size
 * (may be NULL) gets the announced number of ranks, or 0 when the environment does not say. */
bool chai_mpi_launched(int *size);

/* Starts MPI (once; later calls return CHAI_OK) and sets MPI_ERRORS_RETURN on the group so that
 * chai reports MPI's failures itself. CHAI_ERR_UNSUPPORTED when built without MPI; CHAI_ERR_STATE
 * after chai_mpi_finalize (MPI cannot start twice in a process). */
chai_status chai_mpi_init(void);
bool chai_mpi_initialized(void);
/* Ends MPI when chai started it (every rank must call it; a no-op otherwise, and the second time).
 */
void chai_mpi_finalize(void);
/* Prints "chai: rank R of N: message" on stderr and ends every rank with exit status `code`
 * (MPI_Abort); without an active group, prints the message and exits. Never returns. */
_Noreturn void chai_mpi_abort(const char *message, int code);

/* This process's 0-based rank and the group's size (0 and 1 without an active group). */
int chai_mpi_rank(void);
int chai_mpi_size(void);

chai_status chai_mpi_barrier(void);

typedef enum chai_mpi_op {
  CHAI_MPI_SUM = 0,
  CHAI_MPI_MEAN = 1, /* the sum divided by the group's size (f32 only) */
} chai_mpi_op;

/* "sum" | "mean" → op; CHAI_ERR_ARG naming the name. */
chai_status chai_mpi_op_parse(const char *name, chai_mpi_op *out);

/* Replaces t (contiguous f32, i32 or i64; the same dtype and element count on every rank) by its
 * sum or mean over the ranks. The order of the sum is fixed: element i is
 * ((t₀[i] + t₁[i]) + t₂[i]) + … in rank order, computed once by the rank that owns i's chunk and
 * copied to the others, so every rank gets the same bits and a rerun gets them again. Moves
 * 2·(N−1)/N of t's bytes in and out of each rank (an all-to-all, then an all-gather). */
chai_status chai_mpi_allreduce(chai_tensor *t, chai_mpi_op op);

/* Copies root's t into t on every rank (contiguous, the same dtype and shape everywhere). */
chai_status chai_mpi_broadcast(chai_tensor *t, int root);
/* Root's n bytes at buf into buf on every rank (n the same everywhere). */
chai_status chai_mpi_broadcast_bytes(void *buf, size_t n, int root);
/* Every rank's n bytes (n the same everywhere), in rank order, into out (size·n bytes). */
chai_status chai_mpi_allgather_bytes(const void *data, size_t n, void *out);
/* Gathering byte strings of any length to root, in two calls made by every rank: the lengths
 * (lens: size entries, filled on root only; may be NULL elsewhere), then the bytes (out: the sum
 * of lens on root, in rank order; NULL elsewhere). CHAI_ERR_ARG when the total exceeds 2 GiB. */
chai_status chai_mpi_gather_lengths(size_t n, int root, size_t *lens);
chai_status chai_mpi_gather_bytes(const void *data, size_t n, int root, void *out,
                                  const size_t *lens);

/* ---- gradient sums in buckets --------------------------------------------------------------- */

/* A reducer sums float buffers over the ranks while the caller is still computing others (the
 * data-parallel gradient exchange): each added buffer is copied into the current bucket of about
 * bucket_bytes; a full bucket starts its exchange at once (non-blocking all-to-all, the rank-order
 * sum of its chunk, non-blocking all-gather, as chai_mpi_allreduce), and every later call advances
 * the exchanges in flight. chai_mpi_reducer_finish waits for the rest and writes the sums back
 * into the buffers. Every rank must add buffers of the same sizes in the same order; the sums are
 * bit-identical on every rank and from run to run. Four buckets are kept (2 × 4 × bucket_bytes of
 * memory); with one rank nothing is copied and the buffers keep their values. */
typedef struct chai_mpi_reducer chai_mpi_reducer;

typedef struct chai_mpi_reducer_stats {
  uint64_t floats;     /* values added since the reducer was made */
  uint64_t buckets;    /* buckets exchanged */
  uint64_t sent_bytes; /* bytes this rank sent (all-to-all + all-gather) */
  double wait_seconds; /* time spent blocked in MPI waits (in add and finish) */
} chai_mpi_reducer_stats;

/* CHAI_ERR_ARG for bucket_bytes below 4 KiB; CHAI_ERR_NOMEM. */
chai_status chai_mpi_reducer_new(chai_mpi_reducer **out, size_t bucket_bytes);
/* Waits for any exchange still in flight, then frees. NULL is fine. */
void chai_mpi_reducer_free(chai_mpi_reducer *r);
/* Queues n floats at data; data must stay put and unchanged until finish returns. */
void chai_mpi_reducer_add(chai_mpi_reducer *r, float *data, size_t n);
/* Sends the last, partial bucket, waits for every exchange and writes the sums into the added
 * buffers. CHAI_ERR_ARG on every rank when the ranks added different numbers of values (the
 * buffers then hold unspecified values). */
chai_status chai_mpi_reducer_finish(chai_mpi_reducer *r);
void chai_mpi_reducer_get_stats(const chai_mpi_reducer *r, chai_mpi_reducer_stats *out);

#ifdef __cplusplus
}
#endif
#endif
