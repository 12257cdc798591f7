/* The OPT backward against PyTorch autograd (tests/fixtures/train/opt_grads, float64 oracle):
 * every parameter's gradient within 1e-4 of the tensor's max-abs and the loss within 1e-5
 * relative, for both variants, both heads, padding on either side, KD and label smoothing, GELU.
 * Then: accumulation and zero_grad, the training forward against the inference forward, freezing
 * (no gradient memory; the other gradients unchanged, bit for bit), errors that leave the
 * gradients untouched, and central differences on micro models (pre-LN and post-LN with
 * project_in/out, and structurally pruned: fewer heads in a layer) against chai's own inference
 * forward. */
#include <math.h>
#include <string.h>

#include "chai/checkpoint.h"
#include "chai/opt_heads.h"
#include "chai/opt_train.h"
#include "train_fixtures.h"

#define GRADS TRAIN_FIXTURES "/opt_grads"

typedef struct batch_buf {
  chai_tensor ids, mask, labels, teacher;
  chai_opt_batch b;
} batch_buf;

static chai_tensor load_opt(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "opt_grads/%s", name);
  return fx_load(path);
}

static void batch_load(batch_buf *bb, const cJSON *c) {
  memset(bb, 0, sizeof *bb);
  bb->ids = load_opt(fx_str(c, "ids"));
  if (cJSON_GetObjectItem(c, "mask")) bb->mask = load_opt(fx_str(c, "mask"));
  if (cJSON_GetObjectItem(c, "labels")) bb->labels = load_opt(fx_str(c, "labels"));
  if (cJSON_GetObjectItem(c, "teacher")) bb->teacher = load_opt(fx_str(c, "teacher"));
  chai_opt_batch *b = &bb->b;
  b->ids = chai_tensor_data(&bb->ids);
  b->mask = bb->mask.storage ? chai_tensor_data(&bb->mask) : NULL;
  b->labels = bb->labels.storage ? chai_tensor_data(&bb->labels) : NULL;
  b->teacher = bb->teacher.storage ? chai_tensor_data(&bb->teacher) : NULL;
  b->B = (int)bb->ids.shape[0];
  b->T = (int)bb->ids.shape[1];
  b->head = strcmp(fx_str(c, "head"), "lm") == 0 ? CHAI_OPT_HEAD_LM : CHAI_OPT_HEAD_CLASSIFY;
  b->kd_T = (float)fx_num(c, "T");
  b->kd_alpha = (float)fx_num(c, "alpha");
  b->label_smoothing = (float)fx_num(c, "label_smoothing");
}

static void batch_free(batch_buf *bb) {
  chai_tensor_release(&bb->ids);
  chai_tensor_release(&bb->mask);
  chai_tensor_release(&bb->labels);
  chai_tensor_release(&bb->teacher);
}

static chai_opt_model *load_model(const char *rel) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/%s", CHAI_TEST_FIXTURES, rel);
  chai_opt_model *m = NULL;
  CHECK_OK(chai_opt_load(&m, dir, NULL));
  return m;
}

/* Every parameter's gradient against the oracle file: max-abs error <= 1e-4 x the tensor's
 * max-abs. A gradient that is exactly zero in exact arithmetic (k_proj.bias: adding a constant to
 * every key of a head shifts each query's scores by one constant, which softmax ignores) has only
 * rounding noise in float, so the tensor's max-abs is floored at 1e-3 x the model's largest. */
