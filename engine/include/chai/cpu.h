/* chai — CPU features, the SIMD level in use, threads and the BLAS library. */
#ifndef CHAI_CPU_H
#define CHAI_CPU_H

#include <stdbool.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum chai_simd { CHAI_SIMD_REF = 0, CHAI_SIMD_AVX2 = 1, CHAI_SIMD_AVX512 = 2 } chai_simd;

typedef struct chai_cpu_info {
  char vendor[16];
  int family, model;
  bool avx2, fma, f16c, avx512f, avx512bw, avx512dq, avx512vl, avx512_bf16, avx512_vnni;
} chai_cpu_info;

const chai_cpu_info *chai_cpu_info_get(void);
/* The SIMD level kernels use: the best the CPU has, or what CHAI_CPU=ref|avx2|avx512 forces (never
 * above what the CPU has). */
chai_simd chai_simd_level(void);
const char *chai_simd_name(chai_simd s);
/* Forces a level for tests; clamps to what the CPU supports. Returns the level now in force. */
chai_simd chai_simd_force(chai_simd s);
/* "avx2 fma f16c avx512f ..." */
const char *chai_cpu_features(void);

/* Threads: sets both OpenMP and OpenBLAS to n (n >= 1). */
chai_status chai_threads(int n);
int chai_threads_get(void);

#ifdef __cplusplus
}
#endif
#endif
