/* Linear layers and batched matmul on float arrays, through chai_sgemm (OpenBLAS). The callers
 * (chai_op_* and the model code) have already run chai_blas_init() successfully. */
#include "chai/blas.h"
#include "chai/ops.h"

/* out (N,OC) = inp (N,C) · weight (OC,C)ᵀ + bias (OC). The bias is written first so that the GEMM
 * accumulates onto it (beta = 1) and the output is touched once more at most. */
void chai_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                         int N, int C, int OC) {
  if (N <= 0 || OC <= 0) return;
  if (bias) {
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++)
        out[(size_t)n * OC + o] = bias[o];
  }
  chai_sgemm(false, true, N, OC, C, 1.0f, inp, C, weight, C, bias ? 1.0f : 0.0f, out, OC);
}

/* dinp (N,C) += dout (N,OC) · weight (OC,C); dweight (OC,C) += dout (N,OC)ᵀ · inp (N,C);
 * dbias (OC) += Σ_n dout. The bias sum runs over n in order, so it does not depend on threads. */
void chai_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int N, int C, int OC) {
  if (N <= 0 || OC <= 0 || C < 0) return;
  if (dinp) chai_sgemm(false, false, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
  if (dweight) chai_sgemm(true, false, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
  if (dbias) {
    for (int n = 0; n < N; n++) {
      const float *d = dout + (size_t)n * OC;
      for (int o = 0; o < OC; o++)
        dbias[o] += d[o];
    }
  }
}

/* Per batch: out (M,N) = op(a) (M,K) · op(b) (K,N); a stored (M,K) or (K,M) when ta, b stored
 * (K,N) or (N,K) when tb. */
void chai_matmul_forward(float *out, const float *a, const float *b, int batch, int M, int N, int K,
                         bool ta, bool tb) {
  int lda = ta ? M : K, ldb = tb ? K : N;
  for (int i = 0; i < batch; i++)
    chai_sgemm(ta, tb, M, N, K, 1.0f, a + (size_t)i * M * K, lda, b + (size_t)i * K * N, ldb, 0.0f,
               out + (size_t)i * M * N, N);
}

/* With G = dout (M,N): d op(a) = G · op(b)ᵀ (M,K) and d op(b) = op(a)ᵀ · G (K,N); when a or b is
 * stored transposed its gradient is the transpose of those, which is again one GEMM. */
void chai_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                          int batch, int M, int N, int K, bool ta, bool tb) {
  int lda = ta ? M : K, ldb = tb ? K : N;
  for (int i = 0; i < batch; i++) {
    const float *g = dout + (size_t)i * M * N;
    const float *ai = a + (size_t)i * M * K, *bi = b + (size_t)i * K * N;
    if (da) {
      float *dai = da + (size_t)i * M * K;
      if (!ta) /* da (M,K) += G · op(b)ᵀ */
        chai_sgemm(false, !tb, M, K, N, 1.0f, g, N, bi, ldb, 1.0f, dai, K);
      else /* da (K,M) += op(b) · Gᵀ */
        chai_sgemm(tb, true, K, M, N, 1.0f, bi, ldb, g, N, 1.0f, dai, M);
    }
    if (db) {
      float *dbi = db + (size_t)i * K * N;
      if (!tb) /* db (K,N) += op(a)ᵀ · G */
        chai_sgemm(!ta, false, K, N, M, 1.0f, ai, lda, g, N, 1.0f, dbi, N);
      else /* db (N,K) += Gᵀ · op(a) */
        chai_sgemm(true, ta, N, K, M, 1.0f, g, N, ai, lda, 1.0f, dbi, K);
    }
  }
}
