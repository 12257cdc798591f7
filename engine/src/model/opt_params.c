/* OPT parameters: the table of Hugging Face names and shapes, loading from a checkpoint (either key
 * prefix, tied LM head, dtype conversion), random initialisation, and the model's lifetime. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "chai/checkpoint.h"
#include "chai/opt.h"
#include "model/opt_model.h"

#define DEC "model.decoder."

/* ---- the parameter table --------------------------------------------------------------------- */

typedef struct table_builder {
  chai_opt_model *m;
  int n;
} table_builder;

static opt_param *add(table_builder *tb, bool matrix, int64_t rows, int64_t cols, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));

static opt_param *add(table_builder *tb, bool matrix, int64_t rows, int64_t cols, const char *fmt,
                      ...) {
  opt_param *p = &tb->m->params[tb->n++];
  chai_qmat_init(&p->q);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->name, sizeof p->name, fmt, ap);
  va_end(ap);
  p->matrix = matrix;
  p->ndim = cols ? 2 : 1;
  p->shape[0] = rows;
  p->shape[1] = cols;
  return p;
}

chai_status opt_params_build(chai_opt_model *m) {
  const chai_opt_config *c = &m->cfg;
  int L = c->num_hidden_layers;
  int64_t V = c->vocab_size, C = c->hidden_size, F = c->ffn_dim, P = c->word_embed_proj_dim;
  bool proj = P != C, bias = c->enable_bias, aff = c->layer_norm_elementwise_affine;
  bool final_ln = c->do_layer_norm_before && !c->remove_final_layer_norm && aff;
  int max = 8 + L * 16;
  m->params = calloc((size_t)max, sizeof *m->params);
  m->layers = calloc((size_t)L, sizeof *m->layers);
  if (!m->params || !m->layers) return chai_error(CHAI_ERR_NOMEM, "out of memory for OPT params");
  chai_status st = opt_layer_heads_parse(m);
  if (st) return st;
  table_builder tb = {m, 0};
  m->embed_tokens = add(&tb, true, V, P, DEC "embed_tokens.weight");
  m->embed_positions =
      add(&tb, true, (int64_t)c->max_position_embeddings + 2, C, DEC "embed_positions.weight");
  if (proj) {
    m->project_in = add(&tb, true, C, P, DEC "project_in.weight");
    m->project_out = add(&tb, true, P, C, DEC "project_out.weight");
  }
  if (final_ln) {
    m->final_ln_w = add(&tb, false, C, 0, DEC "final_layer_norm.weight");
    m->final_ln_b = add(&tb, false, C, 0, DEC "final_layer_norm.bias");
  }
  for (int l = 0; l < L; l++) {
    opt_layer *ly = &m->layers[l];
    const char *pre = DEC "layers";
    opt_param **w[4] = {&ly->k_w, &ly->v_w, &ly->q_w, &ly->o_w};
    opt_param **b[4] = {&ly->k_b, &ly->v_b, &ly->q_b, &ly->o_b};
    const char *names[4] = {"k_proj", "v_proj", "q_proj", "out_proj"};
    int64_t A = (int64_t)opt_layer_heads(m, l) * (C / c->num_attention_heads); /* C unless pruned */
    for (int i = 0; i < 4; i++) {
      *w[i] = add(&tb, true, i == 3 ? C : A, i == 3 ? A : C, "%s.%d.self_attn.%s.weight", pre, l,
                  names[i]);
      if (bias)
        *b[i] = add(&tb, false, i == 3 ? C : A, 0, "%s.%d.self_attn.%s.bias", pre, l, names[i]);
    }
    if (aff) {
      ly->ln1_w = add(&tb, false, C, 0, "%s.%d.self_attn_layer_norm.weight", pre, l);
      ly->ln1_b = add(&tb, false, C, 0, "%s.%d.self_attn_layer_norm.bias", pre, l);
    }
    ly->fc1_w = add(&tb, true, F, C, "%s.%d.fc1.weight", pre, l);
    if (bias) ly->fc1_b = add(&tb, false, F, 0, "%s.%d.fc1.bias", pre, l);
    ly->fc2_w = add(&tb, true, C, F, "%s.%d.fc2.weight", pre, l);
    if (bias) ly->fc2_b = add(&tb, false, C, 0, "%s.%d.fc2.bias", pre, l);
    if (aff) {
      ly->ln2_w = add(&tb, false, C, 0, "%s.%d.final_layer_norm.weight", pre, l);
      ly->ln2_b = add(&tb, false, C, 0, "%s.%d.final_layer_norm.bias", pre, l);
    }
  }
  m->lm_head = c->tie_word_embeddings ? m->embed_tokens : add(&tb, true, V, P, "lm_head.weight");
  m->score = add(&tb, true, c->num_labels, P, "score.weight");
  m->n_params = tb.n;
  return CHAI_OK;
}

