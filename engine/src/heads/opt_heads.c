/* CHAI on the OPT model: the per-layer state behind chai_opt_set_heads (packed representative
 * rows of W_q and W_k, the head → slot map), the clustered attention step the decoder calls
 * (opt_heads_attention), online membership per request, and attention capture for calibration. */
#include <math.h>
#include <string.h>

#include "chai/blas.h"
#include "chai/half.h"
#include "chai/ops.h"
#include "chai/opt_heads.h"
#include "model/opt_model.h"

typedef struct opt_heads_layer {
  int K;      /* clusters; 0 = dense layer */
  int *slot;  /* (H) head → slot */
  int *rep;   /* (K) slot → representative head */
  bool ready; /* online: membership set for the current request */
  /* The representatives' rows of W_q and W_k (K·D,C), slot order, in the matrices' own format,
   * and their biases bq, bk (K·D each) in b. */
  chai_qmat wq, wk;
  float *b;
  size_t b_floats;
} opt_heads_layer;

struct opt_heads {
  chai_heads_mode mode;
  chai_heads_plan plan;
  bool has_plan;
  int L, H, D, C;
  opt_heads_layer *layers;
  /* Online: the current request (opt_heads_request) runs dense, or clusters from the tokens at
   * real_pos; cache_request says it began in the KV cache, whose decode steps continue it. */
  bool fallback, cache_request;
  int real_pos[5];
  float *scratch; /* q_rep and k_rep (N,K·D) each, or the 5-token q/k (5,C) each */
  size_t scratch_floats;
  float *capture; /* (L,H,capture_T) */
  int capture_T, captured_T;
  float *probs; /* (H,T,T) for capture */
  size_t probs_floats;
  chai_attention_stats *stats; /* (L,H): sums over every captured forward */
};

static void layer_clear(opt_heads_layer *hl, int H) {
  if (hl->slot) chai_free(hl->slot, (size_t)H * sizeof(int));
  if (hl->rep) chai_free(hl->rep, (size_t)H * sizeof(int));
  if (hl->b) chai_free(hl->b, hl->b_floats * sizeof(float));
  chai_qmat_release(&hl->wq);
  chai_qmat_release(&hl->wk);
  memset(hl, 0, sizeof *hl);
  chai_qmat_init(&hl->wq);
  chai_qmat_init(&hl->wk);
}

static void clear_score_head(chai_opt_model *m) {
  if (m->score_head)
    chai_free((void *)m->score_head, (size_t)m->cfg.num_hidden_layers * sizeof(int *));
  m->score_head = NULL;
}

static void clear_plan(struct opt_heads *h) {
  for (int l = 0; h->layers && l < h->L; l++)
    layer_clear(&h->layers[l], h->H);
  if (h->has_plan) chai_heads_plan_free(&h->plan);
  h->has_plan = false;
  h->mode = CHAI_HEADS_DENSE;
  h->fallback = false;
}

void opt_heads_free(chai_opt_model *m) {
  clear_score_head(m);
  struct opt_heads *h = m->heads;
  if (!h) return;
  clear_plan(h);
  if (h->layers) chai_free(h->layers, (size_t)h->L * sizeof(opt_heads_layer));
  if (h->scratch) chai_free(h->scratch, h->scratch_floats * sizeof(float));
  if (h->capture) chai_free(h->capture, (size_t)h->L * h->H * h->capture_T * sizeof(float));
  if (h->probs) chai_free(h->probs, h->probs_floats * sizeof(float));
  if (h->stats) chai_free(h->stats, (size_t)h->L * h->H * sizeof(chai_attention_stats));
  chai_free(h, sizeof *h);
  m->heads = NULL;
}

