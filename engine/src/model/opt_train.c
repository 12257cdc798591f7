/* OPT training state: gradient memory, freezing, the arena of saved activations, and
 * chai_opt_forward_backward (forward, loss on the LM or classification head, backward). */
#include <string.h>

#include "chai/blas.h"
#include "chai/memory.h"
#include "chai/ops.h"
#include "chai/rng.h"
#include "model/opt_train.h"

/* ---- state ----------------------------------------------------------------------------------- */

chai_status opt_train_get(chai_opt_model *m, opt_train **out) {
  if (m->train) {
    *out = m->train;
    return CHAI_OK;
  }
  opt_train *tr = chai_alloc(sizeof *tr, "OPT training state");
  if (!tr) return CHAI_ERR_NOMEM;
  memset(tr, 0, sizeof *tr);
  tr->n_params = m->n_params;
  tr->frozen = chai_alloc((size_t)m->n_params * sizeof(bool), "OPT frozen flags");
  tr->grad = chai_alloc((size_t)m->n_params * sizeof(chai_tensor), "OPT gradients");
  tr->layer = chai_alloc((size_t)m->cfg.num_hidden_layers * sizeof(opt_layer_acts),
                         "OPT layer activations");
  if (!tr->frozen || !tr->grad || !tr->layer) {
    m->train = tr;
    opt_train_free(m);
    return CHAI_ERR_NOMEM;
  }
  memset(tr->frozen, 0, (size_t)m->n_params * sizeof(bool));
  memset(tr->grad, 0, (size_t)m->n_params * sizeof(chai_tensor));
  memset(tr->layer, 0, (size_t)m->cfg.num_hidden_layers * sizeof(opt_layer_acts));
  m->train = tr;
  opt_train_freeze_quantized(m);
  *out = tr;
  return CHAI_OK;
}

void opt_train_freeze_quantized(chai_opt_model *m) {
  opt_train *tr = m->train;
  if (!tr) return;
  for (int i = 0; i < m->n_params; i++)
    if (opt_param_quantized(&m->params[i])) {
      tr->frozen[i] = true;
      chai_tensor_release(&tr->grad[i]);
    }
}

void chai_opt_train_release(chai_opt_model *m) {
  opt_train *tr = m->train;
  if (!tr) return;
  if (tr->grad)
    for (int i = 0; i < tr->n_params; i++)
      chai_tensor_release(&tr->grad[i]);
  chai_storage_release(tr->arena);
  tr->arena = NULL;
  tr->B = tr->T = 0;
}

void opt_train_free(chai_opt_model *m) {
  opt_train *tr = m->train;
  if (!tr) return;
  chai_opt_train_release(m);
  if (tr->frozen) chai_free(tr->frozen, (size_t)tr->n_params * sizeof(bool));
  if (tr->grad) chai_free(tr->grad, (size_t)tr->n_params * sizeof(chai_tensor));
  if (tr->layer) chai_free(tr->layer, (size_t)m->cfg.num_hidden_layers * sizeof(opt_layer_acts));
  chai_free(tr, sizeof *tr);
  m->train = NULL;
}

static int param_index(const chai_opt_model *m, const opt_param *p) {
  return (int)(p - m->params);
}

float *opt_grad(const chai_opt_model *m, const opt_param *p) {
  const opt_train *tr = m->train;
  if (!p || !tr) return NULL;
  int i = param_index(m, p);
  if (tr->frozen[i] || !tr->grad[i].storage) return NULL;
  return chai_tensor_data(&tr->grad[i]);
}

/* Gradient memory for every trainable parameter that has none yet. */
static chai_status alloc_grads(chai_opt_model *m, opt_train *tr) {
  for (int i = 0; i < m->n_params; i++) {
    if (tr->frozen[i] || tr->grad[i].storage) continue;
    const opt_param *p = &m->params[i];
    chai_status st = chai_tensor_new(&tr->grad[i], CHAI_F32, p->ndim, p->shape);
    if (st) return chai_error_context(st, "gradient of %s", p->name);
  }
  return CHAI_OK;
}

