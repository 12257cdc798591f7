/* Training an OPT classifier from C, without Lua: a tiny model learns a toy task (label 1 when
 * token 7 occurs in the row) with AdamW, a linear schedule and clipping. Prints the loss every few
 * steps and exits non-zero if it did not learn. */
#include <stdio.h>
#include <string.h>

#include "chai/chai.h"
#include "chai/opt_train.h"

#define ROWS 16
#define LEN 8
#define STEPS 150

int main(void) {
  if (chai_blas_init() != CHAI_OK) {
    fprintf(stderr, "%s\n", chai_last_error());
    return 1;
  }
  chai_opt_config cfg;
  chai_opt_config_defaults(&cfg);
  cfg.vocab_size = 40;
  cfg.hidden_size = 32;
  cfg.num_hidden_layers = 2;
  cfg.num_attention_heads = 4;
  cfg.ffn_dim = 64;
  cfg.max_position_embeddings = 16;
  cfg.num_labels = 2;
  chai_rng rng;
  chai_rng_init(&rng, 1);
  chai_opt_model *m;
  chai_optim *opt;
  chai_optim_config oc;
  chai_optim_config_default(&oc, CHAI_OPTIM_ADAMW);
  if (chai_opt_create(&m, &cfg, CHAI_F32, &rng) || chai_optim_new(&opt, &oc)) {
    fprintf(stderr, "%s\n", chai_last_error());
    return 1;
  }
  chai_schedule sched = {CHAI_SCHEDULE_LINEAR, 15, STEPS, 0};
  int np = chai_opt_param_count(m);
  chai_param params[64];
  int32_t ids[ROWS * LEN], labels[ROWS];
  float first = 0, last = 0;
  for (int step = 0; step < STEPS; step++) {
    for (int b = 0; b < ROWS; b++) { /* a fresh random batch */
      labels[b] = 0;
      ids[b * LEN] = 2;
      for (int t = 1; t < LEN; t++) {
        ids[b * LEN + t] = 3 + (int)(chai_rng_u64(&rng) % 37);
        if (ids[b * LEN + t] == 7) labels[b] = 1;
      }
    }
    chai_opt_batch batch = {
        .ids = ids, .B = ROWS, .T = LEN, .head = CHAI_OPT_HEAD_CLASSIFY, .labels = labels};
    chai_kd_result r;
    chai_opt_zero_grad(m);
    if (chai_opt_forward_backward(m, &batch, &r)) {
      fprintf(stderr, "%s\n", chai_last_error());
      return 1;
    }
    /* every parameter with its gradient; the optimizer keeps its state by name */
    for (int i = 0; i < np && i < 64; i++) {
      chai_tensor p, g;
      params[i].name = chai_opt_param(m, i, &p);
      params[i].data = chai_tensor_data(&p);
      params[i].n = (size_t)chai_tensor_numel(&p);
      params[i].no_decay = chai_param_default_no_decay(params[i].name);
      params[i].grad = NULL;
      if (chai_opt_param_grad(m, i, &g) == CHAI_OK) {
        params[i].grad = chai_tensor_data(&g);
        chai_tensor_release(&g); /* the model keeps its own reference */
      }
    }
    double norm;
    bool finite;
    chai_grad_global_norm(&norm, &finite, params, np);
    double lr = 3e-3 * chai_schedule_factor(&sched, step);
    if (!finite || chai_optim_step(opt, params, np, lr, chai_clip_factor(norm, 1.0f))) {
      fprintf(stderr, "step %d failed: %s\n", step, finite ? chai_last_error() : "NaN gradient");
      return 1;
    }
    if (step < 10) first += r.loss / 10;
    if (step >= STEPS - 10) last += r.loss / 10;
    if (step % 30 == 0)
      printf("step %3d  loss %.4f  lr %.2e  grad norm %.3f\n", step, r.loss, lr, norm);
  }
  printf("mean loss: first 10 steps %.4f, last 10 steps %.4f\n", first, last);
  chai_optim_free(opt);
  chai_opt_free(m);
  return last < 0.5f * first ? 0 : 1;
}
