/* Kneedle and the elbow rule: kneed's documented example, its mirror images, a hand-worked inertia
 * curve, sensitivity, the chord fallback, flat and straight curves, and refusals. */
#include <math.h>

#include "chai/heads.h"
#include "check.h"

int main(void) {
  /* kneed's README / Satopää et al. Figure 2: x = linspace(0, 1, 10), y = -1/(x + 0.1) + 5,
   * KneeLocator(x, y, S=1.0, curve="concave", direction="increasing").knee == 0.2222 (x[2]). */
  double x[10], y[10], t[10];
  for (int i = 0; i < 10; i++) {
    x[i] = i / 9.0;
    y[i] = -1.0 / (x[i] + 0.1) + 5.0;
  }
  int knee = -9;
  CHECK_OK(chai_kneedle(&knee, x, y, 10, 1.0, CHAI_CURVE_CONCAVE, CHAI_DIR_INCREASING));
  CHECK(knee == 2);
  /* Mirror images map the knee as they map the points. */
  for (int i = 0; i < 10; i++)
    t[i] = -y[i]; /* convex decreasing, same x */
  CHECK_OK(chai_kneedle(&knee, x, t, 10, 1.0, CHAI_CURVE_CONVEX, CHAI_DIR_DECREASING));
  CHECK(knee == 2);
  for (int i = 0; i < 10; i++)
    t[i] = y[9 - i]; /* concave decreasing */
  CHECK_OK(chai_kneedle(&knee, x, t, 10, 1.0, CHAI_CURVE_CONCAVE, CHAI_DIR_DECREASING));
  CHECK(knee == 7);
  for (int i = 0; i < 10; i++)
    t[i] = -y[9 - i]; /* convex increasing */
  CHECK_OK(chai_kneedle(&knee, x, t, 10, 1.0, CHAI_CURVE_CONVEX, CHAI_DIR_INCREASING));
  CHECK(knee == 7);

  /* Hand-worked: inertia 10, 3, 2, 1.5, 1.2 at k = 1..5. x' = 0, .25, .5, .75, 1;
   * y' = 1 − (y − 1.2)/8.8 = 0, .7955, .9091, .9659, 1; d = 0, .5455, .4091, .2159, 0.
   * One maximum at k=2; threshold .5455 − S·0.25. S=1: .2955, crossed at k=4 → knee k=2.
   * S=2: .0455, crossed at k=5 → k=2. S=3: −.2045, never crossed → no knee; the chord fallback
   * picks k=2 (distance .5455 from the chord, the largest). */
  double in[5] = {10, 3, 2, 1.5, 1.2};
  int k = 0;
  bool by = false;
  CHECK_OK(chai_elbow(&k, &by, in, 5, 1.0));
  CHECK(k == 2 && by);
  CHECK_OK(chai_elbow(&k, &by, in, 5, 2.0));
  CHECK(k == 2 && by);
  CHECK_OK(chai_elbow(&k, &by, in, 5, 3.0));
  CHECK(k == 2 && !by);
  double xs[5] = {1, 2, 3, 4, 5};
  CHECK_OK(chai_kneedle(&knee, xs, in, 5, 3.0, CHAI_CURVE_CONVEX, CHAI_DIR_DECREASING));
  CHECK(knee == -1);

  /* y = 1/k for k = 1..10: x' = (k−1)/9, y' = 1 − (10/k − 1)/9, so d(k) = (k−1)(10−k)/(9k):
   * 0, .444, .519, .500, .444, .370, … One maximum, k=3; threshold .519 − 1/9 = .407, first
   * crossed at k=6, so the knee is k=3. */
  double inv[10];
  for (int i = 0; i < 10; i++)
    inv[i] = 1.0 / (i + 1);
  CHECK_OK(chai_elbow(&k, &by, inv, 10, 1.0));
  CHECK(k == 3 && by);

  /* A flat curve (identical heads): k = 1. A straight line (no elbow): every cluster helps
   * equally, nothing is merged: k = n. One point: k = 1. */
  double flat[6] = {0, 0, 0, 0, 0, 0}, line[6] = {5, 4, 3, 2, 1, 0};
  CHECK_OK(chai_elbow(&k, &by, flat, 6, 1.0));
  CHECK(k == 1 && !by);
  CHECK_OK(chai_elbow(&k, &by, line, 6, 1.0));
  CHECK(k == 6 && !by);
  CHECK_OK(chai_elbow(&k, &by, in, 1, 1.0));
  CHECK(k == 1);

  /* Refusals. */
  double bx[3] = {0, 2, 1}, by3[3] = {3, 2, 1}, nan3[3] = {1, NAN, 0};
  CHECK_ERR(chai_kneedle(&knee, bx, by3, 3, 1.0, CHAI_CURVE_CONVEX, CHAI_DIR_DECREASING),
            CHAI_ERR_ARG, "strictly increasing");
  CHECK_ERR(chai_kneedle(&knee, xs, nan3, 3, 1.0, CHAI_CURVE_CONVEX, CHAI_DIR_DECREASING),
            CHAI_ERR_ARG, "non-finite value at index 1");
  CHECK_ERR(chai_elbow(&k, NULL, in, 5, -1.0), CHAI_ERR_ARG, "sensitivity");
  CHECK_ERR(chai_elbow(&k, NULL, nan3, 3, 1.0), CHAI_ERR_ARG, "k=2 is not finite");
  CHECK_ERR(chai_elbow(&k, NULL, in, 0, 1.0), CHAI_ERR_ARG, "at least one");
  return chai_test_finish();
}
