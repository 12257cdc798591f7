/* int8 and int4 products with AVX-512 VNNI (vpdpbusd zmm). One 64-byte chunk of a packed row block
 * is 16 rows × one k-quad, the unsigned operand; the activation's k-quad, broadcast to all lanes,
 * is the signed one; lane i accumulates row i's dot product in int32. Integer sums are exact in any
 * order, so the kernels may split and reorder them freely; the float epilogue follows chai/quant.h
 * operation by operation and gives the bits of the _ref twins (quant/qref.c).
 *
 * GEMM register tiles: int8 3 row blocks × 8 tokens (24 accumulators; per k-quad 3 weight loads
 * and 8 broadcasts feed 24 vpdpbusd), int4 2 row blocks × 4 tokens (an int32 and a float
 * accumulator each: the group's integer sum is folded into the float one after every group). */
#include "kernels/q512_common.h"

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))

/* Token's k-quad kq (4 codes) in every lane. */
VNNI Q512_INLINE __m512i quad(const int8_t *a, int kq) {
  return _mm512_set1_epi32(((const q512_i32 *)a)[kq]);
}

/* ---- int8 ------------------------------------------------------------------------------------ */

/* Whole 16-row blocks streamed in order; four accumulators hide vpdpbusd's latency. */
VNNI void chai_q8_gemv_avx512vnni(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,
                                  const chai_qepilogue *e) {
  int nkq = w->cols_p / 4, end = r1 < w->rows ? r1 : w->rows;
  size_t bb = chai_qmat_block_bytes(w);
  const int8_t *a = xa->q;
  int32_t asum = xa->sum[0];
  const float *s = w->scales;
  for (int r = r0; r < end; r += 16) {
    const uint8_t *blk = w->data + (size_t)(r / 16) * bb;
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
    for (int kq = 0; kq < nkq; kq += 4) {
      const uint8_t *p = blk + (size_t)kq * 64;
      c0 = _mm512_dpbusd_epi32(c0, _mm512_load_si512(p), quad(a, kq));
      c1 = _mm512_dpbusd_epi32(c1, _mm512_load_si512(p + 64), quad(a, kq + 1));
      c2 = _mm512_dpbusd_epi32(c2, _mm512_load_si512(p + 128), quad(a, kq + 2));
      c3 = _mm512_dpbusd_epi32(c3, _mm512_load_si512(p + 192), quad(a, kq + 3));
    }
    __m512i acc = _mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3));
    q512_store(y, r, q512_rows(r, end), q512_q8_value(acc, asum, xa->scale[0], s + r), e);
  }
}

enum { Q8_T = 8 };

/* RB row blocks (1..3) from rb × Q8_T tokens from n0, over all of K. */
VNNI Q512_INLINE void q8_tile(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb,
                              int n0, const int RB, const chai_qepilogue *e) {
  size_t bb = chai_qmat_block_bytes(w);
  const uint8_t *W = w->data + (size_t)rb * bb;
  const int8_t *A = a->q + (size_t)n0 * a->stride;
  int nkq = w->cols_p / 4, S = a->stride;
  __m512i acc[3][Q8_T];
#pragma GCC unroll 3
  for (int b = 0; b < RB; b++)
#pragma GCC unroll 8
    for (int t = 0; t < Q8_T; t++)
      acc[b][t] = _mm512_setzero_si512();
  for (int kq = 0; kq < nkq; kq++) {
    __m512i wv[3];
#pragma GCC unroll 3
    for (int b = 0; b < RB; b++)
      wv[b] = _mm512_load_si512(W + b * bb + (size_t)kq * 64);
#pragma GCC unroll 8
    for (int t = 0; t < Q8_T; t++) {
      __m512i av = quad(A + (size_t)t * S, kq);
#pragma GCC unroll 3
      for (int b = 0; b < RB; b++)
        acc[b][t] = _mm512_dpbusd_epi32(acc[b][t], wv[b], av);
    }
  }
  int R = w->rows;
  const float *s = w->scales;
#pragma GCC unroll 8
  for (int t = 0; t < Q8_T; t++) {
    int n = n0 + t;
    if (n >= N) break;
    int32_t asum = a->sum[n];
    float *yn = y + (size_t)n * R;
#pragma GCC unroll 3
    for (int b = 0; b < RB; b++) {
      int r = 16 * (rb + b);
      if (r < R)
        q512_store(yn, r, q512_rows(r, R), q512_q8_value(acc[b][t], asum, a->scale[n], s + r), e);
    }
  }
}

