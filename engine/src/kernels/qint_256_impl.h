/* The 256-bit int8/int4 kernels, written once for two instruction sets: qint_avxvnni.c includes
 * this with Q256_DPBUSD = AVX-VNNI's vpdpbusd ymm, qint_avx2.c with an exact AVX2 emulation. The
 * includer defines Q256_TGT (the target attribute), Q256_DPBUSD(acc, u8 w, s8 a) and Q256_NAME(fmt,
 * kind) (the exported names). A 64-byte chunk of a packed block is two ymm: rows 0-7 and rows
 * 8-15, each lane one row's k-quad. Integer sums are exact in any order; the float epilogue
 * follows chai/quant.h operation by operation (see qint_avx512.c, whose structure this repeats at
 * half the width: GEMM tiles of one row block × 4 tokens for int8, × 2 tokens for int4). */
#include <immintrin.h>
#include <string.h>

#include "quant/qkernels.h"

#define INLINE static inline __attribute__((always_inline))

typedef int32_t __attribute__((may_alias, aligned(4))) i32_alias_256;

Q256_TGT INLINE __m256i quad8(const int8_t *a, int kq) {
  return _mm256_set1_epi32(((const i32_alias_256 *)a)[kq]);
}

/* The epilogue on rows r .. r+valid-1 of y (valid <= 0: nothing). */
Q256_TGT INLINE void store8(float *y, int r, int valid, __m256 v, const chai_qepilogue *e) {
  if (valid >= 8) {
    if (e->accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y + r), v);
    if (e->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(e->bias + r));
    if (e->relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
    _mm256_storeu_ps(y + r, v);
  } else if (valid > 0) {
    __m256i m =
        _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    if (e->accumulate) v = _mm256_add_ps(_mm256_maskload_ps(y + r, m), v);
    if (e->bias) v = _mm256_add_ps(v, _mm256_maskload_ps(e->bias + r, m));
    if (e->relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
    _mm256_maskstore_ps(y + r, m, v);
  }
}

Q256_TGT INLINE __m256 q8_value8(__m256i acc, int32_t asum, float sx, const float *s) {
  __m256i dot = _mm256_sub_epi32(acc, _mm256_set1_epi32(128 * asum));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(dot),
                       _mm256_mul_ps(_mm256_set1_ps(sx), _mm256_loadu_ps(s)));
}

/* ---- int8 ------------------------------------------------------------------------------------ */

Q256_TGT void Q256_NAME(q8, gemv)(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,
                                  const chai_qepilogue *e) {
  int nkq = w->cols_p / 4, end = r1 < w->rows ? r1 : w->rows;
  size_t bb = chai_qmat_block_bytes(w);
  const int8_t *a = xa->q;
  int32_t asum = xa->sum[0];
  const float *s = w->scales;
  for (int r = r0; r < end; r += 16) {
    const uint8_t *p = w->data + (size_t)(r / 16) * bb;
    __m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0;
    for (int kq = 0; kq < nkq; kq += 2, p += 128) {
      __m256i a0 = quad8(a, kq), a1 = quad8(a, kq + 1);
      l0 = Q256_DPBUSD(l0, _mm256_load_si256((const __m256i *)p), a0);
      h0 = Q256_DPBUSD(h0, _mm256_load_si256((const __m256i *)(p + 32)), a0);
      l1 = Q256_DPBUSD(l1, _mm256_load_si256((const __m256i *)(p + 64)), a1);
      h1 = Q256_DPBUSD(h1, _mm256_load_si256((const __m256i *)(p + 96)), a1);
    }
    float sx = xa->scale[0];
    store8(y, r, end - r, q8_value8(_mm256_add_epi32(l0, l1), asum, sx, s + r), e);
    store8(y, r + 8, end - r - 8, q8_value8(_mm256_add_epi32(h0, h1), asum, sx, s + r + 8), e);
  }
}

enum { Q8_T256 = 4, Q4_T256 = 2 };

