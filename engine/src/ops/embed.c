/* Embedding lookup and its scatter-add backward. */
#include <string.h>

#include "chai/ops.h"

/* out (N,C) = table (V,C)[ids (N)]. Every id is checked before anything is written. */
chai_status chai_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C,
                                   int V) {
  for (int n = 0; n < N; n++)
    if (ids[n] < 0 || ids[n] >= V)
      return chai_error(CHAI_ERR_ARG, "embedding: id %d at position %d is outside 0..%d",
                        (int)ids[n], n, V - 1);
  for (int n = 0; n < N; n++)
    memcpy(out + (size_t)n * C, table + (size_t)ids[n] * C, (size_t)C * sizeof(float));
  return CHAI_OK;
}

/* dtable (V,C)[ids[n]] += dout (N,C)[n], in n order (repeated ids sum the same way every run). */
void chai_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C) {
  if (!dtable) return;
  for (int n = 0; n < N; n++) {
    float *row = dtable + (size_t)ids[n] * C;
    const float *d = dout + (size_t)n * C;
    for (int c = 0; c < C; c++)
      row[c] += d[c];
  }
}