static chai_status state(chai_opt_model *m, struct opt_heads **out) {
  if (!m->heads) {
    struct opt_heads *h = chai_alloc(sizeof *h, "head clustering state");
    if (!h) return CHAI_ERR_NOMEM;
    memset(h, 0, sizeof *h);
    h->L = m->cfg.num_hidden_layers;
    h->H = m->cfg.num_attention_heads;
    h->C = m->cfg.hidden_size;
    h->D = h->C / h->H;
    h->layers = chai_alloc((size_t)h->L * sizeof(opt_heads_layer), "head clustering layers");
    if (!h->layers) {
      chai_free(h, sizeof *h);
      return CHAI_ERR_NOMEM;
    }
    memset(h->layers, 0, (size_t)h->L * sizeof(opt_heads_layer));
    m->heads = h;
  }
  *out = m->heads;
  return CHAI_OK;
}

/* Drops the state when nothing uses it. */
static void maybe_release(chai_opt_model *m) {
  struct opt_heads *h = m->heads;
  if (h && !h->has_plan && !h->capture) opt_heads_free(m);
}

static chai_status ensure(float **buf, size_t *have, size_t floats, const char *what) {
  if (*have >= floats) return CHAI_OK;
  if (*buf) chai_free(*buf, *have * sizeof(float));
  *have = 0;
  *buf = chai_alloc(floats * sizeof(float), what);
  if (!*buf) return CHAI_ERR_NOMEM;
  *have = floats;
  return CHAI_OK;
}

/* Packs the representatives' rows of W_q, W_k (and biases) of layer l, slot order. */
static chai_status pack_layer(chai_opt_model *m, struct opt_heads *h, int l) {
  opt_heads_layer *hl = &h->layers[l];
  int D = h->D, KD = hl->K * D;
  chai_status st = ensure(&hl->b, &hl->b_floats, 2 * (size_t)KD, "representative biases");
  int *rows = st ? NULL : chai_alloc((size_t)KD * sizeof(int), "representative rows");
  if (!rows) return CHAI_ERR_NOMEM;
  for (int s = 0; s < hl->K; s++)
    for (int d = 0; d < D; d++)
      rows[s * D + d] = hl->rep[s] * D + d;
  const opt_layer *ly = &m->layers[l];
  chai_qmat_release(&hl->wq);
  chai_qmat_release(&hl->wk);
  st = chai_qmat_gather_rows(&hl->wq, &ly->q_w->q, rows, KD);
  if (!st) st = chai_qmat_gather_rows(&hl->wk, &ly->k_w->q, rows, KD);
  float *bq = hl->b, *bk = bq + KD;
  for (int i = 0; i < KD && !st; i++) {
    bq[i] = ly->q_b ? ((const float *)chai_tensor_data(&ly->q_b->t))[rows[i]] : 0;
    bk[i] = ly->k_b ? ((const float *)chai_tensor_data(&ly->k_b->t))[rows[i]] : 0;
  }
  chai_free(rows, (size_t)KD * sizeof(int));
  return st;
}

chai_status opt_heads_weights_changed(chai_opt_model *m) {
  struct opt_heads *h = m->heads;
  if (!h || !h->has_plan) return CHAI_OK;
  chai_status st = CHAI_OK;
  for (int l = 0; l < h->L && !st; l++) {
    const opt_heads_layer *hl = &h->layers[l];
    if (hl->K > 0 && hl->rep && (h->mode == CHAI_HEADS_STATIC || hl->ready))
      st = pack_layer(m, h, l);
  }
  return st;
}

static chai_status alloc_maps(opt_heads_layer *hl, int H) {
  if (!hl->slot && !(hl->slot = chai_alloc((size_t)H * sizeof(int), "head slots")))
    return CHAI_ERR_NOMEM;
  if (!hl->rep && !(hl->rep = chai_alloc((size_t)H * sizeof(int), "head representatives")))
    return CHAI_ERR_NOMEM;
  return CHAI_OK;
}

