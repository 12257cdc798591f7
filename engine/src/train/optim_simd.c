/* AVX2 and AVX-512 twins of the fused AdamW update (see chai_adamw_update_ref). One pass reads
 * p, g, m, v and writes p, m, v: the update is memory-bound, so doing it in one sweep (instead of
 * torch's six tensor ops) is most of the win; the vector sqrt and divide are the rest. Tails use
 * masked loads/stores. */
#include <immintrin.h>
#include <stdint.h>

#include "train/optim_kernels.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f")))

AVX2 static inline __m256i tail_mask8(size_t r) {
  static const int32_t mk[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256((const __m256i *)(mk + 8 - r));
}

/* One vector of the update; the scalar order of chai_adamw_update_ref. */
#define ADAMW_BODY(P, G, M, V, MUL, ADD, SQRT, DIV)                                                \
  do {                                                                                             \
    G = MUL(G, vgs);                                                                               \
    P = MUL(P, vdecay);                                                                            \
    M = ADD(MUL(M, vb1), MUL(G, vb1c));                                                            \
    V = ADD(MUL(V, vb2), MUL(MUL(G, G), vb2c));                                                    \
    __typeof__(P) den_ = ADD(DIV(SQRT(V), vbc2), veps);                                            \
    P = ADD(P, MUL(vstep, DIV(M, den_)));                                                          \
  } while (0)

AVX2 void chai_adamw_update_avx2(float *p, const float *g, float *m, float *v, size_t n,
                                 const chai_adamw_consts *k) {
  const __m256 vgs = _mm256_set1_ps(k->grad_scale), vdecay = _mm256_set1_ps(k->decay);
  const __m256 vb1 = _mm256_set1_ps(k->beta1), vb1c = _mm256_set1_ps(k->one_minus_beta1);
  const __m256 vb2 = _mm256_set1_ps(k->beta2), vb2c = _mm256_set1_ps(k->one_minus_beta2);
  const __m256 vbc2 = _mm256_set1_ps(k->bc2_sqrt), veps = _mm256_set1_ps(k->eps);
  const __m256 vstep = _mm256_set1_ps(k->neg_step);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 P = _mm256_loadu_ps(p + i), G = _mm256_loadu_ps(g + i);
    __m256 M = _mm256_loadu_ps(m + i), V = _mm256_loadu_ps(v + i);
    ADAMW_BODY(P, G, M, V, _mm256_mul_ps, _mm256_add_ps, _mm256_sqrt_ps, _mm256_div_ps);
    _mm256_storeu_ps(p + i, P);
    _mm256_storeu_ps(m + i, M);
    _mm256_storeu_ps(v + i, V);
  }
  if (i < n) {
    __m256i tm = tail_mask8(n - i);
    __m256 P = _mm256_maskload_ps(p + i, tm), G = _mm256_maskload_ps(g + i, tm);
    __m256 M = _mm256_maskload_ps(m + i, tm), V = _mm256_maskload_ps(v + i, tm);
    ADAMW_BODY(P, G, M, V, _mm256_mul_ps, _mm256_add_ps, _mm256_sqrt_ps, _mm256_div_ps);
    _mm256_maskstore_ps(p + i, tm, P);
    _mm256_maskstore_ps(m + i, tm, M);
    _mm256_maskstore_ps(v + i, tm, V);
  }
}

AVX512 void chai_adamw_update_avx512(float *p, const float *g, float *m, float *v, size_t n,
                                     const chai_adamw_consts *k) {
  const __m512 vgs = _mm512_set1_ps(k->grad_scale), vdecay = _mm512_set1_ps(k->decay);
  const __m512 vb1 = _mm512_set1_ps(k->beta1), vb1c = _mm512_set1_ps(k->one_minus_beta1);
  const __m512 vb2 = _mm512_set1_ps(k->beta2), vb2c = _mm512_set1_ps(k->one_minus_beta2);
  const __m512 vbc2 = _mm512_set1_ps(k->bc2_sqrt), veps = _mm512_set1_ps(k->eps);
  const __m512 vstep = _mm512_set1_ps(k->neg_step);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 P = _mm512_loadu_ps(p + i), G = _mm512_loadu_ps(g + i);
    __m512 M = _mm512_loadu_ps(m + i), V = _mm512_loadu_ps(v + i);
    ADAMW_BODY(P, G, M, V, _mm512_mul_ps, _mm512_add_ps, _mm512_sqrt_ps, _mm512_div_ps);
    _mm512_storeu_ps(p + i, P);
    _mm512_storeu_ps(m + i, M);
    _mm512_storeu_ps(v + i, V);
  }
  if (i < n) {
    __mmask16 tm = (__mmask16)((1u << (n - i)) - 1);
    __m512 P = _mm512_maskz_loadu_ps(tm, p + i), G = _mm512_maskz_loadu_ps(tm, g + i);
    __m512 M = _mm512_maskz_loadu_ps(tm, m + i), V = _mm512_maskz_loadu_ps(tm, v + i);
    ADAMW_BODY(P, G, M, V, _mm512_mul_ps, _mm512_add_ps, _mm512_sqrt_ps, _mm512_div_ps);
    _mm512_mask_storeu_ps(p + i, tm, P);
    _mm512_mask_storeu_ps(m + i, tm, M);
    _mm512_mask_storeu_ps(v + i, tm, V);
  }
}
