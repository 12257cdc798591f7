/* Cross-entropy over rows of logits, via log-sum-exp so large logits cannot overflow. */
#include <math.h>

#include "chai/memory.h"
#include "chai/ops.h"
#include "kernels/kernels.h"

/* log Σ exp(x) = m + log Σ exp(x − m), m the row max; terms in float, the sum in double. A row
 * whose max is ±inf returns it (an infinite logit makes the loss infinite or NaN, as it should). */
static double logsumexp(const float *x, int V, float *max) {
  float m = chai_max(x, (size_t)V);
  *max = m;
  if (m == -INFINITY || m == INFINITY) return m;
  return m + log(chai_sumexp(x, m, (size_t)V));
}

/* logits (N,V), targets (N) -> *loss (mean over counted rows), losses (N) or NULL, *count or NULL.
 * Row losses are computed in parallel into a buffer and summed in row order, so the mean does not
 * depend on the thread count. */
chai_status chai_cross_entropy_forward(float *loss, float *losses, int *count, const float *logits,
                                       const int32_t *targets, int N, int V, int ignore_index) {
  int counted = 0;
  for (int n = 0; n < N; n++) {
    if (targets[n] == ignore_index) continue;
    if (targets[n] < 0 || targets[n] >= V)
      return chai_error(CHAI_ERR_ARG,
                        "cross_entropy: target %d in row %d is outside 0..%d (ignore_index %d)",
                        (int)targets[n], n, V - 1, ignore_index);
    counted++;
  }
  size_t bytes = (size_t)(N > 0 ? N : 1) * sizeof(double);
  double *row = chai_alloc(bytes, "cross_entropy row losses");
  if (!row) return CHAI_ERR_NOMEM;
#pragma omp parallel for schedule(static) if (N > 1 && (long)N * V > 16384)
  for (int n = 0; n < N; n++) {
    int t = targets[n];
    float m;
    row[n] = t == ignore_index
                 ? 0.0
                 : logsumexp(logits + (size_t)n * V, V, &m) - logits[(size_t)n * V + t];
  }
  double sum = 0;
  for (int n = 0; n < N; n++) {
    sum += row[n];
    if (losses) losses[n] = (float)row[n];
  }
  chai_free(row, bytes);
  *loss = counted ? (float)(sum / counted) : 0.0f;
  if (count) *count = counted;
  return CHAI_OK;
}

/* dlogits (N,V) += dloss/count · (softmax(row) − onehot(target)) on counted rows. Targets were
 * validated by the forward; a row with a bad target is skipped rather than written out of bounds.
 */
void chai_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, int N,
                                 int V, int ignore_index, float dloss) {
  if (!dlogits) return;
  int counted = 0;
  for (int n = 0; n < N; n++)
    if (targets[n] != ignore_index && targets[n] >= 0 && targets[n] < V) counted++;
  if (!counted) return;
  float g = dloss / (float)counted;
#pragma omp parallel for schedule(static) if (N > 1 && (long)N * V > 16384)
  for (int n = 0; n < N; n++) {
    int t = targets[n];
    if (t == ignore_index || t < 0 || t >= V) continue;
    const float *x = logits + (size_t)n * V;
    float *d = dlogits + (size_t)n * V;
    /* softmax_j = exp(x_j − m)·exp(m − lse): the second factor joins the scale, in double */
    float m;
    double lse = logsumexp(x, V, &m);
    chai_expaxpy(d, (float)(g * exp((double)m - lse)), x, m, (size_t)V);
    d[t] -= g;
  }
}