chai_status chai_opt_set_heads(chai_opt_model *m, const chai_heads_plan *plan,
                               chai_heads_mode mode) {
  if (mode != CHAI_HEADS_DENSE && mode != CHAI_HEADS_STATIC && mode != CHAI_HEADS_ONLINE)
    return chai_error(CHAI_ERR_ARG, "set_heads: unknown mode %d", (int)mode);
  /* The cache layout changes with the plan: drop it (its bytes too), the caller begins again. */
  opt_kv_drop(m);
  clear_score_head(m);
  if (!plan || mode == CHAI_HEADS_DENSE) {
    if (m->heads) clear_plan(m->heads);
    maybe_release(m);
    return CHAI_OK;
  }
  const chai_opt_config *c = &m->cfg;
  if (m->layer_heads)
    return chai_error(CHAI_ERR_UNSUPPORTED,
                      "set_heads: this model was pruned (per-layer head counts); clustering a "
                      "pruned model is not supported");
  chai_heads_plan copy;
  chai_status st = chai_heads_plan_copy(&copy, plan);
  if (st) return st;
  chai_heads_dims dims = {c->num_hidden_layers, c->num_attention_heads, 0};
  if ((st = chai_heads_plan_validate(&copy, &dims))) {
    chai_heads_plan_free(&copy);
    return st;
  }
  for (int i = 0; i < copy.n_layers; i++)
    if (mode == CHAI_HEADS_STATIC && !copy.layers[i].has_clusters) {
      int l = copy.layers[i].layer;
      chai_heads_plan_free(&copy);
      return chai_error(CHAI_ERR_ARG,
                        "set_heads: layer %d of the plan gives only k; static mode needs its "
                        "clusters (use online mode, or a plan with clusters)",
                        l);
    }
  struct opt_heads *h;
  if ((st = state(m, &h))) {
    chai_heads_plan_free(&copy);
    return st;
  }
  clear_plan(h);
  h->plan = copy;
  h->has_plan = true;
  h->mode = mode;
  for (int i = 0; i < copy.n_layers && !st; i++) {
    const chai_heads_layer *pl = &copy.layers[i];
    opt_heads_layer *hl = &h->layers[pl->layer];
    hl->K = pl->k;
    if ((st = alloc_maps(hl, h->H))) break;
    if (mode == CHAI_HEADS_ONLINE) continue; /* membership comes with each request */
    for (int s = 0; s < pl->k; s++) {
      hl->rep[s] = pl->order[pl->start[s]];
      for (int p = pl->start[s]; p < pl->start[s + 1]; p++)
        hl->slot[pl->order[p]] = s;
    }
    hl->ready = true;
    st = pack_layer(m, h, pl->layer);
  }
  /* Training (opt_train_forward.c, opt_backward.c) shares scores through m->score_head: the same
   * clustered computation, without the projection savings. */
  if (!st && mode == CHAI_HEADS_STATIC) {
    const int **sh = chai_alloc((size_t)h->L * sizeof(int *), "score head maps");
    if (!sh) {
      st = CHAI_ERR_NOMEM;
    } else {
      for (int l = 0; l < h->L; l++) {
        const chai_heads_layer *pl = chai_heads_plan_find(&h->plan, l);
        sh[l] = pl ? pl->score_head : NULL;
      }
      m->score_head = sh;
    }
  }
  if (st) {
    clear_plan(h);
    maybe_release(m);
  }
  return st;
}

chai_status opt_heads_check_trainable(const chai_opt_model *m) {
  if (m->heads && m->heads->has_plan && m->heads->mode == CHAI_HEADS_ONLINE)
    return chai_error(CHAI_ERR_UNSUPPORTED,
                      "training under online head clustering is not supported (membership is per "
                      "request); use a static plan");
  return CHAI_OK;
}

const chai_heads_plan *chai_opt_get_heads(const chai_opt_model *m, chai_heads_mode *mode) {
  bool on = m->heads && m->heads->has_plan;
  if (mode) *mode = on ? m->heads->mode : CHAI_HEADS_DENSE;
  return on ? &m->heads->plan : NULL;
}

int chai_opt_heads_fallback(const chai_opt_model *m) {
  return m->heads && m->heads->fallback;
}

