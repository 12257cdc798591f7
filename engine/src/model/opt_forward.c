/* The OPT decoder forward (inference), llm.c style: one activation arena, one function per layer,
 * kernels from chai/ops.h and GEMMs through chai_sgemm. The same layer code runs a plain batched
 * forward (keys and values in the arena) and incremental decoding (keys and values in the KV cache,
 * see opt_kvcache.c). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "chai/blas.h"
#include "chai/kvq.h"
#include "chai/ops.h"
#include "chai/opt.h"
#include "model/opt_model.h"

#define LN_EPS 1e-5f /* nn.LayerNorm's default; OPTConfig has no eps key */

static inline const float *f32(const opt_param *p) {
  return p ? (const float *)chai_tensor_data(&p->t) : NULL;
}

/* ---- linear ---------------------------------------------------------------------------------- */

enum { ACT_NONE = 0, ACT_RELU, ACT_GELU };

/* One token (decoding) goes through the decode batch, a streaming matrix-vector product shared by
 * the threads; more through the packed GEMM or OpenBLAS. */
void opt_qlinear_batch(chai_opt_model *m, const opt_gemv_task *tasks, int count, const float *in,
                       int N) {
  if (N == 1) {
    opt_gemv_batch(tasks, count, in, m->qwork);
    return;
  }
  CHAI_ASSERT(chai_qmat_matmul_batch_work_bytes(tasks, count, N) <= m->qwork_bytes);
  chai_status st = chai_qmat_matmul_batch(tasks, count, in, N, m->qwork);
  CHAI_ASSERT(st == CHAI_OK); /* with scratch given, a product cannot fail */
}

void opt_qlinear(chai_opt_model *m, float *out, const float *inp, const chai_qmat *w,
                 const float *bias, int N, bool accumulate, bool relu) {
  opt_gemv_task task = {
      .y = out, .w = w, .e = {.bias = bias, .accumulate = accumulate, .relu = relu}};
  opt_qlinear_batch(m, &task, 1, inp, N);
}

/* The matrix-vector product of one token through w: out (OC) = epilogue(w · x). */
static opt_gemv_task gemv_task(float *out, const opt_param *w, const opt_param *bias,
                               bool accumulate, bool relu) {
  return (opt_gemv_task){
      .y = out, .w = &w->q, .e = {.bias = f32(bias), .accumulate = accumulate, .relu = relu}};
}

/* out (N,OC) (+)= inp (N,C) · W (OC,C)ᵀ + bias, then the activation. `accumulate` adds to out
 * (a residual connection for free). Bias, ReLU and the sum are applied as each output is stored. */
static void linear(chai_opt_model *m, float *out, const float *inp, const opt_param *w,
                   const opt_param *bias, int N, int C, int OC, bool accumulate, int act) {
  CHAI_ASSERT(w->q.cols == C && w->q.rows == OC);
  opt_qlinear(m, out, inp, &w->q, f32(bias), N, accumulate, act == ACT_RELU);
  if (act == ACT_GELU) chai_gelu_forward(out, out, (size_t)N * OC);
}

void opt_linear(chai_opt_model *m, float *out, const float *inp, const opt_param *w,
                const opt_param *bias, int N, int C, int OC) {
  linear(m, out, inp, w, bias, N, C, OC, false, ACT_NONE);
}

/* ---- the arena ------------------------------------------------------------------------------- */

static size_t round16(size_t n) {
  return (n + 15) & ~(size_t)15;
}