static void compare_grads(chai_opt_model *m, const char *case_name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s_grads.safetensors", GRADS, case_name);
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, path));
  if (!ck) return;
  int n = chai_opt_param_count(m), compared = 0;
  double model_max = 0;
  for (int i = 0; i < chai_checkpoint_count(ck); i++) {
    chai_tensor w;
    if (chai_checkpoint_get(ck, chai_checkpoint_name(ck, i), &w)) continue;
    for (int64_t k = 0; k < chai_tensor_numel(&w); k++)
      model_max = fmax(model_max, fabs(((const float *)chai_tensor_data(&w))[k]));
    chai_tensor_release(&w);
  }
  for (int i = 0; i < n; i++) {
    const char *name = chai_opt_param(m, i, NULL);
    chai_tensor want, got;
    if (!chai_checkpoint_has(ck, name)) {
      fprintf(stderr, "%s: no oracle gradient for %s\n", case_name, name);
      CHECK(false);
      continue;
    }
    CHECK_OK(chai_checkpoint_get(ck, name, &want));
    CHECK_OK(chai_opt_param_grad(m, i, &got));
    if (got.storage && want.storage) {
      size_t cnt = (size_t)chai_tensor_numel(&want);
      CHECK(chai_tensor_numel(&got) == (int64_t)cnt);
      const float *g = chai_tensor_data(&got), *w = chai_tensor_data(&want);
      double maxabs = 0, err = 0;
      for (size_t k = 0; k < cnt; k++) {
        maxabs = fmax(maxabs, fabs(w[k]));
        double e = fabs((double)g[k] - w[k]);
        err = e > err || e != e ? e : err;
      }
      double tol = 1e-4 * fmax(maxabs, 1e-3 * model_max);
      if (!(err <= tol))
        fprintf(stderr, "%s: %s max err %g (max-abs %g)\n", case_name, name, err, maxabs);
      CHECK(err <= tol);
      compared++;
    }
    chai_tensor_release(&want);
    chai_tensor_release(&got);
  }
  CHECK(compared == n);
  chai_checkpoint_close(ck);
}

/* Copies of every gradient (for later comparison); NULL entries for parameters without one. */
static float **snapshot(chai_opt_model *m) {
  int n = chai_opt_param_count(m);
  float **s = calloc((size_t)n, sizeof *s);
  for (int i = 0; i < n; i++) {
    chai_tensor g;
    if (chai_opt_param_grad(m, i, &g) != CHAI_OK) continue;
    s[i] = malloc(chai_tensor_nbytes(&g));
    memcpy(s[i], chai_tensor_data(&g), chai_tensor_nbytes(&g));
    chai_tensor_release(&g);
  }
  return s;
}

static void snapshot_free(chai_opt_model *m, float **s) {
  for (int i = 0; i < chai_opt_param_count(m); i++)
    free(s[i]);
  free(s);
}

/* |grad_i − factor·s_i| <= rtol·max|factor·s_i| for every parameter with a gradient (rtol 0:
 * bit-identical). */
static bool grads_equal(chai_opt_model *m, float **s, float factor, double rtol) {
  bool ok = true;
  for (int i = 0; i < chai_opt_param_count(m); i++) {
    chai_tensor g;
    if (chai_opt_param_grad(m, i, &g) != CHAI_OK) continue;
    const float *d = chai_tensor_data(&g);
    int64_t n = chai_tensor_numel(&g);
    double mx = 0;
    for (int64_t k = 0; k < n && s[i]; k++)
      mx = fmax(mx, fabs((double)factor * s[i][k]));
    for (int64_t k = 0; k < n && s[i]; k++) {
      double want = (double)factor * s[i][k];
      if (fabs(d[k] - want) > rtol * fmax(mx, 1e-2)) { /* floor: noise-level gradients */
        fprintf(stderr, "%s[%lld]: %.9g vs %.9g\n", chai_opt_param(m, i, NULL), (long long)k, d[k],
                want);
        ok = false;
        break;
      }
    }
    if (!s[i]) ok = false;
    chai_tensor_release(&g);
  }
  return ok;
}