chai_status chai_opt_alloc_grads(chai_opt_model *m) {
  opt_train *tr;
  chai_status st = opt_train_get(m, &tr);
  return st ? st : alloc_grads(m, tr);
}

int chai_opt_grad_groups(const chai_opt_model *m) {
  return m->cfg.num_hidden_layers + 2;
}

int chai_opt_param_group(const chai_opt_model *m, int i) {
  int layer;
  chai_opt_param_part(m, i, &layer);
  if (layer >= 0) return layer + 1;
  const opt_param *p = &m->params[i];
  if (p == m->final_ln_w || p == m->final_ln_b || p == m->project_out || p == m->score ||
      (p == m->lm_head && m->lm_head != m->embed_tokens))
    return m->cfg.num_hidden_layers + 1;
  return 0; /* embed_tokens (and the lm_head tied to it), embed_positions, project_in */
}

void opt_train_grads_ready(const chai_opt_model *m, opt_train *tr, int group) {
  for (; tr->grads_ready && tr->next_group >= group; tr->next_group--)
    tr->grads_ready(tr->grads_ctx, tr->next_group);
  (void)m;
}

void chai_opt_zero_grad(chai_opt_model *m) {
  opt_train *tr = m->train;
  if (!tr) return;
  for (int i = 0; i < m->n_params; i++) {
    if (!tr->grad[i].storage) continue;
    char *p = chai_tensor_data(&tr->grad[i]);
    size_t bytes = chai_tensor_nbytes(&tr->grad[i]), chunk = (size_t)1 << 20;
    long chunks = (long)((bytes + chunk - 1) / chunk);
    /* large gradients (the embeddings) are cleared by every thread: memory bandwidth adds up */
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long k = 0; k < chunks; k++) {
      size_t off = (size_t)k * chunk;
      memset(p + off, 0, bytes - off < chunk ? bytes - off : chunk);
    }
  }
}

chai_status chai_opt_param_grad(const chai_opt_model *m, int i, chai_tensor *out) {
  out->storage = NULL;
  if (i < 0 || i >= m->n_params)
    return chai_error(CHAI_ERR_ARG, "OPT: parameter index %d outside 0..%d", i, m->n_params - 1);
  const opt_train *tr = m->train;
  if (!tr || !tr->grad[i].storage)
    return chai_error(CHAI_ERR_STATE, "OPT: %s has no gradient (%s)", m->params[i].name,
                      tr && tr->frozen[i] ? "frozen" : "no backward yet");
  chai_tensor_ref(out, &tr->grad[i]);
  return CHAI_OK;
}

void chai_opt_train_memory(const chai_opt_model *m, size_t *grads, size_t *activations) {
  size_t g = 0, a = 0;
  const opt_train *tr = m->train;
  if (tr) {
    for (int i = 0; i < m->n_params; i++)
      if (tr->grad[i].storage) g += chai_tensor_nbytes(&tr->grad[i]);
    a = tr->arena ? tr->arena->bytes : 0;
  }
  if (grads) *grads = g;
  if (activations) *activations = a;
}

/* ---- parts and freezing ---------------------------------------------------------------------- */

chai_status chai_opt_part_parse(const char *name, unsigned *bit) {
  static const struct {
    const char *name;
    unsigned bit;
  } parts[] = {{"embeddings", CHAI_OPT_PART_EMBEDDINGS},
               {"attention", CHAI_OPT_PART_ATTENTION},
               {"ffn", CHAI_OPT_PART_FFN},
               {"norms", CHAI_OPT_PART_NORMS},
               {"head", CHAI_OPT_PART_HEAD}};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    if (name && strcmp(name, parts[i].name) == 0) {
      *bit = parts[i].bit;
      return CHAI_OK;
    }
  return chai_error(CHAI_ERR_ARG,
                    "OPT: unknown part '%s' (known: embeddings, attention, ffn, norms, head)",
                    name ? name : "(null)");
}