chai_status opt_qwork_reserve(chai_opt_model *m, size_t tokens, size_t keys) {
  size_t need = 0;
  if (m->kv_format == CHAI_QF_INT8 && keys > 0) {
    /* the int8 cache's attention works in this scratch too (between two products) */
    int H = m->cfg.num_attention_heads;
    chai_kvq_attention_args a = {.Tq = (int)tokens,
                                 .Tk = (int)keys,
                                 .S = H,
                                 .H = H,
                                 .D = m->cfg.hidden_size / H,
                                 .q_ts = m->cfg.hidden_size};
    need = chai_kvq_attention_work_bytes(&a);
  }
  for (int i = 0; i < m->n_params; i++) {
    const opt_param *p = &m->params[i];
    if (!p->matrix) continue;
    size_t b = chai_qmat_matmul_work_bytes(&p->q, (int)tokens);
    size_t g = opt_gemv_work_bytes(p->q.cols), d = chai_qmat_dequant_work_bytes(&p->q);
    if (d > need) need = d;
    if (b > need) need = b;
    if (g > need) need = g;
  }
  if (need <= m->qwork_bytes) return CHAI_OK;
  if (m->qwork) chai_free(m->qwork, m->qwork_bytes);
  m->qwork_bytes = 0;
  if (!(m->qwork = chai_alloc(need, "OPT matrix-product scratch"))) return CHAI_ERR_NOMEM;
  m->qwork_bytes = need;
  return CHAI_OK;
}

chai_status opt_acts_reserve(chai_opt_model *m, size_t tokens, size_t mask, size_t rows,
                             size_t keys) {
  chai_status st = opt_qwork_reserve(m, tokens > rows ? tokens : rows, keys);
  if (st) return st;
  opt_acts *A = &m->acts;
  size_t threads = (size_t)omp_get_max_threads();
  if (A->storage && tokens <= A->tokens && mask <= A->mask_cap && rows <= A->rows &&
      keys <= A->keys && threads <= A->threads)
    return CHAI_OK;
  if (A->storage) { /* grow to cover both the old and the new request */
    if (A->tokens > tokens) tokens = A->tokens;
    if (A->mask_cap > mask) mask = A->mask_cap;
    if (A->rows > rows) rows = A->rows;
    if (A->keys > keys) keys = A->keys;
    if (A->threads > threads) threads = A->threads;
  }
  size_t C = (size_t)m->cfg.hidden_size, F = (size_t)m->cfg.ffn_dim;
  size_t P = (size_t)m->cfg.word_embed_proj_dim, N = tokens;
  size_t score_floats = opt_attention_scratch_floats((int)keys, (int)threads);
  /* x, h, q, k, v, att, ffh, emb, rowsC, rowsP, rowsC2, keymask, scores, pos, rowidx */
  size_t sizes[] = {N * C,    N * C,    N * C,    N * C, N * C,        N * C, N * F, N * P,
                    rows * C, rows * P, rows * C, mask,  score_floats, N,     rows};
  size_t nb = sizeof sizes / sizeof sizes[0], total = 0;
  for (size_t i = 0; i < nb; i++)
    total += round16(sizes[i] ? sizes[i] : 1);
  chai_storage *s = chai_storage_new(total * sizeof(float));
  if (!s) return chai_error_context(CHAI_ERR_NOMEM, "OPT activations for %zu tokens", tokens);
  chai_storage_release(A->storage);
  A->storage = s;
  A->tokens = tokens;
  A->mask_cap = mask;
  A->rows = rows;
  A->keys = keys;
  A->threads = threads;
  float *p = (float *)s->data;
  float **dst[] = {&A->x,   &A->h,     &A->q,     &A->k,      &A->v,       &A->att,   &A->ffh,
                   &A->emb, &A->rowsC, &A->rowsP, &A->rowsC2, &A->keymask, &A->scores};
  size_t i = 0;
  for (; i < sizeof dst / sizeof dst[0]; i++) {
    *dst[i] = p;
    p += round16(sizes[i] ? sizes[i] : 1);
  }
  A->pos = (int32_t *)p; /* int32 and float share a size */
  p += round16(sizes[i++]);
  A->rowidx = (int *)p;
  return CHAI_OK;
}

/* ---- one decoder layer ----------------------------------------------------------------------- */

