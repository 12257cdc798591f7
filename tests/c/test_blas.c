/* The BLAS loader and chai_sgemm: the core chosen from cpuid, a user's OPENBLAS_CORETYPE kept, and
 * every transpose combination (including the one-row sgemv routes) against a double reference. */
#include <stdlib.h>
#include <string.h>

#include "chai/chai.h"
#include "check.h"

static void ref_gemm(double *C, bool ta, bool tb, int M, int N, int K, const float *A, int lda,
                     const float *B, int ldb) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++)
        s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * N + j] = s;
    }
}

static void test_gemm_shapes(void) {
  int shapes[][3] = {{1, 17, 9}, {13, 1, 9}, {1, 1, 5}, {7, 5, 3}, {64, 33, 70}};
  chai_rng r;
  chai_rng_init(&r, 1);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
        float *C = malloc(sizeof(float) * M * N);
        double *want = malloc(sizeof(double) * M * N);
        chai_rng_fill_normal(&r, A, (size_t)M * K, 0, 1);
        chai_rng_fill_normal(&r, B, (size_t)K * N, 0, 1);
        for (int i = 0; i < M * N; i++) C[i] = 1.0f;
        int lda = ta ? M : K, ldb = tb ? K : N;
        chai_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, N);
        ref_gemm(want, ta, tb, M, N, K, A, lda, B, ldb);
        CHECK(chai_test_max_abs_diff(C, want, (size_t)M * N) < 1e-4);
        /* beta = 1 accumulates */
        chai_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 1.0f, C, N);
        for (int i = 0; i < M * N; i++) want[i] *= 1.5;
        CHECK(chai_test_max_abs_diff(C, want, (size_t)M * N) < 1e-4);
        free(A), free(B), free(C), free(want);
      }
}

int main(void) {
  const char *user = getenv("OPENBLAS_CORETYPE");
  char user_copy[64] = "";
  if (user) snprintf(user_copy, sizeof user_copy, "%s", user);
  CHECK_OK(chai_blas_init());
  const chai_blas_info *bi = chai_blas_get_info();
  CHECK(bi != NULL && bi->core && bi->library);
  printf("OpenBLAS %s, core %s chosen by %s\n", bi->library, bi->core, bi->chosen_by);
  if (user_copy[0]) {
    CHECK(strcmp(bi->chosen_by, "user (OPENBLAS_CORETYPE)") == 0);
    CHECK(getenv("OPENBLAS_CORETYPE") && strcmp(getenv("OPENBLAS_CORETYPE"), user_copy) == 0);
  } else if (chai_blas_core_for_cpu()) {
    CHECK(strcmp(bi->chosen_by, "chai (cpuid)") == 0);
    CHECK(strcmp(bi->core, chai_blas_core_for_cpu()) == 0);
    CHECK(getenv("OPENBLAS_CORETYPE") == NULL); /* the environment is left as it was */
  }
  CHECK(chai_blas_init() == CHAI_OK); /* idempotent */
  CHECK_OK(chai_threads(2));
  CHECK(chai_threads_get() == 2);
  CHECK_ERR(chai_threads(0), CHAI_ERR_ARG, "got 0");
  test_gemm_shapes();
  CHECK_OK(chai_threads(1));
  test_gemm_shapes();
  return chai_test_finish();
}
