/* Elementwise add, mul, scale and axpy on n floats. The plain names dispatch on chai_simd_level()
 * to the AVX2/AVX-512 kernels in src/kernels; the _ref twins are the scalar definitions. */
#include "chai/cpu.h"
#include "chai/ops.h"
#include "kernels/kernels.h"

void chai_add_forward_ref(float *out, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] = a[i] + b[i];
}
void chai_mul_forward_ref(float *out, const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] = a[i] * b[i];
}
void chai_scale_forward_ref(float *out, const float *a, float s, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] = a[i] * s;
}
void chai_axpy_ref(float *y, float a, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    y[i] += a * x[i];
}

void chai_add_forward(float *out, const float *a, const float *b, size_t n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_add_forward_avx512(out, a, b, n); break;
  case CHAI_SIMD_AVX2: chai_add_forward_avx2(out, a, b, n); break;
  default: chai_add_forward_ref(out, a, b, n);
  }
}
void chai_mul_forward(float *out, const float *a, const float *b, size_t n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_mul_forward_avx512(out, a, b, n); break;
  case CHAI_SIMD_AVX2: chai_mul_forward_avx2(out, a, b, n); break;
  default: chai_mul_forward_ref(out, a, b, n);
  }
}
void chai_scale_forward(float *out, const float *a, float s, size_t n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_scale_forward_avx512(out, a, s, n); break;
  case CHAI_SIMD_AVX2: chai_scale_forward_avx2(out, a, s, n); break;
  default: chai_scale_forward_ref(out, a, s, n);
  }
}
void chai_axpy(float *y, float a, const float *x, size_t n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_axpy_avx512(y, a, x, n); break;
  case CHAI_SIMD_AVX2: chai_axpy_avx2(y, a, x, n); break;
  default: chai_axpy_ref(y, a, x, n);
  }
}

/* Gradients accumulate; a NULL gradient is skipped. */
void chai_add_backward(float *da, float *db, const float *dout, size_t n) {
  if (da) chai_axpy(da, 1.0f, dout, n);
  if (db) chai_axpy(db, 1.0f, dout, n);
}
void chai_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       size_t n) {
  if (da)
    for (size_t i = 0; i < n; i++)
      da[i] += dout[i] * b[i];
  if (db)
    for (size_t i = 0; i < n; i++)
      db[i] += dout[i] * a[i];
}
void chai_scale_backward(float *da, const float *dout, float s, size_t n) {
  if (da) chai_axpy(da, s, dout, n);
}