VNNI void chai_q8_gemm_avx512vnni(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,
                                  int rb1, int n0, int n1, const chai_qepilogue *e) {
  for (int rb = rb0; rb < rb1; rb += 3)
    for (int n = n0; n < n1 && n < N; n += Q8_T)
      switch (rb1 - rb) {
      case 1: q8_tile(y, N, w, a, rb, n, 1, e); break;
      case 2: q8_tile(y, N, w, a, rb, n, 2, e); break;
      default: q8_tile(y, N, w, a, rb, n, 3, e); break;
      }
}

/* ---- int4 ------------------------------------------------------------------------------------ */

/* A chunk's low nibbles (k-quad 2·ko) and high nibbles (k-quad 2·ko + 1) as bytes. */
VNNI Q512_INLINE void nibbles(__m512i v, __m512i *lo, __m512i *hi) {
  const __m512i m = _mm512_set1_epi8(0x0F);
  *lo = _mm512_and_si512(v, m);
  *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m);
}

/* The 16 scales of a group (index gi of the packed order) as f32, and its zero codes as f32. */
VNNI Q512_INLINE __m512 q4_scales(const chai_qmat *w, size_t gi) {
  if (w->f16_scales)
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w->scales + gi)));
  return _mm512_loadu_ps((const float *)w->scales + gi);
}
VNNI Q512_INLINE __m512 q4_zeros(const chai_qmat *w, size_t gi) {
  if (!w->zero_point) return _mm512_set1_ps(8.0f);
  return _mm512_cvtepi32_ps(
      _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w->zeros + gi))));
}

/* Σ of token n's codes in group g (G/32 block sums), as f32 (exact: |Σ| < 2^24). */
Q512_INLINE float q4_gsum(const chai_qact *a, int n, int g, int G) {
  const int32_t *p = a->gsum + (size_t)n * (a->stride / 32) + (size_t)g * (G / 32);
  int32_t s = 0;
  for (int b = 0; b < G / 32; b++)
    s += p[b];
  return (float)s;
}

/* acc = fmaf((float)(d − z·gs), s, acc): d, z·gs and their difference are integers below 2^24, so
 * the float conversion, product and fnmadd are exact. */
VNNI Q512_INLINE __m512 q4_fold(__m512 acc, __m512i d, __m512 z, float gs, __m512 s) {
  __m512 v = _mm512_fnmadd_ps(z, _mm512_set1_ps(gs), _mm512_cvtepi32_ps(d));
  return _mm512_fmadd_ps(v, s, acc);
}

VNNI void chai_q4_gemv_avx512vnni(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,
                                  const chai_qepilogue *e) {
  int G = w->group, groups = w->cols_p / G, end = r1 < w->rows ? r1 : w->rows;
  size_t bb = chai_qmat_block_bytes(w);
  const int8_t *a = xa->q;
  for (int r = r0; r < end; r += 16) {
    int rb = r / 16;
    const uint8_t *p = w->data + (size_t)rb * bb;
    __m512 acc = _mm512_setzero_ps();
    for (int g = 0; g < groups; g++) {
      __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
      for (int ko = g * G / 8; ko < (g + 1) * G / 8; ko += 2, p += 128) {
        __m512i l0, h0, l1, h1;
        nibbles(_mm512_load_si512(p), &l0, &h0);
        nibbles(_mm512_load_si512(p + 64), &l1, &h1);
        c0 = _mm512_dpbusd_epi32(c0, l0, quad(a, 2 * ko));
        c1 = _mm512_dpbusd_epi32(c1, h0, quad(a, 2 * ko + 1));
        c2 = _mm512_dpbusd_epi32(c2, l1, quad(a, 2 * ko + 2));
        c3 = _mm512_dpbusd_epi32(c3, h1, quad(a, 2 * ko + 3));
      }
      __m512i d = _mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3));
      size_t gi = ((size_t)rb * (size_t)groups + (size_t)g) * 16;
      acc = q4_fold(acc, d, q4_zeros(w, gi), q4_gsum(xa, 0, g, G), q4_scales(w, gi));
    }
    q512_store(y, r, q512_rows(r, end), _mm512_mul_ps(acc, _mm512_set1_ps(xa->scale[0])), e);
  }
}