Q256_TGT void Q256_NAME(q8, gemm)(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,
                                  int rb1, int n0, int n1, const chai_qepilogue *e) {
  size_t bb = chai_qmat_block_bytes(w);
  int nkq = w->cols_p / 4, S = a->stride, R = w->rows;
  const float *s = w->scales;
  for (int rb = rb0; rb < rb1; rb++)
    for (int n = n0; n < n1 && n < N; n += Q8_T256) {
      const uint8_t *p = w->data + (size_t)rb * bb;
      const int8_t *A = a->q + (size_t)n * S;
      __m256i lo[Q8_T256], hi[Q8_T256];
#pragma GCC unroll 4
      for (int t = 0; t < Q8_T256; t++)
        lo[t] = hi[t] = _mm256_setzero_si256();
      for (int kq = 0; kq < nkq; kq++, p += 64) {
        __m256i wl = _mm256_load_si256((const __m256i *)p);
        __m256i wh = _mm256_load_si256((const __m256i *)(p + 32));
#pragma GCC unroll 4
        for (int t = 0; t < Q8_T256; t++) {
          __m256i av = quad8(A + (size_t)t * S, kq);
          lo[t] = Q256_DPBUSD(lo[t], wl, av);
          hi[t] = Q256_DPBUSD(hi[t], wh, av);
        }
      }
      int r = 16 * rb;
#pragma GCC unroll 4
      for (int t = 0; t < Q8_T256; t++) {
        if (n + t >= N) break;
        int32_t asum = a->sum[n + t];
        float sx = a->scale[n + t], *yn = y + (size_t)(n + t) * R;
        store8(yn, r, R - r, q8_value8(lo[t], asum, sx, s + r), e);
        store8(yn, r + 8, R - r - 8, q8_value8(hi[t], asum, sx, s + r + 8), e);
      }
    }
}

/* ---- int4 ------------------------------------------------------------------------------------ */

Q256_TGT INLINE void nibbles8(__m256i v, __m256i *lo, __m256i *hi) {
  const __m256i m = _mm256_set1_epi8(0x0F);
  *lo = _mm256_and_si256(v, m);
  *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
}

/* 8 scales / zero codes of a group, from index gi of the packed order, as f32. */
Q256_TGT INLINE __m256 q4_scales8(const chai_qmat *w, size_t gi) {
  if (w->f16_scales)
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w->scales + gi)));
  return _mm256_loadu_ps((const float *)w->scales + gi);
}
Q256_TGT INLINE __m256 q4_zeros8(const chai_qmat *w, size_t gi) {
  if (!w->zero_point) return _mm256_set1_ps(8.0f);
  int64_t z8;
  memcpy(&z8, w->zeros + gi, 8);
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(z8)));
}

INLINE float q4_gsum8(const chai_qact *a, int n, int g, int G) {
  const int32_t *p = a->gsum + (size_t)n * (a->stride / 32) + (size_t)g * (G / 32);
  int32_t s = 0;
  for (int b = 0; b < G / 32; b++)
    s += p[b];
  return (float)s;
}

/* acc = fmaf((float)(d − z·gs), s, acc), exactly (see qint_avx512.c). */
Q256_TGT INLINE __m256 q4_fold8(__m256 acc, __m256i d, __m256 z, float gs, __m256 s) {
  __m256 v = _mm256_fnmadd_ps(z, _mm256_set1_ps(gs), _mm256_cvtepi32_ps(d));
  return _mm256_fmadd_ps(v, s, acc);
}

