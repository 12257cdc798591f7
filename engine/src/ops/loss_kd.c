/* Distillation loss α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE_ε(s, y) and label-smoothed
 * cross-entropy, forward and backward, on (N,V) rows (2-class heads up to full vocabularies).
 *
 * Each row is handled by one thread with its own scratch (3·V floats): log-sum-exps come from
 * max-subtracted vector exps summed in double, so large logits cannot overflow and the KL of two
 * near-equal distributions keeps its small value. Row losses land in an array and are summed in
 * row order: the same bits for any thread count. */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "chai/cpu.h"
#include "chai/memory.h"
#include "chai/train.h"
#include "kernels/kernels.h"

/* out[j] = exp(in[j]) for n floats (out may alias in). */
static void vexp(float *out, const float *in, int n) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AMX:
  case CHAI_SIMD_AVX512: chai_exp_avx512(out, in, (size_t)n); break;
  case CHAI_SIMD_AVX2: chai_exp_avx2(out, in, (size_t)n); break;
  default:
    for (int j = 0; j < n; j++)
      out[j] = expf(in[j]);
  }
}

/* p (V) = softmax(x·inv_t); returns log Σ exp(x·inv_t) (the products rounded to float, as used
 * for p). A row holding +inf or NaN gives NaN probabilities and a NaN lse, which the loss shows. */
static double softmax_lse(float *p, const float *x, float inv_t, int V) {
  float m = -INFINITY;
  for (int j = 0; j < V; j++) {
    float v = x[j] * inv_t;
    p[j] = v;
    m = v > m ? v : m;
  }
  if (!isfinite(m)) {
    for (int j = 0; j < V; j++)
      p[j] = NAN;
    return NAN;
  }
  for (int j = 0; j < V; j++)
    p[j] -= m;
  vexp(p, p, V);
  double s = 0;
  for (int j = 0; j < V; j++)
    s += p[j];
  float inv = (float)(1.0 / s);
  for (int j = 0; j < V; j++)
    p[j] *= inv;
  return m + log(s);
}

/* One row: returns its loss (parts in *kl, *ce) and, when d is not NULL, adds g·d(loss)/d(s) to
 * d. scratch holds 3·V floats. */
static double kd_row(double *kl, double *ce, float *d, float g, const float *s, const float *t,
                     int y, const chai_kd_args *a, int V, float *scratch) {
  float *ps = scratch, *pt = scratch + V, *ph = scratch + 2 * (size_t)V;
  double klv = 0, cev = 0, lse_s = 0;
  const float T = a->T, alpha = a->alpha, eps = a->label_smoothing, inv_t = 1.0f / T;
  bool soft = alpha > 0, hard = alpha < 1;
  if (soft) {
    /* KL = Σ pt·(log pt − log ps), the logs in double from the same float products. */
    lse_s = softmax_lse(ps, s, inv_t, V);
    double lse_t = softmax_lse(pt, t, inv_t, V);
    for (int j = 0; j < V; j++)
      if (pt[j] > 0)
        klv +=
            (double)pt[j] * (((double)(t[j] * inv_t) - lse_t) - ((double)(s[j] * inv_t) - lse_s));
    if (isnan(lse_t) || isnan(lse_s)) klv = NAN;
  }
  if (hard) {
    double lse;
    if (soft && T == 1.0f) {
      ph = ps; /* softmax(s/1) is ps already */
      lse = lse_s;
    } else {
      lse = softmax_lse(ph, s, 1.0f, V);
    }
    double mean_s = 0;
    if (eps > 0) {
      for (int j = 0; j < V; j++)
        mean_s += s[j];
      mean_s /= V;
    }
    cev = lse - (1.0 - eps) * (double)s[y] - eps * mean_s;
  }
  if (d) {
    /* d(T²·KL)/ds = T·(ps − pt); d(CE_ε)/ds = softmax(s) − (1−ε)·onehot − ε/V. */
    float ks = soft ? g * alpha * T : 0.0f;
    float kh = hard ? g * (1.0f - alpha) : 0.0f;
    if (soft && hard) {
      for (int j = 0; j < V; j++)
        d[j] += ks * (ps[j] - pt[j]) + kh * ph[j];
    } else if (soft) {
      for (int j = 0; j < V; j++)
        d[j] += ks * (ps[j] - pt[j]);
    } else {
      for (int j = 0; j < V; j++)
        d[j] += kh * ph[j];
    }
    if (hard) {
      if (eps > 0) {
        float u = kh * eps / (float)V;
        for (int j = 0; j < V; j++)
          d[j] -= u;
      }
      d[y] -= kh * (1.0f - eps);
    }
  }
  *kl = klv;
  *ce = cev;
  return (soft ? (double)alpha * T * T * klv : 0.0) + (hard ? (1.0 - alpha) * cev : 0.0);
}

