/* LayerNorm over the last dim. Rows are independent, so the forward and the dinp part of the
 * backward run one row per OpenMP iteration; dweight/dbias sum over rows in row order so the result
 * is the same for any thread count. */
#include <math.h>

#include "chai/cpu.h"
#include "chai/ops.h"
#include "kernels/kernels.h"

/* One row: x (C) -> out (C), *mean, *rstd. Two passes (mean, then centred variance) so a large
 * common offset does not cancel the variance away. */
static void layernorm_row_ref(float *out, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int C, float eps) {
  double s = 0;
  for (int c = 0; c < C; c++)
    s += x[c];
  float m = (float)(s / C);
  double v = 0;
  for (int c = 0; c < C; c++) {
    double d = (double)x[c] - m;
    v += d * d;
  }
  float r = (float)(1.0 / sqrt(v / C + eps));
  for (int c = 0; c < C; c++) {
    float nrm = (x[c] - m) * r;
    out[c] = nrm * (w ? w[c] : 1.0f) + (b ? b[c] : 0.0f);
  }
  *mean = m;
  *rstd = r;
}

/* Row n of the forward at level lvl. */
static void forward_row(chai_simd lvl, float *out, float *mean, float *rstd, const float *inp,
                        const float *weight, const float *bias, int n, int C, float eps) {
  float m, r, *o = out + (size_t)n * C;
  const float *x = inp + (size_t)n * C;
  if (lvl >= CHAI_SIMD_AVX512)
    chai_layernorm_row_avx512(o, &m, &r, x, weight, bias, C, eps);
  else if (lvl == CHAI_SIMD_AVX2)
    chai_layernorm_row_avx2(o, &m, &r, x, weight, bias, C, eps);
  else
    layernorm_row_ref(o, &m, &r, x, weight, bias, C, eps);
  if (mean) mean[n] = m;
  if (rstd) rstd[n] = r;
}

/* Few rows run on the calling thread outside any OpenMP region: a region whose if clause is
 * false still cost ~1.4 µs here (libgomp builds a team of one), and a decode step of a 12-layer
 * model normalises 25 single rows. */
static void forward_rows(chai_simd lvl, float *out, float *mean, float *rstd, const float *inp,
                         const float *weight, const float *bias, int N, int C, float eps) {
  if (N == 1 || (long)N * C <= 32768) {
    for (int n = 0; n < N; n++)
      forward_row(lvl, out, mean, rstd, inp, weight, bias, n, C, eps);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    forward_row(lvl, out, mean, rstd, inp, weight, bias, n, C, eps);
}

/* out, x (N,C); weight, bias (C) or NULL; mean, rstd (N) or NULL. */
void chai_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                                const float *weight, const float *bias, int N, int C, float eps) {
  forward_rows(CHAI_SIMD_REF, out, mean, rstd, inp, weight, bias, N, C, eps);
}

void chai_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps) {
  forward_rows(chai_simd_level(), out, mean, rstd, inp, weight, bias, N, C, eps);
}

/* With xh = (x-mean)·rstd and g = w·dout: dx = rstd·(g − mean(g) − xh·mean(g·xh)).
 * mean and rstd are the forward's (required). */
void chai_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C) {
  if (dinp) {
#pragma omp parallel for schedule(static) if (N > 1 && (long)N * C > 32768)
    for (int n = 0; n < N; n++) {
      const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
      float m = mean[n], r = rstd[n];
      double sg = 0, sgx = 0;
      for (int c = 0; c < C; c++) {
        float g = d[c] * (weight ? weight[c] : 1.0f);
        sg += g;
        sgx += (double)g * ((x[c] - m) * r);
      }
      float mg = (float)(sg / C), mgx = (float)(sgx / C);
      float *dx = dinp + (size_t)n * C;
      for (int c = 0; c < C; c++) {
        float g = d[c] * (weight ? weight[c] : 1.0f);
        dx[c] += r * (g - mg - ((x[c] - m) * r) * mgx);
      }
    }
  }
  if (dweight || dbias) {
    for (int n = 0; n < N; n++) {
      const float *x = inp + (size_t)n * C, *d = dout + (size_t)n * C;
      float m = mean[n], r = rstd[n];
      for (int c = 0; c < C; c++) {
        if (dweight) dweight[c] += d[c] * ((x[c] - m) * r);
        if (dbias) dbias[c] += d[c];
      }
    }
  }
}
