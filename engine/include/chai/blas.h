/* chai — the BLAS we call. OpenBLAS is loaded at run time (dlopen), after chai has chosen the right
 * OpenBLAS core for this CPU: OpenBLAS picks its kernel when it is loaded and OpenBLAS 0.3.21 falls
 * back to a slow generic kernel on CPUs it does not know. A user's own OPENBLAS_CORETYPE wins;
 * CHAI_BLAS_CORE=openblas leaves the choice to OpenBLAS. */
#ifndef CHAI_BLAS_H
#define CHAI_BLAS_H

#include <stdbool.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads the library once (thread-safe); later calls return the first outcome. The library is, in
 * order: $CHAI_BLAS_LIB, the OpenMP build of OpenBLAS, the default libopenblas.so.0. */
chai_status chai_blas_init(void);

typedef struct chai_blas_info {
  const char *library;   /* path dlopen succeeded with */
  const char *core;      /* OpenBLAS's own name of the kernel in use, e.g. "SkylakeX" */
  const char *config;    /* openblas_get_config() */
  const char *chosen_by; /* "chai (cpuid)", "user (OPENBLAS_CORETYPE)", "openblas" */
  int parallel;          /* 0 sequential, 1 pthreads, 2 OpenMP */
} chai_blas_info;
/* NULL before a successful chai_blas_init. */
const chai_blas_info *chai_blas_get_info(void);
/* The OpenBLAS core chai would choose for this CPU ("SkylakeX", "Cooperlake", "Haswell", or NULL
 * to leave OpenBLAS's own choice). */
const char *chai_blas_core_for_cpu(void);

/* Row-major single-precision GEMM: C = alpha·op(A)·op(B) + beta·C, op = transpose when ta/tb.
 * A is (M,K) after op, B is (K,N) after op, C is (M,N). Uses sgemv when M == 1 or N == 1, where
 * OpenBLAS's sgemm is several times slower. chai_blas_init must have succeeded. */
void chai_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc);
/* The raw cblas_sgemm, for benchmarks that compare against it. */
void chai_cblas_sgemm_raw(bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                          int lda, const float *B, int ldb, float beta, float *C, int ldc);
void chai_blas_set_threads(int n);

#ifdef __cplusplus
}
#endif
#endif
