/* Scoring continuations after shared contexts, as lm-evaluation-harness scores multiple choice:
 * each item's context runs once into the KV cache, then each of its continuations runs from there
 * and the cache is rolled back to the context. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chai/opt.h"
#include "kernels/kernels.h"
#include "model/opt_model.h"

/* log softmax(row)[target] (the sum of exponentials in double), and whether target is the first
 * maximum (torch.argmax). */
static double target_logprob(const float *row, int V, int target, bool *is_argmax) {
  size_t arg = chai_argmax(row, (size_t)V);
  float mx = row[arg]; /* the max (NaN only when every value is, and then so is the result) */
  *is_argmax = arg == (size_t)target;
  return (double)row[target] - (double)mx - log(chai_sumexp(row, mx, (size_t)V));
}

/* Drops the last `T` cached tokens of every row (their real-token counts given by `mask`). */
static void cache_rollback(opt_kv *kv, const int32_t *mask, int B, int T) {
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++)
      kv->count[b] -= mask[b * T + t];
    memset(kv->mask + (size_t)b * kv->capacity + kv->len - T, 0, (size_t)T * sizeof(float));
  }
  kv->len -= T;
}

static chai_status score_batch(chai_opt_model *m, const chai_opt_score_item *items, int B) {
  const chai_opt_config *c = &m->cfg;
  int V = c->vocab_size, P = c->word_embed_proj_dim;
  int pad = c->pad_token_id >= 0 && c->pad_token_id < V ? c->pad_token_id : 0;
  int Tc = 0, J = 0, Lmax = 0;
  for (int b = 0; b < B; b++) {
    if (items[b].ctx_len > Tc) Tc = items[b].ctx_len;
    if (items[b].n_choices > J) J = items[b].n_choices;
    for (int j = 0; j < items[b].n_choices; j++)
      if (items[b].cont_len[j] > Lmax) Lmax = items[b].cont_len[j];
  }
  size_t ctx_n = (size_t)B * Tc, cont_n = (size_t)B * (Lmax > 1 ? Lmax - 1 : 1);
  int32_t *ids = malloc(sizeof(int32_t) * (ctx_n > cont_n ? ctx_n : cont_n));
  int32_t *mask = malloc(sizeof(int32_t) * (ctx_n > cont_n ? ctx_n : cont_n));
  float *logits =
      chai_alloc(sizeof(float) * (size_t)B * (Lmax > 1 ? Lmax - 1 : 1) * V, "continuation logits");
  int *rows = malloc(sizeof(int) * cont_n);
  double *lp = malloc(sizeof(double) * cont_n);
  bool *g = malloc(sizeof(bool) * cont_n);
  chai_status st = CHAI_OK;
  if (!ids || !mask || !logits || !rows || !lp || !g) {
    st = chai_error(CHAI_ERR_NOMEM, "out of memory scoring %d items", B);
    goto done;
  }
  /* Contexts, left-padded so every row's last context token sits at Tc-1. */
  for (int b = 0; b < B; b++) {
    int off = Tc - items[b].ctx_len;
    for (int t = 0; t < Tc; t++) {
      bool real = t >= off;
      ids[b * Tc + t] = real ? items[b].ctx[t - off] : pad;
      mask[b * Tc + t] = real;
    }
  }
  if ((st = chai_opt_cache_begin(m, B, Tc + (Lmax > 1 ? Lmax - 1 : 0)))) goto done;
  if ((st = chai_opt_cache_step(m, logits, ids, mask, B, Tc))) goto done;
  /* The last context position predicts every continuation's first token. */
  for (int b = 0; b < B; b++)
    for (int j = 0; j < items[b].n_choices; j++) {
      bool first_greedy;
      items[b].ll[j] =
          target_logprob(logits + (size_t)b * V, V, items[b].cont[j][0], &first_greedy);
      items[b].greedy[j] = first_greedy;
    }
  /* Each choice: its tokens but the last, right-padded, after the cached context. */
  for (int j = 0; j < J; j++) {
    int T = 0;
    for (int b = 0; b < B; b++)
      if (j < items[b].n_choices && items[b].cont_len[j] - 1 > T) T = items[b].cont_len[j] - 1;
    if (T == 0) continue;
    int R = 0;
    for (int b = 0; b < B; b++) {
      int n = j < items[b].n_choices ? items[b].cont_len[j] - 1 : 0;
      for (int t = 0; t < T; t++) {
        ids[b * T + t] = t < n ? items[b].cont[j][t] : pad;
        mask[b * T + t] = t < n;
        if (t < n) rows[R++] = b * T + t;
      }
    }
    opt_kv *kv = &m->kv;
    if ((st = opt_acts_reserve_run(m, B, T, mask, true, R))) goto done;
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        kv->mask[(size_t)b * kv->capacity + kv->len + t] = (float)mask[b * T + t];
    const float *feats;
    if ((st = opt_decoder_run(m, ids, mask, B, T, true, rows, R, &feats))) {
      for (int b = 0; b < B; b++) /* nothing was appended: clear the key mask written above */
        memset(kv->mask + (size_t)b * kv->capacity + kv->len, 0, (size_t)T * sizeof(float));
      goto done;
    }
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        kv->count[b] += mask[b * T + t];
    kv->len += T;
    opt_linear(m, logits, feats, m->lm_head, NULL, R, P, V);
    /* Rows in parallel into per-row slots, then summed in row order (thread-count independent). */
#pragma omp parallel for schedule(static) if (R > 8)
    for (int r = 0; r < R; r++) {
      int b = rows[r] / T, t = rows[r] % T;
      lp[r] = target_logprob(logits + (size_t)r * V, V, items[b].cont[j][t + 1], &g[r]);
    }
    for (int r = 0; r < R; r++) {
      int b = rows[r] / T;
      items[b].ll[j] += lp[r];
      items[b].greedy[j] = items[b].greedy[j] && g[r];
    }
    cache_rollback(kv, mask, B, T);
  }
done:
  free(ids);
  free(mask);
  free(rows);
  free(lp);
  free(g);
  chai_free(logits, sizeof(float) * (size_t)B * (Lmax > 1 ? Lmax - 1 : 1) * V);
  return st;
}