chai_status chai_opt_heads_membership(const chai_opt_model *m, int layer, int *K, int *slot) {
  if (layer < 0 || layer >= m->cfg.num_hidden_layers)
    return chai_error(CHAI_ERR_ARG, "heads: layer %d out of range", layer);
  const struct opt_heads *h = m->heads;
  const opt_heads_layer *hl = h && h->has_plan ? &h->layers[layer] : NULL;
  bool active = hl && hl->K > 0 && hl->ready && !(h->mode == CHAI_HEADS_ONLINE && h->fallback);
  *K = active ? hl->K : 0;
  if (slot)
    for (int i = 0; i < m->cfg.num_attention_heads; i++)
      slot[i] = active ? hl->slot[i] : i;
  return CHAI_OK;
}

int opt_heads_v_width(const chai_opt_model *m, int l) {
  return opt_layer_heads(m, l) * (m->cfg.hidden_size / m->cfg.num_attention_heads);
}

int opt_heads_k_width(const chai_opt_model *m, int l, bool as_planned) {
  const struct opt_heads *h = m->heads;
  if (!h || !h->has_plan || h->layers[l].K == 0 ||
      (h->mode == CHAI_HEADS_ONLINE && h->fallback && !as_planned))
    return opt_heads_v_width(m, l);
  return h->layers[l].K * h->D;
}

size_t chai_opt_kv_bytes_per_token(const chai_opt_model *m) {
  size_t bytes = 0;
  for (int l = 0; l < m->cfg.num_hidden_layers; l++)
    bytes += opt_kv_layer_bytes(m, l, true, m->kv_format);
  return bytes;
}

bool opt_heads_layer_dense(const chai_opt_model *m, int l) {
  const struct opt_heads *h = m->heads;
  if (!h) return true;
  if (h->capture) return false;
  return !h->has_plan || h->layers[l].K == 0 || (h->mode == CHAI_HEADS_ONLINE && h->fallback);
}

chai_status opt_heads_request(chai_opt_model *m, const int32_t *mask, int B, int T,
                              bool use_cache) {
  struct opt_heads *h = m->heads;
  if (!h || !h->has_plan || h->mode != CHAI_HEADS_ONLINE) return CHAI_OK;
  if (use_cache && m->kv.len > 0) {
    /* A decode step: the membership must still be this cache's (an uncached call in between
     * replaced it, and may have changed the K width the cache was laid out with). */
    if (!h->cache_request)
      return chai_error(CHAI_ERR_STATE,
                        "online head clustering: a forward or classify call since this KV "
                        "cache's prompt replaced its membership; begin the cache again");
    return CHAI_OK;
  }
  if (B != 1)
    return chai_error(CHAI_ERR_ARG,
                      "online head clustering takes one prompt at a time (got a batch of %d "
                      "rows); use static mode for batches",
                      B);
  int n_real = 0;
  for (int t = 0; t < T; t++) {
    bool real = !mask || mask[t] != 0;
    if (real && n_real < 5) h->real_pos[n_real] = t;
    n_real += real;
  }
  /* Every clustered layer of the prompt takes its own membership from these tokens. */
  h->fallback = n_real < 6;
  h->cache_request = use_cache;
  for (int l = 0; l < h->L; l++)
    h->layers[l].ready = false;
  return CHAI_OK;
}

/* ---- capture ----------------------------------------------------------------------------------
 */

chai_status chai_opt_capture_begin(chai_opt_model *m, int T_max) {
  if (T_max < 1 || T_max > m->cfg.max_position_embeddings)
    return chai_error(CHAI_ERR_ARG, "capture: %d tokens is not valid (1..%d)", T_max,
                      m->cfg.max_position_embeddings);
  struct opt_heads *h;
  chai_status st = state(m, &h);
  if (st) return st;
  if (h->capture) chai_free(h->capture, (size_t)h->L * h->H * h->capture_T * sizeof(float));
  size_t n = (size_t)h->L * h->H * T_max, ns = (size_t)h->L * h->H * sizeof(chai_attention_stats);
  h->capture = chai_alloc(n * sizeof(float), "attention capture");
  if (h->capture && !h->stats) h->stats = chai_alloc(ns, "attention statistics");
  if (!h->capture || !h->stats) {
    if (h->capture) chai_free(h->capture, n * sizeof(float));
    h->capture = NULL;
    h->capture_T = 0;
    maybe_release(m);
    return CHAI_ERR_NOMEM;
  }
  memset(h->capture, 0, n * sizeof(float));
  memset(h->stats, 0, ns);
  h->capture_T = T_max;
  h->captured_T = 0;
  return CHAI_OK;
}

