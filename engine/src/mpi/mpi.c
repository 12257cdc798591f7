/* The group: start and end of MPI, rank and size, failures that end every rank, the agreement
 * step every user-facing collective begins with, and the byte collectives (barrier, broadcast,
 * all-gather, gather). Without CHAI_WITH_MPI the same functions act for a group of one. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi/mpi_internal.h"

static struct {
  bool initialized; /* chai_mpi_init succeeded and chai_mpi_finalize has not run */
  bool finalized;
  bool ours; /* chai called MPI_Init (and so calls MPI_Finalize) */
  int rank, size;
} group = {.size = 1};

bool chai_mpi_available(void) {
#ifdef CHAI_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool chai_mpi_launched(int *size) {
  /* Open MPI's mpirun sets OMPI_COMM_WORLD_*, MPICH/Hydra and Slurm's srun (PMI-2) PMI_*, srun
   * with PMIx PMIX_RANK (the size then comes from Slurm). */
  static const char *const marks[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"};
  static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"};
  bool launched = false;
  for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
    if (getenv(marks[i])) launched = true;
  int n = 0;
  for (size_t i = 0; launched && i < sizeof sizes / sizeof sizes[0] && n <= 0; i++) {
    const char *v = getenv(sizes[i]);
    if (v) n = atoi(v);
  }
  if (size) *size = n > 0 ? n : 0;
  return launched;
}

bool chai_mpi_initialized(void) {
  return group.initialized;
}

int chai_mpi_rank(void) {
  return group.initialized ? group.rank : 0;
}

int chai_mpi_size(void) {
  return group.initialized ? group.size : 1;
}

bool mpi_active(void) {
  return group.initialized && group.size > 1;
}

_Noreturn void chai_mpi_abort(const char *message, int code) {
  if (group.initialized)
    fprintf(stderr, "chai: rank %d of %d: %s\n", group.rank + 1, group.size, message);
  else
    fprintf(stderr, "chai: %s\n", message);
  fflush(stderr);
#ifdef CHAI_WITH_MPI
  if (group.initialized) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
#endif
  _exit(code ? code : 1);
}

#ifdef CHAI_WITH_MPI
void mpi_check(int rc, const char *call) {
  if (rc == MPI_SUCCESS) return;
  char err[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(rc, err, &len) != MPI_SUCCESS) len = 0;
  err[len] = '\0';
  char msg[MPI_MAX_ERROR_STRING + 128];
  snprintf(msg, sizeof msg, "MPI error in %s: %s (error code %d); ending every rank", call,
           len ? err : "no message", rc);
  chai_mpi_abort(msg, 1);
}
#endif

chai_status chai_mpi_init(void) {
#ifndef CHAI_WITH_MPI
  return chai_error(CHAI_ERR_UNSUPPORTED,
                    "chai.mpi: this chai was built without MPI (cmake -DCHAI_MPI=OFF); rebuild "
                    "with -DCHAI_MPI=ON and Open MPI installed (scripts/setup.sh installs it)");
#else
  if (group.initialized) return CHAI_OK;
  if (group.finalized)
    return chai_error(CHAI_ERR_STATE,
                      "chai.mpi: MPI was finalised already and cannot start again in a process");
  int up = 0;
  MPI_Initialized(&up);
  if (!up) {
    int provided = 0;
    /* MPI's default error handler is still in force here: a failing MPI_Init ends the process
     * with MPI's own message. */
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    group.ours = true;
  }
  mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &group.rank), "MPI_Comm_rank");
  mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &group.size), "MPI_Comm_size");
  group.initialized = true;
  return CHAI_OK;
#endif
}

void chai_mpi_finalize(void) {
  if (!group.initialized) return;
  group.initialized = false;
  group.finalized = true;
#ifdef CHAI_WITH_MPI
  int done = 0;
  MPI_Finalized(&done);
  if (group.ours && !done) MPI_Finalize();
#endif
  group.rank = 0;
  group.size = 1;
}