static void oracle_cases(void) {
  FILE *f = fopen(GRADS "/manifest.json", "rb");
  CHECK(f != NULL);
  if (!f) return;
  char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  cJSON *cases = cJSON_Parse(buf);
  const cJSON *c;
  int count = 0;
  cJSON_ArrayForEach(c, cases) {
    const char *name = fx_str(c, "name");
    chai_opt_model *m = load_model(fx_str(c, "model"));
    if (!m) continue;
    batch_buf bb;
    batch_load(&bb, c);
    chai_kd_result r;
    CHECK_OK(chai_opt_forward_backward(m, &bb.b, &r));
    double want = fx_num(c, "loss");
    if (!(fabs(r.loss - want) <= 1e-5 * fabs(want)))
      fprintf(stderr, "%s: loss %.9g vs %.9g\n", name, r.loss, want);
    CHECK(fabs(r.loss - want) <= 1e-5 * fabs(want));
    if (r.count != (int)fx_num(c, "count"))
      fprintf(stderr, "%s: count %d vs %d\n", name, r.count, (int)fx_num(c, "count"));
    CHECK(r.count == (int)fx_num(c, "count"));
    compare_grads(m, name);

    /* A second call accumulates: every gradient doubles. */
    float **s1 = snapshot(m);
    CHECK_OK(chai_opt_forward_backward(m, &bb.b, &r));
    CHECK(grads_equal(m, s1, 2.0f, 1e-5));
    chai_opt_zero_grad(m);
    CHECK_OK(chai_opt_forward_backward(m, &bb.b, &r));
    CHECK(grads_equal(m, s1, 1.0f, 0));
    snapshot_free(m, s1);

    /* The training forward computes what the inference forward does. */
    if (!bb.b.teacher) {
      chai_tensor out;
      const chai_opt_batch *b = &bb.b;
      float loss;
      if (b->head == CHAI_OPT_HEAD_CLASSIFY) {
        CHECK_OK(chai_opt_classify(m, &out, b->ids, b->mask, b->B, b->T));
        CHECK_OK(chai_cross_entropy_smooth_forward(&loss, NULL, chai_tensor_data(&out), b->labels,
                                                   b->B, (int)out.shape[1], -100,
                                                   b->label_smoothing));
      } else {
        CHECK_OK(chai_opt_forward(m, &out, b->ids, b->mask, b->B, b->T, false));
        int V = (int)out.shape[2], N = b->B * b->T;
        int32_t *tg = malloc((size_t)N * sizeof(int32_t));
        for (int i = 0; i < N; i++) {
          int t = i % b->T;
          int32_t y = -100;
          if (t + 1 < b->T && !(b->mask && !b->mask[i]))
            y = b->labels ? b->labels[i + 1] : (b->mask && !b->mask[i + 1] ? -100 : b->ids[i + 1]);
          tg[i] = y;
        }
        CHECK_OK(chai_cross_entropy_smooth_forward(&loss, NULL, chai_tensor_data(&out), tg, N, V,
                                                   -100, 0));
        free(tg);
      }
      CHECK(fabs(loss - r.loss) <= 1e-6 * fabs(loss));
      chai_tensor_release(&out);
    }
    batch_free(&bb);
    chai_opt_free(m);
    count++;
  }
  CHECK(count == 8);
  cJSON_Delete(cases);
}