const float *chai_opt_capture_rows(const chai_opt_model *m, int *T, int *T_max) {
  const struct opt_heads *h = m->heads;
  if (T) *T = h && h->capture ? h->captured_T : 0;
  if (T_max) *T_max = h && h->capture ? h->capture_T : 0;
  return h ? h->capture : NULL;
}

const chai_attention_stats *chai_opt_capture_stats(const chai_opt_model *m) {
  const struct opt_heads *h = m->heads;
  return h && h->capture ? h->stats : NULL;
}

void chai_opt_capture_end(chai_opt_model *m) {
  struct opt_heads *h = m->heads;
  if (!h || !h->capture) return;
  chai_free(h->capture, (size_t)h->L * h->H * h->capture_T * sizeof(float));
  h->capture = NULL;
  h->capture_T = h->captured_T = 0;
  if (h->probs) chai_free(h->probs, h->probs_floats * sizeof(float));
  h->probs = NULL;
  h->probs_floats = 0;
  if (h->stats) chai_free(h->stats, (size_t)h->L * h->H * sizeof(chai_attention_stats));
  h->stats = NULL;
  maybe_release(m);
}

static chai_status capture_attention(chai_opt_model *m, struct opt_heads *h, int l, int B, int T,
                                     bool use_cache, const float *in, const float *keymask) {
  if (B != 1 || use_cache || T > h->capture_T)
    return chai_error(
        CHAI_ERR_ARG,
        "capture: needs one row of at most %d tokens without a KV cache (got %d x %d)",
        h->capture_T, B, T);
  if (h->has_plan)
    return chai_error(CHAI_ERR_STATE, "capture: the model is clustered; call set_heads(nil) first");
  const opt_layer *ly = &m->layers[l];
  opt_acts *A = &m->acts;
  int C = h->C, H = h->H, D = h->D;
  chai_status st = ensure(&h->probs, &h->probs_floats, (size_t)H * T * T, "attention capture");
  if (st) return st;
  opt_linear(m, A->q, in, ly->q_w, ly->q_b, T, C, C);
  opt_linear(m, A->k, in, ly->k_w, ly->k_b, T, C, C);
  opt_linear(m, A->v, in, ly->v_w, ly->v_b, T, C, C);
  chai_attention_args a = {.B = 1,
                           .Tq = T,
                           .Tk = T,
                           .H = H,
                           .D = D,
                           .q_ts = C,
                           .k_ts = C,
                           .v_ts = C,
                           .scale = 1.0f / sqrtf((float)D),
                           .causal = true,
                           .key_mask = keymask};
  if ((st = chai_attention_forward(A->att, h->probs, A->q, A->k, A->v, &a))) return st;
  for (int hh = 0; hh < H; hh++) {
    float *dst = h->capture + ((size_t)l * H + hh) * h->capture_T;
    memset(dst, 0, (size_t)h->capture_T * sizeof(float));
    memcpy(dst, h->probs + ((size_t)hh * T + (T - 1)) * T, (size_t)T * sizeof(float));
  }
  chai_heads_attention_stats(h->stats + (size_t)l * H, h->probs, keymask, H, T);
  h->captured_T = T;
  return CHAI_OK;
}

/* ---- the clustered layer ----------------------------------------------------------------------
 */