unsigned chai_opt_param_part(const chai_opt_model *m, int i, int *layer) {
  const opt_param *p = &m->params[i];
  *layer = -1;
  for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
    const opt_layer *ly = &m->layers[l];
    const opt_param *att[] = {ly->q_w, ly->q_b, ly->k_w, ly->k_b,
                              ly->v_w, ly->v_b, ly->o_w, ly->o_b};
    const opt_param *ffn[] = {ly->fc1_w, ly->fc1_b, ly->fc2_w, ly->fc2_b};
    const opt_param *nrm[] = {ly->ln1_w, ly->ln1_b, ly->ln2_w, ly->ln2_b};
    for (int k = 0; k < 8; k++)
      if (att[k] == p) return *layer = l, CHAI_OPT_PART_ATTENTION;
    for (int k = 0; k < 4; k++) {
      if (ffn[k] == p) return *layer = l, CHAI_OPT_PART_FFN;
      if (nrm[k] == p) return *layer = l, CHAI_OPT_PART_NORMS;
    }
  }
  if (p == m->final_ln_w || p == m->final_ln_b) return CHAI_OPT_PART_NORMS;
  if (p == m->score || (p == m->lm_head && m->lm_head != m->embed_tokens))
    return CHAI_OPT_PART_HEAD;
  return CHAI_OPT_PART_EMBEDDINGS;
}

chai_status chai_opt_freeze(chai_opt_model *m, const int *layers, int n_layers, unsigned parts,
                            bool frozen) {
  int L = m->cfg.num_hidden_layers;
  for (int k = 0; k < n_layers; k++)
    if (layers[k] < 0 || layers[k] >= L)
      return chai_error(CHAI_ERR_ARG, "OPT freeze: layer %d is outside 0..%d", layers[k], L - 1);
  opt_train *tr;
  chai_status st = opt_train_get(m, &tr);
  if (st) return st;
  for (int i = 0; i < m->n_params; i++) {
    int layer;
    unsigned part = chai_opt_param_part(m, i, &layer);
    if (!(part & parts)) continue;
    bool selected = n_layers < 0;
    for (int k = 0; k < n_layers && !selected; k++)
      selected = layers[k] == layer;
    if (!selected) continue;
    if (!frozen && opt_param_quantized(&m->params[i])) continue; /* stays frozen */
    tr->frozen[i] = frozen;
    if (frozen) chai_tensor_release(&tr->grad[i]);
  }
  return CHAI_OK;
}

chai_status chai_opt_freeze_param(chai_opt_model *m, int i, bool frozen) {
  if (i < 0 || i >= m->n_params)
    return chai_error(CHAI_ERR_ARG, "OPT freeze: parameter index %d outside 0..%d", i,
                      m->n_params - 1);
  if (!frozen && opt_param_quantized(&m->params[i]))
    return chai_error(CHAI_ERR_ARG,
                      "OPT unfreeze: %s is quantized (%s) and cannot be trained: training needs "
                      "f32 weights (quantize after training, or keep its layer in f32)",
                      m->params[i].name, chai_qformat_name(m->params[i].q.format));
  opt_train *tr;
  chai_status st = opt_train_get(m, &tr);
  if (st) return st;
  tr->frozen[i] = frozen;
  if (frozen) chai_tensor_release(&tr->grad[i]);
  return CHAI_OK;
}

bool chai_opt_param_frozen(const chai_opt_model *m, int i) {
  return m->train && i >= 0 && i < m->n_params && m->train->frozen[i];
}

bool opt_train_trainable(const chai_opt_model *m, const opt_param *p) {
  return p && m->train && !m->train->frozen[param_index(m, p)];
}

static bool layer_trainable(const chai_opt_model *m, int l) {
  const opt_layer *ly = &m->layers[l];
  const opt_param *ps[] = {ly->ln1_w, ly->ln1_b, ly->q_w,   ly->q_b,  ly->k_w,   ly->k_b,
                           ly->v_w,   ly->v_b,   ly->o_w,   ly->o_b,  ly->ln2_w, ly->ln2_b,
                           ly->fc1_w, ly->fc1_b, ly->fc2_w, ly->fc2_b};
  for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++)
    if (opt_train_trainable(m, ps[k])) return true;
  return false;
}

