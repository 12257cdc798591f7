/* Helpers shared by the AVX-512 and AMX product kernels: the output epilogue on 16 rows and the
 * int8 dequantizing step, operation by operation as chai/quant.h fixes them. */
#ifndef CHAI_Q512_COMMON_H
#define CHAI_Q512_COMMON_H

#include <immintrin.h>

#include "quant/qkernels.h"

#define Q512_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define Q512_INLINE static inline __attribute__((always_inline))

typedef int32_t __attribute__((may_alias, aligned(4))) q512_i32;

/* Lanes of rows r .. r+15 that exist (below `end`). */
Q512_INLINE __mmask16 q512_rows(int r, int end) {
  return end - r >= 16 ? 0xFFFF : (__mmask16)((1u << (end - r)) - 1);
}

/* out = accumulate ? y + v : v; out += bias; ReLU (max(v, 0) gives +0 for NaN and -0, as v > 0 ?
 * v : 0 does), on the lanes of m of y[r .. r+15]. */
Q512_TGT Q512_INLINE void q512_store(float *y, int r, __mmask16 m, __m512 v,
                                     const chai_qepilogue *e) {
  if (e->accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + r), v);
  if (e->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, e->bias + r));
  if (e->relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
  _mm512_mask_storeu_ps(y + r, m, v);
}

/* int8: (float)(Σ (q+128)·a − 128·Σ a) · (sx · s[r..r+15]). */
Q512_TGT Q512_INLINE __m512 q512_q8_value(__m512i acc, int32_t asum, float sx, const float *s) {
  __m512i dot = _mm512_sub_epi32(acc, _mm512_set1_epi32(128 * asum));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(dot),
                       _mm512_mul_ps(_mm512_set1_ps(sx), _mm512_loadu_ps(s)));
}

#endif
