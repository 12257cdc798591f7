/* Shared by tests/c/test_opt_*.c: paths and .npy arrays of tests/fixtures/opt (written by
 * tests/fixtures/make_opt_fixtures.py). */
#ifndef CHAI_TEST_OPT_FIXTURE_H
#define CHAI_TEST_OPT_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/chai.h"
#include "chai/npy.h"
#include "chai/opt.h"
#include "check.h"

static const char *const opt_variants[] = {"preln", "postln"};
static const char *const opt_formats[] = {"st", "bin"};

/* tests/fixtures/opt/<variant>[/<sub>] */
static inline const char *opt_fixture_dir(char *buf, size_t n, const char *variant,
                                          const char *sub) {
  snprintf(buf, n, "%s/opt/%s%s%s", CHAI_TEST_FIXTURES, variant, sub ? "/" : "", sub ? sub : "");
  return buf;
}

/* A fixture array; exits the test on a missing file (the fixture set is broken). */
static inline chai_tensor opt_fixture_npy(const char *variant, const char *name) {
  char dir[512], path[600];
  snprintf(path, sizeof path, "%s/%s.npy", opt_fixture_dir(dir, sizeof dir, variant, NULL), name);
  chai_tensor t;
  if (chai_npy_load(&t, path) != CHAI_OK) {
    fprintf(stderr, "cannot load fixture %s: %s\n", path, chai_last_error());
    exit(2);
  }
  return t;
}

static inline chai_opt_model *opt_fixture_load(const char *variant, const char *format,
                                               chai_dtype dtype) {
  char dir[512];
  chai_opt_load_opts o = {.dtype = dtype};
  chai_opt_model *m = NULL;
  if (chai_opt_load(&m, opt_fixture_dir(dir, sizeof dir, variant, format), &o) != CHAI_OK) {
    fprintf(stderr, "cannot load %s: %s\n", dir, chai_last_error());
    exit(2);
  }
  return m;
}

/* max |a - b| over (B,T,V) logits at positions where mask == 1. */
static inline double opt_masked_diff(const float *a, const float *b, const int32_t *mask, int B,
                                     int T, int V) {
  double worst = 0;
  for (int i = 0; i < B * T; i++)
    if (mask[i]) {
      double d = chai_test_max_abs_diff_f(a + (size_t)i * V, b + (size_t)i * V, (size_t)V);
      if (d > worst) worst = d;
    }
  return worst;
}

#endif
