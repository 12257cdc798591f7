/* K-means: the global optimum on tiny sets (brute force over every labelling), consistency of
 * labels/centres/inertia, determinism across runs and thread counts, restarts never hurting (and
 * helping on a hard set), the per-sample inertia curve, and refusals. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/heads.h"
#include "chai/rng.h"
#include "check.h"

/* Lowest inertia over all k^n labellings that use every cluster. */
static double brute_force(const float *x, int n, int d, int k) {
  long total = 1;
  for (int i = 0; i < n; i++)
    total *= k;
  double best = INFINITY;
  int lab[16];
  for (long code = 0; code < total; code++) {
    long c = code;
    for (int i = 0; i < n; i++) {
      lab[i] = (int)(c % k);
      c /= k;
    }
    double in = 0;
    int used = 0;
    for (int g = 0; g < k; g++) {
      double mean[8] = {0};
      int cnt = 0;
      for (int i = 0; i < n; i++)
        if (lab[i] == g) {
          cnt++;
          for (int j = 0; j < d; j++)
            mean[j] += x[i * d + j];
        }
      if (!cnt) break;
      used++;
      for (int j = 0; j < d; j++)
        mean[j] /= cnt;
      for (int i = 0; i < n; i++)
        if (lab[i] == g)
          for (int j = 0; j < d; j++)
            in += (x[i * d + j] - mean[j]) * (x[i * d + j] - mean[j]);
    }
    if (used == k && in < best) best = in;
  }
  return best;
}

/* Recomputes the inertia from labels and centres, and checks each point sits at its nearest
 * centre. */
static double recompute(const float *x, const int *lab, const float *cen, int n, int d, int k,
                        int *nearest_ok) {
  double in = 0;
  *nearest_ok = 1;
  for (int i = 0; i < n; i++) {
    double best = INFINITY, own = 0;
    for (int c = 0; c < k; c++) {
      double s = 0;
      for (int j = 0; j < d; j++)
        s += (x[i * d + j] - cen[c * d + j]) * (double)(x[i * d + j] - cen[c * d + j]);
      if (s < best) best = s;
      if (c == lab[i]) own = s;
    }
    if (own > best + 1e-5) *nearest_ok = 0;
    in += own;
  }
  return in;
}

static void tiny_optimum(void) {
  chai_rng r;
  for (int trial = 0; trial < 6; trial++) {
    chai_rng_init(&r, 100 + trial);
    int n = 7 + trial % 2, d = 2 + trial % 3;
    float x[8 * 4];
    chai_rng_fill_normal(&r, x, (size_t)n * d, 0, 1);
    for (int k = 1; k <= 3; k++) {
      /* 64 restarts: one greedy k-means++ start finds the optimum of trial 2, k=3 only about one
       * time in 30 (sklearn's KMeans on the same points does no better). */
      chai_kmeans_opts o = {.seed = (uint64_t)trial, .n_init = 64, .max_iter = 100};
      int lab[8];
      float cen[3 * 4];
      double in = -1;
      CHECK_OK(chai_kmeans(lab, cen, &in, x, n, d, k, &o));
      double opt = brute_force(x, n, d, k);
      CHECK_CLOSE(in, opt, 1e-9 * (1 + opt));
      int ok;
      CHECK_CLOSE(recompute(x, lab, cen, n, d, k, &ok), in, 1e-4 * (1 + in));
      CHECK(ok);
    }
    /* k = n: every point its own cluster. */
    double in = -1;
    CHECK_OK(chai_kmeans(NULL, NULL, &in, x, n, d, n, NULL));
    CHECK_CLOSE(in, 0.0, 0);
  }
  /* Two obvious groups. */
  float g[6 * 1] = {0, 0.1f, 0.2f, 10, 10.1f, 10.2f};
  int lab[6];
  CHECK_OK(chai_kmeans(lab, NULL, NULL, g, 6, 1, 2, NULL));
  CHECK(lab[0] == lab[1] && lab[1] == lab[2] && lab[3] == lab[4] && lab[4] == lab[5] &&
        lab[0] != lab[3]);
}

/* 9 Gaussian blobs on a 3x3 grid: a set where one k-means++ start often lands in a local
 * minimum. */
static float *blobs(int n, uint64_t seed) {
  float *x = malloc(sizeof(float) * n * 2);
  chai_rng r;
  chai_rng_init(&r, seed);
  chai_rng_fill_normal(&r, x, (size_t)n * 2, 0, 0.6f);
  for (int i = 0; i < n; i++) {
    x[2 * i] += (float)(3 * (i % 3));
    x[2 * i + 1] += (float)(3 * ((i / 3) % 3));
  }
  return x;
}

static void determinism(void) {
  int n = 20000, d = 2, k = 9; /* n·k·d above the parallel threshold */
  float *x = blobs(n, 5);
  int *l1 = malloc(sizeof(int) * n), *l2 = malloc(sizeof(int) * n);
  float c1[18], c2[18];
  double i1, i2;
  chai_kmeans_opts o = {.seed = 11, .n_init = 2, .max_iter = 50};
  omp_set_num_threads(1);
  CHECK_OK(chai_kmeans(l1, c1, &i1, x, n, d, k, &o));
  omp_set_num_threads(2);
  CHECK_OK(chai_kmeans(l2, c2, &i2, x, n, d, k, &o));
  CHECK(memcmp(l1, l2, sizeof(int) * n) == 0);
  CHECK(memcmp(c1, c2, sizeof c1) == 0);
  CHECK(memcmp(&i1, &i2, sizeof i1) == 0);
  CHECK_OK(chai_kmeans(l2, c2, &i2, x, n, d, k, &o));
  CHECK(memcmp(l1, l2, sizeof(int) * n) == 0 && i1 == i2);
  free(x);
  free(l1);
  free(l2);
}

