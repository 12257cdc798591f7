/* Average-linkage agglomerative clustering and cosine distance: a scipy/sklearn-generated fixture
 * (tests/fixtures/heads/make_agglomerative_fixture.py), hand-worked examples, tie-breaking, zero
 * vectors, the CHAI-KTQ project's 1-D rule, and refusals. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/heads.h"
#include "check.h"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (buf) buf[n] = 0;
  fclose(f);
  return buf;
}

static void check_fixture(void) {
  char *text = slurp(CHAI_TEST_FIXTURES "/heads/agglomerative.json");
  CHECK(text != NULL);
  if (!text) return;
  cJSON *root = cJSON_Parse(text);
  CHECK(root != NULL);
  int cases = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
    int n = cJSON_GetObjectItem(c, "n")->valueint, d = cJSON_GetObjectItem(c, "d")->valueint;
    float *x = malloc(sizeof(float) * n * d);
    double *want = malloc(sizeof(double) * n * n), *got = malloc(sizeof(double) * n * n);
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(c, "x")) x[i++] = (float)v->valuedouble;
    i = 0;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(c, "dist")) want[i++] = v->valuedouble;
    CHECK_OK(chai_cosine_distance(got, x, n, d));
    double md = 0;
    for (i = 0; i < n * n; i++)
      md = fmax(md, fabs(got[i] - want[i]));
    CHECK(md < 1e-9);
    for (int k = 1; k <= n; k++) {
      char key[16];
      snprintf(key, sizeof key, "%d", k);
      const cJSON *lab = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "labels"), key);
      int labels[64], ok = 1;
      CHECK_OK(chai_agglomerative_average(labels, got, n, k));
      i = 0;
      cJSON_ArrayForEach(v, lab) ok &= labels[i++] == v->valueint;
      if (!ok)
        fprintf(stderr, "case %s k=%d differs from scipy/sklearn\n",
                cJSON_GetObjectItem(c, "name")->valuestring, k);
      CHECK(ok);
    }
    cases++;
    free(x);
    free(want);
    free(got);
  }
  CHECK(cases == 3);
  cJSON_Delete(root);
  free(text);
}

static void check_hand(void) {
  /* Points 0, 1, 3, 7 on a line. Merges: {0,1} at 1; {0,1}-2 = (3+2)/2 = 2.5 beats 2-3 = 4 and
   * {0,1}-3 = 6.5; so k=3: {0,1},{2},{3} and k=2: {0,1,2},{3}. */
  double pos[4] = {0, 1, 3, 7}, dist[16];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++)
      dist[i * 4 + j] = fabs(pos[i] - pos[j]);
  int lab[4];
  CHECK_OK(chai_agglomerative_average(lab, dist, 4, 3));
  CHECK(lab[0] == 0 && lab[1] == 0 && lab[2] == 1 && lab[3] == 2);
  CHECK_OK(chai_agglomerative_average(lab, dist, 4, 2));
  CHECK(lab[0] == 0 && lab[1] == 0 && lab[2] == 0 && lab[3] == 1);
  CHECK_OK(chai_agglomerative_average(lab, dist, 4, 1));
  CHECK(lab[0] == 0 && lab[1] == 0 && lab[2] == 0 && lab[3] == 0);
  CHECK_OK(chai_agglomerative_average(lab, dist, 4, 4));
  CHECK(lab[0] == 0 && lab[1] == 1 && lab[2] == 2 && lab[3] == 3);
  /* Labels are numbered by lowest member: far point first. */
  double pos2[4] = {10, 0, 1, 11};
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++)
      dist[i * 4 + j] = fabs(pos2[i] - pos2[j]);
  CHECK_OK(chai_agglomerative_average(lab, dist, 4, 2));
  CHECK(lab[0] == 0 && lab[1] == 1 && lab[2] == 1 && lab[3] == 0);
  /* All distances equal: the documented tie rule merges the lexicographically first pair, so
   * (0,1), then ({0,1},2), giving {0,1,2},{3}. */
  for (int i = 0; i < 16; i++)
    dist[i] = (i % 5) ? 1.0 : 0.0;
  CHECK_OK(chai_agglomerative_average(lab, dist, 4, 2));
  CHECK(lab[0] == 0 && lab[1] == 0 && lab[2] == 0 && lab[3] == 1);
}

