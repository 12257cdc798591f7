/* The OPT forward for training: the same computation as the inference forward (opt_forward.c),
 * but every layer writes its intermediate values to its own slots of the training arena
 * (opt_train.h says which), so that opt_backward.c can walk back through them. f32 only. */
#include <math.h>
#include <string.h>

#include "chai/ops.h"
#include "model/opt_train.h"

static inline const float *W(const opt_param *p) {
  return p ? (const float *)chai_tensor_data(&p->t) : NULL;
}

void opt_train_linear(chai_opt_model *m, float *out, const float *inp, const opt_param *w,
                      const opt_param *b, int N, int C, int OC) {
  if (w->q.format == CHAI_QF_F32) {
    chai_linear_forward(out, inp, W(w), W(b), N, C, OC);
    return;
  }
  /* A frozen f16 or quantized matrix at its dequantized values: the function whose gradient the
   * backward takes (the inference forward also rounds each token's activations to 8 bits for
   * int8/int4, a straight-through step training need not model; see docs/quant.md). */
  chai_qepilogue e = {.bias = W(b)};
  CHAI_ASSERT(chai_qmat_dequant_work_bytes(&w->q) <= m->qwork_bytes);
  chai_status st = chai_qmat_matmul_dequant(out, inp, &w->q, N, &e, m->qwork);
  CHAI_ASSERT(st == CHAI_OK); /* with scratch given, it cannot fail */
}

static void ln(float *out, float *mean, float *rstd, const float *inp, const opt_param *w,
               const opt_param *b, int N, int C) {
  chai_layernorm_forward(out, mean, rstd, inp, W(w), W(b), N, C, OPT_LN_EPS);
}

/* fch = act(fc1(x)) (and fpre = fc1(x) for GELU). */
static void ffn_up(chai_opt_model *m, opt_layer_acts *a, const opt_layer *ly, const float *x,
                   int N) {
  const chai_opt_config *c = &m->cfg;
  int C = c->hidden_size, F = c->ffn_dim;
  if (c->activation_function == CHAI_OPT_ACT_GELU) {
    opt_train_linear(m, a->fpre, x, ly->fc1_w, ly->fc1_b, N, C, F);
    chai_gelu_forward(a->fch, a->fpre, (size_t)N * F);
  } else {
    opt_train_linear(m, a->fch, x, ly->fc1_w, ly->fc1_b, N, C, F);
    chai_relu_forward(a->fch, a->fch, (size_t)N * F);
  }
}

/* res = base + dropout(inp·Wᵀ + b): the residual add after a projection (site 0: out_proj, 1:
 * fc2 of layer l; no dropout when the step's p is 0). */
static void lin_residual(chai_opt_model *m, opt_train *tr, int l, int site, float *res,
                         const float *base, const float *inp, const opt_param *w,
                         const opt_param *b, int N, int C, int OC) {
  opt_train_linear(m, res, inp, w, b, N, C, OC);
  if (tr->dropout > 0) opt_train_dropout(tr, l, site, res, (size_t)N * OC);
  chai_add_forward(res, res, base, (size_t)N * OC);
}

