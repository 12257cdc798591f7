/* OPT from plain C, no Lua: load a model folder (config.json + weights), run a forward over one
 * prompt and print the most likely next tokens, then continue the prompt greedily.
 *
 *   example_opt_forward [MODEL_DIR]    (default: the tiny test model in tests/fixtures/opt)
 *
 * Build against the chai_core library and include "chai/chai.h" and "chai/opt.h". */
#include <stdio.h>
#include <stdlib.h>

#include "chai/chai.h"
#include "chai/opt.h"

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "../tests/fixtures/opt/preln/st";
  chai_opt_model *m = NULL;
  if (chai_opt_load(&m, dir, NULL) != CHAI_OK) { /* NULL options: f32 weights */
    fprintf(stderr, "cannot load %s: %s\n", dir, chai_last_error());
    return 1;
  }
  for (int i = 0; i < chai_opt_warning_count(m); i++)
    fprintf(stderr, "warning: %s\n", chai_opt_warning(m, i));
  const chai_opt_config *c = chai_opt_get_config(m);
  printf("%s: %d layers, hidden %d, vocab %d, %lld parameters\n", dir, c->num_hidden_layers,
         c->hidden_size, c->vocab_size, (long long)chai_opt_num_parameters(m));

  /* OPT prompts start with </s> (id 2). One row, no padding: the mask may be NULL. */
  int32_t ids[] = {2, 31, 7, 45, 12};
  int T = (int)(sizeof ids / sizeof ids[0]);
  chai_tensor logits; /* (1,T,vocab) f32, ours to release */
  if (chai_opt_forward(m, &logits, ids, NULL, 1, T, false) != CHAI_OK) {
    fprintf(stderr, "forward: %s\n", chai_last_error());
    chai_opt_free(m);
    return 1;
  }
  const float *last = (const float *)chai_tensor_data(&logits) + (size_t)(T - 1) * c->vocab_size;
  printf("top next tokens:");
  int shown[3] = {-1, -1, -1};
  for (int k = 0; k < 3; k++) {
    int best = -1;
    for (int v = 0; v < c->vocab_size; v++) {
      if (v == shown[0] || v == shown[1]) continue;
      if (best < 0 || last[v] > last[best]) best = v;
    }
    shown[k] = best;
    printf(" %d (%.3f)", best, last[best]);
  }
  printf("\n");
  chai_tensor_release(&logits);

  chai_opt_generate_opts o;
  chai_opt_generate_defaults(m, &o); /* greedy, stop at eos */
  o.max_new_tokens = 8;
  int32_t out[8];
  int n = 0;
  if (chai_opt_generate(m, out, &n, ids, T, &o) != CHAI_OK) {
    fprintf(stderr, "generate: %s\n", chai_last_error());
    chai_opt_free(m);
    return 1;
  }
  printf("greedy continuation:");
  for (int i = 0; i < n; i++)
    printf(" %d", out[i]);
  printf("\n");
  chai_opt_free(m);
  return 0;
}