/* Checks arguments and targets; counts rows. */
static chai_status kd_check(const char *fn, int *count, const float *student, const float *teacher,
                            const int32_t *targets, const float *row_mask, int N, int V,
                            const chai_kd_args *a) {
  if (!a) return chai_error(CHAI_ERR_ARG, "%s: no arguments", fn);
  if (!(a->T > 0) || !isfinite(a->T))
    return chai_error(CHAI_ERR_ARG, "%s: temperature T must be a positive number, got %g", fn,
                      (double)a->T);
  if (!(a->alpha >= 0 && a->alpha <= 1))
    return chai_error(CHAI_ERR_ARG, "%s: alpha must be in 0..1, got %g", fn, (double)a->alpha);
  if (!(a->label_smoothing >= 0 && a->label_smoothing < 1))
    return chai_error(CHAI_ERR_ARG, "%s: label_smoothing must be in [0, 1), got %g", fn,
                      (double)a->label_smoothing);
  if (N < 1 || V < 1)
    return chai_error(CHAI_ERR_ARG, "%s: logits must be (N,V) with N, V >= 1, got (%d,%d)", fn, N,
                      V);
  if (!student) return chai_error(CHAI_ERR_ARG, "%s: no student logits", fn);
  if (a->alpha > 0 && !teacher)
    return chai_error(CHAI_ERR_ARG, "%s: alpha %g needs teacher logits", fn, (double)a->alpha);
  if (a->alpha < 1 && !targets)
    return chai_error(CHAI_ERR_ARG, "%s: alpha %g < 1 needs targets (labels)", fn,
                      (double)a->alpha);
  int c = 0;
  for (int n = 0; n < N; n++) {
    if (row_mask && row_mask[n] == 0) continue;
    if (targets) {
      int32_t y = targets[n];
      if (y == a->ignore_index) continue;
      if (y < 0 || y >= V)
        return chai_error(CHAI_ERR_ARG, "%s: label %d in row %d is outside 0..%d (ignore_index %d)",
                          fn, (int)y, n, V - 1, a->ignore_index);
    }
    c++;
  }
  *count = c;
  return CHAI_OK;
}

static bool row_counts(const int32_t *targets, const float *row_mask, int n, int ignore) {
  if (row_mask && row_mask[n] == 0) return false;
  return !targets || targets[n] != ignore;
}

