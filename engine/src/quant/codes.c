/* Choosing quantized codes: int8 per row and int4 per group, by round-to-nearest from the absolute
 * maximum (RTN) or by a search over clipping ratios (MSE), and the inverse maps. The rules are the
 * contract of chai/quant.h section 1, which tests/fixtures/quant/make_quant_fixtures.py mirrors in
 * NumPy; every float operation here is written in the order that comment gives, because the tests
 * compare codes exactly. */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "chai/half.h"
#include "chai/memory.h"
#include "chai/quant.h"

static const char *const format_names[CHAI_QF_COUNT] = {"f32", "f16", "bf16", "int8", "int4"};

const char *chai_qformat_name(chai_qformat f) {
  return (unsigned)f < CHAI_QF_COUNT ? format_names[f] : "?";
}

chai_status chai_qformat_parse(const char *name, chai_qformat *out) {
  if (!name) return chai_error(CHAI_ERR_ARG, "quant format: no name given");
  for (int f = 0; f < CHAI_QF_COUNT; f++)
    if (strcmp(name, format_names[f]) == 0) {
      if (out) *out = (chai_qformat)f;
      return CHAI_OK;
    }
  return chai_error(CHAI_ERR_ARG,
                    "unknown quant format '%s' (expected f32, f16, bf16, int8 or int4)", name);
}

/* Round half to even for |x| <= 2^22: adding 1.5·2^23 leaves no fraction bits, so the sum is
 * rounded to an integer by the FPU's round-to-nearest-even (the constant is even, so ties go to the
 * even integer), and subtracting it is exact. Callers clamp x first. It is nearbyintf's result
 * without a libm call per element (the MSE search rounds every weight 51 times). */
static inline float rhe(float x) {
  const float magic = 12582912.0f;
  return (x + magic) - magic;
}

static inline float clampf(float x, float lo, float hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

/* The clipping ratio of MSE candidate i (0..MSE_CANDIDATES-1); candidate 0 is RTN's r = 1. */
enum { MSE_CANDIDATES = 51 };
static inline float clip_ratio(int i) {
  return (float)(100 - i) / 100.0f;
}

/* Stored scales rounded to f16 where asked. */
static inline float f16_round(float s) {
  return chai_f16_to_f32(chai_f32_to_f16(s));
}

static chai_status check_finite(const float *w, int R, int C, const char *what) {
  for (int r = 0; r < R; r++) {
    const float *row = w + (size_t)r * C;
    for (int c = 0; c < C; c++)
      if (!isfinite(row[c]))
        return chai_error(CHAI_ERR_ARG, "%s: %s at (row %d, column %d) cannot be quantized", what,
                          isnan(row[c]) ? "NaN" : "Inf", r, c);
  }
  return CHAI_OK;
}

static chai_status check_common(const void *codes, const float *scale, const float *w, int R, int C,
                                chai_qmethod method, const char *what) {
  if (!codes || !scale || !w) return chai_error(CHAI_ERR_ARG, "%s: NULL buffer", what);
  if (R < 1 || C < 1)
    return chai_error(CHAI_ERR_ARG, "%s: cannot quantize a %d x %d matrix", what, R, C);
  if (method != CHAI_QM_RTN && method != CHAI_QM_MSE)
    return chai_error(CHAI_ERR_ARG, "%s: unknown quant method %d", what, (int)method);
  return check_finite(w, R, C, what);
}

/* Rows run in parallel when there is enough work to pay for the thread team. */
static inline bool worth_threads(int R, int C, chai_qmethod method) {
  return R > 1 && (double)R * C * (method == CHAI_QM_MSE ? MSE_CANDIDATES : 1) >= (double)(1 << 18);
}

/* ---- int8, per row -----------------------------------------------------------------------------
 */

static void int8_encode(int8_t *q, const float *w, int C, float s) {
  if (s == 0.0f) {
    memset(q, 0, (size_t)C);
    return;
  }
  for (int c = 0; c < C; c++)
    q[c] = (int8_t)rhe(clampf(w[c] / s, -127.0f, 127.0f));
}

static double int8_error(const int8_t *q, const float *w, int C, float s) {
  double e = 0;
  for (int c = 0; c < C; c++) {
    float d = s * (float)q[c];
    double diff = (double)w[c] - (double)d;
    e += diff * diff;
  }
  return e;
}

/* One row: its scale; q receives the codes; tmp (C) is scratch for MSE. */
static float int8_row(int8_t *q, int8_t *tmp, const float *w, int C, chai_qmethod method) {
  float amax = 0;
  for (int c = 0; c < C; c++)
    amax = fabsf(w[c]) > amax ? fabsf(w[c]) : amax;
  float best = amax / 127.0f; /* r = 1 */
  if (method == CHAI_QM_MSE && amax > 0) {
    double best_err = INFINITY;
    for (int i = 0; i < MSE_CANDIDATES; i++) {
      float s = clip_ratio(i) * amax / 127.0f;
      int8_encode(tmp, w, C, s);
      double e = int8_error(tmp, w, C, s);
      if (e < best_err) {
        best_err = e;
        best = s;
      }
    }
  }
  int8_encode(q, w, C, best);
  return best;
}

chai_status chai_quant_int8_codes(int8_t *q, float *scale, const float *w, int R, int C,
                                  chai_qmethod method, const char *what) {
  if (!what) what = "matrix";
  chai_status st = check_common(q, scale, w, R, C, method, what);
  if (st) return st;
  /* MSE scratch: one row of codes per thread. */
  int8_t *tmp = NULL;
  size_t tmp_bytes = method == CHAI_QM_MSE ? (size_t)omp_get_max_threads() * C : 0;
  if (tmp_bytes && !(tmp = chai_alloc(tmp_bytes, "int8 MSE scratch"))) return CHAI_ERR_NOMEM;
#pragma omp parallel for schedule(dynamic, 16) if (worth_threads(R, C, method))
  for (int r = 0; r < R; r++)
    scale[r] = int8_row(q + (size_t)r * C, tmp ? tmp + (size_t)omp_get_thread_num() * C : NULL,
                        w + (size_t)r * C, C, method);
  chai_free(tmp, tmp_bytes);
  return CHAI_OK;
}

void chai_dequant_int8_codes(float *w, const int8_t *q, const float *scale, int R, int C) {
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++)
      w[(size_t)r * C + c] = scale[r] * (float)q[(size_t)r * C + c];
}

