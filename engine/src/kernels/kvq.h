/* Internal: the pieces of the int8 KV cache (chai/kvq.h), each with a scalar _ref twin in
 * src/ops/attention_q8.c and AVX2 / AVX-512 versions in src/kernels/kvq_avx2.c, kvq_avx512.c. The
 * driver there does the blocking, masking, softmax and threads; these do the arithmetic on the
 * codes. Call _avx2 only at SIMD level >= AVX2 and _avx512 only at AVX512. */
#ifndef CHAI_KERNELS_KVQ_H
#define CHAI_KERNELS_KVQ_H

#include <stddef.h>
#include <stdint.h>

/* One row: x (D) -> codes c (D) and *s (chai/kvq.h's rule). Every version gives the same bits. */
void chai_kvq_store_row_ref(int8_t *c, float *s, const float *x, int D);
void chai_kvq_store_row_avx2(int8_t *c, float *s, const float *x, int D);
void chai_kvq_store_row_avx512(int8_t *c, float *s, const float *x, int D);

/* Scores of bq queries against n keys of one head:
 *   sc[i·ldsc + j] = (Σ_d q[i·q_ts + d] · k[j·k_ts + d]) · (ks[j·ks_ts] · scale)
 * for i < bq, j < n; q rows of D floats, k rows of D codes. The ref sums d in order. */
typedef void chai_kvq_scores_fn(float *sc, int ldsc, const float *q, int q_ts, int bq,
                                const int8_t *k, size_t k_ts, const float *ks, int ks_ts, int n,
                                int D, float scale);
chai_kvq_scores_fn chai_kvq_scores_ref, chai_kvq_scores_avx2, chai_kvq_scores_avx512;

/* Probability-weighted values of one head for bq queries over n keys:
 *   o[i·o_ts + d] = Σ_{j < n, p[i·ldp + j] != 0} (p[i·ldp + j] · vs[j·vs_ts]) · v[j·v_ts + d]
 * (o is overwritten; a key whose probability is 0 is never read). The ref sums j in order. */
typedef void chai_kvq_values_fn(float *o, int o_ts, const float *p, int ldp, int bq,
                                const int8_t *v, size_t v_ts, const float *vs, int vs_ts, int n,
                                int D);
chai_kvq_values_fn chai_kvq_values_ref, chai_kvq_values_avx2, chai_kvq_values_avx512;

#endif