static void layernorm(float *out, const float *inp, const opt_param *w, const opt_param *b, int N,
                      int C) {
  chai_layernorm_forward(out, NULL, NULL, inp, f32(w), f32(b), N, C, LN_EPS);
}

static void swap(float **a, float **b) {
  float *t = *a;
  *a = *b;
  *b = t;
}

/* q, k, v (N,HD) = the layer's three projections of in (N,C). */
static void project_qkv(chai_opt_model *m, const opt_layer *ly, const float *in, float *q, float *k,
                        float *v, int N, int C, int HD) {
  CHAI_ASSERT(ly->q_w->q.rows == HD && ly->k_w->q.rows == HD && ly->v_w->q.rows == HD &&
              ly->q_w->q.cols == C);
  opt_gemv_task tasks[3] = {gemv_task(q, ly->q_w, ly->q_b, false, false),
                            gemv_task(k, ly->k_w, ly->k_b, false, false),
                            gemv_task(v, ly->v_w, ly->v_b, false, false)};
  opt_qlinear_batch(m, tasks, 3, in, N);
}

/* Where layer l's K and V projections of B·T tokens are written: straight into an f32 cache at
 * its current length for a single cached row (true), else the arena (kv_append then stores them).
 */
static bool kv_targets(chai_opt_model *m, int l, int B, bool use_cache, float **kd, float **vd) {
  *kd = m->acts.k;
  *vd = m->acts.v;
  if (!use_cache || B != 1 || m->kv.format != CHAI_QF_F32) return false;
  *kd = opt_kv_f32_k(m, l, 0, m->kv.len);
  *vd = opt_kv_f32_v(m, l, 0, m->kv.len);
  return true;
}

/* The arena's K and V of B cached rows, (B·T,HD) each, into each row's cache at its current
 * length. */
static void kv_append(chai_opt_model *m, int l, int B, int T, int HD) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      size_t src = (size_t)b * T + t;
      opt_kv_store(m, l, b, m->kv.len + t, m->acts.k + src * HD, m->acts.v + src * HD);
    }
}

/* The layer's Q, K, V projections and attention over all heads; att (B·T,C) receives the output. */
static chai_status dense_attention(chai_opt_model *m, int l, int B, int T, bool use_cache,
                                   const float *in, const float *keymask) {
  const chai_opt_config *c = &m->cfg;
  const opt_layer *ly = &m->layers[l];
  opt_acts *A = &m->acts;
  int C = c->hidden_size, D = C / c->num_attention_heads;
  int H = opt_layer_heads(m, l), HD = H * D; /* HD = C unless the model is pruned */
  int past = use_cache ? m->kv.len : 0;
  float *kd, *vd;
  bool direct = kv_targets(m, l, B, use_cache, &kd, &vd);
  project_qkv(m, ly, in, A->q, kd, vd, B * T, C, HD);
  if (!use_cache) {
    chai_attention_args a = {.B = B,
                             .Tq = T,
                             .Tk = T,
                             .H = H,
                             .D = D,
                             .q_ts = HD,
                             .k_ts = HD,
                             .v_ts = HD,
                             .scale = 1.0f / sqrtf((float)D),
                             .causal = true,
                             .key_mask = keymask,
                             .score_head = m->score_head ? m->score_head[l] : NULL};
    size_t sf = opt_attention_scratch_floats((int)A->keys, (int)A->threads);
    return opt_attention_forward(A->att, A->q, A->k, A->v, &a, A->scores, sf);
  }
  if (!direct) kv_append(m, l, B, T, HD);
  chai_status st = CHAI_OK;
  for (int b = 0; b < B && !st; b++)
    st = opt_kv_attend(m, l, b, A->att + (size_t)b * T * HD, A->q + (size_t)b * T * HD, HD, T,
                       past + T, H, NULL);
  return st;
}