bool opt_train_need_below(const chai_opt_model *m, int l) {
  if (opt_train_trainable(m, m->embed_tokens) || opt_train_trainable(m, m->embed_positions) ||
      opt_train_trainable(m, m->project_in))
    return true;
  for (int k = 0; k < l; k++)
    if (layer_trainable(m, k)) return true;
  return false;
}

bool opt_train_need_decoder(const chai_opt_model *m) {
  return opt_train_need_below(m, m->cfg.num_hidden_layers) ||
         opt_train_trainable(m, m->final_ln_w) || opt_train_trainable(m, m->final_ln_b) ||
         opt_train_trainable(m, m->project_out);
}

/* ---- the arena ------------------------------------------------------------------------------- */

static size_t r16(size_t n) {
  return (n + 15) & ~(size_t)15;
}

/* Walks the layout once to size it (base NULL) and once to carve it. */
static size_t carve(chai_opt_model *m, opt_train *tr, float *base, int B, int T,
                    chai_opt_head head) {
  const chai_opt_config *c = &m->cfg;
  size_t N = (size_t)B * T, C = (size_t)c->hidden_size, F = (size_t)c->ffn_dim;
  size_t P = (size_t)c->word_embed_proj_dim, H = (size_t)c->num_attention_heads;
  size_t V = (size_t)c->vocab_size, NL = (size_t)c->num_labels;
  bool gelu = c->activation_function == CHAI_OPT_ACT_GELU;
  size_t off = 0;
#define TAKE(ptr, n)                                                                               \
  do {                                                                                             \
    if (base) *(ptr) = base + off;                                                                 \
    off += r16(n);                                                                                 \
  } while (0)
  /* int32 slots: 4-byte elements like the floats around them */
#define TAKE_INT(ptr, type, n)                                                                     \
  do {                                                                                             \
    if (base) *(ptr) = (type *)(void *)(base + off);                                               \
    off += r16(n);                                                                                 \
  } while (0)
  for (int l = 0; l < c->num_hidden_layers; l++) {
    opt_layer_acts *a = &tr->layer[l];
    TAKE(&a->xin, N * C);
    TAKE(&a->ln1, N * C);
    TAKE(&a->mean1, N);
    TAKE(&a->rstd1, N);
    TAKE(&a->q, N * C);
    TAKE(&a->k, N * C);
    TAKE(&a->v, N * C);
    TAKE(&a->probs, (size_t)B * H * T * T);
    TAKE(&a->att, N * C);
    TAKE(&a->res1, N * C);
    TAKE(&a->ln2, N * C);
    TAKE(&a->mean2, N);
    TAKE(&a->rstd2, N);
    if (gelu)
      TAKE(&a->fpre, N * F);
    else if (base)
      a->fpre = NULL;
    TAKE(&a->fch, N * F);
  }
  TAKE(&tr->xL, N * C);
  TAKE(&tr->lnf, N * C);
  TAKE(&tr->meanf, N);
  TAKE(&tr->rstdf, N);
  TAKE(&tr->feats, N * P);
  TAKE(&tr->emb, N * P);
  TAKE(&tr->keymask, N);
  TAKE_INT(&tr->pos, int32_t, N);
  TAKE_INT(&tr->targets, int32_t, N);
  TAKE_INT(&tr->rows, int, (size_t)B);
  TAKE(&tr->rowsP, (size_t)B * P);
  TAKE(&tr->att_r, (size_t)B * C);
  TAKE(&tr->dmask, N * C);
  TAKE(&tr->g_drop, N * C);
  TAKE(&tr->xin_r, (size_t)B * C);
  size_t nlog = head == CHAI_OPT_HEAD_LM ? N * V : (size_t)B * NL;
  TAKE(&tr->logits, nlog);
  TAKE(&tr->dlogits, nlog);
  TAKE(&tr->g_res, N * C);
  TAKE(&tr->g_res2, N * C);
  TAKE(&tr->g_ln, N * C);
  TAKE(&tr->g_q, N * C);
  TAKE(&tr->g_k, N * C);
  TAKE(&tr->g_v, N * C);
  TAKE(&tr->g_att, N * C);
  TAKE(&tr->g_fch, N * F);
  TAKE(&tr->g_fpre, N * F);
  TAKE(&tr->g_feats, N * P);
  TAKE(&tr->g_emb, N * P);
  TAKE(&tr->g_rows, (size_t)B * P);
#undef TAKE
#undef TAKE_INT
  return off;
}