/* ---- int4, per group ---------------------------------------------------------------------------
 */

typedef struct int4_group {
  float s; /* the scale as stored (f16-rounded where asked) */
  int z;   /* the zero point */
} int4_group;

/* What a group's elements w (n) say once, whatever the candidate: symmetric m, or lo/hi. */
typedef struct int4_range {
  float m, lo, hi;
} int4_range;

static int4_range int4_range_of(const float *w, int n, bool zero_point) {
  int4_range g = {0, 0, 0};
  if (zero_point) {
    for (int k = 0; k < n; k++) {
      g.lo = w[k] < g.lo ? w[k] : g.lo;
      g.hi = w[k] > g.hi ? w[k] : g.hi;
    }
  } else {
    float amax = 0;
    for (int k = 0; k < n; k++)
      if (fabsf(w[k]) > amax) { /* strict: the first of equal magnitudes */
        amax = fabsf(w[k]);
        g.m = w[k];
      }
  }
  return g;
}

/* The scale and zero point of clipping ratio r. */
static int4_group int4_params(int4_range g, bool zero_point, bool f16_scales, float r) {
  int4_group p;
  if (zero_point) {
    float lo = r * g.lo, hi = r * g.hi;
    p.s = (float)(((double)hi - (double)lo) / 15.0);
    if (f16_scales) p.s = f16_round(p.s);
    p.z = p.s == 0.0f ? 0 : (int)rhe(clampf(-lo / p.s, 0.0f, 15.0f));
  } else {
    p.s = r * g.m / -8.0f;
    if (f16_scales) p.s = f16_round(p.s);
    p.z = 8;
  }
  return p;
}

static void int4_encode(uint8_t *u, const float *w, int n, int4_group p, bool zero_point) {
  if (p.s == 0.0f) {
    memset(u, p.z, (size_t)n);
    return;
  }
  if (zero_point) {
    for (int k = 0; k < n; k++) {
      int v = (int)rhe(clampf(w[k] / p.s, -64.0f, 64.0f)) + p.z;
      u[k] = (uint8_t)(v < 0 ? 0 : v > 15 ? 15 : v);
    }
  } else {
    for (int k = 0; k < n; k++)
      u[k] = (uint8_t)((int)rhe(clampf(w[k] / p.s, -8.0f, 7.0f)) + 8);
  }
}

static double int4_error(const uint8_t *u, const float *w, int n, int4_group p) {
  double e = 0;
  for (int k = 0; k < n; k++) {
    float d = p.s * (float)((int)u[k] - p.z);
    double diff = (double)w[k] - (double)d;
    e += diff * diff;
  }
  return e;
}

/* Why a group's RTN parameters cannot be stored: 0 they can; 1 the scale is beyond f16; 2 the
 * grid s·(0 − z) .. s·(15 − z) reaches beyond float (a zero point on values near ±3.4e38; the
 * symmetric grid ends at m). MSE candidates past float get E = Inf and are never kept. */