chai_status chai_opt_score_continuations(chai_opt_model *m, const chai_opt_score_item *items,
                                         int n_items) {
  const chai_opt_config *c = &m->cfg;
  if (n_items < 1) return chai_error(CHAI_ERR_ARG, "OPT score: no items");
  for (int i = 0; i < n_items; i++) {
    const chai_opt_score_item *it = &items[i];
    if (it->ctx_len < 1)
      return chai_error(CHAI_ERR_ARG, "OPT score: item %d has an empty context", i + 1);
    if (it->n_choices < 1)
      return chai_error(CHAI_ERR_ARG, "OPT score: item %d has no continuations", i + 1);
    for (int j = 0; j < it->n_choices; j++) {
      if (it->cont_len[j] < 1)
        return chai_error(CHAI_ERR_ARG, "OPT score: item %d continuation %d is empty", i + 1,
                          j + 1);
      if (it->ctx_len + it->cont_len[j] - 1 > c->max_position_embeddings)
        return chai_error(CHAI_ERR_ARG,
                          "OPT score: item %d: %d context + %d continuation tokens exceed "
                          "max_position_embeddings %d (truncate the context)",
                          i + 1, it->ctx_len, it->cont_len[j], c->max_position_embeddings);
      for (int t = 0; t < it->cont_len[j]; t++)
        if (it->cont[j][t] < 0 || it->cont[j][t] >= c->vocab_size)
          return chai_error(CHAI_ERR_ARG,
                            "OPT score: item %d continuation %d token %d = %d is outside the "
                            "vocabulary 0..%d",
                            i + 1, j + 1, t + 1, it->cont[j][t], c->vocab_size - 1);
    }
    for (int t = 0; t < it->ctx_len; t++)
      if (it->ctx[t] < 0 || it->ctx[t] >= c->vocab_size)
        return chai_error(
            CHAI_ERR_ARG,
            "OPT score: item %d context token %d = %d is outside the vocabulary 0..%d", i + 1,
            t + 1, it->ctx[t], c->vocab_size - 1);
  }
  /* One batch when the padded lengths fit the position table, else item by item (each fits). */
  int Tc = 0, Lmax = 0;
  for (int i = 0; i < n_items; i++) {
    if (items[i].ctx_len > Tc) Tc = items[i].ctx_len;
    for (int j = 0; j < items[i].n_choices; j++)
      if (items[i].cont_len[j] > Lmax) Lmax = items[i].cont_len[j];
  }
  if (Tc + Lmax - 1 <= c->max_position_embeddings) return score_batch(m, items, n_items);
  for (int i = 0; i < n_items; i++) {
    chai_status st = score_batch(m, &items[i], 1);
    if (st) return st;
  }
  return CHAI_OK;
}