opt_param *opt_param_find(chai_opt_model *m, const char *name) {
  for (int i = 0; i < m->n_params; i++)
    if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
  return NULL;
}

static chai_status model_new(chai_opt_model **out, const chai_opt_config *cfg, chai_dtype dtype) {
  *out = NULL;
  if (dtype != CHAI_F32 && dtype != CHAI_F16 && dtype != CHAI_BF16)
    return chai_error(CHAI_ERR_ARG, "OPT: dtype %s is not supported (f32, f16 or bf16)",
                      chai_dtype_name(dtype));
  chai_opt_model *m = calloc(1, sizeof *m);
  if (!m) return chai_error(CHAI_ERR_NOMEM, "out of memory for an OPT model");
  m->dtype = dtype;
  chai_status st = cfg ? chai_opt_config_copy(&m->cfg, cfg) : CHAI_OK;
  if (!st) st = opt_params_build(m);
  if (st) {
    opt_model_destroy(m);
    return st;
  }
  *out = m;
  return CHAI_OK;
}

void opt_model_destroy(chai_opt_model *m) {
  if (!m) return;
  opt_heads_free(m);
  opt_train_free(m);
  for (int i = 0; i < m->n_params; i++) {
    chai_tensor_release(&m->params[i].t);
    chai_qmat_release(&m->params[i].q);
  }
  free(m->params);
  free(m->layers);
  free(m->layer_heads);
  chai_storage_release(m->acts.storage);
  chai_storage_release(m->kv.storage);
  free(m->kv.k);
  free(m->kv.v);
  free(m->kv.ks);
  free(m->kv.vs);
  if (m->qwork) chai_free(m->qwork, m->qwork_bytes);
  chai_opt_warnings_free(&m->warnings);
  chai_opt_config_free(&m->cfg);
  free(m);
}

void chai_opt_free(chai_opt_model *m) {
  opt_model_destroy(m);
}

/* ---- accessors ------------------------------------------------------------------------------- */

const chai_opt_config *chai_opt_get_config(const chai_opt_model *m) {
  return &m->cfg;
}
chai_dtype chai_opt_dtype(const chai_opt_model *m) {
  return m->dtype;
}
int chai_opt_param_count(const chai_opt_model *m) {
  return m->n_params;
}

const char *chai_opt_param(const chai_opt_model *m, int i, chai_tensor *t) {
  if (i < 0 || i >= m->n_params) return NULL;
  if (t) *t = m->params[i].t;
  return m->params[i].name;
}

int64_t chai_opt_num_parameters(const chai_opt_model *m) {
  int64_t n = 0;
  for (int i = 0; i < m->n_params; i++) {
    const opt_param *p = &m->params[i];
    if (p != m->score || m->score_from_checkpoint)
      n += p->shape[0] * (p->ndim == 2 ? p->shape[1] : 1);
  }
  return n;
}