chai_status opt_train_layout(chai_opt_model *m, opt_train *tr, int B, int T, chai_opt_head head) {
  /* frozen f16 or quantized matrices multiply through the quant room's scratch */
  chai_status st = opt_qwork_reserve(m, (size_t)B * T, 0);
  if (st) return st;
  size_t floats = carve(m, tr, NULL, B, T, head);
  if (!tr->arena || tr->arena->bytes < floats * sizeof(float)) {
    chai_storage_release(tr->arena);
    tr->arena = chai_storage_new(floats * sizeof(float));
    if (!tr->arena)
      return chai_error_context(CHAI_ERR_NOMEM, "OPT training activations for %d x %d tokens", B,
                                T);
  }
  carve(m, tr, (float *)tr->arena->data, B, T, head);
  tr->B = B;
  tr->T = T;
  tr->head = head;
  return CHAI_OK;
}

/* ---- dropout ------------------------------------------------------------------------------- */

/* n values over tr->B rows: a shard's rows draw where they sit in the whole batch. */
static void dropout_draws(opt_train *tr, int l, int site, size_t n) {
  uint64_t skip = (uint64_t)tr->first_row * (n / (size_t)tr->B);
  chai_rng r = {.seed = tr->dropout_seed, .counter = (((uint64_t)(2 * l + site)) << 40) + skip};
  chai_rng_fill_uniform(&r, tr->dmask, n, 0.0f, 1.0f);
}

void opt_train_dropout_grad(opt_train *tr, int l, int site, float *out, const float *g, size_t n) {
  dropout_draws(tr, l, site, n);
  float p = tr->dropout, scale = 1.0f / (1.0f - p);
  const float *u = tr->dmask;
#pragma omp parallel for if (n > (1 << 16))
  for (size_t i = 0; i < n; i++)
    out[i] = u[i] >= p ? g[i] * scale : 0.0f;
}

/* Dropout is a diagonal linear map, its own Jacobian: the forward is the backward applied to x. */
void opt_train_dropout(opt_train *tr, int l, int site, float *x, size_t n) {
  opt_train_dropout_grad(tr, l, site, x, x, n);
}

/* ---- forward + loss + backward --------------------------------------------------------------- */

/* The targets of the head, checked (CHAI_ERR_ARG naming the value and its 0-based row). */
static chai_status make_targets(const chai_opt_model *m, opt_train *tr, const chai_opt_batch *b,
                                int *rows_out) {
  int B = b->B, T = b->T;
  if (b->head == CHAI_OPT_HEAD_LM) {
    int V = m->cfg.vocab_size;
    for (int r = 0; r < B; r++)
      for (int t = 0; t < T; t++) {
        int32_t y = -100;
        /* a padding position predicts nothing: its query sees no key, its logits mean nothing */
        if (t + 1 < T && !(b->mask && b->mask[r * T + t] == 0)) {
          int n = r * T + t + 1;
          if (b->labels)
            y = b->labels[n];
          else
            y = b->mask && b->mask[n] == 0 ? -100 : b->ids[n];
        }
        if (y != -100 && (y < 0 || y >= V))
          return chai_error(CHAI_ERR_ARG,
                            "OPT forward_backward: label %d at row %d, position %d (0-based) is "
                            "outside the vocabulary 0..%d (or -100)",
                            (int)y, r, t + 1, V - 1);
        tr->targets[r * T + t] = y;
      }
    *rows_out = B * T;
  } else {
    int NL = m->cfg.num_labels;
    if (!b->labels)
      return chai_error(CHAI_ERR_ARG, "OPT forward_backward: the classify head needs labels");
    for (int r = 0; r < B; r++) {
      int32_t y = b->labels[r];
      if (y != -100 && (y < 0 || y >= NL))
        return chai_error(CHAI_ERR_ARG,
                          "OPT forward_backward: label %d in row %d (0-based) is outside 0..%d",
                          (int)y, r, NL - 1);
      tr->targets[r] = y;
    }
    *rows_out = B;
  }
  return CHAI_OK;
}