/* The shared driver: res and/or d (with dloss) over all rows. */
static chai_status kd_run(const char *fn, chai_kd_result *res, float *losses, float *d, float dloss,
                          const float *student, const float *teacher, const int32_t *targets,
                          const float *row_mask, int N, int V, const chai_kd_args *a) {
  int count = 0;
  chai_status st = kd_check(fn, &count, student, teacher, targets, row_mask, N, V, a);
  if (st) return st;
  int nt = 1;
#ifdef _OPENMP
  nt = omp_get_max_threads();
#endif
  bool par = N > 1 && (long)N * V > 16384;
  if (!par) nt = 1;
  size_t scratch_bytes = (size_t)nt * 3 * (size_t)V * sizeof(float);
  size_t row_bytes = (size_t)N * 3 * sizeof(double);
  float *scratch = chai_alloc(scratch_bytes, "kd scratch");
  if (!scratch) return CHAI_ERR_NOMEM;
  double *rows = chai_alloc(row_bytes, "kd row losses");
  if (!rows) {
    chai_free(scratch, scratch_bytes);
    return CHAI_ERR_NOMEM;
  }
  float g = count ? dloss / (float)count : 0.0f;
#pragma omp parallel for schedule(static) num_threads(nt) if (par)
  for (int n = 0; n < N; n++) {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    double *r = rows + 3 * (size_t)n;
    if (!row_counts(targets, row_mask, n, a->ignore_index)) {
      r[0] = r[1] = r[2] = 0;
      continue;
    }
    size_t off = (size_t)n * V;
    r[0] =
        kd_row(&r[1], &r[2], d ? d + off : NULL, g, student + off, teacher ? teacher + off : NULL,
               targets ? targets[n] : 0, a, V, scratch + (size_t)tid * 3 * V);
  }
  double sum = 0, skl = 0, sce = 0;
  for (int n = 0; n < N; n++) {
    sum += rows[3 * (size_t)n];
    skl += rows[3 * (size_t)n + 1];
    sce += rows[3 * (size_t)n + 2];
    if (losses) losses[n] = (float)rows[3 * (size_t)n];
  }
  chai_free(rows, row_bytes);
  chai_free(scratch, scratch_bytes);
  if (res) {
    res->count = count;
    res->loss = count ? (float)(sum / count) : 0.0f;
    res->kl = count ? (float)(skl / count) : 0.0f;
    res->ce = count ? (float)(sce / count) : 0.0f;
  }
  return CHAI_OK;
}

chai_status chai_kd_forward(chai_kd_result *res, float *losses, const float *student,
                            const float *teacher, const int32_t *targets, const float *row_mask,
                            int N, int V, const chai_kd_args *a) {
  return kd_run("kd", res, losses, NULL, 0, student, teacher, targets, row_mask, N, V, a);
}

chai_status chai_kd_backward(float *dstudent, const float *student, const float *teacher,
                             const int32_t *targets, const float *row_mask, int N, int V,
                             const chai_kd_args *a, float dloss) {
  if (!dstudent) return kd_check("kd", &(int){0}, student, teacher, targets, row_mask, N, V, a);
  return kd_run("kd", NULL, NULL, dstudent, dloss, student, teacher, targets, row_mask, N, V, a);
}

chai_status chai_kd_forward_backward(chai_kd_result *res, float *dstudent, const float *student,
                                     const float *teacher, const int32_t *targets,
                                     const float *row_mask, int N, int V, const chai_kd_args *a) {
  return kd_run("kd", res, NULL, dstudent, 1.0f, student, teacher, targets, row_mask, N, V, a);
}

chai_status chai_cross_entropy_smooth_forward(float *loss, int *count, const float *logits,
                                              const int32_t *targets, int N, int V,
                                              int ignore_index, float smoothing) {
  chai_kd_args a = {.T = 1, .alpha = 0, .label_smoothing = smoothing, .ignore_index = ignore_index};
  chai_kd_result r;
  chai_status st =
      kd_run("cross_entropy", &r, NULL, NULL, 0, logits, NULL, targets, NULL, N, V, &a);
  if (st) return st;
  *loss = r.loss;
  if (count) *count = r.count;
  return CHAI_OK;
}

chai_status chai_cross_entropy_smooth_backward(float *dlogits, const float *logits,
                                               const int32_t *targets, int N, int V,
                                               int ignore_index, float smoothing, float dloss) {
  chai_kd_args a = {.T = 1, .alpha = 0, .label_smoothing = smoothing, .ignore_index = ignore_index};
  if (!dlogits) return kd_check("cross_entropy", &(int){0}, logits, NULL, targets, NULL, N, V, &a);
  return kd_run("cross_entropy", NULL, NULL, dlogits, dloss, logits, NULL, targets, NULL, N, V, &a);
}
