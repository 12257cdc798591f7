/* The OPT backward: explicit per-op backward calls walking the layers in reverse, llm.c style,
 * over the activations opt_train_forward.c kept. Backward kernels accumulate, so every scratch
 * gradient is zeroed before use; parameter gradients accumulate across batches. A frozen
 * parameter's gradient pointer is NULL, which skips its weight-gradient GEMM; below the lowest
 * layer that needs a gradient nothing is computed at all. */
#include <math.h>
#include <string.h>

#include "chai/ops.h"
#include "model/opt_train.h"

static inline const float *W(const opt_param *p) {
  return p ? (const float *)chai_tensor_data(&p->t) : NULL;
}

void opt_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const opt_param *w, int N, int C, int OC) {
  if (w->q.format == CHAI_QF_F32) {
    chai_linear_backward(dinp, dweight, dbias, dout, inp, W(w), N, C, OC);
    return;
  }
  /* f16 and packed matrices are frozen (opt_train_freeze_quantized, forward_backward's check) */
  CHAI_ASSERT(!dweight);
  chai_linear_backward(NULL, NULL, dbias, dout, inp, NULL, N, C, OC);
  if (dinp) chai_qmat_matmul_backward_input(dinp, dout, &w->q, N, true);
}

static void zero(float *p, size_t n) {
  memset(p, 0, n * sizeof(float));
}

/* The FFN's backward over M rows from g_out (the gradient of fc2's output): weight gradients of
 * fc2 and fc1, and (when dx is not NULL) dx += the gradient of fc1's input x. */
static void ffn_backward(chai_opt_model *m, opt_train *tr, int l, int M, const float *g_out,
                         const float *x, float *dx) {
  const chai_opt_config *c = &m->cfg;
  const opt_layer *ly = &m->layers[l];
  opt_layer_acts *a = &tr->layer[l];
  int C = c->hidden_size, F = c->ffn_dim;
  size_t MF = (size_t)M * F;
  zero(tr->g_fch, MF);
  opt_linear_backward(tr->g_fch, opt_grad(m, ly->fc2_w), opt_grad(m, ly->fc2_b), g_out, a->fch,
                      ly->fc2_w, M, F, C);
  const float *g_pre;
  if (c->activation_function == CHAI_OPT_ACT_GELU) {
    zero(tr->g_fpre, MF);
    chai_gelu_backward(tr->g_fpre, tr->g_fch, a->fpre, MF);
    g_pre = tr->g_fpre;
  } else { /* ReLU in place: fch > 0 exactly where fc1's output was > 0 */
    float *g = tr->g_fch;
    const float *h = a->fch;
#pragma omp parallel for if (MF > (1 << 16))
    for (size_t i = 0; i < MF; i++)
      if (!(h[i] > 0)) g[i] = 0;
    g_pre = g;
  }
  opt_linear_backward(dx, opt_grad(m, ly->fc1_w), opt_grad(m, ly->fc1_b), g_pre, x, ly->fc1_w, M, C,
                      F);
}

/* out_proj's backward over M rows from g_out: its weight gradients, and tr->g_att (N,C) = the
 * gradient of the attention output (scattered to the head's rows in rows mode). */
static void out_proj_backward(chai_opt_model *m, opt_train *tr, int l, int M, const float *g_out,
                              bool rows) {
  const opt_layer *ly = &m->layers[l];
  int N = tr->B * tr->T, C = m->cfg.hidden_size;
  int HD = opt_layer_heads(m, l) * (C / m->cfg.num_attention_heads); /* C unless pruned */
  zero(tr->g_att, (size_t)N * HD);
  if (!rows) {
    opt_linear_backward(tr->g_att, opt_grad(m, ly->o_w), opt_grad(m, ly->o_b), g_out,
                         tr->layer[l].att, ly->o_w, N, HD, C);
    return;
  }
  float *g_r = tr->g_q; /* (M,HD) scratch: g_q is filled only later */
  zero(g_r, (size_t)M * HD);
  opt_linear_backward(g_r, opt_grad(m, ly->o_w), opt_grad(m, ly->o_b), g_out, tr->att_r,
                       ly->o_w, M, HD, C);
  for (int r = 0; r < M; r++)
    memcpy(tr->g_att + (size_t)tr->rows[r] * HD, g_r + (size_t)r * HD, (size_t)HD * sizeof(float));
}