static void restarts(void) {
  int n = 270;
  float *x = blobs(n, 9);
  int better = 0;
  for (uint64_t s = 0; s < 20; s++) {
    chai_kmeans_opts one = {.seed = s, .n_init = 1, .max_iter = 300};
    chai_kmeans_opts many = {.seed = s, .n_init = 8, .max_iter = 300};
    double a, b;
    CHECK_OK(chai_kmeans(NULL, NULL, &a, x, n, 2, 9, &one));
    CHECK_OK(chai_kmeans(NULL, NULL, &b, x, n, 2, 9, &many));
    CHECK(b <= a); /* restart 0 is the n_init=1 run */
    if (b < a * (1 - 1e-9)) better++;
  }
  CHECK(better >= 1);
  free(x);
}

static void curve(void) {
  int S = 5, H = 6, L = 7;
  float *buf = malloc(sizeof(float) * S * H * L);
  chai_rng r;
  chai_rng_init(&r, 3);
  chai_rng_fill_uniform(&r, buf, (size_t)S * H * L, 0, 1);
  const float *samples[5];
  int cols[5];
  double total_var = 0;
  for (int s = 0; s < S; s++) {
    samples[s] = buf + (size_t)s * H * L;
    cols[s] = L - s % 3; /* shorter samples read fewer columns */
    for (int j = 0; j < cols[s]; j++) {
      double m = 0;
      for (int h = 0; h < H; h++)
        m += samples[s][h * cols[s] + j];
      m /= H;
      for (int h = 0; h < H; h++) {
        double t = samples[s][h * cols[s] + j] - m;
        total_var += t * t;
      }
    }
  }
  double c1[6], c2[6];
  chai_kmeans_opts o = {.seed = 1, .n_init = 3, .max_iter = 100};
  omp_set_num_threads(1);
  CHECK_OK(chai_kmeans_inertia_curve(c1, samples, cols, S, H, &o));
  omp_set_num_threads(2);
  CHECK_OK(chai_kmeans_inertia_curve(c2, samples, cols, S, H, &o));
  CHECK(memcmp(c1, c2, sizeof c1) == 0);
  CHECK_CLOSE(c1[0], total_var, 1e-9 * total_var); /* k=1: total scatter */
  CHECK_CLOSE(c1[H - 1], 0.0, 0);                  /* k=H: every head alone */
  for (int k = 1; k < H; k++)
    CHECK(c1[k] <= c1[k - 1] + 1e-12);
  /* Zero-padded columns (shared by every head of a sample) change nothing. */
  float *pad = calloc((size_t)H * (L + 3), sizeof(float));
  for (int h = 0; h < H; h++)
    memcpy(pad + h * (L + 3), samples[0] + h * cols[0], sizeof(float) * cols[0]);
  double a[6], b[6];
  const float *one[1] = {samples[0]}, *onep[1] = {pad};
  int ca[1] = {cols[0]}, cb[1] = {L + 3};
  CHECK_OK(chai_kmeans_inertia_curve(a, one, ca, 1, H, &o));
  CHECK_OK(chai_kmeans_inertia_curve(b, onep, cb, 1, H, &o));
  for (int k = 0; k < H; k++)
    CHECK_CLOSE(a[k], b[k], 1e-12);
  CHECK_ERR(chai_kmeans_inertia_curve(c1, samples, cols, 0, H, &o), CHAI_ERR_ARG, "at least one");
  cols[2] = 0;
  CHECK_ERR(chai_kmeans_inertia_curve(c1, samples, cols, S, H, &o), CHAI_ERR_ARG,
            "sample 2 has 0 columns");
  free(pad);
  free(buf);
}

static void errors(void) {
  float x[4] = {1, 2, 3, 4};
  chai_kmeans_opts o = chai_kmeans_defaults();
  CHECK_ERR(chai_kmeans(NULL, NULL, NULL, x, 4, 1, 5, &o), CHAI_ERR_ARG,
            "k must be in 1..4 (the number of rows), got 5");
  CHECK_ERR(chai_kmeans(NULL, NULL, NULL, x, 4, 1, 0, &o), CHAI_ERR_ARG, "got 0");
  CHECK_ERR(chai_kmeans(NULL, NULL, NULL, x, 0, 1, 1, &o), CHAI_ERR_ARG, "(0,1)");
  o.n_init = 0;
  CHECK_ERR(chai_kmeans(NULL, NULL, NULL, x, 4, 1, 2, &o), CHAI_ERR_ARG, "n_init");
  o = chai_kmeans_defaults();
  o.max_iter = 0;
  CHECK_ERR(chai_kmeans(NULL, NULL, NULL, x, 4, 1, 2, &o), CHAI_ERR_ARG, "max_iter");
  x[2] = NAN;
  CHECK_ERR(chai_kmeans(NULL, NULL, NULL, x, 2, 2, 1, NULL), CHAI_ERR_ARG, "row 1, column 0");
  /* Duplicate points: more clusters than distinct points still works (inertia 0). */
  float dup[5] = {1, 1, 1, 2, 2};
  double in = -1;
  CHECK_OK(chai_kmeans(NULL, NULL, &in, dup, 5, 1, 4, NULL));
  CHECK_CLOSE(in, 0.0, 0);
}

int main(void) {
  tiny_optimum();
  determinism();
  restarts();
  curve();
  errors();
  return chai_test_finish();
}
