/* Matrix-vector products for decoding, where one token's activations meet every weight matrix:
 * y (OC) = epilogue(W (OC,C) · x (C)), W row-major in f32, f16 or bf16. The work is pure
 * streaming of W, so the kernels stream one row at a time with wide loads, and the bias, the
 * residual sum and ReLU are applied as each row's result is stored: a separate pass would meet
 * those small vectors cold (they leave the cache while the weights stream) on one thread while
 * the other waits. Each y[r] is one thread's dot product in a fixed order, so results do not
 * depend on the thread count or on which thread computed the row. f16/bf16 rows are widened in
 * registers: half the bytes of f32. */
#include <immintrin.h>
#include <omp.h>
#include <stdatomic.h>
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

/* Row r's dot product s as stored: the order of the batched path (GEMM with beta, then the bias,
 * then the activation), so decoding gives the bits a one-token forward gives. */
static inline float finish(float s, const float *y, int r, const opt_gemv_epilogue *e) {
  float v = e->accumulate ? y[r] + s : s;
  if (e->bias) v += e->bias[r];
  if (e->relu) v = v > 0.0f ? v : 0.0f;
  return v;
}

void opt_gemv_rows_ref(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                       int r1, const opt_gemv_epilogue *e) {
  for (int r = r0; r < r1; r++) {
    float s = 0;
    for (int c = 0; c < C; c++)
      s += widen(W, dt, (size_t)r * C + c) * x[c];
    y[r] = finish(s, y, r, e);
  }
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
             const opt_gemv_epilogue *e) {
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

/* One copy per dtype, so the dtype test leaves the inner loop. */
TGT512 static void rows512_f16(float *y, const void *W, const float *x, int C, int r0, int r1,
                               const opt_gemv_epilogue *e) {
  rows512_impl(y, W, CHAI_F16, x, C, r0, r1, e);
}
TGT512 static void rows512_bf16(float *y, const void *W, const float *x, int C, int r0, int r1,
                                const opt_gemv_epilogue *e) {
  rows512_impl(y, W, CHAI_BF16, x, C, r0, r1, e);
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
TGT2 static inline __attribute__((always_inline)) void
rows2_impl(float *y, const void *W, const chai_dtype dt, const float *x, int C, int r0, int r1,
           const opt_gemv_epilogue *e) {
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

TGT2 static void rows2_f32(float *y, const void *W, const float *x, int C, int r0, int r1,
                           const opt_gemv_epilogue *e) {
  rows2_impl(y, W, CHAI_F32, x, C, r0, r1, e);
}
TGT2 static void rows2_f16(float *y, const void *W, const float *x, int C, int r0, int r1,
                           const opt_gemv_epilogue *e) {
  rows2_impl(y, W, CHAI_F16, x, C, r0, r1, e);
}
TGT2 static void rows2_bf16(float *y, const void *W, const float *x, int C, int r0, int r1,
                            const opt_gemv_epilogue *e) {
  rows2_impl(y, W, CHAI_BF16, x, C, r0, r1, e);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

void opt_gemv_rows(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0, int r1,
                   const opt_gemv_epilogue *e) {
  chai_simd s = chai_simd_level();
  if (s < CHAI_SIMD_AVX2)
    opt_gemv_rows_ref(y, W, dt, x, C, r0, r1, e);
  else if (dt == CHAI_F32) /* 256-bit loads on AVX-512 machines too: see rows2_impl */
    rows2_f32(y, W, x, C, r0, r1, e);
  else if (s >= CHAI_SIMD_AVX512)
    (dt == CHAI_F16 ? rows512_f16 : rows512_bf16)(y, W, x, C, r0, r1, e);
  else
    (dt == CHAI_F16 ? rows2_f16 : rows2_bf16)(y, W, x, C, r0, r1, e);
}

/* Rows [lo, hi) shared by two threads, one taking chunks from the front and the other from the
 * back, each claim a quarter of what is left (at least MIN_CLAIM rows): the two meet wherever the
 * slower one has got to, and neither waits long for the other at the end. A fixed half each left
 * one thread idle for 3-7% of every decode step here (memory stalls differ between the cores from
 * one matrix to the next). Packed as lo << 32 | hi so that one compare-and-swap claims rows. */
#define MIN_CLAIM 8
static bool claim(_Atomic uint64_t *span, bool front, int *r0, int *r1) {
  uint64_t cur = atomic_load_explicit(span, memory_order_relaxed), next;
  uint32_t lo, hi, k;
  do {
    lo = (uint32_t)(cur >> 32), hi = (uint32_t)cur;
    if (lo >= hi) return false;
    k = (hi - lo) / 4 > MIN_CLAIM ? (hi - lo) / 4 : MIN_CLAIM;
    if (k > hi - lo) k = hi - lo;
    next = front ? (uint64_t)(lo + k) << 32 | hi : (uint64_t)lo << 32 | (hi - k);
  } while (!atomic_compare_exchange_weak_explicit(span, &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed));
  *r0 = (int)(front ? lo : hi - k);
  *r1 = (int)(front ? lo + k : hi);
  return true;
}

/* Threads beyond this many run the plain contiguous split (no claims). */
#define MAX_PAIRS 32

/* Rows [r0, r1) of the tasks' rows taken end to end. */
static void batch_rows(const opt_gemv_task *tasks, int n_tasks, const float *x, int C, int r0,
                       int r1) {
  int base = 0;
  for (int i = 0; i < n_tasks && base < r1; base += tasks[i].OC, i++) {
    int a = r0 > base ? r0 - base : 0, b = r1 - base < tasks[i].OC ? r1 - base : tasks[i].OC;
    if (a < b) opt_gemv_rows(tasks[i].y, tasks[i].W, tasks[i].dt, x, C, a, b, &tasks[i].e);
  }
}

void opt_gemv_batch(const opt_gemv_task *tasks, int n_tasks, const float *x, int C) {
  int OC = 0;
  for (int i = 0; i < n_tasks; i++)
    OC += tasks[i].OC;
  /* Small matrices are not worth waking a second thread for. */
  int64_t work = (int64_t)OC * C;
  int nt = work >= (1 << 17) ? omp_get_max_threads() : 1;
  if (nt > OC / 4) nt = OC / 4 > 0 ? OC / 4 : 1;
  if (nt <= 1) {
    batch_rows(tasks, n_tasks, x, C, 0, OC);
    return;
  }
  /* Threads 2p and 2p+1 share segment p; an odd last thread has its segment alone. */
  int pairs = (nt + 1) / 2;
  bool shared = pairs <= MAX_PAIRS;
  _Atomic uint64_t spans[MAX_PAIRS];
  int per = (OC + pairs - 1) / pairs;
  for (int p = 0; shared && p < pairs; p++) {
    uint64_t lo = (uint64_t)p * per, hi = lo + per < (uint64_t)OC ? lo + per : (uint64_t)OC;
    atomic_init(&spans[p], lo << 32 | hi);
  }
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    if (shared && n == nt) {
      int r0, r1;
      while (claim(&spans[t / 2], t % 2 == 0, &r0, &r1))
        batch_rows(tasks, n_tasks, x, C, r0, r1);
    } else { /* contiguous ranges, multiples of 4 rows */
      int each = ((OC + n - 1) / n + 3) & ~3;
      int r0 = t * each, r1 = r0 + each < OC ? r0 + each : OC;
      if (r0 < r1) batch_rows(tasks, n_tasks, x, C, r0, r1);
    }
  }
}