/* Freezing: no gradient memory for frozen parameters, the others' gradients bit-identical. */
static void freezing(void) {
  FILE *f = fopen(GRADS "/manifest.json", "rb");
  char buf[1 << 16];
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  buf[n] = 0;
  if (f) fclose(f);
  cJSON *cases = cJSON_Parse(buf);
  const cJSON *c;
  cJSON_ArrayForEach(c, cases) {
    const char *name = fx_str(c, "name");
    if (strcmp(name, "preln_lm_left") && strcmp(name, "postln_cls_left")) continue;
    chai_opt_model *m = load_model(fx_str(c, "model"));
    batch_buf bb;
    batch_load(&bb, c);
    CHECK_OK(chai_opt_forward_backward(m, &bb.b, NULL));
    float **full = snapshot(m);
    size_t g_full, g_frozen;
    chai_opt_train_memory(m, &g_full, NULL);

    int layer0 = 0;
    CHECK_OK(chai_opt_freeze(m, &layer0, 1, CHAI_OPT_PART_ALL, true));
    CHECK_OK(chai_opt_freeze(m, NULL, -1, CHAI_OPT_PART_EMBEDDINGS, true));
    chai_opt_train_memory(m, &g_frozen, NULL);
    CHECK(g_frozen < g_full);
    chai_opt_zero_grad(m);
    CHECK_OK(chai_opt_forward_backward(m, &bb.b, NULL));
    int np = chai_opt_param_count(m), frozen = 0;
    for (int i = 0; i < np; i++) {
      int layer;
      unsigned part = chai_opt_param_part(m, i, &layer);
      bool want_frozen = layer == 0 || part == CHAI_OPT_PART_EMBEDDINGS;
      CHECK(chai_opt_param_frozen(m, i) == want_frozen);
      chai_tensor g;
      if (want_frozen) {
        CHECK_ERR(chai_opt_param_grad(m, i, &g), CHAI_ERR_STATE, "frozen");
        frozen++;
        continue;
      }
      CHECK_OK(chai_opt_param_grad(m, i, &g));
      CHECK(memcmp(chai_tensor_data(&g), full[i], chai_tensor_nbytes(&g)) == 0);
      chai_tensor_release(&g);
    }
    CHECK(frozen > 0);

    /* attention frozen everywhere, the rest trainable */
    CHECK_OK(chai_opt_freeze(m, NULL, -1, CHAI_OPT_PART_ALL, false));
    CHECK_OK(chai_opt_freeze(m, NULL, -1, CHAI_OPT_PART_ATTENTION, true));
    chai_opt_zero_grad(m);
    CHECK_OK(chai_opt_forward_backward(m, &bb.b, NULL));
    for (int i = 0; i < np; i++) {
      int layer;
      bool att = chai_opt_param_part(m, i, &layer) == CHAI_OPT_PART_ATTENTION;
      chai_tensor g;
      if (att) {
        CHECK(chai_opt_param_grad(m, i, &g) == CHAI_ERR_STATE);
        continue;
      }
      CHECK_OK(chai_opt_param_grad(m, i, &g));
      if (g.storage) CHECK(memcmp(chai_tensor_data(&g), full[i], chai_tensor_nbytes(&g)) == 0);
      chai_tensor_release(&g);
    }
    /* everything frozen: nothing to do, and no gradient memory at all */
    CHECK_OK(chai_opt_freeze(m, NULL, -1, CHAI_OPT_PART_ALL, true));
    CHECK_OK(chai_opt_forward_backward(m, &bb.b, NULL));
    chai_opt_train_memory(m, &g_frozen, NULL);
    CHECK(g_frozen == 0);
    /* unfreeze: memory comes back on the next backward, with the full gradients */
    CHECK_OK(chai_opt_freeze(m, NULL, -1, CHAI_OPT_PART_ALL, false));
    CHECK_OK(chai_opt_forward_backward(m, &bb.b, NULL));
    CHECK(grads_equal(m, full, 1.0f, 0));
    /* errors */
    int bad = 7;
    CHECK_ERR(chai_opt_freeze(m, &bad, 1, CHAI_OPT_PART_ALL, true), CHAI_ERR_ARG,
              "layer 7 is outside 0..1");
    unsigned bit;
    CHECK_ERR(chai_opt_part_parse("mlp", &bit), CHAI_ERR_ARG, "unknown part 'mlp'");
    CHECK_OK(chai_opt_part_parse("ffn", &bit));
    CHECK(bit == CHAI_OPT_PART_FFN);
    snapshot_free(m, full);
    batch_free(&bb);
    chai_opt_free(m);
  }
  cJSON_Delete(cases);
}

