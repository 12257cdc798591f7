/* The measured peak of the kernels' instructions: twelve independent accumulation chains of one
 * instruction (more than its latency × throughput, so the chains never wait) on every OpenMP
 * thread. The peak a GEMM kernel's GOPS is compared with in docs/quant.md. */
#include <immintrin.h>
#include <omp.h>
#include <string.h>
#include <time.h>

#include "chai/cpu.h"
#include "chai/quant.h"

enum { CHAINS = 12 };

/* The compiler must neither fold a chain nor hoist its inputs: an empty volatile asm makes them
 * opaque (and keeps every call, whose result nobody reads). */
#define KEEP(v) __asm__ volatile("" : "+v"(v))

__attribute__((target("avx512f,avx512vnni"))) static double chains_vnni512(long iters) {
  __m512i acc[CHAINS], w = _mm512_set1_epi32(0x01010101), x = _mm512_set1_epi32(0x02020202);
  for (int i = 0; i < CHAINS; i++)
    acc[i] = _mm512_set1_epi32(i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++)
      acc[i] = _mm512_dpbusd_epi32(acc[i], w, x);
    KEEP(w);
    KEEP(x);
  }
  __m512i s = acc[0];
  for (int i = 1; i < CHAINS; i++)
    s = _mm512_add_epi32(s, acc[i]);
  return (double)_mm512_reduce_add_epi32(s);
}

__attribute__((target("avx2,avxvnni"))) static double chains_vnni256(long iters) {
  __m256i acc[CHAINS], w = _mm256_set1_epi32(0x01010101), x = _mm256_set1_epi32(0x02020202);
  for (int i = 0; i < CHAINS; i++)
    acc[i] = _mm256_set1_epi32(i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++)
      acc[i] = _mm256_dpbusd_avx_epi32(acc[i], w, x);
    KEEP(w);
    KEEP(x);
  }
  __m256i s = acc[0];
  for (int i = 1; i < CHAINS; i++)
    s = _mm256_add_epi32(s, acc[i]);
  return (double)_mm256_extract_epi32(s, 0);
}

__attribute__((target("avx512f,avx512bf16"))) static double chains_bf16(long iters) {
  __m512 acc[CHAINS];
  __m512i w = _mm512_set1_epi32(0x3f803f80), x = w;
  for (int i = 0; i < CHAINS; i++)
    acc[i] = _mm512_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++)
      acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)w, (__m512bh)x);
    KEEP(w);
    KEEP(x);
  }
  __m512 s = acc[0];
  for (int i = 1; i < CHAINS; i++)
    s = _mm512_add_ps(s, acc[i]);
  return (double)_mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,fma"))) static double chains_fma512(long iters) {
  __m512 acc[CHAINS], w = _mm512_set1_ps(1.0f), x = _mm512_set1_ps(0.0f);
  for (int i = 0; i < CHAINS; i++)
    acc[i] = _mm512_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++)
      acc[i] = _mm512_fmadd_ps(w, x, acc[i]);
    KEEP(w);
    KEEP(x);
  }
  __m512 s = acc[0];
  for (int i = 1; i < CHAINS; i++)
    s = _mm512_add_ps(s, acc[i]);
  return (double)_mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static double chains_fma256(long iters) {
  __m256 acc[CHAINS], w = _mm256_set1_ps(1.0f), x = _mm256_set1_ps(0.0f);
  for (int i = 0; i < CHAINS; i++)
    acc[i] = _mm256_set1_ps((float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < CHAINS; i++)
      acc[i] = _mm256_fmadd_ps(w, x, acc[i]);
    KEEP(w);
    KEEP(x);
  }
  __m256 s = acc[0];
  for (int i = 1; i < CHAINS; i++)
    s = _mm256_add_ps(s, acc[i]);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  return (double)_mm_cvtss_f32(h);
}

static const struct {
  const char *kind;
  double ops; /* multiply-adds × 2 per instruction */
  double (*run)(long iters);
} KINDS[] = {
    {"vpdpbusd", 2 * 64, chains_vnni512},      {"vpdpbusd-ymm", 2 * 32, chains_vnni256},
    {"vdpbf16ps", 2 * 32, chains_bf16},        {"vfmadd231ps", 2 * 16, chains_fma512},
    {"vfmadd231ps-ymm", 2 * 8, chains_fma256},
};

static bool cpu_has(int i) {
  const chai_cpu_info *c = chai_cpu_info_get();
  switch (i) {
  case 0: return c->avx512f && c->avx512_vnni;
  case 1: return c->avx_vnni;
  case 2: return c->avx512_bf16;
  case 3: return c->avx512f && c->fma;
  default: return c->avx2 && c->fma;
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

chai_status chai_quant_peak(const char *kind, double seconds, double *gops) {
  *gops = 0;
  int k = -1;
  for (int i = 0; i < (int)(sizeof KINDS / sizeof KINDS[0]); i++)
    if (strcmp(kind, KINDS[i].kind) == 0) k = i;
  if (k < 0)
    return chai_error(CHAI_ERR_ARG,
                      "peak: unknown instruction '%s' (vpdpbusd, vpdpbusd-ymm, vdpbf16ps, "
                      "vfmadd231ps, vfmadd231ps-ymm)",
                      kind);
  if (!cpu_has(k)) return chai_error(CHAI_ERR_UNSUPPORTED, "peak: this CPU has no %s", kind);
  if (!(seconds > 0 && seconds <= 60))
    return chai_error(CHAI_ERR_ARG, "peak: %g seconds (0 < seconds <= 60)", seconds);
  /* Calibrate on one thread, then every thread runs the same count; the slowest sets the time. */
  long iters = 1 << 16;
  double t = 0;
  while ((t = now(), KINDS[k].run(iters), t = now() - t) < 0.05 && iters < (1L << 40))
    iters *= 2;
  iters = (long)((double)iters * seconds / t) + 1;
  double start = now();
  int threads = 1;
#pragma omp parallel
  {
#pragma omp single nowait
    threads = omp_get_num_threads();
    KINDS[k].run(iters);
  }
  double elapsed = now() - start;
  *gops = (double)threads * (double)iters * CHAINS * KINDS[k].ops / elapsed / 1e9;
  return CHAI_OK;
}
