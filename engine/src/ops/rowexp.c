/* Row reductions shared by the softmax family and cross-entropy: max, Σ exp(x − m) and
 * y += a·exp(x − m). Scalar twins here, vector versions in src/kernels. */
#include <math.h>

#include "chai/cpu.h"
#include "kernels/kernels.h"

float chai_max_ref(const float *x, size_t n) {
  float m = -INFINITY;
  for (size_t i = 0; i < n; i++)
    m = x[i] > m ? x[i] : m;
  return m;
}

double chai_sumexp_ref(const float *x, float m, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += expf(x[i] - m);
  return s;
}

void chai_expaxpy_ref(float *y, float a, const float *x, float m, size_t n) {
  for (size_t i = 0; i < n; i++)
    y[i] += a * expf(x[i] - m);
}

float chai_max(const float *x, size_t n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: return chai_max_avx512(x, n);
  case CHAI_SIMD_AVX2: return chai_max_avx2(x, n);
  default: return chai_max_ref(x, n);
  }
}

size_t chai_argmax(const float *x, size_t n) {
  float m = chai_max(x, n);
  for (size_t i = 0; i < n; i++)
    if (x[i] == m) return i;
  return 0; /* every value NaN (m = -inf matches any -inf) */
}

double chai_sumexp(const float *x, float m, size_t n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: return chai_sumexp_avx512(x, m, n);
  case CHAI_SIMD_AVX2: return chai_sumexp_avx2(x, m, n);
  default: return chai_sumexp_ref(x, m, n);
  }
}

void chai_expaxpy(float *y, float a, const float *x, float m, size_t n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_expaxpy_avx512(y, a, x, m, n); break;
  case CHAI_SIMD_AVX2: chai_expaxpy_avx2(y, a, x, m, n); break;
  default: chai_expaxpy_ref(y, a, x, m, n);
  }
}
