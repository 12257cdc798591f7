/* Decode rows of a row-major f32/f16/bf16 matrix (moved here from model/opt_gemv.c): y[r] =
 * epilogue(W[r,:] · x) for r in r0..r1-1, one row at a time. The work is pure streaming of W, so
 * each row is one sequential stream of wide loads, and the bias, residual sum and ReLU are applied
 * as the row's result is stored (a separate pass would meet those small vectors cold). f16/bf16
 * rows are widened in registers: half the bytes of f32. The twin is chai_rows_gemv_ref
 * (quant/qgemv.c). */
#include <immintrin.h>
#include <stdint.h>

#include "chai/half.h"
#include "quant/qkernels.h"

static inline float widen(const void *w, chai_dtype dt, size_t i) {
  if (dt == CHAI_F32) return ((const float *)w)[i];
  uint16_t h = ((const uint16_t *)w)[i];
  return dt == CHAI_F16 ? chai_f16_to_f32(h) : chai_bf16_to_f32(h);
}

static inline float finish(float s, const float *y, int r, const chai_qepilogue *e) {
  float v = e->accumulate ? y[r] + s : s;
  if (e->bias) v += e->bias[r];
  if (e->relu) v = v > 0.0f ? v : 0.0f;
  return v;
}

/* ---- AVX-512 (f16/bf16) ---------------------------------------------------------------------- */

#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))

/* 16 halves (one 256-bit load) widened to 16 floats. */
TGT512 static inline __m512 load16(const void *w, chai_dtype dt, size_t i, __mmask16 m) {
  __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
  if (dt == CHAI_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* One row at a time: a single sequential stream per thread keeps the hardware prefetcher ahead
 * (measured on this machine: decode 90 against 78 tokens/s with four rows interleaved); four
 * accumulators hide the FMA latency. No software prefetch: with 256-bit loads the hardware alone
 * streams fastest (a 2 KiB-ahead prefetch took f16 rows from 1.00 to 0.93 of a plain read's
 * bandwidth, measured pairwise). The summation order is fixed by C alone, never by the address of
 * W, so a model gives the same bits wherever its weights live. */
TGT512 static inline __attribute__((always_inline)) void
rows512_impl(float *y, const void *W, const chai_dtype dt, const float *x, int C, int r0, int r1,
             const chai_qepilogue *e) {
  for (int r = r0; r < r1; r++) {
    size_t b = (size_t)r * C;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int c = 0;
    for (; c + 64 <= C; c += 64) {
      a0 = _mm512_fmadd_ps(load16(W, dt, b + c, 0xFFFF), _mm512_loadu_ps(x + c), a0);
      a1 = _mm512_fmadd_ps(load16(W, dt, b + c + 16, 0xFFFF), _mm512_loadu_ps(x + c + 16), a1);
      a2 = _mm512_fmadd_ps(load16(W, dt, b + c + 32, 0xFFFF), _mm512_loadu_ps(x + c + 32), a2);
      a3 = _mm512_fmadd_ps(load16(W, dt, b + c + 48, 0xFFFF), _mm512_loadu_ps(x + c + 48), a3);
    }
    for (; c + 16 <= C; c += 16)
      a0 = _mm512_fmadd_ps(load16(W, dt, b + c, 0xFFFF), _mm512_loadu_ps(x + c), a0);
    if (c < C) {
      __mmask16 tm = (__mmask16)((1u << (C - c)) - 1);
      a1 = _mm512_fmadd_ps(load16(W, dt, b + c, tm), _mm512_maskz_loadu_ps(tm, x + c), a1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    y[r] = finish(s, y, r, e);
  }
}

/* ---- AVX2 ------------------------------------------------------------------------------------ */

#define TGT2 __attribute__((target("avx2,f16c,fma")))

TGT2 static inline __m256 load8(const void *w, chai_dtype dt, size_t i) {
  if (dt == CHAI_F32) return _mm256_loadu_ps((const float *)w + i);
  __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
  if (dt == CHAI_F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

TGT2 static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* The same row-at-a-time stream with 256-bit loads, also the f32 kernel on AVX-512 machines:
 * 512-bit loads of f32 rows streamed at 0.79-0.83 of a plain read's bandwidth (with the best
 * software prefetch; 0.71 without), 256-bit loads with no prefetch at 0.92-0.96 (whole decode
 * sequence of opt-125m's matrices, each variant timed in turn against the read, 41 rounds). */
TGT2 static inline __attribute__((always_inline)) void rows2_impl(float *y, const void *W,
                                                                  const chai_dtype dt,
                                                                  const float *x, int C, int r0,
                                                                  int r1, const chai_qepilogue *e) {
  int full = C & ~31, rest8 = C & ~7;
  for (int r = r0; r < r1; r++) {
    size_t b = (size_t)r * C;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int c = 0;
    for (; c < full; c += 32) {
      a0 = _mm256_fmadd_ps(load8(W, dt, b + c), _mm256_loadu_ps(x + c), a0);
      a1 = _mm256_fmadd_ps(load8(W, dt, b + c + 8), _mm256_loadu_ps(x + c + 8), a1);
      a2 = _mm256_fmadd_ps(load8(W, dt, b + c + 16), _mm256_loadu_ps(x + c + 16), a2);
      a3 = _mm256_fmadd_ps(load8(W, dt, b + c + 24), _mm256_loadu_ps(x + c + 24), a3);
    }
    for (; c < rest8; c += 8)
      a0 = _mm256_fmadd_ps(load8(W, dt, b + c), _mm256_loadu_ps(x + c), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; c < C; c++)
      s += widen(W, dt, b + c) * x[c];
    y[r] = finish(s, y, r, e);
  }
}

/* One copy per dtype, so the dtype test leaves the inner loop. */
TGT2 static void rows2_f32(float *y, const void *W, const float *x, int C, int r0, int r1,
                           const chai_qepilogue *e) {
  rows2_impl(y, W, CHAI_F32, x, C, r0, r1, e);
}
TGT2 static void rows2_f16(float *y, const void *W, const float *x, int C, int r0, int r1,
                           const chai_qepilogue *e) {
  rows2_impl(y, W, CHAI_F16, x, C, r0, r1, e);
}
TGT2 static void rows2_bf16(float *y, const void *W, const float *x, int C, int r0, int r1,
                            const chai_qepilogue *e) {
  rows2_impl(y, W, CHAI_BF16, x, C, r0, r1, e);
}
TGT512 static void rows512_f16(float *y, const void *W, const float *x, int C, int r0, int r1,
                               const chai_qepilogue *e) {
  rows512_impl(y, W, CHAI_F16, x, C, r0, r1, e);
}
TGT512 static void rows512_bf16(float *y, const void *W, const float *x, int C, int r0, int r1,
                                const chai_qepilogue *e) {
  rows512_impl(y, W, CHAI_BF16, x, C, r0, r1, e);
}

void chai_rows_gemv_avx2(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                         int r1, const chai_qepilogue *e) {
  (dt == CHAI_F32 ? rows2_f32 : dt == CHAI_F16 ? rows2_f16 : rows2_bf16)(y, W, x, C, r0, r1, e);
}

/* f32 rows take the 256-bit kernel here too (see rows2_impl). */
void chai_rows_gemv_avx512(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                           int r1, const chai_qepilogue *e) {
  (dt == CHAI_F32 ? rows2_f32 : dt == CHAI_F16 ? rows512_f16 : rows512_bf16)(y, W, x, C, r0, r1, e);
}
