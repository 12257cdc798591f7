/* ReLU and exact (erf) GELU. */
#include <math.h>

#include "chai/cpu.h"
#include "chai/ops.h"
#include "kernels/kernels.h"

void chai_relu_forward_ref(float *out, const float *inp, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] = inp[i] > 0 ? inp[i] : 0.0f;
}

void chai_relu_forward(float *out, const float *inp, size_t n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_relu_forward_avx512(out, inp, n); break;
  case CHAI_SIMD_AVX2: chai_relu_forward_avx2(out, inp, n); break;
  default: chai_relu_forward_ref(out, inp, n);
  }
}

/* The gradient at exactly 0 is taken as 0 (PyTorch's choice). */
void chai_relu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
  if (!dinp) return;
  for (size_t i = 0; i < n; i++)
    if (inp[i] > 0) dinp[i] += dout[i];
}

#define INV_SQRT2 0.70710678118654752440
#define INV_SQRT_2PI 0.39894228040143267794

/* x·Φ(x), Φ(x) = (1 + erf(x/√2))/2; evaluated in double so it is correctly rounded to float in
 * practice. Large |x| is exact through erf's saturation. */
void chai_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    double x = inp[i];
    out[i] = (float)(0.5 * x * (1.0 + erf(x * INV_SQRT2)));
  }
}

/* d/dx x·Φ(x) = Φ(x) + x·φ(x). */
void chai_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
  if (!dinp) return;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (size_t i = 0; i < n; i++) {
    double x = inp[i];
    double g = 0.5 * (1.0 + erf(x * INV_SQRT2)) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
    dinp[i] += (float)(dout[i] * g);
  }
}