/* The rest of layer l after attention, on R rows: x += out_proj(att) (A->att, R×HD), then the FFN
 * block; post-LN normalises each sum. *x holds the residual stream and *h is scratch of the same
 * size; the two are swapped where a LayerNorm writes the new stream, so *x holds it at the end. */
static void layer_tail(chai_opt_model *m, int l, float **x, float **h, int R, int HD) {
  const chai_opt_config *c = &m->cfg;
  const opt_layer *ly = &m->layers[l];
  opt_acts *A = &m->acts;
  int C = c->hidden_size, F = c->ffn_dim;
  bool pre = c->do_layer_norm_before;
  linear(m, *x, A->att, ly->o_w, ly->o_b, R, HD, C, true, ACT_NONE);
  if (!pre) {
    layernorm(*h, *x, ly->ln1_w, ly->ln1_b, R, C);
    swap(x, h);
  }
  const float *in = *x;
  if (pre) {
    layernorm(*h, *x, ly->ln2_w, ly->ln2_b, R, C);
    in = *h;
  }
  int act = c->activation_function == CHAI_OPT_ACT_GELU ? ACT_GELU : ACT_RELU;
  linear(m, A->ffh, in, ly->fc1_w, ly->fc1_b, R, C, F, false, act);
  linear(m, *x, A->ffh, ly->fc2_w, ly->fc2_b, R, F, C, true, ACT_NONE);
  if (!pre) {
    layernorm(*h, *x, ly->ln2_w, ly->ln2_b, R, C);
    swap(x, h);
  }
}

/* x (N,C) → x after layer l, N = B·T. Without a cache the keys and values are the layer's own
 * (B,T,C) in the arena; with one they are appended at position `past` of each row's cache. */
static chai_status layer_forward(chai_opt_model *m, int l, int B, int T, bool use_cache,
                                 const float *keymask) {
  const chai_opt_config *c = &m->cfg;
  const opt_layer *ly = &m->layers[l];
  opt_acts *A = &m->acts;
  int C = c->hidden_size, N = B * T;
  bool pre = c->do_layer_norm_before;

  const float *in = A->x;
  if (pre) {
    layernorm(A->h, A->x, ly->ln1_w, ly->ln1_b, N, C);
    in = A->h;
  }
  bool done = false;
  chai_status st = CHAI_OK;
  if (m->heads && (st = opt_heads_attention(m, l, B, T, use_cache, in, keymask, &done))) return st;
  if (!done) st = dense_attention(m, l, B, T, use_cache, in, keymask);
  if (st) return st;
  int HD = opt_layer_heads(m, l) * (C / c->num_attention_heads); /* C unless pruned */
  layer_tail(m, l, &A->x, &A->h, N, HD);
  return CHAI_OK;
}

/* The last layer when only `rows` (flat token indices, R of them) of its output are needed, as for
 * last-position logits and classification: K and V of every token (the rows attend to them), the
 * rest for the rows alone, which saves most of the layer. Leaves the rows' outputs (R,C) in
 * A->rowsC. The dense path only: for a layer opt_heads_layer_dense calls dense. */