Q256_TGT void Q256_NAME(q4, gemv)(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,
                                  const chai_qepilogue *e) {
  int G = w->group, groups = w->cols_p / G, end = r1 < w->rows ? r1 : w->rows;
  size_t bb = chai_qmat_block_bytes(w);
  const int8_t *a = xa->q;
  for (int r = r0; r < end; r += 16) {
    int rb = r / 16;
    const uint8_t *p = w->data + (size_t)rb * bb;
    __m256 facc0 = _mm256_setzero_ps(), facc1 = facc0;
    for (int g = 0; g < groups; g++) {
      __m256i c0 = _mm256_setzero_si256(), c1 = c0, d0 = c0, d1 = c0;
      for (int ko = g * G / 8; ko < (g + 1) * G / 8; ko++, p += 64) {
        __m256i l0, h0, l1, h1, al = quad8(a, 2 * ko), ah = quad8(a, 2 * ko + 1);
        nibbles8(_mm256_load_si256((const __m256i *)p), &l0, &h0);
        nibbles8(_mm256_load_si256((const __m256i *)(p + 32)), &l1, &h1);
        c0 = Q256_DPBUSD(c0, l0, al);
        c1 = Q256_DPBUSD(c1, h0, ah);
        d0 = Q256_DPBUSD(d0, l1, al);
        d1 = Q256_DPBUSD(d1, h1, ah);
      }
      size_t gi = ((size_t)rb * (size_t)groups + (size_t)g) * 16;
      float gs = q4_gsum8(xa, 0, g, G);
      facc0 = q4_fold8(facc0, _mm256_add_epi32(c0, c1), q4_zeros8(w, gi), gs, q4_scales8(w, gi));
      facc1 = q4_fold8(facc1, _mm256_add_epi32(d0, d1), q4_zeros8(w, gi + 8), gs,
                       q4_scales8(w, gi + 8));
    }
    __m256 sx = _mm256_set1_ps(xa->scale[0]);
    store8(y, r, end - r, _mm256_mul_ps(facc0, sx), e);
    store8(y, r + 8, end - r - 8, _mm256_mul_ps(facc1, sx), e);
  }
}

Q256_TGT void Q256_NAME(q4, gemm)(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,
                                  int rb1, int n0, int n1, const chai_qepilogue *e) {
  int G = w->group, groups = w->cols_p / G, S = a->stride, R = w->rows;
  size_t bb = chai_qmat_block_bytes(w);
  for (int rb = rb0; rb < rb1; rb++)
    for (int n = n0; n < n1 && n < N; n += Q4_T256) {
      const uint8_t *p = w->data + (size_t)rb * bb;
      const int8_t *A = a->q + (size_t)n * S;
      __m256 flo[Q4_T256], fhi[Q4_T256];
#pragma GCC unroll 2
      for (int t = 0; t < Q4_T256; t++)
        flo[t] = fhi[t] = _mm256_setzero_ps();
      for (int g = 0; g < groups; g++) {
        __m256i ilo[Q4_T256], ihi[Q4_T256];
#pragma GCC unroll 2
        for (int t = 0; t < Q4_T256; t++)
          ilo[t] = ihi[t] = _mm256_setzero_si256();
        for (int ko = g * G / 8; ko < (g + 1) * G / 8; ko++, p += 64) {
          __m256i l0, h0, l1, h1;
          nibbles8(_mm256_load_si256((const __m256i *)p), &l0, &h0);
          nibbles8(_mm256_load_si256((const __m256i *)(p + 32)), &l1, &h1);
#pragma GCC unroll 2
          for (int t = 0; t < Q4_T256; t++) {
            __m256i al = quad8(A + (size_t)t * S, 2 * ko),
                    ah = quad8(A + (size_t)t * S, 2 * ko + 1);
            ilo[t] = Q256_DPBUSD(Q256_DPBUSD(ilo[t], l0, al), h0, ah);
            ihi[t] = Q256_DPBUSD(Q256_DPBUSD(ihi[t], l1, al), h1, ah);
          }
        }
        size_t gi = ((size_t)rb * (size_t)groups + (size_t)g) * 16;
        __m256 zl = q4_zeros8(w, gi), zh = q4_zeros8(w, gi + 8);
        __m256 sl = q4_scales8(w, gi), sh = q4_scales8(w, gi + 8);
#pragma GCC unroll 2
        for (int t = 0; t < Q4_T256; t++) {
          float gs = q4_gsum8(a, n + t, g, G);
          flo[t] = q4_fold8(flo[t], ilo[t], zl, gs, sl);
          fhi[t] = q4_fold8(fhi[t], ihi[t], zh, gs, sh);
        }
      }
      int r = 16 * rb;
#pragma GCC unroll 2
      for (int t = 0; t < Q4_T256; t++) {
        if (n + t >= N) break;
        __m256 sx = _mm256_set1_ps(a->scale[n + t]);
        float *yn = y + (size_t)(n + t) * R;
        store8(yn, r, R - r, _mm256_mul_ps(flo[t], sx), e);
        store8(yn, r + 8, R - r - 8, _mm256_mul_ps(fhi[t], sx), e);
      }
    }
}

#undef INLINE