static void head_and_decoder_backward(chai_opt_model *m, opt_train *tr, const chai_opt_batch *b,
                                      int V, const opt_param *W);

chai_status chai_opt_forward_backward(chai_opt_model *m, const chai_opt_batch *b,
                                      chai_kd_result *res) {
  const chai_opt_config *c = &m->cfg;
  chai_status hst = opt_heads_check_trainable(m); /* CHAI: pruned or online models */
  if (hst) return hst;
  if (b->B < 1 || b->T < 1 || (int64_t)b->B * b->T > (1 << 24))
    return chai_error(CHAI_ERR_ARG,
                      "OPT forward_backward: batch %d x %d tokens is not a valid size", b->B, b->T);
  if (b->T > c->max_position_embeddings)
    return chai_error(CHAI_ERR_ARG,
                      "OPT forward_backward: %d tokens exceed max_position_embeddings %d", b->T,
                      c->max_position_embeddings);
  if (!(b->dropout >= 0 && b->dropout < 1))
    return chai_error(CHAI_ERR_ARG, "OPT forward_backward: dropout must be in [0, 1), got %g",
                      (double)b->dropout);
  if (b->head != CHAI_OPT_HEAD_LM && b->head != CHAI_OPT_HEAD_CLASSIFY)
    return chai_error(CHAI_ERR_ARG, "OPT forward_backward: unknown head %d", (int)b->head);
  if (b->first_row < 0 || b->loss_count < 0)
    return chai_error(CHAI_ERR_ARG,
                      "OPT forward_backward: first_row %d and loss_count %d must be >= 0",
                      b->first_row, b->loss_count);
  if (b->head == CHAI_OPT_HEAD_CLASSIFY && c->num_labels < 2)
    return chai_error(CHAI_ERR_ARG,
                      "OPT forward_backward: classify needs num_labels >= 2 (regression is not "
                      "supported), the config has %d",
                      c->num_labels);
  if (b->head == CHAI_OPT_HEAD_CLASSIFY && c->pad_token_id < 0 && b->B != 1)
    return chai_error(CHAI_ERR_ARG,
                      "OPT forward_backward: the config has no pad_token_id, so a batch of %d rows "
                      "cannot be classified",
                      b->B);
  if (!chai_blas_get_info()) return chai_error_context(CHAI_ERR_UNSUPPORTED, "OPT training");
  opt_train *tr;
  chai_status st = opt_train_get(m, &tr);
  if (!st) st = opt_train_layout(m, tr, b->B, b->T, b->head);
  if (st) return st;
  int nrows = 0;
  if ((st = opt_train_check_inputs(m, b->ids, b->mask, b->B, b->T))) return st;
  if ((st = make_targets(m, tr, b, &nrows))) return st;
  int B = b->B, T = b->T, P = c->word_embed_proj_dim;
  tr->rows_mode = false;
  tr->dropout = b->dropout;
  tr->dropout_seed = b->dropout_seed;
  tr->first_row = b->first_row;
  tr->grads_ready = NULL; /* set once nothing can fail: the hooks run only on success */
  if (b->head == CHAI_OPT_HEAD_CLASSIFY) {
    int pad = c->pad_token_id;
    for (int r = 0; r < B; r++) { /* HF: the rightmost non-pad token (0 when all are pad) */
      int last = pad < 0 ? T - 1 : 0;
      for (int t = T - 1; pad >= 0 && t >= 0; t--)
        if (b->ids[r * T + t] != pad) {
          last = t;
          break;
        }
      tr->rows[r] = r * T + last;
    }
    tr->rows_mode = c->num_hidden_layers > 0;
  }
  if ((st = opt_train_forward(m, tr, b->ids, b->mask))) return st;
  int V = b->head == CHAI_OPT_HEAD_LM ? c->vocab_size : c->num_labels;
  const opt_param *W = b->head == CHAI_OPT_HEAD_LM ? m->lm_head : m->score;
  const float *hin = tr->feats; /* the head's input rows */
  if (b->head == CHAI_OPT_HEAD_CLASSIFY && !tr->rows_mode) {
    for (int r = 0; r < B; r++)
      memcpy(tr->rowsP + (size_t)r * P, tr->feats + (size_t)tr->rows[r] * P,
             (size_t)P * sizeof(float));
    hin = tr->rowsP;
  }
  opt_train_linear(m, tr->logits, hin, W, NULL, nrows, P, V);
  chai_kd_args ka = {
      .T = 1, .alpha = 0, .label_smoothing = b->label_smoothing, .ignore_index = -100};
  if (b->teacher) {
    ka.T = b->kd_T;
    ka.alpha = b->kd_alpha;
  }
  memset(tr->dlogits, 0, (size_t)nrows * V * sizeof(float));
  chai_kd_result r;
  if ((st = chai_kd_forward_backward(&r, tr->dlogits, tr->logits, b->teacher, tr->targets, NULL,
                                     nrows, V, &ka)))
    return chai_error_context(st, "OPT forward_backward");
  if ((st = alloc_grads(m, tr))) return st;
  if (b->loss_count > 0 && r.count > 0) {
    /* this shard's part of the mean over loss_count rows: (mean over r.count)·r.count/loss_count */
    float share = (float)r.count / (float)b->loss_count;
    if (share != 1.0f) {
      size_t nl = (size_t)nrows * V;
      for (size_t i = 0; i < nl; i++)
        tr->dlogits[i] *= share;
    }
    r.loss *= share;
    r.kl *= share;
    r.ce *= share;
  }
  if (res) *res = r;
  tr->grads_ready = b->grads_ready;
  tr->grads_ctx = b->grads_ctx;
  tr->next_group = chai_opt_grad_groups(m) - 1;
  if (r.count > 0) head_and_decoder_backward(m, tr, b, V, W);
  opt_train_grads_ready(m, tr, 0); /* the groups the backward did not reach */
  tr->grads_ready = NULL;
  return CHAI_OK;
}