static chai_status last_layer_rows(chai_opt_model *m, int l, int B, int T, bool use_cache,
                                   const float *keymask, const int *rows, int R) {
  const chai_opt_config *c = &m->cfg;
  const opt_layer *ly = &m->layers[l];
  opt_acts *A = &m->acts;
  int C = c->hidden_size, D = C / c->num_attention_heads, N = B * T;
  int H = opt_layer_heads(m, l), HD = H * D;
  int past = use_cache ? m->kv.len : 0;
  bool pre = c->do_layer_norm_before;

  const float *in = A->x;
  if (pre) {
    layernorm(A->h, A->x, ly->ln1_w, ly->ln1_b, N, C);
    in = A->h;
  }
  float *kd, *vd;
  bool direct = kv_targets(m, l, B, use_cache, &kd, &vd);
  opt_gemv_task kv[2] = {gemv_task(kd, ly->k_w, ly->k_b, false, false),
                         gemv_task(vd, ly->v_w, ly->v_b, false, false)};
  opt_qlinear_batch(m, kv, 2, in, N);
  if (use_cache && !direct) kv_append(m, l, B, T, HD);
  for (int r = 0; r < R; r++)
    memcpy(A->rowsC2 + (size_t)r * C, in + (size_t)rows[r] * C, (size_t)C * sizeof(float));
  linear(m, A->q, A->rowsC2, ly->q_w, ly->q_b, R, C, HD, false, ACT_NONE);

  /* Each row is one query at its own position over its row's keys. */
  chai_attention_args a = {.B = 1,
                           .Tq = 1,
                           .H = H,
                           .D = D,
                           .q_ts = HD,
                           .k_ts = HD,
                           .v_ts = HD,
                           .scale = 1.0f / sqrtf((float)D),
                           .causal = true,
                           .score_head = m->score_head ? m->score_head[l] : NULL};
  size_t sf = opt_attention_scratch_floats((int)A->keys, (int)A->threads);
  for (int r = 0; r < R; r++) {
    int b = rows[r] / T, t = rows[r] % T;
    float *o = A->att + (size_t)r * HD;
    const float *qr = A->q + (size_t)r * HD;
    chai_status st;
    if (use_cache) {
      st = opt_kv_attend(m, l, b, o, qr, HD, 1, past + t + 1, H, NULL);
    } else {
      a.Tk = t + 1;
      a.key_mask = keymask ? keymask + (size_t)b * T : NULL;
      st = opt_attention_forward(o, qr, A->k + (size_t)b * T * HD, A->v + (size_t)b * T * HD, &a,
                                 A->scores, sf);
    }
    if (st) return st;
  }
  float *xr = A->rowsC, *hr = A->rowsC2;
  for (int r = 0; r < R; r++)
    memcpy(xr + (size_t)r * C, A->x + (size_t)rows[r] * C, (size_t)C * sizeof(float));
  layer_tail(m, l, &xr, &hr, R, HD);
  if (xr != A->rowsC) memcpy(A->rowsC, xr, (size_t)R * C * sizeof(float));
  return CHAI_OK;
}

/* ---- the decoder ----------------------------------------------------------------------------- */

static chai_status check_inputs(const chai_opt_model *m, const int32_t *ids, const int32_t *mask,
                                int B, int T) {
  if (B < 1 || T < 1 || (int64_t)B * T > (1 << 24))
    return chai_error(CHAI_ERR_ARG, "OPT: batch %d x %d tokens is not a valid size", B, T);
  int V = m->cfg.vocab_size;
  for (int i = 0; i < B * T; i++) {
    if (ids[i] < 0 || ids[i] >= V)
      return chai_error(CHAI_ERR_ARG,
                        "OPT: token id %d at row %d, position %d (0-based) is outside the "
                        "vocabulary 0..%d",
                        ids[i], i / T, i % T, V - 1);
    if (mask && mask[i] != 0 && mask[i] != 1)
      return chai_error(CHAI_ERR_ARG,
                        "OPT: attention_mask value %d at row %d, position %d (0-based); it must "
                        "be 0 or 1",
                        mask[i], i / T, i % T);
  }
  return CHAI_OK;
}

chai_status opt_acts_reserve_run(chai_opt_model *m, int B, int T, const int32_t *mask,
                                 bool use_cache, int n_rows) {
  if (B < 1 || T < 1 || (int64_t)B * T > (1 << 24))
    return chai_error(CHAI_ERR_ARG, "OPT: batch %d x %d tokens is not a valid size", B, T);
  size_t N = (size_t)B * T;
  size_t keys = use_cache ? (size_t)m->kv.capacity : (size_t)T;
  return opt_acts_reserve(m, N, use_cache || !mask ? 0 : N, (size_t)n_rows, keys);
}