/* The attention's backward from tr->g_att: the q/k/v weight gradients and (when dx is not NULL)
 * dx += the gradient of the projections' input x (N,C). */
static void attention_backward(chai_opt_model *m, opt_train *tr, int l, const float *x, float *dx) {
  const chai_opt_config *c = &m->cfg;
  const opt_layer *ly = &m->layers[l];
  opt_layer_acts *a = &tr->layer[l];
  int B = tr->B, T = tr->T, N = B * T, C = c->hidden_size, D = C / c->num_attention_heads;
  int H = opt_layer_heads(m, l), HD = H * D; /* HD = C unless the model is pruned */
  size_t NHD = (size_t)N * HD;
  zero(tr->g_q, NHD);
  zero(tr->g_k, NHD);
  zero(tr->g_v, NHD);
  chai_attention_args args = {.B = B,
                              .Tq = T,
                              .Tk = T,
                              .H = H,
                              .D = D,
                              .q_ts = HD,
                              .k_ts = HD,
                              .v_ts = HD,
                              .scale = 1.0f / sqrtf((float)D),
                              .causal = true,
                              .key_mask = tr->keymask,
                              .score_head = m->score_head ? m->score_head[l] : NULL};
  chai_attention_backward(tr->g_q, tr->g_k, tr->g_v, tr->g_att, a->probs, a->q, a->k, a->v, &args);
  opt_linear_backward(dx, opt_grad(m, ly->q_w), opt_grad(m, ly->q_b), tr->g_q, x, ly->q_w, N, C,
                       HD);
  opt_linear_backward(dx, opt_grad(m, ly->k_w), opt_grad(m, ly->k_b), tr->g_k, x, ly->k_w, N, C,
                       HD);
  opt_linear_backward(dx, opt_grad(m, ly->v_w), opt_grad(m, ly->v_b), tr->g_v, x, ly->v_w, N, C,
                       HD);
}

/* In rows mode, `g` holds the M rows' gradient of the residual stream; this turns it into the
 * (N,C) gradient (zero elsewhere). Uses g_res2 as scratch. */
static void scatter_rows(opt_train *tr, float *g, int M, int N, int C) {
  memcpy(tr->g_res2, g, (size_t)M * C * sizeof(float));
  zero(g, (size_t)N * C);
  for (int r = 0; r < M; r++)
    memcpy(g + (size_t)tr->rows[r] * C, tr->g_res2 + (size_t)r * C, (size_t)C * sizeof(float));
}

/* The gradient of a dropped branch's output, given the gradient g after the dropout: g itself
 * without dropout, else a masked copy in tr->g_drop. */
static const float *dropped(opt_train *tr, int l, int site, const float *g, size_t n) {
  if (!(tr->dropout > 0)) return g;
  opt_train_dropout_grad(tr, l, site, tr->g_drop, g, n);
  return tr->g_drop;
}

static bool any_trainable(const chai_opt_model *m, const opt_param *const *ps, int n) {
  for (int i = 0; i < n; i++)
    if (opt_train_trainable(m, ps[i])) return true;
  return false;
}

/* On entry tr->g_res is the gradient of layer l's output (M rows: N, or the head's B rows in rows
 * mode); on return it is the (N,C) gradient of the layer's input when `need_input` (else it is
 * left undefined). Work that feeds neither a trainable parameter nor that input gradient is
 * skipped. */
