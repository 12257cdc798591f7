/* The elbow of a k-means inertia curve: kneedle (Satopää, Albrecht, Irwin, Raghavan 2011, "Finding
 * a 'Kneedle' in a Haystack"), following the kneed package's offline algorithm step by step so its
 * numbers can be compared; a max-distance-to-chord fallback when kneedle finds no knee. */
#include <math.h>
#include <stdlib.h>

#include "chai/heads.h"
#include "chai/memory.h"

chai_status chai_kneedle(int *knee, const double *x, const double *y, int n, double S,
                         chai_curve curve, chai_direction direction) {
  if (!knee || !x || !y) return chai_error(CHAI_ERR_ARG, "kneedle: NULL argument");
  *knee = -1;
  if (!(S >= 0) || !isfinite(S))
    return chai_error(CHAI_ERR_ARG, "kneedle: sensitivity must be a finite number >= 0, got %g", S);
  for (int i = 0; i < n; i++) {
    if (!isfinite(x[i]) || !isfinite(y[i]))
      return chai_error(CHAI_ERR_ARG, "kneedle: non-finite value at index %d", i);
    if (i > 0 && !(x[i] > x[i - 1]))
      return chai_error(CHAI_ERR_ARG,
                        "kneedle: x must be strictly increasing (x[%d] = %g after %g)", i, x[i],
                        x[i - 1]);
  }
  if (n < 3) return CHAI_OK;
  double ymin = y[0], ymax = y[0];
  for (int i = 1; i < n; i++) {
    if (y[i] < ymin) ymin = y[i];
    if (y[i] > ymax) ymax = y[i];
  }
  if (ymax == ymin) return CHAI_OK; /* flat: no knee (kneed would divide by zero) */
  size_t bytes = (size_t)n * 3 * sizeof(double);
  double *xn = chai_alloc(bytes, "kneedle");
  if (!xn) return CHAI_ERR_NOMEM;
  double *yn = xn + n, *diff = yn + n;
  double xr = x[n - 1] - x[0];
  for (int i = 0; i < n; i++) {
    xn[i] = (x[i] - x[0]) / xr;
    yn[i] = (y[i] - ymin) / (ymax - ymin);
  }
  /* Turn every shape into a concave increasing curve (kneed's transform_y). */
  bool flip = (direction == CHAI_DIR_DECREASING && curve == CHAI_CURVE_CONCAVE) ||
              (direction == CHAI_DIR_INCREASING && curve == CHAI_CURVE_CONVEX);
  if (curve == CHAI_CURVE_CONVEX)
    for (int i = 0; i < n; i++)
      yn[i] = 1.0 - yn[i];
  if (flip)
    for (int i = 0; i < n / 2; i++) {
      double t = yn[i];
      yn[i] = yn[n - 1 - i];
      yn[n - 1 - i] = t;
    }
  for (int i = 0; i < n; i++)
    diff[i] = yn[i] - xn[i];
    /* Local extrema as scipy.signal.argrelextrema(order=1, mode="clip") with >= / <=: the ends
     * compare with themselves. */
#define DAT(i) diff[(i) < 0 ? 0 : ((i) >= n ? n - 1 : (i))]
  double step = fabs((xn[n - 1] - xn[0]) / (n - 1)); /* mean of diff(x_normalized) */
  int first_max = -1;
  for (int i = 0; i < n && first_max < 0; i++)
    if (diff[i] >= DAT(i - 1) && diff[i] >= DAT(i + 1)) first_max = i;
  int found = -1;
  if (first_max >= 0) {
    double threshold = 0;
    int threshold_index = first_max;
    for (int i = first_max; i < n - 1; i++) {
      if (diff[i] >= DAT(i - 1) && diff[i] >= DAT(i + 1)) {
        threshold = diff[i] - S * step;
        threshold_index = i;
      }
      if (diff[i] <= DAT(i - 1) && diff[i] <= DAT(i + 1)) threshold = 0.0;
      if (diff[i + 1] < threshold) {
        found = flip ? n - 1 - threshold_index : threshold_index;
        break;
      }
    }
  }
#undef DAT
  chai_free(xn, bytes);
  *knee = found;
  return CHAI_OK;
}

chai_status chai_elbow(int *k, bool *by_kneedle, const double *inertia, int n, double S) {
  if (!k || !inertia) return chai_error(CHAI_ERR_ARG, "elbow: NULL argument");
  if (n < 1) return chai_error(CHAI_ERR_ARG, "elbow: need at least one inertia value, got %d", n);
  if (by_kneedle) *by_kneedle = false;
  for (int i = 0; i < n; i++)
    if (!isfinite(inertia[i]))
      return chai_error(CHAI_ERR_ARG, "elbow: inertia for k=%d is not finite", i + 1);
  *k = 1;
  if (n == 1) return CHAI_OK;
  size_t bytes = (size_t)n * sizeof(double);
  double *xs = chai_alloc(bytes, "elbow");
  if (!xs) return CHAI_ERR_NOMEM;
  for (int i = 0; i < n; i++)
    xs[i] = i + 1;
  int knee = -1;
  chai_status st = chai_kneedle(&knee, xs, inertia, n, S, CHAI_CURVE_CONVEX, CHAI_DIR_DECREASING);
  chai_free(xs, bytes);
  if (st) return st;
  if (knee >= 0) {
    *k = knee + 1;
    if (by_kneedle) *by_kneedle = true;
    return CHAI_OK;
  }
  /* Fallback: the point farthest from the chord, in normalised coordinates so the units of the
   * inertia do not matter. A flat curve means identical heads (k = 1); a straight slope means every
   * cluster helps as much as the last, so nothing is merged (k = n). */
  double ymin = inertia[0], ymax = inertia[0];
  for (int i = 1; i < n; i++) {
    if (inertia[i] < ymin) ymin = inertia[i];
    if (inertia[i] > ymax) ymax = inertia[i];
  }
  if (ymax == ymin) return CHAI_OK;
  double y0 = (inertia[0] - ymin) / (ymax - ymin), y1 = (inertia[n - 1] - ymin) / (ymax - ymin);
  double best = 0;
  int best_k = n;
  for (int i = 0; i < n; i++) {
    double t = (double)i / (n - 1);
    double yi = (inertia[i] - ymin) / (ymax - ymin);
    /* distance to the line through (0,y0) and (1,y1), up to the constant 1/sqrt(1+(y1-y0)^2) */
    double dist = fabs(yi - (y0 + (y1 - y0) * t));
    if (dist > best + 1e-12) {
      best = dist;
      best_k = i + 1;
    }
  }
  *k = best_k;
  return CHAI_OK;
}
