/* Average-linkage agglomerative clustering on a precomputed distance matrix, and cosine distance:
 * CHAI's online membership (sklearn AgglomerativeClustering(metric="precomputed",
 * linkage="average") on scipy cdist(..., "cosine") in the paper's code). n is a head count (<= a
 * few dozen), so the plain O(n³) merge loop is the clearest correct choice. */
#include <math.h>
#include <string.h>

#include "chai/heads.h"
#include "chai/memory.h"

chai_status chai_cosine_distance(double *dist, const float *x, int n, int d) {
  if (!dist || !x) return chai_error(CHAI_ERR_ARG, "cosine distance: NULL argument");
  if (n < 1 || d < 1)
    return chai_error(CHAI_ERR_ARG, "cosine distance: need (n,d) >= (1,1), got (%d,%d)", n, d);
  size_t bytes = (size_t)n * sizeof(double);
  double *norm = chai_alloc(bytes, "cosine norms");
  if (!norm) return CHAI_ERR_NOMEM;
  for (int i = 0; i < n; i++) {
    double s = 0;
    for (int j = 0; j < d; j++)
      s += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
    norm[i] = sqrt(s);
  }
  for (int i = 0; i < n; i++) {
    dist[(size_t)i * n + i] = 0;
    for (int j = i + 1; j < n; j++) {
      double v;
      if (norm[i] == 0 || norm[j] == 0) {
        v = (norm[i] == 0 && norm[j] == 0) ? 0.0 : 1.0;
      } else {
        double dot = 0;
        for (int c = 0; c < d; c++)
          dot += (double)x[(size_t)i * d + c] * x[(size_t)j * d + c];
        v = 1.0 - dot / (norm[i] * norm[j]);
        if (v < 0) v = 0;
        if (v > 2) v = 2;
      }
      dist[(size_t)i * n + j] = dist[(size_t)j * n + i] = v;
    }
  }
  chai_free(norm, bytes);
  return CHAI_OK;
}

chai_status chai_agglomerative_average(int *labels, const double *dist, int n, int k) {
  if (!labels || !dist) return chai_error(CHAI_ERR_ARG, "agglomerative: NULL argument");
  if (n < 1) return chai_error(CHAI_ERR_ARG, "agglomerative: need n >= 1 points, got %d", n);
  if (k < 1 || k > n)
    return chai_error(CHAI_ERR_ARG, "agglomerative: k must be in 1..%d, got %d", n, k);
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      double a = dist[(size_t)i * n + j], b = dist[(size_t)j * n + i];
      if (!isfinite(a) || !isfinite(b))
        return chai_error(CHAI_ERR_ARG, "agglomerative: distance (%d,%d) is not finite", i, j);
      if (a < 0 || b < 0)
        return chai_error(CHAI_ERR_ARG, "agglomerative: distance (%d,%d) is negative", i, j);
      if (fabs(a - b) > 1e-9 * (1 + fabs(a)))
        return chai_error(CHAI_ERR_ARG,
                          "agglomerative: distance matrix is not symmetric at (%d,%d): %g vs %g", i,
                          j, a, b);
    }
  /* sum[a][b]: total pairwise distance between clusters a and b, exact under merging (so the
   * average is the true mean, not a Lance-Williams recurrence with its own rounding). A cluster's
   * id is its lowest member: merging b into a with a < b keeps that true. */
  size_t bytes = (size_t)n * n * sizeof(double) + 2 * (size_t)n * sizeof(int);
  double *sum = chai_alloc(bytes, "agglomerative scratch");
  if (!sum) return CHAI_ERR_NOMEM;
  int *size = (int *)(sum + (size_t)n * n);
  int *owner = size + n;
  for (int i = 0; i < n; i++) {
    size[i] = 1;
    owner[i] = i;
    for (int j = 0; j < n; j++)
      sum[(size_t)i * n + j] = i < j ? dist[(size_t)i * n + j] : dist[(size_t)j * n + i];
  }
  for (int active = n; active > k; active--) {
    int ba = -1, bb = -1;
    double best = INFINITY;
    for (int a = 0; a < n; a++) {
      if (!size[a]) continue;
      for (int b = a + 1; b < n; b++) {
        if (!size[b]) continue;
        double avg = sum[(size_t)a * n + b] / ((double)size[a] * size[b]);
        if (avg < best) { /* strict: the first pair in (a,b) order wins ties */
          best = avg;
          ba = a;
          bb = b;
        }
      }
    }
    for (int c = 0; c < n; c++) {
      if (!size[c] || c == ba || c == bb) continue;
      double v = sum[(size_t)ba * n + c] + sum[(size_t)bb * n + c];
      sum[(size_t)ba * n + c] = sum[(size_t)c * n + ba] = v;
    }
    size[ba] += size[bb];
    size[bb] = 0;
    for (int i = 0; i < n; i++)
      if (owner[i] == bb) owner[i] = ba;
  }
  memcpy(labels, owner, (size_t)n * sizeof(int));
  chai_labels_canonical(labels, n);
  chai_free(sum, bytes);
  return CHAI_OK;
}

chai_status chai_heads_ktq_rule(int *labels, int *k_out, const float *mean_attention, int H,
                                double S, const chai_kmeans_opts *opts) {
  if (!labels || !k_out || !mean_attention)
    return chai_error(CHAI_ERR_ARG, "ktq rule: NULL argument");
  if (H < 1) return chai_error(CHAI_ERR_ARG, "ktq rule: need H >= 1 heads, got %d", H);
  size_t bytes = (size_t)H * sizeof(double);
  double *curve = chai_alloc(bytes, "ktq inertia curve");
  if (!curve) return CHAI_ERR_NOMEM;
  const float *one[1] = {mean_attention};
  int cols[1] = {1};
  chai_status st = chai_kmeans_inertia_curve(curve, one, cols, 1, H, opts);
  int elbow = 1;
  if (!st) st = chai_elbow(&elbow, NULL, curve, H, S);
  chai_free(curve, bytes);
  if (st) return st;
  int k = H - H / 5;
  if (elbow > k) k = elbow;
  st = chai_kmeans(labels, NULL, NULL, mean_attention, H, 1, k, opts);
  if (st) return st;
  /* Duplicate points can leave a cluster empty after the final assignment: report the clusters
   * that really exist. */
  *k_out = chai_labels_canonical(labels, H);
  return CHAI_OK;
}