/* Online membership of layer l for a new one-row request from its first 5 real tokens. */
static chai_status online_membership(chai_opt_model *m, struct opt_heads *h, int l, const float *in,
                                     const int *real_pos) {
  opt_heads_layer *hl = &h->layers[l];
  const opt_layer *ly = &m->layers[l];
  int C = h->C, n = 5;
  chai_status st = ensure(&h->scratch, &h->scratch_floats, 3 * (size_t)n * C, "online membership");
  if (st) return st;
  float *x5 = h->scratch, *q5 = x5 + (size_t)n * C, *k5 = q5 + (size_t)n * C;
  for (int i = 0; i < n; i++)
    memcpy(x5 + (size_t)i * C, in + (size_t)real_pos[i] * C, C * sizeof(float));
  opt_linear(m, q5, x5, ly->q_w, ly->q_b, n, C, C);
  opt_linear(m, k5, x5, ly->k_w, ly->k_b, n, C, C);
  if ((st = chai_heads_online_labels(hl->slot, q5, k5, n, h->H, h->D, C, C,
                                     1.0f / sqrtf((float)h->D), hl->K)))
    return st;
  for (int s = 0; s < hl->K; s++)
    for (int hh = 0; hh < h->H; hh++)
      if (hl->slot[hh] == s) {
        hl->rep[s] = hh;
        break;
      }
  hl->ready = true;
  return pack_layer(m, h, l);
}

chai_status opt_heads_attention(chai_opt_model *m, int l, int B, int T, bool use_cache,
                                const float *in, const float *keymask, bool *done) {
  struct opt_heads *h = m->heads;
  *done = false;
  if (h->capture) {
    *done = true;
    return capture_attention(m, h, l, B, T, use_cache, in, keymask);
  }
  if (!h->has_plan) return CHAI_OK;
  opt_heads_layer *hl = &h->layers[l];
  if (hl->K == 0) return CHAI_OK;
  opt_kv *kv = &m->kv;
  opt_acts *A = &m->acts;
  int past = use_cache ? kv->len : 0, C = h->C, H = h->H, D = h->D, N = B * T;
  if (h->mode == CHAI_HEADS_ONLINE) {
    /* opt_heads_request has decided this request (and refused batches). */
    if (h->fallback) return CHAI_OK;
    if (!use_cache || past == 0) {
      chai_status st = online_membership(m, h, l, in, h->real_pos);
      if (st) return st;
    } else if (!hl->ready) {
      return chai_error(CHAI_ERR_STATE, "online head clustering: no membership for layer %d", l);
    }
  }
  int K = hl->K, KD = K * D;
  chai_status st = ensure(&h->scratch, &h->scratch_floats, 2 * (size_t)N * KD, "clustered q/k");
  if (st) return st;
  float *qs = h->scratch, *ks = qs + (size_t)N * KD;
  const opt_layer *ly = &m->layers[l];
  float *vd = use_cache && B == 1 ? opt_kv_f32_v(m, l, 0, past) : NULL;
  bool v_in_cache = vd != NULL;
  if (!vd) vd = A->v;
  CHAI_ASSERT(ly->v_w->q.rows == C && ly->v_w->q.cols == C);
  opt_gemv_task qkv[3] = {
      {.y = qs, .w = &hl->wq, .e = {.bias = hl->b}},
      {.y = ks, .w = &hl->wk, .e = {.bias = hl->b + KD}},
      {.y = vd,
       .w = &ly->v_w->q,
       .e = {.bias = ly->v_b ? (const float *)chai_tensor_data(&ly->v_b->t) : NULL}}};
  opt_qlinear_batch(m, qkv, 3, in, N);
  if (!use_cache) {
    chai_heads_attention_args a = {.B = B,
                                   .Tq = T,
                                   .Tk = T,
                                   .H = H,
                                   .K = K,
                                   .D = D,
                                   .q_ts = KD,
                                   .k_ts = KD,
                                   .v_ts = C,
                                   .scale = 1.0f / sqrtf((float)D),
                                   .causal = true,
                                   .key_mask = keymask,
                                   .slot = hl->slot};
    st = chai_heads_attention_forward(A->att, qs, ks, A->v, &a);
  } else {
    for (int b = 0; b < B && !st; b++) {
      for (int t = 0; t < T; t++) {
        size_t i = (size_t)b * T + t;
        opt_kv_store(m, l, b, past + t, ks + i * KD, v_in_cache ? NULL : A->v + i * C);
      }
      st = opt_kv_attend(m, l, b, A->att + (size_t)b * T * C, qs + (size_t)b * T * KD, KD, T,
                         past + T, K, hl->slot);
    }
  }
  if (!st) *done = true;
  return st;
}
