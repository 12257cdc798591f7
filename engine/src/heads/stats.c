/* Attention statistics for layer sensitivity (chai.ktq.sensitivity): per head, the entropy of each
 * query's attention row beside the entropy uniform attention over the same keys would have, and
 * the plain sum of the probabilities (the seed project's "mean attention" numerator). Sums are in
 * double, in a fixed order, so they do not depend on the thread count. */
#include <math.h>

#include "chai/heads.h"

void chai_heads_attention_stats(chai_attention_stats *stats, const float *probs,
                                const float *key_mask, int H, int T) {
  for (int h = 0; h < H; h++) {
    chai_attention_stats *s = &stats[h];
    const float *P = probs + (size_t)h * T * T;
    int visible = 0; /* real keys at or before query i */
    for (int i = 0; i < T; i++) {
      bool real = !key_mask || key_mask[i] != 0;
      visible += real;
      const float *row = P + (size_t)i * T;
      double sum = 0, ent = 0;
      for (int j = 0; j < T; j++) {
        double p = row[j];
        sum += p;
        if (p > 0) ent -= p * log(p);
      }
      s->prob_sum += sum;
      if (real) {
        s->entropy += ent;
        s->max_entropy += log((double)visible);
        s->rows++;
      }
    }
    s->cells += (int64_t)T * T;
  }
}