static void layer_backward(chai_opt_model *m, opt_train *tr, int l, bool need_input) {
  const chai_opt_config *c = &m->cfg;
  const opt_layer *ly = &m->layers[l];
  opt_layer_acts *a = &tr->layer[l];
  int N = tr->B * tr->T, C = c->hidden_size;
  bool rows = tr->rows_mode && l == c->num_hidden_layers - 1;
  int M = rows ? tr->B : N;
  size_t NC = (size_t)N * C, MC = (size_t)M * C;
  const opt_param *attn[] = {ly->q_w, ly->q_b, ly->k_w, ly->k_b,
                             ly->v_w, ly->v_b, ly->o_w, ly->o_b};
  const opt_param *ln1[] = {ly->ln1_w, ly->ln1_b}, *ln2[] = {ly->ln2_w, ly->ln2_b};
  bool t_attn = any_trainable(m, attn, 8), t_ln1 = any_trainable(m, ln1, 2);
  bool t_ln2 = any_trainable(m, ln2, 2);
  if (c->do_layer_norm_before) {
    /* out = res1 + fc2(act(fc1(LN2(res1)))); res1 = xin + out_proj(attn(LN1(xin))). */
    bool need_res1 = need_input || t_attn || t_ln1;
    if (need_res1 || t_ln2) zero(tr->g_ln, MC);
    ffn_backward(m, tr, l, M, dropped(tr, l, 1, tr->g_res, MC), a->ln2,
                 need_res1 || t_ln2 ? tr->g_ln : NULL);
    if (need_res1 || t_ln2) /* g_res += LN2's input gradient: g_res becomes d res1 */
      chai_layernorm_backward(need_res1 ? tr->g_res : NULL, opt_grad(m, ly->ln2_w),
                              opt_grad(m, ly->ln2_b), tr->g_ln, a->res1, W(ly->ln2_w), a->mean2,
                              a->rstd2, M, C);
    if (!need_res1) return;
    out_proj_backward(m, tr, l, M, dropped(tr, l, 0, tr->g_res, MC), rows);
    if (rows && need_input) scatter_rows(tr, tr->g_res, M, N, C); /* the residual into xin */
    bool need_ln1_out = need_input || t_ln1;
    if (need_ln1_out) zero(tr->g_ln, NC);
    attention_backward(m, tr, l, a->ln1, need_ln1_out ? tr->g_ln : NULL);
    if (need_ln1_out) /* g_res (the residual) += LN1's input gradient: d xin */
      chai_layernorm_backward(need_input ? tr->g_res : NULL, opt_grad(m, ly->ln1_w),
                              opt_grad(m, ly->ln1_b), tr->g_ln, a->xin, W(ly->ln1_w), a->mean1,
                              a->rstd1, N, C);
  } else {
    /* out = LN2(s2), s2 = ln1 + fc2(act(fc1(ln1))); ln1 = LN1(res1), res1 = xin + attn(xin). */
    zero(tr->g_ln, MC);
    chai_layernorm_backward(tr->g_ln, opt_grad(m, ly->ln2_w), opt_grad(m, ly->ln2_b), tr->g_res,
                            a->ln2, W(ly->ln2_w), a->mean2, a->rstd2, M, C);
    bool need_res1 = need_input || t_attn;
    bool need_ln1 = need_res1 || t_ln1;
    if (need_ln1) memcpy(tr->g_res, tr->g_ln, MC * sizeof(float)); /* s2's residual path */
    ffn_backward(m, tr, l, M, dropped(tr, l, 1, tr->g_ln, MC), a->ln1, need_ln1 ? tr->g_res : NULL);
    if (!need_ln1) return;
    if (need_res1) zero(tr->g_ln, MC);
    chai_layernorm_backward(need_res1 ? tr->g_ln : NULL, opt_grad(m, ly->ln1_w),
                            opt_grad(m, ly->ln1_b), tr->g_res, a->res1, W(ly->ln1_w), a->mean1,
                            a->rstd1, M, C);
    if (!need_res1) return;
    out_proj_backward(m, tr, l, M, dropped(tr, l, 0, tr->g_ln, MC), rows);
    if (need_input) { /* res1's residual path into xin */
      memcpy(tr->g_res, tr->g_ln, MC * sizeof(float));
      if (rows) scatter_rows(tr, tr->g_res, M, N, C);
    }
    attention_backward(m, tr, l, a->xin, need_input ? tr->g_res : NULL);
  }
}

