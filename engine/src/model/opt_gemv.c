/* Matrix-vector products for decoding, where one token's activations meet every weight matrix:
 * y (OC) (+)= W (OC,C) · x (C), W row-major in f32, f16 or bf16. The work is pure streaming of W,
 * so the kernels read four rows at a time with wide loads and the rows are split between threads
 * in contiguous ranges. Each y[r] is one thread's dot product in a fixed order, so results do not
 * depend on the thread count. f16/bf16 rows are widened in registers: half the bytes of f32. */
#include <immintrin.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>

#include "chai/cpu.h"
#include "chai/half.h"
#include "model/opt_model.h"

/* ---- scalar twins ---------------------------------------------------------------------------- */

static inline float widen(const void *w, chai_dtype dt, size_t i) {
  if (dt == CHAI_F32) return ((const float *)w)[i];
  uint16_t h = ((const uint16_t *)w)[i];
  return dt == CHAI_F16 ? chai_f16_to_f32(h) : chai_bf16_to_f32(h);
}

/* Rows r0..r1-1 of y (+)= W x. */
void opt_gemv_rows_ref(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                       int r1, bool accumulate) {
  for (int r = r0; r < r1; r++) {
    float s = 0;
    for (int c = 0; c < C; c++)
      s += widen(W, dt, (size_t)r * C + c) * x[c];
    y[r] = accumulate ? y[r] + s : s;
  }
}

/* ---- AVX-512 --------------------------------------------------------------------------------- */

#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))

TGT512 static inline __m512 load16(const void *w, chai_dtype dt, size_t i, __mmask16 m) {
  if (dt == CHAI_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + i);
  __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + i);
  if (dt == CHAI_F16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

TGT512 static void rows_avx512(float *y, const void *W, chai_dtype dt, const float *x, int C,
                               int r0, int r1, bool accumulate) {
  int r = r0;
  int full = C & ~15;
  __mmask16 tail = (__mmask16)((1u << (C & 15)) - 1);
  for (; r + 4 <= r1; r += 4) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t b0 = (size_t)r * C, b1 = b0 + C, b2 = b1 + C, b3 = b2 + C;
    int c = 0;
    for (; c < full; c += 16) {
      __m512 xv = _mm512_loadu_ps(x + c);
      a0 = _mm512_fmadd_ps(load16(W, dt, b0 + c, 0xFFFF), xv, a0);
      a1 = _mm512_fmadd_ps(load16(W, dt, b1 + c, 0xFFFF), xv, a1);
      a2 = _mm512_fmadd_ps(load16(W, dt, b2 + c, 0xFFFF), xv, a2);
      a3 = _mm512_fmadd_ps(load16(W, dt, b3 + c, 0xFFFF), xv, a3);
    }
    if (tail) {
      __m512 xv = _mm512_maskz_loadu_ps(tail, x + c);
      a0 = _mm512_fmadd_ps(load16(W, dt, b0 + c, tail), xv, a0);
      a1 = _mm512_fmadd_ps(load16(W, dt, b1 + c, tail), xv, a1);
      a2 = _mm512_fmadd_ps(load16(W, dt, b2 + c, tail), xv, a2);
      a3 = _mm512_fmadd_ps(load16(W, dt, b3 + c, tail), xv, a3);
    }
    float s0 = _mm512_reduce_add_ps(a0), s1 = _mm512_reduce_add_ps(a1);
    float s2 = _mm512_reduce_add_ps(a2), s3 = _mm512_reduce_add_ps(a3);
    if (accumulate) {
      s0 += y[r];
      s1 += y[r + 1];
      s2 += y[r + 2];
      s3 += y[r + 3];
    }
    y[r] = s0;
    y[r + 1] = s1;
    y[r + 2] = s2;
    y[r + 3] = s3;
  }
  for (; r < r1; r++) {
    __m512 a = _mm512_setzero_ps();
    size_t b = (size_t)r * C;
    int c = 0;
    for (; c < full; c += 16)
      a = _mm512_fmadd_ps(load16(W, dt, b + c, 0xFFFF), _mm512_loadu_ps(x + c), a);
    if (tail)
      a = _mm512_fmadd_ps(load16(W, dt, b + c, tail), _mm512_maskz_loadu_ps(tail, x + c), a);
    float s = _mm512_reduce_add_ps(a);
    y[r] = accumulate ? y[r] + s : s;
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

TGT2 static void rows_avx2(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                           int r1, bool accumulate) {
  int full = C & ~7;
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t b0 = (size_t)r * C, b1 = b0 + C, b2 = b1 + C, b3 = b2 + C;
    for (int c = 0; c < full; c += 8) {
      __m256 xv = _mm256_loadu_ps(x + c);
      a0 = _mm256_fmadd_ps(load8(W, dt, b0 + c), xv, a0);
      a1 = _mm256_fmadd_ps(load8(W, dt, b1 + c), xv, a1);
      a2 = _mm256_fmadd_ps(load8(W, dt, b2 + c), xv, a2);
      a3 = _mm256_fmadd_ps(load8(W, dt, b3 + c), xv, a3);
    }
    float s[4] = {hsum8(a0), hsum8(a1), hsum8(a2), hsum8(a3)};
    for (int i = 0; i < 4; i++) {
      for (int c = full; c < C; c++)
        s[i] += widen(W, dt, (size_t)(r + i) * C + c) * x[c];
      y[r + i] = accumulate ? y[r + i] + s[i] : s[i];
    }
  }
  for (; r < r1; r++) {
    __m256 a = _mm256_setzero_ps();
    size_t b = (size_t)r * C;
    for (int c = 0; c < full; c += 8)
      a = _mm256_fmadd_ps(load8(W, dt, b + c), _mm256_loadu_ps(x + c), a);
    float s = hsum8(a);
    for (int c = full; c < C; c++)
      s += widen(W, dt, b + c) * x[c];
    y[r] = accumulate ? y[r] + s : s;
  }
}

/* ---- dispatch -------------------------------------------------------------------------------- */

void opt_gemv_rows(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0, int r1,
                   bool accumulate) {
  chai_simd s = chai_simd_level();
  if (s >= CHAI_SIMD_AVX512)
    rows_avx512(y, W, dt, x, C, r0, r1, accumulate);
  else if (s >= CHAI_SIMD_AVX2)
    rows_avx2(y, W, dt, x, C, r0, r1, accumulate);
  else
    opt_gemv_rows_ref(y, W, dt, x, C, r0, r1, accumulate);
}

void opt_gemv(float *y, const void *W, chai_dtype dt, const float *x, int OC, int C,
              bool accumulate) {
  /* Small matrices are not worth waking a second thread for. */
  int64_t work = (int64_t)OC * C;
  int nt = work >= (1 << 17) ? omp_get_max_threads() : 1;
  if (nt > OC / 4) nt = OC / 4 > 0 ? OC / 4 : 1;
  if (nt <= 1) {
    opt_gemv_rows(y, W, dt, x, C, 0, OC, accumulate);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    /* contiguous ranges, multiples of 4 rows */
    int per = ((OC + n - 1) / n + 3) & ~3;
    int r0 = t * per, r1 = r0 + per < OC ? r0 + per : OC;
    if (r0 < r1) opt_gemv_rows(y, W, dt, x, C, r0, r1, accumulate);
  }
}
