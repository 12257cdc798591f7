/* The KV cache for incremental decoding: one preallocated buffer holding K and V of every layer for
 * B rows of up to `capacity` tokens, the key mask, and each row's count of real tokens (which gives
 * the next position id). */
#include <stdlib.h>
#include <string.h>

#include "chai/opt.h"
#include "model/opt_model.h"

/* Σ_l of layer l's K width under the plan, or under the current request (online mode's dense
 * fallback widens every clustered layer to full width): it identifies the layout, since the plan's
 * and a fallback's widths differ only in clustered layers, all of them at once, each one narrower.
 */
static size_t k_floats(const chai_opt_model *m, bool as_planned) {
  size_t n = 0;
  for (int l = 0; l < m->cfg.num_hidden_layers; l++)
    n += (size_t)opt_heads_k_width(m, l, as_planned);
  return n;
}

/* Lays the (empty) cache out for B rows of `capacity` tokens with the plan's K widths or the
 * current request's, growing the storage only when it is too small. */
static chai_status layout(chai_opt_model *m, int B, int capacity, bool as_planned) {
  const chai_opt_config *c = &m->cfg;
  int L = c->num_hidden_layers;
  /* K of a clustered layer holds its representatives only (opt_heads_k_width floats a token);
   * a pruned layer's K and V hold its own heads. */
  size_t kvfloats = 0;
  for (int l = 0; l < L; l++)
    kvfloats += (size_t)B * capacity *
                ((size_t)opt_heads_k_width(m, l, as_planned) + (size_t)opt_heads_v_width(m, l));
  size_t bytes = (kvfloats + (size_t)B * capacity + (size_t)B) * sizeof(float);
  opt_kv *kv = &m->kv;
  if (!kv->k) {
    kv->k = calloc((size_t)L, sizeof(float *));
    kv->v = calloc((size_t)L, sizeof(float *));
    if (!kv->k || !kv->v) return chai_error(CHAI_ERR_NOMEM, "out of memory for the OPT KV cache");
  }
  if (!kv->storage || kv->storage->bytes < bytes) {
    chai_storage_release(kv->storage);
    kv->storage = NULL;
    kv->len = kv->B = kv->capacity = 0;
    if (!(kv->storage = chai_storage_new(bytes)))
      return chai_error_context(CHAI_ERR_NOMEM, "OPT KV cache for %d x %d tokens", B, capacity);
  }
  float *p = (float *)kv->storage->data;
  for (int l = 0; l < L; l++) {
    kv->k[l] = p;
    p += (size_t)B * capacity * (size_t)opt_heads_k_width(m, l, as_planned);
    kv->v[l] = p;
    p += (size_t)B * capacity * (size_t)opt_heads_v_width(m, l);
  }
  kv->mask = p;
  kv->count = (int *)(p + (size_t)B * capacity);
  memset(kv->mask, 0, (size_t)B * capacity * sizeof(float));
  memset(kv->count, 0, (size_t)B * sizeof(int));
  kv->B = B;
  kv->capacity = capacity;
  kv->len = 0;
  kv->k_floats = k_floats(m, as_planned);
  return CHAI_OK;
}

chai_status chai_opt_cache_begin(chai_opt_model *m, int B, int capacity) {
  const chai_opt_config *c = &m->cfg;
  if (B < 1 || B > (1 << 16))
    return chai_error(CHAI_ERR_ARG, "OPT cache: batch size %d is not valid", B);
  if (capacity < 1 || capacity > c->max_position_embeddings)
    return chai_error(CHAI_ERR_ARG,
                      "OPT cache: %d tokens requested, but the model has max_position_embeddings "
                      "%d",
                      capacity, c->max_position_embeddings);
  /* The request is not known yet: lay out for the plan (an online prompt that falls back to dense
   * re-lays the cache out at its first step). */
  return layout(m, B, capacity, true);
}

int chai_opt_cache_length(const chai_opt_model *m) {
  return m->kv.storage ? m->kv.len : 0;
}

chai_status chai_opt_cache_step(chai_opt_model *m, float *logits, const int32_t *ids,
                                const int32_t *mask, int B, int T) {
  opt_kv *kv = &m->kv;
  if (!kv->storage || kv->B == 0)
    return chai_error(CHAI_ERR_STATE, "OPT cache: call chai_opt_cache_begin first");
  if (B != kv->B)
    return chai_error(CHAI_ERR_ARG, "OPT cache: %d rows given, the cache was begun for %d", B,
                      kv->B);
  if (T < 1) return chai_error(CHAI_ERR_ARG, "OPT cache: no tokens given");
  if ((int64_t)kv->len + T > kv->capacity)
    return chai_error(CHAI_ERR_ARG,
                      "OPT cache: %d cached + %d new tokens exceed its capacity of %d tokens",
                      kv->len, T, kv->capacity);
  /* The first step starts the request: online clustering decides it, and the K widths it needs
   * may differ from the layout (nothing is cached yet, so re-laying loses nothing). */
  chai_status st = opt_heads_request(m, mask, B, T, true);
  if (!st && kv->len == 0 && kv->k_floats != k_floats(m, false))
    st = layout(m, B, kv->capacity, false);
  if (!st) st = opt_acts_reserve_run(m, B, T, mask, true, B);
  if (st) return st;
  int *rows = m->acts.rowidx;
  for (int b = 0; b < B; b++) {
    rows[b] = b * T + T - 1;
    for (int t = 0; t < T; t++)
      kv->mask[(size_t)b * kv->capacity + kv->len + t] = mask ? (float)(mask[b * T + t] != 0) : 1;
  }
  const float *feats;
  if ((st = opt_decoder_run(m, ids, mask, B, T, true, rows, B, &feats))) return st;
  if (logits)
    opt_linear(m, logits, feats, m->lm_head, NULL, B, m->cfg.word_embed_proj_dim,
               m->cfg.vocab_size);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      kv->count[b] += mask ? mask[b * T + t] : 1;
  kv->len += T;
  return CHAI_OK;
}