static void errors(void) {
  chai_opt_model *m = load_model("opt/preln/st");
  if (!m) return;
  int32_t ids[6] = {2, 5, 6, 7, 8, 9}, mask[6] = {1, 1, 1, 1, 1, 1}, lab[2] = {0, 1};
  chai_opt_batch b = {
      .ids = ids, .mask = mask, .B = 2, .T = 3, .head = CHAI_OPT_HEAD_CLASSIFY, .labels = lab};
  CHECK_OK(chai_opt_forward_backward(m, &b, NULL));
  float **s = snapshot(m);
  lab[1] = 3;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG,
            "label 3 in row 1 (0-based) is outside 0..2");
  lab[1] = -1;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG, "label -1 in row 1");
  lab[1] = 1;
  b.labels = NULL;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG, "needs labels");
  b.head = CHAI_OPT_HEAD_LM;
  int32_t lm_labels[6] = {2, 5, 96, 7, 8, 9};
  b.labels = lm_labels;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG,
            "label 96 at row 0, position 2 (0-based) is outside the vocabulary 0..95");
  b.labels = NULL;
  ids[4] = 500;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG, "token id 500 at row 1");
  ids[4] = 8;
  mask[2] = 2;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG, "attention_mask value 2");
  mask[2] = 1;
  b.T = 100;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG,
            "100 tokens exceed max_position_embeddings 64");
  b.T = 3;
  b.head = (chai_opt_head)7;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG, "unknown head 7");
  b.head = CHAI_OPT_HEAD_CLASSIFY;
  b.labels = lab;
  CHECK(grads_equal(m, s, 1.0f, 0)); /* nothing was added by the failed calls */
  /* every label ignored: loss 0, gradients unchanged */
  int32_t ign[2] = {-100, -100};
  b.labels = ign;
  chai_kd_result r;
  CHECK_OK(chai_opt_forward_backward(m, &b, &r));
  CHECK(r.count == 0 && r.loss == 0);
  CHECK(grads_equal(m, s, 1.0f, 0));
  /* allocation failure: an error, the gradients as they were */
  b.labels = lab;
  chai_opt_train_release(m);
  chai_opt_zero_grad(m);
  chai_alloc_fail_after(3);
  chai_status st = chai_opt_forward_backward(m, &b, NULL);
  chai_alloc_fail_after(0);
  CHECK(st == CHAI_ERR_NOMEM);
  snapshot_free(m, s);
  chai_opt_free(m);
  /* An f16 model trains its f32 vectors only: its matrices are frozen (their inputs' gradients
   * still flow), and unfreezing one is refused. */
  char dir[512];
  snprintf(dir, sizeof dir, "%s/opt/preln/st", CHAI_TEST_FIXTURES);
  chai_opt_load_opts lo = {.dtype = CHAI_F16};
  CHECK_OK(chai_opt_load(&m, dir, &lo));
  if (m) {
    CHECK_OK(chai_opt_forward_backward(m, &b, NULL));
    CHECK(chai_opt_param_frozen(m, 0));
    /* a selection unfreezes around the matrix; naming the matrix alone is refused */
    CHECK_OK(chai_opt_freeze(m, NULL, -1, CHAI_OPT_PART_ALL, false));
    CHECK(chai_opt_param_frozen(m, 0));
    CHECK_ERR(chai_opt_freeze_param(m, 0, false), CHAI_ERR_ARG,
              "is quantized (f16) and cannot be trained");
    CHECK(chai_opt_param_frozen(m, 0));
    chai_opt_free(m);
  }
}

/* The loss through the INFERENCE forward, in double from float logits. */
static double inference_loss(chai_opt_model *m, const chai_opt_batch *b) {
  chai_tensor out;
  double loss = NAN;
  if (b->head == CHAI_OPT_HEAD_CLASSIFY) {
    if (chai_opt_classify(m, &out, b->ids, b->mask, b->B, b->T)) return NAN;
    int NL = (int)out.shape[1];
    const float *s = chai_tensor_data(&out);
    double sum = 0;
    for (int r = 0; r < b->B; r++) {
      double mx = -INFINITY, z = 0;
      for (int j = 0; j < NL; j++)
        mx = fmax(mx, s[r * NL + j]);
      for (int j = 0; j < NL; j++)
        z += exp(s[r * NL + j] - mx);
      sum += mx + log(z) - s[r * NL + b->labels[r]];
    }
    loss = sum / b->B;
  } else {
    if (chai_opt_forward(m, &out, b->ids, b->mask, b->B, b->T, false)) return NAN;
    int V = (int)out.shape[2], cnt = 0;
    const float *s = chai_tensor_data(&out);
    double sum = 0;
    for (int r = 0; r < b->B; r++)
      for (int t = 0; t + 1 < b->T; t++) {
        const float *row = s + ((size_t)r * b->T + t) * V;
        int y = b->ids[r * b->T + t + 1];
        double mx = -INFINITY, z = 0;
        for (int j = 0; j < V; j++)
          mx = fmax(mx, row[j]);
        for (int j = 0; j < V; j++)
          z += exp(row[j] - mx);
        sum += mx + log(z) - row[y];
        cnt++;
      }
    loss = sum / cnt;
  }
  chai_tensor_release(&out);
  return loss;
}

/* The micro model of the central-difference checks: pre-LN with word_embed_proj_dim = hidden, or
 * post-LN with a projection; GELU (smooth: no ReLU kink within ±h); large weights so that every
 * path matters. */
