/* Quantizing an OPT model's matrices in place: which format each matrix takes under a plan
 * (chai_opt_quant), the conversion of one matrix, and what the model holds by format. The formats
 * and kernels themselves live in the quant room (chai/quant.h). */
#include <string.h>

#include "chai/half.h"
#include "chai/opt.h"
#include "chai/opt_heads.h"
#include "model/opt_model.h"

void chai_opt_quant_init(chai_opt_quant *q) {
  memset(q, 0, sizeof *q);
  q->embeddings = q->lm_head = q->score = q->project_in = q->project_out = CHAI_OPT_KEEP;
  q->kv = CHAI_OPT_KEEP;
  q->layers = NULL;
  q->group = 64;
  q->method = CHAI_QM_RTN;
}

chai_status opt_param_wrap(opt_param *p) {
  chai_qmat_release(&p->q);
  if (!p->matrix || !chai_tensor_alive(&p->t)) return CHAI_OK;
  return chai_qmat_wrap(&p->q, &p->t);
}

/* The format the plan gives p (a chai_qformat, or CHAI_OPT_KEEP). */
int opt_quant_target(const chai_opt_model *m, const opt_param *p, const chai_opt_quant *q) {
  if (!q || !p->matrix) return CHAI_OPT_KEEP;
  if (p == m->embed_tokens) return q->embeddings; /* also the tied LM head: checked by validate */
  if (p == m->embed_positions) return q->embeddings;
  if (p == m->lm_head) return q->lm_head;
  if (p == m->score) return q->score;
  if (p == m->project_in) return q->project_in;
  if (p == m->project_out) return q->project_out;
  if (!q->layers) return CHAI_OPT_KEEP;
  for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
    const opt_layer *ly = &m->layers[l];
    const opt_param *w[CHAI_OPT_LAYER_MATRICES] = {ly->q_w, ly->k_w,   ly->v_w,
                                                   ly->o_w, ly->fc1_w, ly->fc2_w};
    for (int j = 0; j < CHAI_OPT_LAYER_MATRICES; j++)
      if (w[j] == p) return q->layers[l][j];
  }
  return CHAI_OPT_KEEP;
}

static bool known_format(int f) {
  return f == CHAI_OPT_KEEP || (f >= 0 && f < CHAI_QF_COUNT);
}

/* Checks a plan against the model before anything changes. */
chai_status opt_quant_validate(const chai_opt_model *m, const chai_opt_quant *q) {
  if (q->group != 32 && q->group != 64 && q->group != 128)
    return chai_error(CHAI_ERR_ARG, "quantize: group must be 32, 64 or 128, got %d", q->group);
  if (q->method != CHAI_QM_RTN && q->method != CHAI_QM_MSE)
    return chai_error(CHAI_ERR_ARG, "quantize: unknown method %d", (int)q->method);
  if (q->kv != CHAI_OPT_KEEP && q->kv != CHAI_QF_F32 && q->kv != CHAI_QF_INT8)
    return chai_error(CHAI_ERR_ARG, "quantize: the KV cache can be f32 or int8, not %s",
                      known_format(q->kv) ? chai_qformat_name((chai_qformat)q->kv) : "?");
  for (int i = 0; i < m->n_params; i++) {
    int f = opt_quant_target(m, &m->params[i], q);
    if (!known_format(f))
      return chai_error(CHAI_ERR_ARG, "quantize: %s: unknown format %d", m->params[i].name, f);
  }
  if (m->lm_head == m->embed_tokens && q->lm_head != CHAI_OPT_KEEP) {
    int emb = q->embeddings != CHAI_OPT_KEEP ? q->embeddings : (int)m->embed_tokens->q.format;
    if (q->lm_head != emb)
      return chai_error(CHAI_ERR_ARG,
                        "quantize: lm_head %s differs from the embeddings' %s, but the LM head is "
                        "tied to them (tie_word_embeddings): give them one format",
                        chai_qformat_name((chai_qformat)q->lm_head),
                        chai_qformat_name((chai_qformat)emb));
  }
  return CHAI_OK;
}

chai_qspec opt_quant_spec(int format, const chai_opt_quant *q) {
  chai_opt_quant defaults;
  if (!q) {
    chai_opt_quant_init(&defaults);
    q = &defaults;
  }
  return (chai_qspec){.format = (chai_qformat)format,
                      .group = q->group,
                      .zero_point = q->zero_point,
                      .f16_scales = q->f16_scales,
                      .method = q->method};
}

static bool has_spec(const chai_qmat *w, const chai_qspec *s) {
  if (w->format != s->format) return false;
  return s->format != CHAI_QF_INT4 ||
         (w->group == s->group && w->zero_point == s->zero_point && w->f16_scales == s->f16_scales);
}

