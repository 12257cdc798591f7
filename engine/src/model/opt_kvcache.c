/* The KV cache for incremental decoding: one preallocated buffer holding K and V of every layer for
 * B rows of up to `capacity` tokens, the key mask, and each row's count of real tokens (which gives
 * the next position id). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chai/heads.h"
#include "chai/kvq.h"

#include "chai/opt.h"
#include "model/opt_model.h"
#include "team.h"

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

size_t opt_kv_layer_bytes(const chai_opt_model *m, int l, bool as_planned, chai_qformat f) {
  size_t kw = (size_t)opt_heads_k_width(m, l, as_planned), vw = (size_t)opt_heads_v_width(m, l);
  if (f == CHAI_QF_F32) return (kw + vw) * sizeof(float);
  size_t D = (size_t)m->cfg.hidden_size / m->cfg.num_attention_heads;
  return kw + vw + (kw / D + vw / D) * sizeof(float); /* codes, then a scale per head */
}

/* int8 codes are followed by f32 scales: each array starts 4-aligned (f32 arrays already are). */
static size_t round4(size_t n) {
  return (n + 3) & ~(size_t)3;
}

/* Lays the (empty) cache out for B rows of `capacity` tokens with the plan's K widths or the
 * current request's, in the model's KV format, growing the storage only when it is too small. */
static chai_status layout(chai_opt_model *m, int B, int capacity, bool as_planned) {
  const chai_opt_config *c = &m->cfg;
  int L = c->num_hidden_layers, D = c->hidden_size / c->num_attention_heads;
  chai_qformat f = m->kv_format;
  size_t slots = (size_t)B * capacity;
  /* K of a clustered layer holds its representatives only (opt_heads_k_width floats a token);
   * a pruned layer's K and V hold its own heads. */
  size_t bytes = 0;
  for (int l = 0; l < L; l++)
    bytes += slots * opt_kv_layer_bytes(m, l, as_planned, f) + (f == CHAI_QF_F32 ? 0 : 6);
  bytes += round4(slots * sizeof(float)) + round4((size_t)B * sizeof(int));
  opt_kv *kv = &m->kv;
  if (!kv->k) {
    kv->k = calloc((size_t)L, sizeof(void *));
    kv->v = calloc((size_t)L, sizeof(void *));
    kv->ks = calloc((size_t)L, sizeof(float *));
    kv->vs = calloc((size_t)L, sizeof(float *));
    if (!kv->k || !kv->v || !kv->ks || !kv->vs)
      return chai_error(CHAI_ERR_NOMEM, "out of memory for the OPT KV cache");
  }
  if (!kv->storage || kv->storage->bytes < bytes) {
    chai_storage_release(kv->storage);
    kv->storage = NULL;
    kv->len = kv->B = kv->capacity = 0;
    if (!(kv->storage = chai_storage_new(bytes)))
      return chai_error_context(CHAI_ERR_NOMEM, "OPT KV cache for %d x %d tokens", B, capacity);
  }
  uint8_t *p = kv->storage->data;
  size_t esz = f == CHAI_QF_F32 ? sizeof(float) : 1;
  for (int l = 0; l < L; l++) {
    size_t kw = (size_t)opt_heads_k_width(m, l, as_planned), vw = (size_t)opt_heads_v_width(m, l);
    kv->k[l] = p;
    p += round4(slots * kw * esz);
    kv->v[l] = p;
    p += round4(slots * vw * esz);
    kv->ks[l] = kv->vs[l] = NULL;
    if (f == CHAI_QF_INT8) {
      kv->ks[l] = (float *)p;
      p += round4(slots * (kw / D) * sizeof(float));
      kv->vs[l] = (float *)p;
      p += round4(slots * (vw / D) * sizeof(float));
    }
  }
  kv->mask = (float *)p;
  kv->count = (int *)(p + round4(slots * sizeof(float)));
  memset(kv->mask, 0, slots * sizeof(float));
  memset(kv->count, 0, (size_t)B * sizeof(int));
  kv->B = B;
  kv->capacity = capacity;
  kv->len = 0;
  kv->k_floats = k_floats(m, as_planned);
  kv->format = f;
  return CHAI_OK;
}

void opt_kv_drop(chai_opt_model *m) {
  chai_storage_release(m->kv.storage);
  m->kv.storage = NULL;
  m->kv.B = m->kv.len = m->kv.capacity = 0;
}

static int head_dim(const chai_opt_model *m) {
  return m->cfg.hidden_size / m->cfg.num_attention_heads;
}