chai_status opt_decoder_run(chai_opt_model *m, const int32_t *ids, const int32_t *mask, int B,
                            int T, bool use_cache, const int *rows, int n_rows,
                            const float **feats) {
  const chai_opt_config *c = &m->cfg;
  chai_status st = check_inputs(m, ids, mask, B, T);
  if (st) return st;
  if (!use_cache && (st = opt_heads_request(m, mask, B, T, false))) return st;
  if (!chai_blas_get_info()) return chai_error_context(CHAI_ERR_UNSUPPORTED, "OPT forward");
  int C = c->hidden_size, P = c->word_embed_proj_dim, N = B * T;
  opt_kv *kv = &m->kv;
  /* Positions: cumsum(mask)·mask − 1 over the whole sequence (cached tokens included), + 2. */
  for (int b = 0; b < B; b++) {
    int count = use_cache ? kv->count[b] : 0;
    for (int t = 0; t < T; t++) {
      int real = mask ? mask[b * T + t] : 1;
      count += real;
      if (count > c->max_position_embeddings)
        return chai_error(CHAI_ERR_ARG,
                          "OPT: row %d would hold %d tokens, more than max_position_embeddings %d",
                          b, count, c->max_position_embeddings);
    }
  }
  size_t mask_floats = use_cache || !mask ? 0 : (size_t)N;
  opt_acts *A = &m->acts;
  CHAI_ASSERT(A->storage && A->tokens >= (size_t)N && A->mask_cap >= mask_floats &&
              A->rows >= (size_t)(rows ? n_rows : 0));
  for (int b = 0; b < B; b++) {
    int count = use_cache ? kv->count[b] : 0;
    for (int t = 0; t < T; t++) {
      int real = mask ? mask[b * T + t] : 1;
      count += real;
      A->pos[b * T + t] = real ? count - 1 + 2 : 1;
    }
  }
  const float *keymask = NULL;
  if (mask_floats) {
    for (int i = 0; i < N; i++)
      A->keymask[i] = (float)mask[i];
    keymask = A->keymask;
  }

  /* Embeddings: tokens (through project_in when word_embed_proj_dim != hidden_size) + positions. */
  if (m->project_in) {
    if ((st = opt_gather(A->emb, m->embed_tokens, ids, N, false))) return st;
    linear(m, A->x, A->emb, m->project_in, NULL, N, P, C, false, ACT_NONE);
  } else if ((st = opt_gather(A->x, m->embed_tokens, ids, N, false))) {
    return st;
  }
  if ((st = opt_gather(A->x, m->embed_positions, A->pos, N, true))) return st;

  int L = c->num_hidden_layers;
  /* see last_layer_rows; also when head clustering leaves the last layer dense (an online prompt
   * that fell back computes exactly what the dense model does) */
  bool rows_only = rows && n_rows < N && opt_heads_layer_dense(m, L - 1);
  for (int l = 0; l < L; l++) {
    if (chai_interrupted()) return chai_error(CHAI_ERR_INTERRUPTED, "OPT forward interrupted");
    if (rows_only && l == L - 1)
      st = last_layer_rows(m, l, B, T, use_cache, keymask, rows, n_rows);
    else
      st = layer_forward(m, l, B, T, use_cache, keymask);
    if (st) return st;
  }

  /* Final LayerNorm (pre-LN models) and project_out, row-wise: only on the rows asked for. */
  const float *src = A->x;
  int R = N;
  float *ln_out = A->h, *proj_out = A->emb;
  if (rows) {
    if (!rows_only)
      for (int r = 0; r < n_rows; r++)
        memcpy(A->rowsC + (size_t)r * C, A->x + (size_t)rows[r] * C, (size_t)C * sizeof(float));
    src = A->rowsC;
    R = n_rows;
    ln_out = A->rowsC2;
    proj_out = A->rowsP;
  }
  if (m->final_ln_w) {
    layernorm(ln_out, src, m->final_ln_w, m->final_ln_b, R, C);
    src = ln_out;
  } else if (c->do_layer_norm_before && !c->remove_final_layer_norm) {
    /* elementwise_affine false: a LayerNorm without weights */
    chai_layernorm_forward(ln_out, NULL, NULL, src, NULL, NULL, R, C, LN_EPS);
    src = ln_out;
  }
  if (m->project_out) {
    linear(m, proj_out, src, m->project_out, NULL, R, C, P, false, ACT_NONE);
    src = proj_out;
  }
  *feats = src;
  return CHAI_OK;
}