chai_status opt_quant_from_f32(opt_param *p, const float *w, const chai_qspec *spec) {
  int R = (int)p->shape[0], C = (int)p->shape[1];
  chai_tensor t = {0};
  chai_qmat q;
  chai_qmat_init(&q);
  chai_status st;
  if (spec->format == CHAI_QF_F32 || spec->format == CHAI_QF_F16) {
    int64_t shape[2] = {R, C};
    if ((st = chai_tensor_new(&t, spec->format == CHAI_QF_F32 ? CHAI_F32 : CHAI_F16, 2, shape)))
      return st;
    size_t n = (size_t)R * C;
    if (spec->format == CHAI_QF_F32)
      memcpy(chai_tensor_data(&t), w, n * sizeof(float));
    else
      chai_f32_to_f16_array(chai_tensor_data(&t), w, n);
  } else if ((st = chai_qmat_quantize(&q, w, R, C, spec, p->name))) {
    return st;
  }
  chai_qmat_release(&p->q);
  chai_tensor_release(&p->t);
  if (chai_tensor_alive(&t)) {
    p->t = t;
    return opt_param_wrap(p);
  }
  p->q = q;
  return CHAI_OK;
}

chai_status opt_quant_convert(opt_param *p, const chai_qspec *spec) {
  if (has_spec(&p->q, spec)) return CHAI_OK;
  int R = (int)p->shape[0], C = (int)p->shape[1];
  if (p->q.format == CHAI_QF_F32) /* p->t stays alive until the new matrix replaces it */
    return opt_quant_from_f32(p, chai_tensor_data(&p->t), spec);
  int64_t shape[2] = {R, C};
  chai_tensor f;
  chai_status st = chai_tensor_new(&f, CHAI_F32, 2, shape);
  if (st) return chai_error_context(st, "quantize: %s", p->name);
  chai_qmat_dequant_rows(&p->q, chai_tensor_data(&f), 0, R);
  st = opt_quant_from_f32(p, chai_tensor_data(&f), spec);
  chai_tensor_release(&f);
  return st;
}

chai_status chai_opt_quantize(chai_opt_model *m, const chai_opt_quant *q) {
  chai_status st = opt_quant_validate(m, q);
  if (st) return st;
  bool changed = false;
  for (int i = 0; i < m->n_params && !st; i++) {
    opt_param *p = &m->params[i];
    int f = opt_quant_target(m, p, q);
    if (f == CHAI_OPT_KEEP) continue;
    chai_qspec spec = opt_quant_spec(f, q);
    if (has_spec(&p->q, &spec)) continue;
    st = opt_quant_convert(p, &spec);
    changed = true;
  }
  if (q->kv != CHAI_OPT_KEEP && (chai_qformat)q->kv != m->kv_format) {
    m->kv_format = (chai_qformat)q->kv;
    opt_kv_drop(m); /* its layout changes: the caller begins again */
  }
  if (changed) {
    opt_train_freeze_quantized(m);
    chai_status hs = opt_heads_weights_changed(m);
    if (!st) st = hs;
  }
  return st;
}

chai_qformat chai_opt_param_format(const chai_opt_model *m, int i, chai_qspec *spec) {
  const opt_param *p = &m->params[i];
  chai_qformat f = p->matrix ? p->q.format : CHAI_QF_F32;
  if (spec)
    *spec = (chai_qspec){.format = f,
                         .group = f == CHAI_QF_INT4 ? p->q.group : 0,
                         .zero_point = f == CHAI_QF_INT4 && p->q.zero_point,
                         .f16_scales = f == CHAI_QF_INT4 && p->q.f16_scales,
                         .method = CHAI_QM_RTN};
  return f;
}

const chai_qmat *chai_opt_param_qmat(const chai_opt_model *m, int i) {
  if (i < 0 || i >= m->n_params || !m->params[i].matrix) return NULL;
  return &m->params[i].q;
}

chai_qformat chai_opt_kv_format(const chai_opt_model *m) {
  return m->kv_format;
}

void chai_opt_weight_bytes(const chai_opt_model *m, size_t bytes[CHAI_QF_COUNT]) {
  for (int f = 0; f < CHAI_QF_COUNT; f++)
    bytes[f] = 0;
  for (int i = 0; i < m->n_params; i++) {
    const opt_param *p = &m->params[i];
    if (p->matrix)
      bytes[p->q.format] += chai_qmat_bytes(&p->q);
    else
      bytes[CHAI_QF_F32] += chai_tensor_nbytes(&p->t);
  }
}