static void micro_config(chai_opt_config *cfg, bool pre) {
  chai_opt_config_defaults(cfg);
  cfg->vocab_size = 12;
  cfg->hidden_size = 8;
  cfg->num_hidden_layers = 2;
  cfg->num_attention_heads = 2;
  cfg->ffn_dim = 12;
  cfg->max_position_embeddings = 8;
  cfg->word_embed_proj_dim = pre ? 8 : 4;
  cfg->do_layer_norm_before = pre;
  cfg->activation_function = CHAI_OPT_ACT_GELU;
  cfg->num_labels = 3;
  cfg->init_std = 0.5;
  cfg->pad_token_id = 1;
}

/* Central differences of the inference loss against the backward's gradient, on every element
 * of a micro model with large enough weights that every path matters. */
static void central_differences(bool pre, chai_opt_head head, bool pruned) {
  chai_opt_config cfg;
  micro_config(&cfg, pre);
  if (pruned) cfg.num_attention_heads = 4; /* head_dim 2; layer 1 is pruned to 2 heads below */
  chai_rng rng;
  chai_rng_init(&rng, pre ? 11 : 12);
  chai_opt_model *m;
  CHECK_OK(chai_opt_create(&m, &cfg, CHAI_F32, &rng));
  if (!m) return;
  if (pruned) { /* a structurally pruned model (CHAI prune): layer 1 keeps heads 0 and 2 */
    chai_heads_plan plan;
    int labels[4] = {0, 1, 0, 1};
    chai_heads_dims dims = {2, 4, 1};
    CHECK_OK(chai_heads_plan_init(&plan, 1));
    CHECK_OK(chai_heads_plan_set_labels(&plan, 0, 1, labels, 4));
    CHECK_OK(chai_heads_plan_validate(&plan, &dims));
    chai_opt_model *small = NULL;
    CHECK_OK(chai_opt_prune_heads(&small, m, &plan, 1));
    chai_heads_plan_free(&plan);
    chai_opt_free(m);
    m = small;
    if (!m) return;
    CHECK(chai_opt_layer_heads(m, 0) == 4 && chai_opt_layer_heads(m, 1) == 2);
  }
  /* LayerNorm weights and biases away from 1 and 0, so their gradients are generic */
  for (int i = 0; i < chai_opt_param_count(m); i++) {
    chai_tensor t;
    const char *name = chai_opt_param(m, i, &t);
    if (t.ndim == 1) {
      float *d = chai_tensor_data(&t);
      for (int64_t k = 0; k < t.shape[0]; k++)
        d[k] += 0.3f * chai_rng_uniform(&rng) - 0.15f;
    }
    (void)name;
  }
  int32_t ids[10] = {2, 5, 7, 3, 9, 2, 11, 4, 1, 1}, mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  int32_t labels[2] = {2, 0};
  chai_opt_batch b = {.ids = ids,
                      .mask = mask,
                      .B = 2,
                      .T = 5,
                      .head = head,
                      .labels = head == CHAI_OPT_HEAD_CLASSIFY ? labels : NULL};
  if (head == CHAI_OPT_HEAD_LM) b.mask = NULL; /* every position counts, as inference_loss */
  if (head == CHAI_OPT_HEAD_LM) ids[8] = 6, ids[9] = 8;
  chai_kd_result r;
  CHECK_OK(chai_opt_forward_backward(m, &b, &r));
  CHECK(fabs(r.loss - inference_loss(m, &b)) < 1e-5);
  double worst = 0;
  int checked = 0;
  for (int i = 0; i < chai_opt_param_count(m); i++) {
    chai_tensor t, g;
    const char *name = chai_opt_param(m, i, &t);
    if (chai_opt_param_grad(m, i, &g)) continue;
    float *p = chai_tensor_data(&t);
    const float *gd = chai_tensor_data(&g);
    for (int64_t k = 0; k < chai_tensor_numel(&t); k++) {
      float keep = p[k], h = pruned ? 5e-3f : 1e-2f; /* head_dim 2 curves more: smaller steps */
      p[k] = keep + h;
      double lp = inference_loss(m, &b);
      p[k] = keep - h;
      double lm = inference_loss(m, &b);
      p[k] = keep;
      double num = (lp - lm) / (2.0 * h);
      double err = fabs(num - gd[k]) / fmax(1e-2, fabs(num) + fabs(gd[k]));
      if (err > worst) worst = err;
      if (err > 2e-2)
        fprintf(stderr, "%s %s[%lld]: numeric %g, backward %g\n", pre ? "pre" : "post", name,
                (long long)k, num, gd[k]);
      checked++;
    }
    chai_tensor_release(&g);
  }
  CHECK(worst <= 2e-2);
  CHECK(checked > 1000);
  chai_opt_free(m);
}

