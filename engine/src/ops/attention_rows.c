/* Decode attention over an f32 KV cache, one query row for a list of heads: the scalar twins of
 * the row kernels (kernels/kernels.h) and their dispatchers. A decode step meets each cached row
 * once and the rows arrive cold (the step's weight stream has evicted them), so these read a row's
 * heads together, as one run of memory; per-head GEMM calls cost more in call overhead and in
 * scattered reads than in arithmetic at these sizes (one query, D = 64). */
#include <string.h>

#include "chai/cpu.h"
#include "kernels/kernels.h"

void chai_attn_scores_ref(float *sc, int ldsc, const float *q, const float *k, size_t k_ts,
                          const int *heads, int nh, int n, int D, float scale) {
  for (int j = 0; j < n; j++)
    for (int i = 0; i < nh; i++) {
      const float *qh = q + (size_t)heads[i] * D, *kh = k + (size_t)j * k_ts + (size_t)heads[i] * D;
      float acc = 0;
      for (int d = 0; d < D; d++)
        acc += qh[d] * kh[d];
      sc[(size_t)i * ldsc + j] = acc * scale;
    }
}

void chai_attn_values_ref(float *o, const float *p, int ldp, const int *prow, const int *heads,
                          int nh, const float *v, size_t v_ts, int n, int D) {
  for (int i = 0; i < nh; i++)
    memset(o + (size_t)heads[i] * D, 0, (size_t)D * sizeof(float));
  for (int j = 0; j < n; j++)
    for (int i = 0; i < nh; i++) {
      float pj = p[(size_t)prow[i] * ldp + j];
      if (pj == 0.0f) continue;
      float *oh = o + (size_t)heads[i] * D;
      const float *vh = v + (size_t)j * v_ts + (size_t)heads[i] * D;
      for (int d = 0; d < D; d++)
        oh[d] += pj * vh[d];
    }
}

void chai_attn_scores(float *sc, int ldsc, const float *q, const float *k, size_t k_ts,
                      const int *heads, int nh, int n, int D, float scale) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512:
    chai_attn_scores_avx512(sc, ldsc, q, k, k_ts, heads, nh, n, D, scale);
    break;
  case CHAI_SIMD_AVX2: chai_attn_scores_avx2(sc, ldsc, q, k, k_ts, heads, nh, n, D, scale); break;
  default: chai_attn_scores_ref(sc, ldsc, q, k, k_ts, heads, nh, n, D, scale);
  }
}

void chai_attn_values(float *o, const float *p, int ldp, const int *prow, const int *heads, int nh,
                      const float *v, size_t v_ts, int n, int D) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_attn_values_avx512(o, p, ldp, prow, heads, nh, v, v_ts, n, D); break;
  case CHAI_SIMD_AVX2: chai_attn_values_avx2(o, p, ldp, prow, heads, nh, v, v_ts, n, D); break;
  default: chai_attn_values_ref(o, p, ldp, prow, heads, nh, v, v_ts, n, D);
  }
}