void opt_kv_store(chai_opt_model *m, int l, int b, int pos, const float *k, const float *v) {
  opt_kv *kv = &m->kv;
  int kw = opt_heads_k_width(m, l, false), vw = opt_heads_v_width(m, l), D = head_dim(m);
  size_t slot = (size_t)b * kv->capacity + pos;
  if (kv->format == CHAI_QF_F32) {
    if (k) memcpy((float *)kv->k[l] + slot * kw, k, (size_t)kw * sizeof(float));
    if (v) memcpy((float *)kv->v[l] + slot * vw, v, (size_t)vw * sizeof(float));
    return;
  }
  if (k) chai_kvq_store((int8_t *)kv->k[l] + slot * kw, kv->ks[l] + slot * (kw / D), k, kw / D, D);
  if (v) chai_kvq_store((int8_t *)kv->v[l] + slot * vw, kv->vs[l] + slot * (vw / D), v, vw / D, D);
}

float *opt_kv_f32_k(chai_opt_model *m, int l, int b, int pos) {
  opt_kv *kv = &m->kv;
  if (kv->format != CHAI_QF_F32) return NULL;
  return (float *)kv->k[l] + ((size_t)b * kv->capacity + pos) * opt_heads_k_width(m, l, false);
}

float *opt_kv_f32_v(chai_opt_model *m, int l, int b, int pos) {
  opt_kv *kv = &m->kv;
  if (kv->format != CHAI_QF_F32) return NULL;
  return (float *)kv->v[l] + ((size_t)b * kv->capacity + pos) * opt_heads_v_width(m, l);
}

chai_status opt_kv_attend(chai_opt_model *m, int l, int b, float *out, const float *q, int q_ts,
                          int Tq, int Tk, int S, const int *slot) {
  opt_kv *kv = &m->kv;
  opt_acts *A = &m->acts;
  int D = head_dim(m), H = opt_layer_heads(m, l);
  int kw = opt_heads_k_width(m, l, false), vw = opt_heads_v_width(m, l);
  size_t row = (size_t)b * kv->capacity;
  const float *mask = kv->mask + row;
  if (kv->format == CHAI_QF_INT8) {
    chai_kvq_attention_args a = {.Tq = Tq,
                                 .Tk = Tk,
                                 .S = S,
                                 .H = H,
                                 .D = D,
                                 .q_ts = q_ts,
                                 .causal = true,
                                 .key_mask = mask,
                                 .slot = slot};
    /* the products' scratch is free while attention runs (opt_qwork_reserve sized it) */
    CHAI_ASSERT(chai_kvq_attention_work_bytes(&a) <= m->qwork_bytes);
    return chai_kvq_attention(out, q, (const int8_t *)kv->k[l] + row * kw,
                              kv->ks[l] + row * (kw / D), (const int8_t *)kv->v[l] + row * vw,
                              kv->vs[l] + row * (vw / D), &a, m->qwork);
  }
  const float *kc = (const float *)kv->k[l] + row * kw, *vc = (const float *)kv->v[l] + row * vw;
  float scale = 1.0f / sqrtf((float)D);
  if (slot) {
    chai_heads_attention_args a = {.B = 1,
                                   .Tq = Tq,
                                   .Tk = Tk,
                                   .H = H,
                                   .K = S,
                                   .D = D,
                                   .q_ts = q_ts,
                                   .k_ts = kw,
                                   .v_ts = vw,
                                   .scale = scale,
                                   .causal = true,
                                   .key_mask = mask,
                                   .slot = slot};
    return chai_heads_attention_forward(out, q, kc, vc, &a);
  }
  chai_attention_args a = {.B = 1,
                           .Tq = Tq,
                           .Tk = Tk,
                           .H = H,
                           .D = D,
                           .q_ts = q_ts,
                           .k_ts = kw,
                           .v_ts = vw,
                           .scale = scale,
                           .causal = true,
                           .key_mask = mask,
                           .score_head = m->score_head ? m->score_head[l] : NULL};
  return opt_attention_forward(out, q, kc, vc, &a, A->scores,
                               opt_attention_scratch_floats((int)A->keys, (int)A->threads));
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

typedef struct {
  chai_opt_model *m;
  float *logits;
  const int32_t *ids, *mask;
  int B, T;
} step_run;

/* The decoder through the cache, then the logits of each row's last token. */
static chai_status step_body(void *ctx) {
  step_run *r = ctx;
  chai_opt_model *m = r->m;
  const float *feats;
  chai_status st =
      opt_decoder_run(m, r->ids, r->mask, r->B, r->T, true, m->acts.rowidx, r->B, &feats);
  if (!st && r->logits)
    opt_linear(m, r->logits, feats, m->lm_head, NULL, r->B, m->cfg.word_embed_proj_dim,
               m->cfg.vocab_size);
  return st;
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
  step_run run = {m, logits, ids, mask, B, T};
  /* One token is ~50 small parallel products: one held team for all of them (team.h). */
  if ((st = B * T == 1 ? chai_team_hold(step_body, &run) : step_body(&run))) return st;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      kv->count[b] += mask ? mask[b * T + t] : 1;
  kv->len += T;
  return CHAI_OK;
}
