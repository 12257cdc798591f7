/* Softmax and log-softmax over the last dim of (rows, cols). Max-subtracted; a row whose max is
 * -inf (every entry masked) has no defined distribution: softmax gives zeros there and log-softmax
 * gives -inf, and the backward passes no gradient through such rows. */
#include <math.h>

#include "chai/cpu.h"
#include "chai/ops.h"
#include "kernels/kernels.h"

/* One row; the scalar definition the SIMD row kernels follow. */
void chai_softmax_row_ref(float *out, const float *x, int n) {
  float m = -INFINITY;
  for (int j = 0; j < n; j++)
    m = x[j] > m ? x[j] : m;
  if (m == -INFINITY) {
    for (int j = 0; j < n; j++)
      out[j] = 0.0f;
    return;
  }
  float s = 0;
  for (int j = 0; j < n; j++) {
    out[j] = expf(x[j] - m);
    s += out[j];
  }
  float inv = 1.0f / s;
  for (int j = 0; j < n; j++)
    out[j] *= inv;
}

void chai_softmax_row(float *out, const float *x, int n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_softmax_row_avx512(out, x, n); break;
  case CHAI_SIMD_AVX2: chai_softmax_row_avx2(out, x, n); break;
  default: chai_softmax_row_ref(out, x, n);
  }
}

void chai_softmax_forward(float *out, const float *inp, int rows, int cols) {
#pragma omp parallel for schedule(static) if (rows > 1 && (long)rows * cols > 16384)
  for (int r = 0; r < rows; r++)
    chai_softmax_row(out + (size_t)r * cols, inp + (size_t)r * cols, cols);
}

/* dx = y·(dy − Σ dy·y). Fully masked rows have y = 0 and get nothing. */
void chai_softmax_backward(float *dinp, const float *dout, const float *out, int rows, int cols) {
  if (!dinp) return;
#pragma omp parallel for schedule(static) if (rows > 1 && (long)rows * cols > 16384)
  for (int r = 0; r < rows; r++) {
    const float *y = out + (size_t)r * cols, *dy = dout + (size_t)r * cols;
    float *dx = dinp + (size_t)r * cols;
    double s = 0;
    for (int j = 0; j < cols; j++)
      s += (double)dy[j] * y[j];
    for (int j = 0; j < cols; j++)
      dx[j] += y[j] * (dy[j] - (float)s);
  }
}

/* y = x − max − log Σ exp(x − max). */
void chai_log_softmax_forward(float *out, const float *inp, int rows, int cols) {
#pragma omp parallel for schedule(static) if (rows > 1 && (long)rows * cols > 16384)
  for (int r = 0; r < rows; r++) {
    const float *x = inp + (size_t)r * cols;
    float *y = out + (size_t)r * cols;
    float m = chai_max(x, (size_t)cols);
    if (m == -INFINITY) {
      for (int j = 0; j < cols; j++)
        y[j] = -INFINITY;
      continue;
    }
    float lse = m + (float)log(chai_sumexp(x, m, (size_t)cols));
    for (int j = 0; j < cols; j++)
      y[j] = x[j] - lse;
  }
}

/* dx = dy − exp(y)·Σ dy. A fully masked row (all y = -inf) passes nothing. */
void chai_log_softmax_backward(float *dinp, const float *dout, const float *out, int rows,
                               int cols) {
  if (!dinp) return;
#pragma omp parallel for schedule(static) if (rows > 1 && (long)rows * cols > 16384)
  for (int r = 0; r < rows; r++) {
    const float *y = out + (size_t)r * cols, *dy = dout + (size_t)r * cols;
    float *dx = dinp + (size_t)r * cols;
    if (cols > 0 && y[0] == -INFINITY) {
      int j = 1;
      while (j < cols && y[j] == -INFINITY)
        j++;
      if (j == cols) continue;
    }
    double s = 0;
    for (int j = 0; j < cols; j++)
      s += dy[j];
    for (int j = 0; j < cols; j++)
      dx[j] += dy[j] - expf(y[j]) * (float)s;
  }
}
