/* The memory-bandwidth ceiling of decoding: a streaming read with every thread, and the bytes one
 * decoded token reads. Decoding one token reads each weight matrix once, so tokens/s can be at
 * most bandwidth / bytes-per-token. */
#include <immintrin.h>
#include <omp.h>
#include <string.h>
#include <time.h>

#include "chai/cpu.h"
#include "chai/memory.h"
#include "chai/opt.h"
#include "chai/opt_heads.h"
#include "model/opt_model.h"

/* p (n) words → their sum (wrapping); exact in any order, so the SIMD twin must agree bit for
 * bit. */
uint64_t chai_opt_read_sum_ref(const uint64_t *p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += p[i];
  return s;
}

__attribute__((target("avx2"))) static uint64_t read_sum_avx2(const uint64_t *p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  uint64_t lanes[4];
  _mm256_storeu_si256((__m256i *)lanes, a0);
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  return s + chai_opt_read_sum_ref(p + i, n - i);
}

uint64_t chai_opt_read_sum(const uint64_t *p, size_t n) {
  if (chai_simd_level() >= CHAI_SIMD_AVX2) return read_sum_avx2(p, n);
  return chai_opt_read_sum_ref(p, n);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

chai_status chai_opt_read_bandwidth(size_t bytes, int reps, double *gbps) {
  *gbps = 0;
  if (bytes < (1 << 20) || reps < 1)
    return chai_error(CHAI_ERR_ARG, "read bandwidth: %zu bytes x %d repeats is too small", bytes,
                      reps);
  size_t n = bytes / sizeof(uint64_t);
  uint64_t *buf = chai_alloc(n * sizeof(uint64_t), "read-bandwidth buffer");
  if (!buf) return CHAI_ERR_NOMEM;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++)
    buf[i] = i * 0x9E3779B97F4A7C15ull; /* first touch, per thread */
  double best = 1e30;
  volatile uint64_t sink = 0;
  for (int r = 0; r < reps; r++) {
    uint64_t total = 0;
    double t0 = now();
#pragma omp parallel reduction(+ : total)
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      size_t per = (n + (size_t)nt - 1) / (size_t)nt, a = per * (size_t)id;
      size_t b = a + per < n ? a + per : n;
      if (a < b) total += chai_opt_read_sum(buf + a, b - a);
    }
    double dt = now() - t0;
    sink += total;
    if (dt < best) best = dt;
  }
  (void)sink;
  chai_free(buf, n * sizeof(uint64_t));
  *gbps = (double)(n * sizeof(uint64_t)) / best / 1e9;
  return CHAI_OK;
}

size_t chai_opt_decode_bytes(const chai_opt_model *m, int64_t context) {
  size_t total = 0;
  for (int i = 0; i < m->n_params; i++) {
    const opt_param *p = &m->params[i];
    size_t nb = p->matrix ? chai_qmat_bytes(&p->q) : chai_tensor_nbytes(&p->t);
    size_t row = p->shape[0] ? nb / (size_t)p->shape[0] : 0; /* scales included, on average */
    if (p == m->score) continue;
    if (p == m->embed_positions)
      total += row; /* one row per token */
    else if (p == m->embed_tokens)
      total += nb + (m->lm_head == m->embed_tokens ? row : 0);
    else
      total += nb;
  }
  /* K and V as the cache holds them: representatives' K under a head-clustering plan, the kept
   * heads of a pruned model. */
  total += chai_opt_kv_bytes_per_token(m) * (size_t)context;
  return total;
}
