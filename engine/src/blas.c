#include "chai/blas.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/cpu.h"

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);
typedef void (*set_threads_fn)(int);
typedef char *(*str_fn)(void);
typedef int (*int_fn)(void);

static struct {
  sgemm_fn sgemm;
  sgemv_fn sgemv;
  set_threads_fn set_threads;
  chai_blas_info info;
  char library[512];
  char config[256];
  char core[64];
  chai_status status;
  char error[512];
} blas;

static pthread_once_t once = PTHREAD_ONCE_INIT;

const char *chai_blas_core_for_cpu(void) {
  const chai_cpu_info *ci = chai_cpu_info_get();
  /* OpenBLAS 0.3.21 knows Intel model numbers only; on newer AMD (Zen 4/5) and unknown Intel parts
   * it falls back to a generic kernel. Its SkylakeX kernels need F/BW/DQ/VL; Cooperlake adds BF16. */
  if (ci->avx512f && ci->avx512bw && ci->avx512dq && ci->avx512vl)
    return ci->avx512_bf16 ? "Cooperlake" : "SkylakeX";
  if (ci->avx2 && ci->fma) return "Haswell";
  return NULL;
}

static void load(void) {
  const char *user_core = getenv("OPENBLAS_CORETYPE");
  /* CHAI_BLAS_CORE=openblas leaves the choice to OpenBLAS (benchmarks compare against it). */
  const char *policy = getenv("CHAI_BLAS_CORE");
  if (user_core && *user_core) {
    blas.info.chosen_by = "user (OPENBLAS_CORETYPE)";
  } else if (policy && strcmp(policy, "openblas") == 0) {
    blas.info.chosen_by = "openblas";
  } else {
    const char *core = chai_blas_core_for_cpu();
    if (core) {
      setenv("OPENBLAS_CORETYPE", core, 1);
      blas.info.chosen_by = "chai (cpuid)";
    } else {
      blas.info.chosen_by = "openblas";
    }
  }
  const char *candidates[] = {getenv("CHAI_BLAS_LIB"),
                              "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
                              "libopenblas.so.0", "libopenblas.so"};
  void *h = NULL;
  for (size_t i = 0; i < sizeof candidates / sizeof candidates[0] && !h; i++) {
    if (!candidates[i] || !*candidates[i]) continue;
    h = dlopen(candidates[i], RTLD_NOW | RTLD_GLOBAL);
    if (h) snprintf(blas.library, sizeof blas.library, "%s", candidates[i]);
  }
  /* Leave the environment as the user had it: OpenBLAS read it while loading. */
  if (blas.info.chosen_by && strcmp(blas.info.chosen_by, "chai (cpuid)") == 0)
    unsetenv("OPENBLAS_CORETYPE");
  if (!h) {
    blas.status = CHAI_ERR_UNSUPPORTED;
    snprintf(blas.error, sizeof blas.error,
             "cannot load OpenBLAS (%s); install libopenblas0-openmp or set CHAI_BLAS_LIB", dlerror());
    return;
  }
  blas.sgemm = (sgemm_fn)(uintptr_t)dlsym(h, "cblas_sgemm");
  blas.sgemv = (sgemv_fn)(uintptr_t)dlsym(h, "cblas_sgemv");
  blas.set_threads = (set_threads_fn)(uintptr_t)dlsym(h, "openblas_set_num_threads");
  str_fn get_core = (str_fn)(uintptr_t)dlsym(h, "openblas_get_corename");
  str_fn get_config = (str_fn)(uintptr_t)dlsym(h, "openblas_get_config");
  int_fn get_parallel = (int_fn)(uintptr_t)dlsym(h, "openblas_get_parallel");
  if (!blas.sgemm || !blas.sgemv) {
    blas.status = CHAI_ERR_UNSUPPORTED;
    snprintf(blas.error, sizeof blas.error, "the BLAS library has no cblas_sgemm/cblas_sgemv");
    return;
  }
  snprintf(blas.core, sizeof blas.core, "%s", get_core ? get_core() : "unknown");
  snprintf(blas.config, sizeof blas.config, "%s", get_config ? get_config() : "unknown");
  blas.info.library = blas.library;
  blas.info.core = blas.core;
  blas.info.config = blas.config;
  blas.info.parallel = get_parallel ? get_parallel() : -1;
  blas.status = CHAI_OK;
}

chai_status chai_blas_init(void) {
  pthread_once(&once, load);
  if (blas.status) return chai_error(blas.status, "%s", blas.error);
  return CHAI_OK;
}

const chai_blas_info *chai_blas_get_info(void) {
  return chai_blas_init() == CHAI_OK ? &blas.info : NULL;
}

void chai_blas_set_threads(int n) {
  if (blas.set_threads) blas.set_threads(n);
}

void chai_cblas_sgemm_raw(bool ta, bool tb, int M, int N, int K, float alpha, const float *A,
                          int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  blas.sgemm(ROW_MAJOR, ta ? TRANS : NO_TRANS, tb ? TRANS : NO_TRANS, M, N, K, alpha, A, lda, B,
             ldb, beta, C, ldc);
}

void chai_sgemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
    return;
  }
  if (M == 1) {
    /* C(1,N) = a·op(B)ᵀ-vector: y = op(B)ᵀ x, with op(B) (K,N). */
    if (tb) /* B stored (N,K) */
      blas.sgemv(ROW_MAJOR, NO_TRANS, N, K, alpha, B, ldb, A, ta ? lda : 1, beta, C, 1);
    else /* B stored (K,N) */
      blas.sgemv(ROW_MAJOR, TRANS, K, N, alpha, B, ldb, A, ta ? lda : 1, beta, C, 1);
    return;
  }
  if (N == 1) {
    /* C(M,1) = op(A) x, with x a column of op(B). */
    if (ta) /* A stored (K,M) */
      blas.sgemv(ROW_MAJOR, TRANS, K, M, alpha, A, lda, B, tb ? 1 : ldb, beta, C, ldc);
    else
      blas.sgemv(ROW_MAJOR, NO_TRANS, M, K, alpha, A, lda, B, tb ? 1 : ldb, beta, C, ldc);
    return;
  }
  blas.sgemm(ROW_MAJOR, ta ? TRANS : NO_TRANS, tb ? TRANS : NO_TRANS, M, N, K, alpha, A, lda, B,
             ldb, beta, C, ldc);
}