#ifdef CHAI_WITH_MPI
static const char *call_name(mpi_call c) {
  switch (c) {
  case MPI_CALL_BARRIER: return "barrier";
  case MPI_CALL_ALLREDUCE: return "allreduce";
  case MPI_CALL_BROADCAST: return "broadcast";
  case MPI_CALL_ALLGATHER: return "allgather";
  case MPI_CALL_GATHER_LENGTHS: return "gather";
  case MPI_CALL_GATHER_BYTES: return "gather (bytes)";
  case MPI_CALL_REDUCER_FINISH: return "the gradient exchange";
  }
  return "?";
}
#endif

chai_status mpi_agree(const char *fname, mpi_call call, const int64_t v[4],
                      const char *const what[4]) {
#ifndef CHAI_WITH_MPI
  (void)fname, (void)call, (void)v, (void)what;
  return CHAI_OK;
#else
  if (!mpi_active()) return CHAI_OK;
  int n = group.size;
  int64_t mine[5] = {call, v[0], v[1], v[2], v[3]};
  int64_t *all = malloc((size_t)n * sizeof mine);
  if (!all) chai_mpi_abort("out of memory for the agreement step of a collective", 1);
  mpi_check(MPI_Allgather(mine, 5, MPI_INT64_T, all, 5, MPI_INT64_T, MPI_COMM_WORLD),
            "MPI_Allgather (agreement step)");
  chai_status st = CHAI_OK;
  for (int r = 1; r < n && !st; r++) {
    const int64_t *a = all, *b = all + 5 * (size_t)r;
    if (a[0] != b[0]) {
      st = chai_error(CHAI_ERR_ARG,
                      "%s: the ranks called different collectives (rank 1: %s, rank %d: %s)", fname,
                      call_name((mpi_call)a[0]), r + 1, call_name((mpi_call)b[0]));
      break;
    }
    for (int k = 0; k < 4; k++)
      if (what[k] && a[k + 1] != b[k + 1]) {
        st = chai_error(CHAI_ERR_ARG,
                        "%s: the ranks disagree on the %s (rank 1: %lld, rank %d: %lld)", fname,
                        what[k], (long long)a[k + 1], r + 1, (long long)b[k + 1]);
        break;
      }
  }
  free(all);
  return st;
#endif
}

static chai_status check_root(const char *fname, int root) {
  if (root < 0 || root >= chai_mpi_size())
    return chai_error(CHAI_ERR_ARG, "%s: root rank %d is outside 1..%d", fname, root + 1,
                      chai_mpi_size());
  return CHAI_OK;
}

chai_status chai_mpi_barrier(void) {
  chai_status st =
      mpi_agree("chai.mpi.barrier", MPI_CALL_BARRIER, (int64_t[4]){0}, (const char *[4]){NULL});
  if (st) return st;
#ifdef CHAI_WITH_MPI
  if (mpi_active()) mpi_check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
  return CHAI_OK;
}