/* dtable[idx[n]] += g[n] (rows of `width`), skipping idx == skip (nn.Embedding's padding_idx). A
 * serial scatter: rows may repeat, and the order is fixed. */
static void scatter(float *dtable, const float *g, const int32_t *idx, int N, int width, int skip) {
  if (!dtable) return;
  for (int n = 0; n < N; n++)
    if (idx[n] != skip)
      chai_add_forward(dtable + (size_t)idx[n] * width, dtable + (size_t)idx[n] * width,
                       g + (size_t)n * width, (size_t)width);
}

void opt_train_backward(chai_opt_model *m, opt_train *tr, const int32_t *ids) {
  const chai_opt_config *c = &m->cfg;
  int N = tr->B * tr->T, C = c->hidden_size, P = c->word_embed_proj_dim;
  int L = c->num_hidden_layers;
  int Mf = tr->rows_mode ? tr->B : N; /* rows of the decoder's output */
  size_t NC = (size_t)Mf * C;
  /* feats = project_out(LNf(xL)) (each step optional): g_res becomes d xL. */
  bool final_ln = m->final_ln_w || (c->do_layer_norm_before && !c->remove_final_layer_norm);
  const float *src = final_ln ? tr->lnf : tr->xL;
  bool below = opt_train_need_below(m, L);
  bool need_src = below || (final_ln && (opt_train_trainable(m, m->final_ln_w) ||
                                         opt_train_trainable(m, m->final_ln_b)));
  float *g_src = final_ln ? tr->g_res2 : tr->g_res;
  if (m->project_out) {
    if (need_src) zero(g_src, NC);
    opt_linear_backward(need_src ? g_src : NULL, opt_grad(m, m->project_out), NULL, tr->g_feats,
                        src, m->project_out, Mf, C, P);
  } else {
    memcpy(g_src, tr->g_feats, NC * sizeof(float));
  }
  if (!need_src) return;
  if (final_ln) {
    if (below) zero(tr->g_res, NC);
    chai_layernorm_backward(below ? tr->g_res : NULL, opt_grad(m, m->final_ln_w),
                            opt_grad(m, m->final_ln_b), g_src, tr->xL, W(m->final_ln_w), tr->meanf,
                            tr->rstdf, Mf, C);
  }
  opt_train_grads_ready(m, tr, L + 1); /* the head, the final LayerNorm, project_out */
  if (!below) return;
  for (int l = L - 1; l >= 0; l--) {
    bool need_input = opt_train_need_below(m, l);
    layer_backward(m, tr, l, need_input);
    opt_train_grads_ready(m, tr, l + 1);
    if (!need_input) return;
  }
  /* x0 = project_in(embed_tokens[ids]) + embed_positions[pos] */
  scatter(opt_grad(m, m->embed_positions), tr->g_res, tr->pos, N, C, -1);
  const float *g_tok = tr->g_res;
  if (m->project_in) {
    float *dtok = opt_grad(m, m->embed_tokens);
    if (dtok) zero(tr->g_emb, (size_t)N * P);
    opt_linear_backward(dtok ? tr->g_emb : NULL, opt_grad(m, m->project_in), NULL, tr->g_res,
                        tr->emb, m->project_in, N, P, C);
    g_tok = tr->g_emb;
  }
  scatter(opt_grad(m, m->embed_tokens), g_tok, ids, N, P, c->pad_token_id);
}