static int int4_unrepresentable(int4_group p) {
  if (isinf(p.s)) return 1;
  return isinf(p.s * (float)(0 - p.z)) || isinf(p.s * (float)(15 - p.z)) ? 2 : 0;
}

/* One group of n elements: its parameters, codes into u. tmp (n) is MSE scratch. Returns false
 * when the RTN parameters cannot be stored (int4_unrepresentable). */
static bool int4_group_codes(int4_group *out, uint8_t *u, uint8_t *tmp, const float *w, int n,
                             bool zero_point, bool f16_scales, chai_qmethod method) {
  int4_range g = int4_range_of(w, n, zero_point);
  int4_group best = int4_params(g, zero_point, f16_scales, 1.0f);
  if (int4_unrepresentable(best)) return false;
  if (method == CHAI_QM_MSE && best.s != 0.0f) {
    double best_err = INFINITY;
    for (int i = 0; i < MSE_CANDIDATES; i++) {
      int4_group p = int4_params(g, zero_point, f16_scales, clip_ratio(i));
      int4_encode(tmp, w, n, p, zero_point);
      double e = int4_error(tmp, w, n, p);
      if (e < best_err) {
        best_err = e;
        best = p;
      }
    }
  }
  int4_encode(u, w, n, best, zero_point);
  *out = best;
  return true;
}

chai_status chai_quant_int4_codes(uint8_t *u, float *scale, uint8_t *zero, const float *w, int R,
                                  int C, int group, bool zero_point, bool f16_scales,
                                  chai_qmethod method, const char *what) {
  if (!what) what = "matrix";
  chai_status st = check_common(u, scale, w, R, C, method, what);
  if (st) return st;
  if (group != 32 && group != 64 && group != 128)
    return chai_error(CHAI_ERR_ARG, "%s: int4 group must be 32, 64 or 128, got %d", what, group);
  if (zero_point && !zero)
    return chai_error(CHAI_ERR_ARG, "%s: int4 with a zero point needs a zero buffer", what);
  int ng = (C + group - 1) / group;
  uint8_t *tmp = NULL;
  size_t tmp_bytes = method == CHAI_QM_MSE ? (size_t)omp_get_max_threads() * group : 0;
  if (tmp_bytes && !(tmp = chai_alloc(tmp_bytes, "int4 MSE scratch"))) return CHAI_ERR_NOMEM;
  /* The first group (row-major) that cannot be stored, as row·ng + group. */
  long bad = LONG_MAX;
#pragma omp parallel for schedule(dynamic, 16) reduction(min : bad) if (worth_threads(R, C, method))
  for (int r = 0; r < R; r++) {
    for (int gi = 0; gi < ng; gi++) {
      int c0 = gi * group, n = C - c0 < group ? C - c0 : group;
      size_t at = (size_t)r * C + c0, gat = (size_t)r * ng + gi;
      int4_group p;
      if (!int4_group_codes(&p, u + at, tmp ? tmp + (size_t)omp_get_thread_num() * group : NULL,
                            w + at, n, zero_point, f16_scales, method)) {
        bad = bad < (long)gat ? bad : (long)gat;
        break;
      }
      scale[gat] = p.s;
      if (zero) zero[gat] = (uint8_t)p.z;
    }
  }
  chai_free(tmp, tmp_bytes);
  if (bad != LONG_MAX) {
    int r = (int)(bad / ng), gi = (int)(bad % ng), c0 = gi * group;
    int n = C - c0 < group ? C - c0 : group;
    int4_range g = int4_range_of(w + (size_t)r * C + c0, n, zero_point);
    int4_group p = int4_params(g, zero_point, false, 1.0f);
    if (int4_unrepresentable(int4_params(g, zero_point, f16_scales, 1.0f)) == 1)
      return chai_error(CHAI_ERR_ARG,
                        "%s: int4 scale %g of row %d, group %d (columns %d..%d) is beyond the f16 "
                        "range (max 65504); use f32 scales",
                        what, (double)p.s, r, gi, c0, c0 + n - 1);
    return chai_error(CHAI_ERR_ARG,
                      "%s: int4 row %d, group %d (columns %d..%d) spans %g..%g, too wide for a "
                      "zero point in float (its grid would reach beyond ±3.4e38); use symmetric "
                      "int4",
                      what, r, gi, c0, c0 + n - 1, (double)g.lo, (double)g.hi);
  }
  return CHAI_OK;
}

void chai_dequant_int4_codes(float *w, const uint8_t *u, const float *scale, const uint8_t *zero,
                             int R, int C, int group) {
  int ng = (C + group - 1) / group;
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) {
      size_t gat = (size_t)r * ng + c / group;
      int z = zero ? zero[gat] : 8;
      w[(size_t)r * C + c] = scale[gat] * (float)((int)u[(size_t)r * C + c] - z);
    }
}
