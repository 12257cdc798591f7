/* bf16 products on AVX-512: with AVX512-BF16 (vdpbf16ps: lane i adds the odd pair product, then
 * the even one, each rounded, which is the _ref's order; only its flushing of subnormals differs),
 * and without it (two FMAs per pair in the same order: exactly the _ref). A 64-byte chunk of a
 * packed block is 16 rows × one k-pair; the activation's pair is broadcast. Every (row, token)
 * is one accumulation chain in k order, so the GEMV, any GEMM tile and the _ref agree. GEMM tiles
 * are 3 row blocks × 8 tokens (24 chains). */
#include "kernels/q512_common.h"

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#define F512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* The two pair-product steps, as vdpbf16ps or as two FMAs. `w` is a chunk (16 rows × a pair), `x`
 * the pair broadcast. */
BF16 Q512_INLINE __m512 dot_bf16(__m512 acc, __m512i w, __m512i x) {
  return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)x);
}
F512 Q512_INLINE __m512 dot_fma(__m512 acc, __m512i w, __m512i x) {
  const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000);
  acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(w, hi)),
                        _mm512_castsi512_ps(_mm512_and_si512(x, hi)), acc);
  return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(w, 16)),
                         _mm512_castsi512_ps(_mm512_slli_epi32(x, 16)), acc);
}

/* The GEMV: one chain per block, two blocks at a time so that two chains are in flight. */
#define GEMV(name, TGT, DOT)                                                                       \
  TGT void name(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,                 \
                const chai_qepilogue *e) {                                                         \
    int nkp = w->cols_p / 2, end = r1 < w->rows ? r1 : w->rows;                                    \
    size_t bb = chai_qmat_block_bytes(w);                                                          \
    const q512_i32 *x = (const q512_i32 *)xa->bf;                                                  \
    int r = r0;                                                                                    \
    for (; r + 16 < end; r += 32) {                                                                \
      const uint8_t *p = w->data + (size_t)(r / 16) * bb, *q = p + bb;                             \
      __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                                    \
      for (int kp = 0; kp < nkp; kp++) {                                                           \
        __m512i xv = _mm512_set1_epi32(x[kp]);                                                     \
        a0 = DOT(a0, _mm512_load_si512(p + (size_t)kp * 64), xv);                                  \
        a1 = DOT(a1, _mm512_load_si512(q + (size_t)kp * 64), xv);                                  \
      }                                                                                            \
      q512_store(y, r, 0xFFFF, a0, e);                                                             \
      q512_store(y, r + 16, q512_rows(r + 16, end), a1, e);                                        \
    }                                                                                              \
    for (; r < end; r += 16) {                                                                     \
      const uint8_t *p = w->data + (size_t)(r / 16) * bb;                                          \
      __m512 a0 = _mm512_setzero_ps();                                                             \
      for (int kp = 0; kp < nkp; kp++)                                                             \
        a0 = DOT(a0, _mm512_load_si512(p + (size_t)kp * 64), _mm512_set1_epi32(x[kp]));            \
      q512_store(y, r, q512_rows(r, end), a0, e);                                                  \
    }                                                                                              \
  }

GEMV(chai_bf16_gemv_avx512bf16, BF16, dot_bf16)
GEMV(chai_bf16_gemv_avx512, F512, dot_fma)

enum { BF_T = 8 };

#define TILE(name, TGT, DOT)                                                                       \
  TGT Q512_INLINE void name(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb,       \
                            int n0, const int RB, const chai_qepilogue *e) {                       \
    size_t bb = chai_qmat_block_bytes(w);                                                          \
    const uint8_t *W = w->data + (size_t)rb * bb;                                                  \
    const uint16_t *X = a->bf + (size_t)n0 * a->stride;                                            \
    int nkp = w->cols_p / 2, S = a->stride;                                                        \
    __m512 acc[3][BF_T];                                                                           \
    _Pragma("GCC unroll 3") for (int b = 0; b < RB; b++)                                           \
        _Pragma("GCC unroll 8") for (int t = 0; t < BF_T; t++) acc[b][t] = _mm512_setzero_ps();    \
    for (int kp = 0; kp < nkp; kp++) {                                                             \
      __m512i wv[3];                                                                               \
      _Pragma("GCC unroll 3") for (int b = 0; b < RB; b++) wv[b] =                                 \
          _mm512_load_si512(W + b * bb + (size_t)kp * 64);                                         \
      _Pragma("GCC unroll 8") for (int t = 0; t < BF_T; t++) {                                     \
        __m512i xv = _mm512_set1_epi32(((const q512_i32 *)(X + (size_t)t * S))[kp]);               \
        _Pragma("GCC unroll 3") for (int b = 0; b < RB; b++) acc[b][t] =                           \
            DOT(acc[b][t], wv[b], xv);                                                             \
      }                                                                                            \
    }                                                                                              \
    int R = w->rows;                                                                               \
    _Pragma("GCC unroll 8") for (int t = 0; t < BF_T; t++) {                                       \
      int n = n0 + t;                                                                              \
      if (n >= N) break;                                                                           \
      _Pragma("GCC unroll 3") for (int b = 0; b < RB; b++) {                                       \
        int r = 16 * (rb + b);                                                                     \
        if (r < R) q512_store(y + (size_t)n * R, r, q512_rows(r, R), acc[b][t], e);                \
      }                                                                                            \
    }                                                                                              \
  }

TILE(tile_bf16, BF16, dot_bf16)
TILE(tile_fma, F512, dot_fma)

#define GEMM(name, TGT, TILEFN)                                                                    \
  TGT void name(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0, int rb1, int n0, \
                int n1, const chai_qepilogue *e) {                                                 \
    for (int rb = rb0; rb < rb1; rb += 3)                                                          \
      for (int n = n0; n < n1 && n < N; n += BF_T)                                                 \
        switch (rb1 - rb) {                                                                        \
        case 1: TILEFN(y, N, w, a, rb, n, 1, e); break;                                            \
        case 2: TILEFN(y, N, w, a, rb, n, 2, e); break;                                            \
        default: TILEFN(y, N, w, a, rb, n, 3, e); break;                                           \
        }                                                                                          \
  }

GEMM(chai_bf16_gemm_avx512bf16, BF16, tile_bf16)
GEMM(chai_bf16_gemm_avx512, F512, tile_fma)