enum { Q4_T = 4 };

VNNI Q512_INLINE void q4_tile(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb,
                              int n0, const int RB, const chai_qepilogue *e) {
  int G = w->group, groups = w->cols_p / G, S = a->stride;
  size_t bb = chai_qmat_block_bytes(w);
  const uint8_t *W = w->data + (size_t)rb * bb;
  const int8_t *A = a->q + (size_t)n0 * S;
  __m512 facc[2][Q4_T];
#pragma GCC unroll 2
  for (int b = 0; b < RB; b++)
#pragma GCC unroll 4
    for (int t = 0; t < Q4_T; t++)
      facc[b][t] = _mm512_setzero_ps();
  for (int g = 0; g < groups; g++) {
    __m512i iacc[2][Q4_T];
#pragma GCC unroll 2
    for (int b = 0; b < RB; b++)
#pragma GCC unroll 4
      for (int t = 0; t < Q4_T; t++)
        iacc[b][t] = _mm512_setzero_si512();
    for (int ko = g * G / 8; ko < (g + 1) * G / 8; ko++) {
      __m512i lo[2], hi[2];
#pragma GCC unroll 2
      for (int b = 0; b < RB; b++)
        nibbles(_mm512_load_si512(W + b * bb + (size_t)ko * 64), &lo[b], &hi[b]);
#pragma GCC unroll 4
      for (int t = 0; t < Q4_T; t++) {
        __m512i al = quad(A + (size_t)t * S, 2 * ko), ah = quad(A + (size_t)t * S, 2 * ko + 1);
#pragma GCC unroll 2
        for (int b = 0; b < RB; b++)
          iacc[b][t] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(iacc[b][t], lo[b], al), hi[b], ah);
      }
    }
#pragma GCC unroll 2
    for (int b = 0; b < RB; b++) {
      size_t gi = ((size_t)(rb + b) * (size_t)groups + (size_t)g) * 16;
      __m512 z = q4_zeros(w, gi), s = q4_scales(w, gi);
#pragma GCC unroll 4
      for (int t = 0; t < Q4_T; t++)
        facc[b][t] = q4_fold(facc[b][t], iacc[b][t], z, q4_gsum(a, n0 + t, g, G), s);
    }
  }
  int R = w->rows;
#pragma GCC unroll 4
  for (int t = 0; t < Q4_T; t++) {
    int n = n0 + t;
    if (n >= N) break;
    float *yn = y + (size_t)n * R;
#pragma GCC unroll 2
    for (int b = 0; b < RB; b++) {
      int r = 16 * (rb + b);
      if (r < R)
        q512_store(yn, r, q512_rows(r, R), _mm512_mul_ps(facc[b][t], _mm512_set1_ps(a->scale[n])),
                   e);
    }
  }
}

VNNI void chai_q4_gemm_avx512vnni(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,
                                  int rb1, int n0, int n1, const chai_qepilogue *e) {
  for (int rb = rb0; rb < rb1; rb += 2)
    for (int n = n0; n < n1 && n < N; n += Q4_T) {
      if (rb1 - rb == 1)
        q4_tile(y, N, w, a, rb, n, 1, e);
      else
        q4_tile(y, N, w, a, rb, n, 2, e);
    }
}