static void check_cosine(void) {
  float x[4 * 2] = {1, 0, 2, 0, 0, 0, 0, 3};
  float zz[2 * 2] = {0, 0, 0, 0};
  double d[16];
  CHECK_OK(chai_cosine_distance(d, x, 4, 2));
  CHECK_CLOSE(d[0 * 4 + 1], 0.0, 1e-15); /* parallel */
  CHECK_CLOSE(d[0 * 4 + 3], 1.0, 1e-15); /* orthogonal */
  CHECK_CLOSE(d[0 * 4 + 2], 1.0, 0);     /* zero vs non-zero */
  CHECK_CLOSE(d[2 * 4 + 2], 0.0, 0);
  CHECK_OK(chai_cosine_distance(d, zz, 2, 2));
  CHECK_CLOSE(d[1], 0.0, 0); /* two zero vectors */
  float anti[4] = {1, 1, -1, -1};
  CHECK_OK(chai_cosine_distance(d, anti, 2, 2));
  CHECK_CLOSE(d[1], 2.0, 1e-15);
}

static void check_errors(void) {
  double d[4] = {0, 1, 2, 0};
  int lab[2];
  CHECK_ERR(chai_agglomerative_average(lab, d, 2, 1), CHAI_ERR_ARG, "not symmetric at (0,1)");
  double neg[4] = {0, -1, -1, 0};
  CHECK_ERR(chai_agglomerative_average(lab, neg, 2, 1), CHAI_ERR_ARG, "negative");
  double ok[4] = {0, 1, 1, 0};
  CHECK_ERR(chai_agglomerative_average(lab, ok, 2, 3), CHAI_ERR_ARG, "k must be in 1..2, got 3");
  CHECK_ERR(chai_agglomerative_average(lab, ok, 2, 0), CHAI_ERR_ARG, "got 0");
  double nan[4] = {0, NAN, NAN, 0};
  CHECK_ERR(chai_agglomerative_average(lab, nan, 2, 1), CHAI_ERR_ARG, "not finite");
  float x[2] = {1, 2};
  CHECK_ERR(chai_cosine_distance(d, x, 0, 2), CHAI_ERR_ARG, "(0,2)");
}

static void check_ktq(void) {
  /* Two tight groups of mean attention values; H = 10 gives k = max(10 - 2, elbow) = 8. */
  float mean[10] = {0.10f, 0.11f, 0.12f, 0.13f, 0.14f, 0.90f, 0.91f, 0.92f, 0.93f, 0.94f};
  int labels[10], k = 0, labels2[10], k2 = 0;
  chai_kmeans_opts o = chai_kmeans_defaults();
  CHECK_OK(chai_heads_ktq_rule(labels, &k, mean, 10, 1.0, &o));
  CHECK(k == 8);
  CHECK(labels[0] == 0);
  int maxl = 0, mixed = 0;
  for (int h = 0; h < 10; h++) {
    if (labels[h] > maxl) maxl = labels[h];
    for (int g = 0; g < 10; g++)
      if (labels[h] == labels[g] && (h < 5) != (g < 5)) mixed = 1;
  }
  CHECK(maxl == 7);
  CHECK(!mixed); /* no cluster spans the two groups */
  CHECK_OK(chai_heads_ktq_rule(labels2, &k2, mean, 10, 1.0, &o));
  CHECK(k2 == k && memcmp(labels, labels2, sizeof labels) == 0);
  /* Identical features (what softmax-row means give: 1/T for every head) still yield a plan. */
  float same[6] = {0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f};
  CHECK_OK(chai_heads_ktq_rule(labels, &k, same, 6, 1.0, &o));
  CHECK(k >= 1 && k <= 6 && labels[0] == 0);
}

int main(void) {
  check_fixture();
  check_hand();
  check_cosine();
  check_errors();
  check_ktq();
  int lab[3] = {7, 2, 7};
  CHECK(chai_labels_canonical(lab, 3) == 2 && lab[0] == 0 && lab[1] == 1 && lab[2] == 0);
  int bad[2] = {0, -1};
  CHECK(chai_labels_canonical(bad, 2) == -1);
  return chai_test_finish();
}