void chai_opt_memory(const chai_opt_model *m, size_t *weights, size_t *kv_cache,
                     size_t *activations) {
  size_t bytes[CHAI_QF_COUNT], w = 0;
  chai_opt_weight_bytes(m, bytes);
  for (int f = 0; f < CHAI_QF_COUNT; f++)
    w += bytes[f];
  if (weights) *weights = w;
  if (kv_cache) *kv_cache = m->kv.storage ? m->kv.storage->bytes : 0;
  if (activations) *activations = (m->acts.storage ? m->acts.storage->bytes : 0) + m->qwork_bytes;
}

bool chai_opt_score_random(const chai_opt_model *m) {
  return !m->score_from_checkpoint;
}

void chai_opt_score_mark_trained(chai_opt_model *m) {
  m->score_from_checkpoint = true;
}

int chai_opt_warning_count(const chai_opt_model *m) {
  return m->warnings.n;
}
const char *chai_opt_warning(const chai_opt_model *m, int i) {
  return i >= 0 && i < m->warnings.n ? m->warnings.msg[i] : NULL;
}

chai_status chai_opt_clone(chai_opt_model **out, const chai_opt_model *src) {
  chai_opt_model *m;
  chai_status st = model_new(&m, &src->cfg, src->dtype);
  if (st) return st;
  for (int i = 0; i < m->n_params && !st; i++) {
    opt_param *p = &m->params[i];
    const opt_param *s = &src->params[i];
    if (!p->matrix) {
      st = chai_tensor_clone(&p->t, &s->t);
    } else if ((st = chai_qmat_copy(&p->q, &s->q)) == CHAI_OK && !opt_param_packed(p)) {
      chai_tensor_ref(&p->t, &p->q.t);
    }
  }
  if (st) {
    opt_model_destroy(m);
    return st;
  }
  m->kv_format = src->kv_format;
  m->score_from_checkpoint = src->score_from_checkpoint;
  m->score_warned = src->score_warned;
  memcpy(m->score_note, src->score_note, sizeof m->score_note);
  *out = m;
  return CHAI_OK;
}

/* ---- random initialisation ------------------------------------------------------------------- */

static chai_status init_param(chai_opt_model *m, opt_param *p, chai_rng *rng) {
  chai_tensor f;
  chai_status st = chai_tensor_new(&f, CHAI_F32, p->ndim, p->shape);
  if (st) return st;
  float *d = chai_tensor_data(&f);
  size_t n = (size_t)chai_tensor_numel(&f);
  bool ln = strstr(p->name, "layer_norm") != NULL;
  if (p->matrix) {
    chai_rng_fill_normal(rng, d, n, 0.0f, (float)m->cfg.init_std);
    if (p == m->embed_tokens && m->cfg.pad_token_id >= 0) /* nn.Embedding's padding_idx row */
      memset(d + (size_t)m->cfg.pad_token_id * p->shape[1], 0, (size_t)p->shape[1] * 4);
  } else if (ln && strstr(p->name, ".weight")) {
    for (size_t i = 0; i < n; i++)
      d[i] = 1.0f;
  }                                         /* biases stay zero */
  if (p->matrix && m->dtype == CHAI_BF16) { /* bf16 matrices are packed for its dot products */
    chai_qspec spec = opt_quant_spec(CHAI_QF_BF16, NULL);
    st = opt_quant_from_f32(p, d, &spec);
    chai_tensor_release(&f);
    return st;
  }
  if (p->matrix && m->dtype != CHAI_F32) {
    st = chai_tensor_to(&p->t, &f, m->dtype);
    chai_tensor_release(&f);
    return st ? st : opt_param_wrap(p);
  }
  p->t = f;
  return p->matrix ? opt_param_wrap(p) : CHAI_OK;
}

chai_status chai_opt_create(chai_opt_model **out, const chai_opt_config *cfg, chai_dtype dtype,
                            chai_rng *rng) {
  chai_status st = chai_opt_config_validate(cfg, "OPT config");
  if (st) return st;
  chai_opt_model *m;
  if ((st = model_new(&m, cfg, dtype))) return st;
  if (!rng) rng = chai_rng_global();
  for (int i = 0; i < m->n_params && !st; i++)
    st = init_param(m, &m->params[i], rng);
  if (st) {
    opt_model_destroy(m);
    return st;
  }
  m->score_from_checkpoint = true; /* a fresh model's head is as intended: no warning */
  *out = m;
  return CHAI_OK;
}

