/* K-means on the rows of a small float matrix (CHAI's offline cluster counts), and the per-layer
 * inertia curve summed over calibration samples. Sizes are small (heads × tokens), so clarity and
 * determinism win over speed: distances in double, sums in a fixed order, one stream per restart.
 */
#include <math.h>
#include <string.h>

#include "chai/heads.h"
#include "chai/memory.h"
#include "chai/rng.h"
#include "heads/internal.h"

chai_kmeans_opts chai_kmeans_defaults(void) {
  chai_kmeans_opts o = {.seed = 0, .n_init = 4, .max_iter = 300};
  return o;
}

uint64_t chai_heads_stream(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t z = seed ^ (a + 1) * 0x9e3779b97f4a7c15ull ^ (b + 1) * 0xd1b54a32d192ed03ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform double in [0, 1) with 53 random bits. */
static double uniform53(chai_rng *r) {
  return (double)(chai_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

static double sqdist(const float *x, const double *c, int d) {
  double s = 0;
  for (int j = 0; j < d; j++) {
    double t = (double)x[j] - c[j];
    s += t * t;
  }
  return s;
}

static double sqdist_ff(const float *a, const float *b, int d) {
  double s = 0;
  for (int j = 0; j < d; j++) {
    double t = (double)a[j] - (double)b[j];
    s += t * t;
  }
  return s;
}

/* Scratch for one k-means run, carved from one allocation. */
typedef struct km_work {
  double *centers; /* (k,d) */
  double *sums;    /* (k,d) */
  double *dmin;    /* (n) squared distance to the assigned centre */
  double *cand;    /* (n) closest distances for a seeding candidate */
  double *best_cand;
  int *counts; /* (k) */
  int *labels; /* (n) */
  void *block;
  size_t bytes;
} km_work;

static chai_status work_new(km_work *w, int n, int d, int k) {
  size_t doubles = (size_t)k * d * 2 + (size_t)n * 3;
  size_t ints = (size_t)k + n;
  w->bytes = doubles * sizeof(double) + ints * sizeof(int);
  w->block = chai_alloc(w->bytes, "k-means scratch");
  if (!w->block) return CHAI_ERR_NOMEM;
  double *p = w->block;
  w->centers = p;
  p += (size_t)k * d;
  w->sums = p;
  p += (size_t)k * d;
  w->dmin = p;
  p += n;
  w->cand = p;
  p += n;
  w->best_cand = p;
  p += n;
  w->counts = (int *)p;
  w->labels = w->counts + k;
  return CHAI_OK;
}

static void work_free(km_work *w) {
  chai_free(w->block, w->bytes);
}

/* Index i with cumulative weight first exceeding u·total (weights w (n) >= 0, total > 0). */
static int sample_weighted(const double *w, int n, double u) {
  double acc = 0;
  int last = -1;
  for (int i = 0; i < n; i++) {
    if (w[i] <= 0) continue;
    acc += w[i];
    last = i;
    if (acc > u) return i;
  }
  return last; /* u landed on the rounding edge of the total */
}

/* Greedy k-means++ (sklearn's _kmeans_plusplus): the first centre uniformly, each next one the best
 * of n_trials D²-weighted candidates by the potential it leaves. w->dmin holds the closest
 * distances afterwards. */
static void seed_plusplus(km_work *w, const float *x, int n, int d, int k, chai_rng *r) {
  int n_trials = 2 + (int)log((double)k);
  int first = (int)(uniform53(r) * n);
  if (first >= n) first = n - 1;
  for (int j = 0; j < d; j++)
    w->centers[j] = x[(size_t)first * d + j];
  double pot = 0;
  for (int i = 0; i < n; i++) {
    w->dmin[i] = sqdist(x + (size_t)i * d, w->centers, d);
    pot += w->dmin[i];
  }
  for (int c = 1; c < k; c++) {
    int best = -1;
    double best_pot = INFINITY;
    for (int t = 0; t < n_trials; t++) {
      double u = uniform53(r);
      int idx = pot > 0 ? sample_weighted(w->dmin, n, u * pot) : (int)(u * n);
      if (idx < 0 || idx >= n) idx = n - 1;
      double cp = 0;
      const float *xc = x + (size_t)idx * d;
      for (int i = 0; i < n; i++) {
        double dd = sqdist_ff(x + (size_t)i * d, xc, d);
        w->cand[i] = dd < w->dmin[i] ? dd : w->dmin[i];
        cp += w->cand[i];
      }
      if (cp < best_pot) {
        best_pot = cp;
        best = idx;
        memcpy(w->best_cand, w->cand, (size_t)n * sizeof(double));
      }
    }
    for (int j = 0; j < d; j++)
      w->centers[(size_t)c * d + j] = x[(size_t)best * d + j];
    memcpy(w->dmin, w->best_cand, (size_t)n * sizeof(double));
    pot = best_pot;
  }
}

/* E-step: nearest centre for every point (ties: lowest centre). Returns whether a label changed.
 * Points are independent, so the parallel loop gives the same labels for any thread count. */
static int assign(km_work *w, const float *x, int n, int d, int k) {
  int changed = 0;
#pragma omp parallel for schedule(static) reduction(| : changed) if ((long)n * k * d > 200000)
  for (int i = 0; i < n; i++) {
    const float *xi = x + (size_t)i * d;
    int best = 0;
    double bd = sqdist(xi, w->centers, d);
    for (int c = 1; c < k; c++) {
      double dd = sqdist(xi, w->centers + (size_t)c * d, d);
      if (dd < bd) {
        bd = dd;
        best = c;
      }
    }
    if (w->labels[i] != best) changed = 1;
    w->labels[i] = best;
    w->dmin[i] = bd;
  }
  return changed;
}

/* M-step in point order; an empty cluster takes the point farthest from its own centre among
 * clusters that can spare one (ties: lowest point), as sklearn relocates empty clusters. */
static void update(km_work *w, const float *x, int n, int d, int k) {
  memset(w->sums, 0, (size_t)k * d * sizeof(double));
  memset(w->counts, 0, (size_t)k * sizeof(int));
  for (int i = 0; i < n; i++) {
    int c = w->labels[i];
    w->counts[c]++;
    for (int j = 0; j < d; j++)
      w->sums[(size_t)c * d + j] += x[(size_t)i * d + j];
  }
  for (int c = 0; c < k; c++) {
    if (w->counts[c] > 0) continue;
    int far = -1;
    for (int i = 0; i < n; i++)
      if (w->counts[w->labels[i]] > 1 && (far < 0 || w->dmin[i] > w->dmin[far])) far = i;
    if (far < 0) continue; /* cannot happen for k <= n */
    int old = w->labels[far];
    w->counts[old]--;
    for (int j = 0; j < d; j++) {
      w->sums[(size_t)old * d + j] -= x[(size_t)far * d + j];
      w->sums[(size_t)c * d + j] = x[(size_t)far * d + j];
    }
    w->counts[c] = 1;
    w->labels[far] = c;
    w->dmin[far] = 0;
  }
  for (int c = 0; c < k; c++)
    for (int j = 0; j < d; j++)
      w->centers[(size_t)c * d + j] = w->sums[(size_t)c * d + j] / w->counts[c];
}

static double lloyd(km_work *w, const float *x, int n, int d, int k, int max_iter) {
  for (int i = 0; i < n; i++)
    w->labels[i] = -1;
  for (int it = 0;; it++) {
    int changed = assign(w, x, n, d, k);
    if (!changed || it == max_iter) break;
    update(w, x, n, d, k);
  }
  double inertia = 0;
  for (int i = 0; i < n; i++)
    inertia += w->dmin[i];
  return inertia;
}

static chai_status check_opts(const chai_kmeans_opts *o) {
  if (o->n_init < 1)
    return chai_error(CHAI_ERR_ARG, "k-means: n_init must be >= 1, got %d", o->n_init);
  if (o->max_iter < 1)
    return chai_error(CHAI_ERR_ARG, "k-means: max_iter must be >= 1, got %d", o->max_iter);
  return CHAI_OK;
}

chai_status chai_kmeans(int *labels, float *centers, double *inertia, const float *x, int n, int d,
                        int k, const chai_kmeans_opts *opts) {
  chai_kmeans_opts o = opts ? *opts : chai_kmeans_defaults();
  if (!x) return chai_error(CHAI_ERR_ARG, "k-means: data is NULL");
  if (n < 1 || d < 1)
    return chai_error(CHAI_ERR_ARG, "k-means: need n >= 1 rows and d >= 1 columns, got (%d,%d)", n,
                      d);
  if (k < 1 || k > n)
    return chai_error(CHAI_ERR_ARG, "k-means: k must be in 1..%d (the number of rows), got %d", n,
                      k);
  chai_status st = check_opts(&o);
  if (st) return st;
  for (size_t i = 0; i < (size_t)n * d; i++)
    if (!isfinite(x[i]))
      return chai_error(CHAI_ERR_ARG, "k-means: non-finite value at row %zu, column %zu",
                        i / (size_t)d, i % (size_t)d);
  km_work w, best;
  if (work_new(&w, n, d, k)) return CHAI_ERR_NOMEM;
  if (work_new(&best, n, d, k)) {
    work_free(&w);
    return CHAI_ERR_NOMEM;
  }
  double best_inertia = INFINITY;
  for (int r = 0; r < o.n_init; r++) {
    chai_rng rng;
    chai_rng_init(&rng, chai_heads_stream(o.seed, (uint64_t)r, 0));
    seed_plusplus(&w, x, n, d, k, &rng);
    double in = lloyd(&w, x, n, d, k, o.max_iter);
    if (in < best_inertia) {
      best_inertia = in;
      memcpy(best.labels, w.labels, (size_t)n * sizeof(int));
      memcpy(best.centers, w.centers, (size_t)k * d * sizeof(double));
    }
  }
  if (labels) memcpy(labels, best.labels, (size_t)n * sizeof(int));
  if (centers)
    for (size_t i = 0; i < (size_t)k * d; i++)
      centers[i] = (float)best.centers[i];
  if (inertia) *inertia = best_inertia;
  work_free(&w);
  work_free(&best);
  return CHAI_OK;
}

chai_status chai_kmeans_inertia_curve(double *inertia, const float *const *samples, const int *cols,
                                      int n_samples, int H, const chai_kmeans_opts *opts) {
  chai_kmeans_opts o = opts ? *opts : chai_kmeans_defaults();
  if (!inertia || !samples || !cols)
    return chai_error(CHAI_ERR_ARG, "inertia curve: NULL argument");
  if (n_samples < 1)
    return chai_error(CHAI_ERR_ARG, "inertia curve: need at least one sample, got %d", n_samples);
  if (H < 1) return chai_error(CHAI_ERR_ARG, "inertia curve: need H >= 1 heads, got %d", H);
  chai_status st = check_opts(&o);
  if (st) return st;
  for (int s = 0; s < n_samples; s++) {
    if (!samples[s]) return chai_error(CHAI_ERR_ARG, "inertia curve: sample %d is NULL", s);
    if (cols[s] < 1)
      return chai_error(CHAI_ERR_ARG, "inertia curve: sample %d has %d columns (need >= 1)", s,
                        cols[s]);
    for (size_t i = 0; i < (size_t)H * cols[s]; i++)
      if (!isfinite(samples[s][i]))
        return chai_error(CHAI_ERR_ARG, "inertia curve: sample %d has a non-finite value", s);
  }
  size_t bytes = (size_t)n_samples * H * sizeof(double);
  double *per = chai_alloc(bytes, "inertia curve");
  if (!per) return CHAI_ERR_NOMEM;
  int failed = 0;
  /* One task per sample; each (sample, k) has its own stream, and the sum below runs in sample
   * order, so the curve does not depend on the thread count. */
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
  for (int s = 0; s < n_samples; s++) {
    for (int k = 1; k <= H && !failed; k++) {
      chai_kmeans_opts so = o;
      so.seed = chai_heads_stream(o.seed, (uint64_t)s + 1, (uint64_t)k);
      if (chai_kmeans(NULL, NULL, &per[(size_t)s * H + k - 1], samples[s], H, cols[s], k, &so))
        failed = 1;
    }
  }
  if (failed) {
    chai_free(per, bytes);
    return chai_error(CHAI_ERR_NOMEM, "inertia curve: out of memory in k-means");
  }
  for (int k = 0; k < H; k++) {
    double sum = 0;
    for (int s = 0; s < n_samples; s++)
      sum += per[(size_t)s * H + k];
    inertia[k] = sum;
  }
  chai_free(per, bytes);
  return CHAI_OK;
}

int chai_labels_canonical(int *labels, int n) {
  for (int i = 0; i < n; i++)
    if (labels[i] < 0) return -1;
  /* New ids are parked as -(id+1) while the old (non-negative) ones are still being read. */
  int next = 0;
  for (int i = 0; i < n; i++) {
    if (labels[i] < 0) continue;
    int old = labels[i];
    for (int j = i; j < n; j++)
      if (labels[j] == old) labels[j] = -(next + 1);
    next++;
  }
  for (int i = 0; i < n; i++)
    labels[i] = -labels[i] - 1;
  return next;
}