/* ---- heads ----------------------------------------------------------------------------------- */

chai_status chai_opt_forward(chai_opt_model *m, chai_tensor *logits, const int32_t *ids,
                             const int32_t *mask, int B, int T, bool last_only) {
  logits->storage = NULL;
  if (B < 1 || T < 1) return chai_error(CHAI_ERR_ARG, "OPT forward: empty batch (%d x %d)", B, T);
  int V = m->cfg.vocab_size, P = m->cfg.word_embed_proj_dim;
  chai_status st = opt_acts_reserve_run(m, B, T, mask, false, last_only ? B : 0);
  if (st) return st;
  int *rows = NULL;
  if (last_only) {
    rows = m->acts.rowidx;
    for (int b = 0; b < B; b++)
      rows[b] = b * T + T - 1;
  }
  const float *feats;
  if ((st = opt_decoder_run(m, ids, mask, B, T, false, rows, last_only ? B : 0, &feats))) return st;
  int64_t shape3[3] = {B, T, V}, shape2[2] = {B, V};
  if ((st = chai_tensor_new(logits, CHAI_F32, last_only ? 2 : 3, last_only ? shape2 : shape3)))
    return st;
  linear(m, chai_tensor_data(logits), feats, m->lm_head, NULL, last_only ? B : B * T, P, V, false,
         ACT_NONE);
  return CHAI_OK;
}

chai_status chai_opt_classify(chai_opt_model *m, chai_tensor *scores, const int32_t *ids,
                              const int32_t *mask, int B, int T) {
  scores->storage = NULL;
  if (B < 1 || T < 1) return chai_error(CHAI_ERR_ARG, "OPT classify: empty batch (%d x %d)", B, T);
  int pad = m->cfg.pad_token_id, P = m->cfg.word_embed_proj_dim, NL = m->cfg.num_labels;
  if (pad < 0 && B != 1)
    return chai_error(CHAI_ERR_ARG,
                      "OPT classify: the config has no pad_token_id, so a batch of %d rows cannot "
                      "be classified (Hugging Face refuses it too); pass one row at a time",
                      B);
  chai_status st = opt_acts_reserve_run(m, B, T, mask, false, B);
  if (st) return st;
  int *rows = m->acts.rowidx;
  for (int b = 0; b < B; b++) {
    /* HF: the rightmost token whose id is not pad_token_id; 0 when all are pad. */
    int last = pad < 0 ? T - 1 : 0;
    for (int t = T - 1; pad >= 0 && t >= 0; t--)
      if (ids[b * T + t] != pad) {
        last = t;
        break;
      }
    rows[b] = b * T + last;
  }
  const float *feats;
  if ((st = opt_decoder_run(m, ids, mask, B, T, false, rows, B, &feats))) return st;
  int64_t shape[2] = {B, NL};
  if ((st = chai_tensor_new(scores, CHAI_F32, 2, shape))) return st;
  linear(m, chai_tensor_data(scores), feats, m->score, NULL, B, P, NL, false, ACT_NONE);
  if (!m->score_from_checkpoint && !m->score_warned) {
    opt_warn(&m->warnings, "%s", m->score_note);
    m->score_warned = true;
  }
  return CHAI_OK;
}