/* ---- loading --------------------------------------------------------------------------------- */

/* Quantizes a stored matrix straight into `format` (a packed one). */
static chai_status adopt_packed(opt_param *p, const chai_tensor *src, int format,
                                const chai_opt_quant *q, const char *key, const char *origin) {
  chai_tensor tmp = {0};
  const float *w;
  chai_status st;
  if (src->dtype == CHAI_F32 && chai_tensor_is_contiguous(src)) {
    w = chai_tensor_data(src);
  } else {
    if ((st = chai_tensor_to(&tmp, src, CHAI_F32)))
      return chai_error_context(st, "%s: converting %s", origin, key);
    w = chai_tensor_data(&tmp);
  }
  chai_qspec spec = opt_quant_spec(format, q);
  st = opt_quant_from_f32(p, w, &spec);
  chai_tensor_release(&tmp);
  return st ? chai_error_context(st, "%s: quantizing %s", origin, key) : CHAI_OK;
}

/* Converts a stored tensor to what the model keeps: f32 vectors; matrices in the format the
 * quantization plan q gives them, else the model dtype (bf16 packed). An f32 (or already matching)
 * contiguous tensor is referenced, not copied, unless `copy`. */
static chai_status adopt(chai_opt_model *m, opt_param *p, const chai_tensor *src, const char *key,
                         const char *origin, bool copy, const chai_opt_quant *q) {
  int format = p->matrix ? opt_quant_target(m, p, q) : CHAI_OPT_KEEP;
  if (p->matrix && format == CHAI_OPT_KEEP)
    format = m->dtype == CHAI_BF16  ? CHAI_QF_BF16
             : m->dtype == CHAI_F16 ? CHAI_QF_F16
                                    : CHAI_QF_F32;
  chai_dtype want = !p->matrix || format == CHAI_QF_F32 ? CHAI_F32 : CHAI_F16;
  if (src->dtype != CHAI_F32 && src->dtype != CHAI_F16 && src->dtype != CHAI_BF16)
    return chai_error(CHAI_ERR_FORMAT, "%s: %s has dtype %s; OPT weights must be F32, F16 or BF16",
                      origin, key, chai_dtype_name(src->dtype));
  bool same = src->ndim == p->ndim;
  for (int d = 0; same && d < p->ndim; d++)
    same = src->shape[d] == p->shape[d];
  if (!same) {
    char got[64], exp[64];
    return chai_error(CHAI_ERR_FORMAT, "%s: %s has shape %s, expected %s (from config.json)",
                      origin, key, chai_shape_str(src->ndim, src->shape, got, sizeof got),
                      chai_shape_str(p->ndim, p->shape, exp, sizeof exp));
  }
  if (p->matrix && format != CHAI_QF_F32 && format != CHAI_QF_F16)
    return adopt_packed(p, src, format, q, key, origin);
  if (src->dtype == want && chai_tensor_is_contiguous(src) && !copy) {
    chai_tensor_ref(&p->t, src);
  } else {
    chai_status st = chai_tensor_to(&p->t, src, want);
    if (st) return chai_error_context(st, "%s: converting %s", origin, key);
  }
  return p->matrix ? opt_param_wrap(p) : CHAI_OK;
}

/* Whether two stored tensors hold the same values (any float dtypes). */
static bool same_values(const chai_tensor *a, const chai_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  if (a->dtype == b->dtype && chai_tensor_is_contiguous(a) && chai_tensor_is_contiguous(b))
    return memcmp(chai_tensor_data(a), chai_tensor_data(b), chai_tensor_nbytes(a)) == 0;
  int64_t n = chai_tensor_numel(a);
  for (int64_t i = 0; i < n; i++)
    if (chai_tensor_get_flat(a, i) != chai_tensor_get_flat(b, i)) return false;
  return true;
}

