/* Helpers shared by the training tests: read tests/fixtures/train/manifest.json and its .npy
 * files (written by tests/fixtures/train/make_train_fixtures.py). Header-only: each test is one
 * executable. */
#ifndef CHAI_TEST_TRAIN_FIXTURES_H
#define CHAI_TEST_TRAIN_FIXTURES_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/chai.h"
#include "check.h"

#define TRAIN_FIXTURES CHAI_TEST_FIXTURES "/train"

/* The parsed manifest (free with cJSON_Delete), or NULL after printing why. */
static inline cJSON *fx_manifest(void) {
  FILE *f = fopen(TRAIN_FIXTURES "/manifest.json", "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s/manifest.json\n", TRAIN_FIXTURES);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = 0;
  fclose(f);
  cJSON *j = cJSON_Parse(buf);
  free(buf);
  if (!j) fprintf(stderr, "manifest.json does not parse\n");
  return j;
}

/* Loads fixture file `name` (relative to the fixtures folder); a released tensor on failure
 * (recorded as a failed check). */
static inline chai_tensor fx_load(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", TRAIN_FIXTURES, name);
  chai_tensor t = {0};
  CHECK_OK(chai_npy_load(&t, path));
  return t;
}

static inline double fx_num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static inline const char *fx_str(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* max |a-b| / max(1e-30, max |b|) over n floats. */
static inline double fx_rel_err(const float *a, const float *b, size_t n) {
  double m = 0, d = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)a[i] - b[i]);
    if (e > d || e != e) d = e != e ? INFINITY : e;
    if (fabs((double)b[i]) > m) m = fabs((double)b[i]);
  }
  return d / (m > 1e-30 ? m : 1e-30);
}

#endif