/* Broadcasts n bytes in pieces whose counts fit an int. */
static void bcast_raw(void *buf, size_t n, int root) {
#ifdef CHAI_WITH_MPI
  for (size_t off = 0; off < n; off += MPI_SEGMENT) {
    size_t len = n - off < MPI_SEGMENT ? n - off : MPI_SEGMENT;
    mpi_check(MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
#else
  (void)buf, (void)n, (void)root;
#endif
}

chai_status chai_mpi_broadcast_bytes(void *buf, size_t n, int root) {
  const char *fname = "chai.mpi.broadcast";
  chai_status st = mpi_agree(fname, MPI_CALL_BROADCAST, (int64_t[4]){(int64_t)n, root + 1},
                             (const char *[4]){"byte count", "root"});
  if (!st) st = check_root(fname, root);
  if (st) return st;
  if (mpi_active()) bcast_raw(buf, n, root);
  return CHAI_OK;
}

chai_status chai_mpi_broadcast(chai_tensor *t, int root) {
  const char *fname = "chai.mpi.broadcast";
  bool contiguous = chai_tensor_is_contiguous(t);
  chai_status st = mpi_agree(fname, MPI_CALL_BROADCAST,
                             (int64_t[4]){chai_tensor_numel(t), t->dtype, root + 1, contiguous},
                             (const char *[4]){"element count", "dtype", "root", "contiguity"});
  if (!st) st = check_root(fname, root);
  if (st) return st;
  if (!contiguous)
    return chai_error(CHAI_ERR_ARG, "%s: the tensor must be contiguous (use t:contiguous())",
                      fname);
  if (mpi_active()) bcast_raw(chai_tensor_data(t), chai_tensor_nbytes(t), root);
  return CHAI_OK;
}

chai_status chai_mpi_allgather_bytes(const void *data, size_t n, void *out) {
  const char *fname = "chai.mpi.allgather";
  chai_status st = mpi_agree(fname, MPI_CALL_ALLGATHER, (int64_t[4]){(int64_t)n},
                             (const char *[4]){"byte count"});
  if (st) return st;
  if (!mpi_active()) {
    if (n) memmove(out, data, n);
    return CHAI_OK;
  }
  if (n > INT_MAX) return chai_error(CHAI_ERR_ARG, "%s: %zu bytes exceed 2 GiB", fname, n);
#ifdef CHAI_WITH_MPI
  mpi_check(MPI_Allgather(data, (int)n, MPI_BYTE, out, (int)n, MPI_BYTE, MPI_COMM_WORLD),
            "MPI_Allgather");
#endif
  return CHAI_OK;
}

chai_status chai_mpi_gather_lengths(size_t n, int root, size_t *lens) {
  const char *fname = "chai.mpi.gather";
  chai_status st =
      mpi_agree(fname, MPI_CALL_GATHER_LENGTHS, (int64_t[4]){root + 1}, (const char *[4]){"root"});
  if (!st) st = check_root(fname, root);
  if (st) return st;
  if (!mpi_active()) {
    lens[0] = n;
    return CHAI_OK;
  }
#ifdef CHAI_WITH_MPI
  uint64_t mine = n;
  uint64_t *all = NULL;
  if (group.rank == root) {
    all = malloc((size_t)group.size * sizeof *all);
    if (!all) return chai_error(CHAI_ERR_NOMEM, "%s: out of memory", fname);
  }
  mpi_check(MPI_Gather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, root, MPI_COMM_WORLD),
            "MPI_Gather");
  uint64_t total = 0;
  if (all) {
    for (int r = 0; r < group.size; r++) {
      lens[r] = (size_t)all[r];
      total += all[r];
    }
    free(all);
  }
  /* every rank learns whether the bytes fit one MPI_Gatherv, so all refuse together */
  bcast_raw(&total, sizeof total, root);
  if (total > INT_MAX)
    return chai_error(CHAI_ERR_ARG, "%s: %llu bytes in all exceed 2 GiB", fname,
                      (unsigned long long)total);
#endif
  return CHAI_OK;
}

chai_status chai_mpi_gather_bytes(const void *data, size_t n, int root, void *out,
                                  const size_t *lens) {
  const char *fname = "chai.mpi.gather";
  chai_status st =
      mpi_agree(fname, MPI_CALL_GATHER_BYTES, (int64_t[4]){root + 1}, (const char *[4]){"root"});
  if (!st) st = check_root(fname, root);
  if (st) return st;
  if (!mpi_active()) {
    if (n) memmove(out, data, n);
    return CHAI_OK;
  }
#ifdef CHAI_WITH_MPI
  int *counts = NULL, *displs = NULL;
  if (group.rank == root) {
    counts = malloc((size_t)group.size * sizeof *counts);
    displs = malloc((size_t)group.size * sizeof *displs);
    if (!counts || !displs) chai_mpi_abort("out of memory in chai.mpi.gather", 1);
    size_t off = 0;
    for (int r = 0; r < group.size; r++) {
      counts[r] = (int)lens[r];
      displs[r] = (int)off;
      off += lens[r];
    }
  }
  mpi_check(
      MPI_Gatherv(data, (int)n, MPI_BYTE, out, counts, displs, MPI_BYTE, root, MPI_COMM_WORLD),
      "MPI_Gatherv");
  free(counts);
  free(displs);
#else
  (void)lens;
#endif
  return CHAI_OK;
}
