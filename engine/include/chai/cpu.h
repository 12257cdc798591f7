/* chai — CPU features, the SIMD level in use, threads and the BLAS library. */
#ifndef CHAI_CPU_H
#define CHAI_CPU_H

#include <stdbool.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Levels are ordered: each includes the ones below it. AMX is AVX512 plus usable AMX tiles (the
 * CPU has amx-tile, amx-int8 and amx-bf16, the OS saves their state and granted this process the
 * tile data permission); kernels without an AMX variant run their AVX512 one at that level. */
typedef enum chai_simd {
  CHAI_SIMD_REF = 0,
  CHAI_SIMD_AVX2 = 1,
  CHAI_SIMD_AVX512 = 2,
  CHAI_SIMD_AMX = 3
} chai_simd;

typedef struct chai_cpu_info {
  char vendor[16];
  int family, model;
  bool avx2, fma, f16c, avx512f, avx512bw, avx512dq, avx512vl, avx512_bf16, avx512_vnni;
  bool avx_vnni; /* the VEX (256-bit) vpdpbusd of CPUs with or without AVX-512 */
  /* CPUID and XCR0 (bits 17, 18: tile config and data state): the CPU has them and the OS
   * supports them. */
  bool amx_tile, amx_int8, amx_bf16;
  /* arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) succeeded (asked once, at detection, only
   * when the three amx_* are true). */
  bool amx_permitted;
} chai_cpu_info;

const chai_cpu_info *chai_cpu_info_get(void);
/* The SIMD level kernels use: the best the CPU has, or what CHAI_CPU=ref|avx2|avx512|amx forces
 * (never above what the CPU has). */
chai_simd chai_simd_level(void);
/* The best level this CPU (and OS) supports, whatever is forced. */
chai_simd chai_simd_best(void);
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