/* Appends "name, " to a bounded list for messages. */
static void list_add(char *buf, size_t cap, int *count, const char *name) {
  size_t len = strlen(buf);
  if (*count < 8 && len + strlen(name) + 3 < cap)
    snprintf(buf + len, cap - len, "%s%s", *count ? ", " : "", name);
  else if (*count == 8 && len + 6 < cap)
    snprintf(buf + len, cap - len, ", ...");
  (*count)++;
}

static chai_status load_weights(chai_opt_model *m, chai_checkpoint *ck, const char *origin,
                                chai_rng *rng, bool copy, const chai_opt_quant *q) {
  /* "model.decoder." (OPTForCausalLM, OPTForSequenceClassification) or "decoder." (OPTModel, as
   * facebook/opt-* on the Hub). */
  const char *prefix = NULL;
  int n = chai_checkpoint_count(ck);
  for (int i = 0; i < n && !(prefix && prefix[0] == 'm'); i++) {
    const char *name = chai_checkpoint_name(ck, i);
    if (strncmp(name, DEC, strlen(DEC)) == 0)
      prefix = DEC;
    else if (strncmp(name, "decoder.", 8) == 0)
      prefix = "decoder.";
  }
  if (!prefix)
    return chai_error(CHAI_ERR_FORMAT,
                      "%s: no key starts with \"model.decoder.\" or \"decoder.\"; is this an OPT "
                      "checkpoint?",
                      origin);
  /* A checkpoint chai quantized lists its packed matrices in config.json. */
  cJSON *qc = NULL;
  chai_qformat kv;
  chai_status st = opt_qio_modules(m, origin, &qc, &kv);
  if (!st && qc) st = opt_qio_check_names(m, qc, origin);
  if (!st) m->kv_format = kv;
  char missing[512] = "";
  int n_missing = 0;
  char key[160];
  for (int i = 0; i < m->n_params && !st; i++) {
    opt_param *p = &m->params[i];
    bool in_decoder = strncmp(p->name, DEC, strlen(DEC)) == 0;
    snprintf(key, sizeof key, "%s%s", in_decoder ? prefix : "",
             in_decoder ? p->name + strlen(DEC) : p->name);
    if (!chai_checkpoint_has(ck, key)) {
      if (p == m->score) continue;
      list_add(missing, sizeof missing, &n_missing, key);
      continue;
    }
    bool done = false;
    if (qc && (st = opt_qio_read(p, ck, key, qc, origin, &done))) break;
    if (!done) {
      chai_tensor src;
      if ((st = chai_checkpoint_get(ck, key, &src))) break;
      st = adopt(m, p, &src, key, origin, copy, q);
      chai_tensor_release(&src);
    }
    if (p == m->score && !st) m->score_from_checkpoint = true;
  }
  if (!st && n_missing)
    st = chai_error(CHAI_ERR_FORMAT, "%s: missing %d weight%s: %s", origin, n_missing,
                    n_missing > 1 ? "s" : "", missing);
  /* A stored lm_head.weight next to tied embeddings: HF ties (ignores it); say so if it differs. */
  if (!st && m->cfg.tie_word_embeddings && chai_checkpoint_has(ck, "lm_head.weight")) {
    chai_tensor lm, emb;
    if (!(st = chai_checkpoint_get(ck, "lm_head.weight", &lm))) {
      snprintf(key, sizeof key, "%sembed_tokens.weight", prefix);
      if (!(st = chai_checkpoint_get(ck, key, &emb))) {
        if (!same_values(&lm, &emb))
          opt_warn(&m->warnings,
                   "%s: lm_head.weight differs from %s; tie_word_embeddings is true, so "
                   "lm_head.weight is ignored and the LM head uses the embeddings (as Hugging Face "
                   "does)",
                   origin, key);
        chai_tensor_release(&emb);
      }
      chai_tensor_release(&lm);
    }
  }
  /* Unexpected keys: reported, not fatal (HF warns too). */
  if (!st) {
    char extra[512] = "";
    int n_extra = 0;
    for (int i = 0; i < n; i++) {
      const char *name = chai_checkpoint_name(ck, i);
      bool known = strcmp(name, "lm_head.weight") == 0;
      for (int j = 0; !known && j < m->n_params; j++) {
        const char *pn = m->params[j].name;
        bool in_decoder = strncmp(pn, DEC, strlen(DEC)) == 0;
        snprintf(key, sizeof key, "%s%s", in_decoder ? prefix : "",
                 in_decoder ? pn + strlen(DEC) : pn);
        size_t kl = strlen(key);
        known = strcmp(name, key) == 0 ||
                (opt_qio_listed(qc, pn) && strncmp(name, key, kl) == 0 &&
                 (strcmp(name + kl, "_scale") == 0 || strcmp(name + kl, "_zero_point") == 0));
      }
      if (!known) list_add(extra, sizeof extra, &n_extra, name);
    }
    if (n_extra)
      opt_warn(&m->warnings, "%s: %d unexpected weight%s ignored: %s", origin, n_extra,
               n_extra > 1 ? "s" : "", extra);
  }
  cJSON_Delete(qc);
  if (st) return st;
  if (!m->score_from_checkpoint) {
    /* OPTForSequenceClassification's score: normal(0, init_std), as HF initialises it. */
    uint64_t seed = rng->seed, counter = rng->counter;
    if ((st = init_param(m, m->score, rng))) return st;
    int f = opt_quant_target(m, m->score, q);
    chai_qspec spec = opt_quant_spec(f, q);
    if (f != CHAI_OPT_KEEP && (st = opt_quant_convert(m->score, &spec))) return st;
    snprintf(m->score_note, sizeof m->score_note,
             "%.150s: the checkpoint has no score.weight; the classification head (%d labels) was "
             "initialised randomly (normal, std %g, seed %llu, draw %llu)",
             origin, m->cfg.num_labels, m->cfg.init_std, (unsigned long long)seed,
             (unsigned long long)counter);
  }
  return CHAI_OK;
}