/* With dropout the masks are a function of the seed, so the training loss is a deterministic
 * function of the weights: central differences of it (forward_backward's own loss) against its
 * gradient, on a micro model, both heads. */
static void dropout_differences(bool pre, chai_opt_head head) {
  chai_opt_config cfg;
  micro_config(&cfg, pre);
  chai_rng rng;
  chai_rng_init(&rng, 21);
  chai_opt_model *m;
  CHECK_OK(chai_opt_create(&m, &cfg, CHAI_F32, &rng));
  if (!m) return;
  int32_t ids[10] = {2, 5, 7, 3, 9, 2, 11, 4, 1, 1}, mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  int32_t labels[2] = {2, 0};
  chai_opt_batch b = {.ids = ids,
                      .mask = mask,
                      .B = 2,
                      .T = 5,
                      .head = head,
                      .labels = head == CHAI_OPT_HEAD_CLASSIFY ? labels : NULL,
                      .dropout = 0.3f,
                      .dropout_seed = 99};
  chai_kd_result r0, r1, r2;
  b.dropout = 0;
  CHECK_OK(chai_opt_forward_backward(m, &b, &r0));
  b.dropout = 0.3f;
  b.dropout_seed = 98;
  CHECK_OK(chai_opt_forward_backward(m, &b, &r1));
  b.dropout_seed = 99;
  chai_opt_zero_grad(m);
  CHECK_OK(chai_opt_forward_backward(m, &b, &r2));
  CHECK(r1.loss != r2.loss && r0.loss != r2.loss); /* the masks depend on the seed */
  float **g = snapshot(m);
  double worst = 0;
  for (int i = 0; i < chai_opt_param_count(m); i++) {
    chai_tensor t;
    chai_opt_param(m, i, &t);
    float *p = chai_tensor_data(&t);
    for (int64_t k = 0; k < chai_tensor_numel(&t) && g[i]; k += 3) {
      float keep = p[k], h = 1e-2f;
      chai_kd_result rp, rm;
      p[k] = keep + h;
      CHECK_OK(chai_opt_forward_backward(m, &b, &rp));
      p[k] = keep - h;
      CHECK_OK(chai_opt_forward_backward(m, &b, &rm));
      p[k] = keep;
      double num = ((double)rp.loss - rm.loss) / (2.0 * h);
      double err = fabs(num - g[i][k]) / fmax(1e-2, fabs(num) + fabs(g[i][k]));
      worst = fmax(worst, err);
    }
  }
  if (worst > 2e-2) fprintf(stderr, "dropout differences: worst %g\n", worst);
  CHECK(worst <= 2e-2);
  b.dropout = 1.0f;
  CHECK_ERR(chai_opt_forward_backward(m, &b, NULL), CHAI_ERR_ARG,
            "dropout must be in [0, 1), got 1");
  snapshot_free(m, g);
  chai_opt_free(m);
}

int main(void) {
  CHECK_OK(chai_blas_init());
  oracle_cases();
  freezing();
  errors();
  central_differences(true, CHAI_OPT_HEAD_LM, false);
  central_differences(true, CHAI_OPT_HEAD_CLASSIFY, false);
  central_differences(false, CHAI_OPT_HEAD_LM, false);
  central_differences(false, CHAI_OPT_HEAD_CLASSIFY, false);
  central_differences(true, CHAI_OPT_HEAD_CLASSIFY, true);
  central_differences(false, CHAI_OPT_HEAD_LM, true);
  dropout_differences(true, CHAI_OPT_HEAD_LM);
  dropout_differences(false, CHAI_OPT_HEAD_CLASSIFY);
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
