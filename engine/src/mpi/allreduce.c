/* chai_mpi_allreduce: a sum over the ranks in a fixed order. MPI_Allreduce may add in any order
 * (it picks its algorithm by message size and group shape), so its float sums can change with
 * the size of a tensor or differ between ranks. Here every element's sum is done once, by the
 * rank that owns its chunk, strictly in rank order; an all-to-all brings that rank every rank's
 * copy of its chunk and an all-gather hands the sums back (the traffic of a ring allreduce). */
#include <stdlib.h>
#include <string.h>

#include "mpi/mpi_internal.h"

chai_status chai_mpi_op_parse(const char *name, chai_mpi_op *out) {
  if (name && strcmp(name, "sum") == 0)
    *out = CHAI_MPI_SUM;
  else if (name && strcmp(name, "mean") == 0)
    *out = CHAI_MPI_MEAN;
  else
    return chai_error(CHAI_ERR_ARG, "chai.mpi.allreduce: unknown op '%s' (known: sum, mean)",
                      name ? name : "(null)");
  return CHAI_OK;
}

#ifdef CHAI_WITH_MPI
/* dst[i] = ((src₀[i] + src₁[i]) + …) over `parts` blocks of n elements at stride n. Integers add
 * as unsigned (wrapping, as two's complement hardware does, without signed overflow). */
static void ordered_sum(void *dst, const void *src, size_t n, int parts, chai_dtype dt) {
  if (dt == CHAI_F32) {
    float *d = dst;
    const float *s = src;
    for (size_t i = 0; i < n; i++) {
      float acc = s[i];
      for (int p = 1; p < parts; p++)
        acc += s[(size_t)p * n + i];
      d[i] = acc;
    }
  } else if (dt == CHAI_I32) {
    int32_t *d = dst;
    const uint32_t *s = src;
    for (size_t i = 0; i < n; i++) {
      uint32_t acc = s[i];
      for (int p = 1; p < parts; p++)
        acc += s[(size_t)p * n + i];
      memcpy(&d[i], &acc, sizeof acc);
    }
  } else {
    int64_t *d = dst;
    const uint64_t *s = src;
    for (size_t i = 0; i < n; i++) {
      uint64_t acc = s[i];
      for (int p = 1; p < parts; p++)
        acc += s[(size_t)p * n + i];
      memcpy(&d[i], &acc, sizeof acc);
    }
  }
}

static MPI_Datatype mpi_type(chai_dtype dt) {
  return dt == CHAI_F32 ? MPI_FLOAT : dt == CHAI_I32 ? MPI_INT32_T : MPI_INT64_T;
}

/* One segment of n elements (n ≤ MPI_SEGMENT): chunk k = [k·c, k·c + len_k) with c = ⌈n/N⌉. */
static void allreduce_segment(char *buf, size_t n, chai_dtype dt, chai_mpi_op op, char *scratch,
                              int *counts, int *displs, int *rcounts, int *rdispls) {
  int N = chai_mpi_size(), me = chai_mpi_rank();
  size_t es = chai_dtype_size(dt), c = (n + (size_t)N - 1) / (size_t)N;
  for (int k = 0; k < N; k++) {
    size_t lo = (size_t)k * c, len = lo >= n ? 0 : (n - lo < c ? n - lo : c);
    counts[k] = (int)len;
    displs[k] = (int)lo;
  }
  int mine = counts[me];
  for (int k = 0; k < N; k++) {
    rcounts[k] = mine;
    rdispls[k] = k * mine;
  }
  MPI_Datatype t = mpi_type(dt);
  mpi_check(MPI_Alltoallv(buf, counts, displs, t, scratch, rcounts, rdispls, t, MPI_COMM_WORLD),
            "MPI_Alltoallv (allreduce)");
  char *own = buf + (size_t)displs[me] * es;
  ordered_sum(own, scratch, (size_t)mine, N, dt);
  if (op == CHAI_MPI_MEAN) {
    float *f = (float *)own;
    for (int i = 0; i < mine; i++)
      f[i] /= (float)N;
  }
  mpi_check(MPI_Allgatherv(MPI_IN_PLACE, 0, t, buf, counts, displs, t, MPI_COMM_WORLD),
            "MPI_Allgatherv (allreduce)");
}
#endif

chai_status chai_mpi_allreduce(chai_tensor *t, chai_mpi_op op) {
  const char *fname = "chai.mpi.allreduce";
  bool contiguous = chai_tensor_is_contiguous(t);
  chai_status st = mpi_agree(fname, MPI_CALL_ALLREDUCE,
                             (int64_t[4]){chai_tensor_numel(t), t->dtype, op, contiguous},
                             (const char *[4]){"element count", "dtype", "op", "contiguity"});
  if (st) return st;
  /* From here on every rank sees the same dtype, op and layout: they refuse together. */
  if (op != CHAI_MPI_SUM && op != CHAI_MPI_MEAN)
    return chai_error(CHAI_ERR_ARG, "%s: unknown op %d", fname, (int)op);
  if (t->dtype != CHAI_F32 && t->dtype != CHAI_I32 && t->dtype != CHAI_I64)
    return chai_error(CHAI_ERR_ARG, "%s: dtype %s is not supported (f32, i32, i64)", fname,
                      chai_dtype_name(t->dtype));
  if (op == CHAI_MPI_MEAN && t->dtype != CHAI_F32)
    return chai_error(CHAI_ERR_ARG, "%s: \"mean\" needs an f32 tensor, got %s", fname,
                      chai_dtype_name(t->dtype));
  if (!contiguous)
    return chai_error(CHAI_ERR_ARG, "%s: the tensor must be contiguous (use t:contiguous())",
                      fname);
  if (!mpi_active()) return CHAI_OK; /* one rank: the sum and the mean are the tensor itself */
#ifdef CHAI_WITH_MPI
  int N = chai_mpi_size();
  size_t n = (size_t)chai_tensor_numel(t), es = chai_dtype_size(t->dtype);
  size_t seg = n < MPI_SEGMENT ? n : MPI_SEGMENT;
  size_t c = (seg + (size_t)N - 1) / (size_t)N;
  char *scratch = malloc((size_t)N * c * es + 1);
  int *ints = malloc(4 * (size_t)N * sizeof(int));
  if (!scratch || !ints) {
    free(scratch);
    free(ints);
    /* a rank short of memory cannot tell the others: MPI's own failure rule applies */
    chai_mpi_abort("out of memory for the allreduce scratch", 1);
  }
  char *base = chai_tensor_data(t);
  for (size_t off = 0; off < n; off += MPI_SEGMENT) {
    size_t len = n - off < MPI_SEGMENT ? n - off : MPI_SEGMENT;
    allreduce_segment(base + off * es, len, t->dtype, op, scratch, ints, ints + N, ints + 2 * N,
                      ints + 3 * N);
  }
  free(scratch);
  free(ints);
#endif
  return CHAI_OK;
}