static chai_status layer_forward(chai_opt_model *m, opt_train *tr, int l, float *out) {
  const chai_opt_config *c = &m->cfg;
  const opt_layer *ly = &m->layers[l];
  opt_layer_acts *a = &tr->layer[l];
  int B = tr->B, T = tr->T, N = B * T, C = c->hidden_size, F = c->ffn_dim;
  int D = C / c->num_attention_heads;
  int H = opt_layer_heads(m, l), HD = H * D; /* HD = C unless the model is pruned */
  bool pre = c->do_layer_norm_before;
  const float *in = a->xin;
  if (pre) {
    ln(a->ln1, a->mean1, a->rstd1, a->xin, ly->ln1_w, ly->ln1_b, N, C);
    in = a->ln1;
  }
  opt_train_linear(m, a->q, in, ly->q_w, ly->q_b, N, C, HD);
  opt_train_linear(m, a->k, in, ly->k_w, ly->k_b, N, C, HD);
  opt_train_linear(m, a->v, in, ly->v_w, ly->v_b, N, C, HD);
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
  chai_status st = chai_attention_forward(a->att, a->probs, a->q, a->k, a->v, &args);
  if (st) return st;
  /* Past the attention every op is row-wise: in rows mode the last layer continues on the B rows
   * the head reads (M rows below). */
  const float *att = a->att, *xin = a->xin;
  int M = N;
  if (tr->rows_mode && l == c->num_hidden_layers - 1) {
    for (int r = 0; r < B; r++) {
      memcpy(tr->att_r + (size_t)r * HD, a->att + (size_t)tr->rows[r] * HD,
             (size_t)HD * sizeof(float));
      memcpy(tr->xin_r + (size_t)r * C, a->xin + (size_t)tr->rows[r] * C,
             (size_t)C * sizeof(float));
    }
    att = tr->att_r;
    xin = tr->xin_r;
    M = B;
  }
  lin_residual(m, tr, l, 0, a->res1, xin, att, ly->o_w, ly->o_b, M, HD, C);
  if (pre) {
    ln(a->ln2, a->mean2, a->rstd2, a->res1, ly->ln2_w, ly->ln2_b, M, C);
    ffn_up(m, a, ly, a->ln2, M);
    lin_residual(m, tr, l, 1, out, a->res1, a->fch, ly->fc2_w, ly->fc2_b, M, F, C);
  } else {
    ln(a->ln1, a->mean1, a->rstd1, a->res1, ly->ln1_w, ly->ln1_b, M, C);
    ffn_up(m, a, ly, a->ln1, M);
    lin_residual(m, tr, l, 1, a->ln2, a->ln1, a->fch, ly->fc2_w, ly->fc2_b, M, F, C);
    ln(out, a->mean2, a->rstd2, a->ln2, ly->ln2_w, ly->ln2_b, M, C);
  }
  return CHAI_OK;
}

chai_status opt_train_check_inputs(const chai_opt_model *m, const int32_t *ids, const int32_t *mask,
                                   int B, int T) {
  int N = B * T, V = m->cfg.vocab_size;
  for (int i = 0; i < N; i++) {
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

chai_status opt_train_forward(chai_opt_model *m, opt_train *tr, const int32_t *ids,
                              const int32_t *mask) {
  const chai_opt_config *c = &m->cfg;
  int B = tr->B, T = tr->T, N = B * T, C = c->hidden_size, P = c->word_embed_proj_dim;
  int L = c->num_hidden_layers;
  /* Positions: cumsum(mask)·mask − 1, + 2 (padding gets 1), as Hugging Face. */
  for (int b = 0; b < B; b++) {
    int count = 0;
    for (int t = 0; t < T; t++) {
      int real = mask ? mask[b * T + t] : 1;
      count += real;
      tr->pos[b * T + t] = real ? count - 1 + 2 : 1;
      tr->keymask[b * T + t] = (float)real;
    }
  }
  if (!mask) tr->keymask = NULL; /* all keys valid: let attention skip the mask */
  float *x0 = L > 0 ? tr->layer[0].xin : tr->xL;
  chai_status st;
  if (m->project_in) {
    if ((st = opt_gather(tr->emb, m->embed_tokens, ids, N, false))) return st;
    opt_train_linear(m, x0, tr->emb, m->project_in, NULL, N, P, C);
  } else if ((st = opt_gather(x0, m->embed_tokens, ids, N, false))) {
    return st;
  }
  if ((st = opt_gather(x0, m->embed_positions, tr->pos, N, true))) return st;
  for (int l = 0; l < L; l++) {
    if (chai_interrupted()) return chai_error(CHAI_ERR_INTERRUPTED, "OPT training interrupted");
    float *out = l + 1 < L ? tr->layer[l + 1].xin : tr->xL;
    if ((st = layer_forward(m, tr, l, out))) return st;
  }
  const float *src = tr->xL;
  if (m->final_ln_w || (c->do_layer_norm_before && !c->remove_final_layer_norm)) {
    ln(tr->lnf, tr->meanf, tr->rstdf, tr->xL, m->final_ln_w, m->final_ln_b, N, C);
    src = tr->lnf;
  }
  if (m->project_out)
    opt_train_linear(m, tr->feats, src, m->project_out, NULL, N, C, P);
  else
    memcpy(tr->feats, src, (size_t)N * C * sizeof(float));
  return CHAI_OK;
}
