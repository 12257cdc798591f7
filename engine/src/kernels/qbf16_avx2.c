/* bf16 products on AVX2: two FMAs per k-pair, odd element first, exactly the _ref's arithmetic
 * (see qbf16_avx512.c). A 64-byte chunk is two ymm (rows 0-7, rows 8-15); every (row, token) is
 * one chain in k order. GEMM tiles: one row block × 4 tokens (8 chains). */
#include <immintrin.h>

#include "quant/qkernels.h"

#define TGT2 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

typedef int32_t __attribute__((may_alias, aligned(4))) i32_alias;

TGT2 INLINE __m256 dot_fma(__m256 acc, __m256i w, __m256i x) {
  const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000);
  acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(w, hi)),
                        _mm256_castsi256_ps(_mm256_and_si256(x, hi)), acc);
  return _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16)),
                         _mm256_castsi256_ps(_mm256_slli_epi32(x, 16)), acc);
}

TGT2 INLINE void store8(float *y, int r, int valid, __m256 v, const chai_qepilogue *e) {
  if (valid <= 0) return;
  __m256i m =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  if (e->accumulate) v = _mm256_add_ps(_mm256_maskload_ps(y + r, m), v);
  if (e->bias) v = _mm256_add_ps(v, _mm256_maskload_ps(e->bias + r, m));
  if (e->relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
  _mm256_maskstore_ps(y + r, m, v);
}

TGT2 void chai_bf16_gemv_avx2(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,
                              const chai_qepilogue *e) {
  int nkp = w->cols_p / 2, end = r1 < w->rows ? r1 : w->rows;
  size_t bb = chai_qmat_block_bytes(w);
  const i32_alias *x = (const i32_alias *)xa->bf;
  for (int r = r0; r < end; r += 16) {
    const uint8_t *p = w->data + (size_t)(r / 16) * bb;
    __m256 lo = _mm256_setzero_ps(), hi = lo;
    for (int kp = 0; kp < nkp; kp++, p += 64) {
      __m256i xv = _mm256_set1_epi32(x[kp]);
      lo = dot_fma(lo, _mm256_load_si256((const __m256i *)p), xv);
      hi = dot_fma(hi, _mm256_load_si256((const __m256i *)(p + 32)), xv);
    }
    store8(y, r, end - r, lo, e);
    store8(y, r + 8, end - r - 8, hi, e);
  }
}

enum { BF_T2 = 4 };

TGT2 void chai_bf16_gemm_avx2(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,
                              int rb1, int n0, int n1, const chai_qepilogue *e) {
  size_t bb = chai_qmat_block_bytes(w);
  int nkp = w->cols_p / 2, S = a->stride, R = w->rows;
  for (int rb = rb0; rb < rb1; rb++)
    for (int n = n0; n < n1 && n < N; n += BF_T2) {
      const uint8_t *p = w->data + (size_t)rb * bb;
      const uint16_t *X = a->bf + (size_t)n * S;
      __m256 lo[BF_T2], hi[BF_T2];
#pragma GCC unroll 4
      for (int t = 0; t < BF_T2; t++)
        lo[t] = hi[t] = _mm256_setzero_ps();
      for (int kp = 0; kp < nkp; kp++, p += 64) {
        __m256i wl = _mm256_load_si256((const __m256i *)p);
        __m256i wh = _mm256_load_si256((const __m256i *)(p + 32));
#pragma GCC unroll 4
        for (int t = 0; t < BF_T2; t++) {
          __m256i xv = _mm256_set1_epi32(((const i32_alias *)(X + (size_t)t * S))[kp]);
          lo[t] = dot_fma(lo[t], wl, xv);
          hi[t] = dot_fma(hi[t], wh, xv);
        }
      }
      int r = 16 * rb;
#pragma GCC unroll 4
      for (int t = 0; t < BF_T2; t++) {
        if (n + t >= N) break;
        float *yn = y + (size_t)(n + t) * R;
        store8(yn, r, R - r, lo[t], e);
        store8(yn, r + 8, R - r - 8, hi[t], e);
      }
    }
}
