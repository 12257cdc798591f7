/* Helpers for the ops tests: deterministic random inputs, float<->double copies, and central
 * differences on a double-precision reference. Header-only (static inline) so each test file
 * takes what it uses. */
#ifndef CHAI_OPS_TESTUTIL_H
#define CHAI_OPS_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t tu_state = 0x9e3779b97f4a7c15ull;

static inline void tu_seed(uint64_t s) {
  tu_state = s * 0x9e3779b97f4a7c15ull + 1;
}

/* Uniform in [lo, hi), from a 64-bit LCG's top bits. */
static inline float tu_uniform(float lo, float hi) {
  tu_state = tu_state * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (float)((tu_state >> 40) * (1.0 / 16777216.0));
}

static inline void tu_fill(float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++)
    x[i] = tu_uniform(lo, hi);
}

static inline double *tu_dup(const float *x, size_t n) {
  double *d = malloc((n ? n : 1) * sizeof(double));
  for (size_t i = 0; i < n; i++)
    d[i] = x[i];
  return d;
}

static inline float *tu_falloc(size_t n) {
  return calloc(n ? n : 1, sizeof(float));
}
static inline double *tu_dalloc(size_t n) {
  return calloc(n ? n : 1, sizeof(double));
}

typedef double (*tu_loss_fn)(void *ctx);

/* g[i] = dL/dx[i] by central differences; x is a parameter array that `loss` reads through ctx. */
static inline void tu_num_grad(double *g, double *x, size_t n, tu_loss_fn loss, void *ctx) {
  for (size_t i = 0; i < n; i++) {
    double old = x[i], h = 1e-6 * (fabs(old) > 1 ? fabs(old) : 1);
    x[i] = old + h;
    double lp = loss(ctx);
    x[i] = old - h;
    double lm = loss(ctx);
    x[i] = old;
    g[i] = (lp - lm) / (2 * h);
  }
}

/* Checks a float gradient that was accumulated onto `init` against the numeric one:
 * |(got - init) - want| <= tol·(1 + max|want|). Prints the worst index on failure. */
static inline void tu_check_grad(const char *what, const float *got, const float *init,
                                 const double *want, size_t n, double tol) {
  double scale = 1, worst = 0;
  size_t wi = 0;
  for (size_t i = 0; i < n; i++)
    scale = fabs(want[i]) + 1 > scale ? fabs(want[i]) + 1 : scale;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (init ? init[i] : 0) - want[i]);
    if (d > worst || d != d) {
      worst = d != d ? INFINITY : d;
      wi = i;
    }
  }
  if (worst <= tol * scale) {
    chai_test_passed++;
  } else {
    chai_test_failed++;
    fprintf(stderr, "%s: gradient off by %g at %zu (got %.9g, want %.9g, tol %g)\n", what, worst,
            wi, (double)got[wi] - (init ? init[wi] : 0), want[wi], tol * scale);
  }
}

/* Forward values vs a double reference: max abs diff <= tol·(1 + max|want|). */
static inline void tu_check_close(const char *what, const float *got, const double *want, size_t n,
                                  double tol) {
  tu_check_grad(what, got, NULL, want, n, tol);
}

#endif