chai_status chai_opt_load(chai_opt_model **out, const char *dir, const chai_opt_load_opts *opts) {
  *out = NULL;
  chai_dtype dtype = opts ? opts->dtype : CHAI_F32;
  chai_rng *rng = opts && opts->rng ? opts->rng : chai_rng_global();
  char path[4096];
  if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
    return chai_error(CHAI_ERR_ARG, "OPT: path too long: %s", dir);
  chai_opt_warnings w = {0};
  chai_opt_config cfg;
  chai_status st = chai_opt_config_load(&cfg, path, &w);
  if (st) {
    chai_opt_warnings_free(&w);
    return st;
  }
  chai_opt_model *m;
  st = model_new(&m, &cfg, dtype);
  chai_opt_config_free(&cfg);
  if (st) {
    chai_opt_warnings_free(&w);
    return st;
  }
  m->warnings = w;
  chai_checkpoint *ck = NULL;
  st = chai_checkpoint_open(&ck, dir);
  if (!st) {
    char origin[4200];
    snprintf(origin, sizeof origin, "%s (%s)", dir, chai_checkpoint_format(ck));
    const chai_opt_quant *q = opts ? opts->quant : NULL;
    if (q && (st = opt_quant_validate(m, q))) {
      chai_checkpoint_close(ck);
      opt_model_destroy(m);
      return st;
    }
    st = load_weights(m, ck, origin, rng, opts && opts->copy_weights, q);
    /* matrices stored quantized kept their formats: the plan changes them now */
    if (!st && q) st = chai_opt_quantize(m, q);
    chai_checkpoint_close(ck);
  }
  if (st) {
    opt_model_destroy(m);
    return st;
  }
  *out = m;
  return CHAI_OK;
}
