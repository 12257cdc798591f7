/* Attention statistics for layer sensitivity: hand-worked entropies of causal rows (uniform,
 * one-hot, a two-key split), the seed project's mean (every softmax row sums to one, so the T×T
 * mean is 1/T whatever the weights), padding rows left out of the entropy, and accumulation over
 * forwards. */
#include <math.h>
#include <string.h>

#include "chai/heads.h"
#include "check.h"

int main(void) {
  enum { H = 2, T = 3 };
  /* Head 0: uniform causal rows (row i spreads over keys 0..i). Head 1: row 0 → key 0, row 1 →
   * (0.25, 0.75), row 2 → key 2 only. */
  float probs[H * T * T] = {1, 0, 0, 0.5f,  0.5f,  0, 1 / 3.0f, 1 / 3.0f, 1 / 3.0f,
                            1, 0, 0, 0.25f, 0.75f, 0, 0,        0,        1};
  chai_attention_stats st[H];
  memset(st, 0, sizeof st);
  chai_heads_attention_stats(st, probs, NULL, H, T);
  double ln2 = log(2.0), ln3 = log(3.0);
  CHECK_CLOSE(st[0].entropy, 0 + ln2 + ln3, 1e-6);
  CHECK_CLOSE(st[0].max_entropy, 0 + ln2 + ln3, 1e-12);
  CHECK_CLOSE(st[1].entropy, -(0.25 * log(0.25) + 0.75 * log(0.75)), 1e-6);
  CHECK_CLOSE(st[1].max_entropy, ln2 + ln3, 1e-12);
  CHECK(st[0].rows == 3 && st[1].rows == 3);
  CHECK(st[0].cells == 9 && st[1].cells == 9);
  /* Σ p over the matrix = T (one per row), so the mean over T·T cells is 1/T for both heads. */
  CHECK_CLOSE(st[0].prob_sum / (double)st[0].cells, 1.0 / T, 1e-7);
  CHECK_CLOSE(st[1].prob_sum / (double)st[1].cells, 1.0 / T, 1e-7);

  /* A second forward accumulates; a padding query (key_mask 0) is not counted in the entropy, and
   * the keys a row sees are the real ones only. */
  float mask[T] = {0, 1, 1};
  float p2[H * T * T];
  memset(p2, 0, sizeof p2);
  for (int h = 0; h < H; h++) {
    p2[h * T * T + 0] = 1;            /* the padding row: any content */
    p2[h * T * T + 1 * T + 1] = 1;    /* row 1 sees key 1 only */
    p2[h * T * T + 2 * T + 1] = 0.5f; /* row 2 splits over keys 1 and 2 */
    p2[h * T * T + 2 * T + 2] = 0.5f;
  }
  chai_attention_stats before = st[0];
  chai_heads_attention_stats(st, p2, mask, H, T);
  CHECK_CLOSE(st[0].entropy - before.entropy, ln2, 1e-6);
  CHECK_CLOSE(st[0].max_entropy - before.max_entropy, 0 + ln2, 1e-12);
  CHECK(st[0].rows - before.rows == 2);
  CHECK(st[0].cells == 18);
  CHECK_CLOSE(st[0].prob_sum - before.prob_sum, 3.0, 1e-6);
  return chai_test_finish();
}