/* The head's backward (its weight gradient and the gradient of the decoder's output), then the
 * decoder's. */
static void head_and_decoder_backward(chai_opt_model *m, opt_train *tr, const chai_opt_batch *b,
                                      int V, const opt_param *W) {
  const chai_opt_config *c = &m->cfg;
  int B = b->B, N = B * b->T, P = c->word_embed_proj_dim;
  bool need_feats = opt_train_need_decoder(m);
  if (b->head == CHAI_OPT_HEAD_LM) {
    memset(tr->g_feats, 0, (size_t)N * P * sizeof(float));
    opt_linear_backward(need_feats ? tr->g_feats : NULL, opt_grad(m, W), NULL, tr->dlogits,
                        tr->feats, W, N, P, V);
  } else if (tr->rows_mode) { /* the decoder's output is the B rows */
    memset(tr->g_feats, 0, (size_t)B * P * sizeof(float));
    opt_linear_backward(need_feats ? tr->g_feats : NULL, opt_grad(m, W), NULL, tr->dlogits,
                        tr->feats, W, B, P, V);
  } else {
    memset(tr->g_feats, 0, (size_t)N * P * sizeof(float));
    memset(tr->g_rows, 0, (size_t)B * P * sizeof(float));
    opt_linear_backward(need_feats ? tr->g_rows : NULL, opt_grad(m, W), NULL, tr->dlogits,
                        tr->rowsP, W, B, P, V);
    for (int r2 = 0; r2 < B; r2++)
      chai_add_forward(tr->g_feats + (size_t)tr->rows[r2] * P,
                       tr->g_feats + (size_t)tr->rows[r2] * P, tr->g_rows + (size_t)r2 * P,
                       (size_t)P);
  }
  if (need_feats) opt_train_backward(m, tr, b->ids);
}
