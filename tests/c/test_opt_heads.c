/* CHAI on the tiny OPT fixture models: every head its own cluster equals dense attention; static
 * and online clustering match the float64 PyTorch oracle of the same computation
 * (tests/fixtures/heads/make_chai_fixtures.py); the KV cache path agrees with the full forward; K
 * cache bytes fall (static and online); short online prompts fall back to dense, through the cache
 * too; attention capture. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/chai.h"
#include "chai/npy.h"
#include "chai/opt.h"
#include "chai/opt_heads.h"
#include "chai/opt_train.h"
#include "check.h"

#define FIX CHAI_TEST_FIXTURES

static chai_opt_model *load(const char *name) {
  char dir[512];
  snprintf(dir, sizeof dir, FIX "/opt/%s/st", name);
  chai_opt_model *m = NULL;
  CHECK_OK(chai_opt_load(&m, dir, NULL));
  return m;
}

static chai_tensor npy(const char *path) {
  chai_tensor t = {0};
  CHECK_OK(chai_npy_load(&t, path));
  return t;
}

/* ids/mask as i32 arrays from the opt fixtures. */
static void batch(const char *name, chai_tensor *ids, chai_tensor *mask) {
  char p[512];
  snprintf(p, sizeof p, FIX "/opt/%s/ids_left.npy", name);
  *ids = npy(p);
  snprintf(p, sizeof p, FIX "/opt/%s/mask_left.npy", name);
  *mask = npy(p);
}

/* max |a − b| / max(1, |b|) over positions where mask is 1 (logits (B,T,V)): the f32 engine
 * against a float64 oracle, whose logits reach ~20 (1e-5 there is a few f32 ulps). */
static double masked_rel(const chai_tensor *a, const chai_tensor *b, const int32_t *mask) {
  int64_t B = a->shape[0], T = a->shape[1], V = a->shape[2];
  const float *x = chai_tensor_data(a), *y = chai_tensor_data(b);
  double m = 0;
  for (int64_t i = 0; i < B * T; i++) {
    if (mask && !mask[i]) continue;
    for (int64_t v = 0; v < V; v++) {
      double d = fabs((double)x[i * V + v] - y[i * V + v]) / fmax(1.0, fabs((double)y[i * V + v]));
      if (d > m || d != d) m = d != d ? INFINITY : d;
    }
  }
  return m;
}

/* max |a − b| over positions where mask is 1 (logits (B,T,V)). */
static double masked_diff(const chai_tensor *a, const chai_tensor *b, const int32_t *mask) {
  int64_t B = a->shape[0], T = a->shape[1], V = a->shape[2];
  const float *x = chai_tensor_data(a), *y = chai_tensor_data(b);
  double m = 0;
  for (int64_t i = 0; i < B * T; i++) {
    if (mask && !mask[i]) continue;
    for (int64_t v = 0; v < V; v++) {
      double d = fabs((double)x[i * V + v] - y[i * V + v]);
      if (d > m || d != d) m = d != d ? INFINITY : d;
    }
  }
  return m;
}

/* Dense inference runs the GEMM-blocked attention kernel (model/opt_attention.c), the clustered and
 * capture paths the per-key kernels, so their logits agree to float rounding: 1e-6 relative to the
 * largest logit. */
static double rounding_bound(const chai_tensor *t) {
  const float *x = chai_tensor_data(t);
  double mx = 1;
  for (int64_t i = 0; i < chai_tensor_numel(t); i++)
    if (fabs(x[i]) > mx) mx = fabs(x[i]);
  return 1e-6 * mx;
}

static void identity_equals_dense(const char *name) {
  chai_opt_model *m = load(name);
  if (!m) return;
  chai_tensor ids, mask, dense = {0}, ident = {0};
  batch(name, &ids, &mask);
  int B = (int)ids.shape[0], T = (int)ids.shape[1];
  const int32_t *ip = chai_tensor_data(&ids), *mp = chai_tensor_data(&mask);
  CHECK_OK(chai_opt_forward(m, &dense, ip, mp, B, T, false));
  const chai_opt_config *c = chai_opt_get_config(m);
  int H = c->num_attention_heads, L = c->num_hidden_layers;
  chai_heads_plan plan;
  CHECK_OK(chai_heads_plan_init(&plan, L));
  int heads[64], sizes[64];
  for (int h = 0; h < H; h++)
    heads[h] = h, sizes[h] = 1;
  for (int l = 0; l < L; l++)
    CHECK_OK(chai_heads_plan_set_clusters(&plan, l, l, H, heads, sizes, H));
  CHECK_OK(chai_opt_set_heads(m, &plan, CHAI_HEADS_STATIC));
  CHECK_OK(chai_opt_forward(m, &ident, ip, mp, B, T, false));
  CHECK(masked_diff(&ident, &dense, NULL) <= rounding_bound(&dense));
  /* online with k = H: singletons again */
  chai_tensor one = {0}, oned = {0};
  CHECK_OK(chai_opt_set_heads(m, &plan, CHAI_HEADS_ONLINE));
  CHECK_OK(chai_opt_forward(m, &one, ip, NULL, 1, T, false));
  CHECK(!chai_opt_heads_fallback(m));
  CHECK_OK(chai_opt_set_heads(m, NULL, CHAI_HEADS_DENSE));
  CHECK(chai_opt_get_heads(m, NULL) == NULL);
  CHECK_OK(chai_opt_forward(m, &oned, ip, NULL, 1, T, false));
  CHECK(masked_diff(&one, &oned, NULL) <= rounding_bound(&oned));
  chai_heads_plan_free(&plan);
  chai_tensor_release(&one), chai_tensor_release(&oned);
  chai_tensor_release(&ids), chai_tensor_release(&mask), chai_tensor_release(&dense),
      chai_tensor_release(&ident);
  chai_opt_free(m);
}

static void static_matches_oracle(const char *name) {
  chai_opt_model *m = load(name);
  if (!m) return;
  chai_heads_plan plan;
  CHECK_OK(chai_heads_plan_load(&plan, FIX "/heads/chai_static_plan.json", NULL));
  size_t dense_bytes = chai_opt_kv_bytes_per_token(m);
  CHECK_OK(chai_opt_set_heads(m, &plan, CHAI_HEADS_STATIC));
  const chai_opt_config *c = chai_opt_get_config(m);
  int C = c->hidden_size, D = C / c->num_attention_heads;
  /* layer 0 keeps 3 of 4 heads' K, layer 1 keeps 2: K floats 3D + 2D instead of 2C */
  CHECK(dense_bytes == (size_t)4 * 4 * C);
  CHECK(chai_opt_kv_bytes_per_token(m) == (size_t)4 * (3 * D + 2 * D + 2 * C));
  int K, slot[4];
  CHECK_OK(chai_opt_heads_membership(m, 1, &K, slot));
  CHECK(K == 2 && slot[1] == 0 && slot[0] == 0 && slot[3] == 0 && slot[2] == 1);
  chai_tensor ids, mask, got = {0}, want;
  batch(name, &ids, &mask);
  char p[512];
  snprintf(p, sizeof p, FIX "/heads/chai_static_%s_logits.npy", name);
  want = npy(p);
  int B = (int)ids.shape[0], T = (int)ids.shape[1];
  const int32_t *ip = chai_tensor_data(&ids), *mp = chai_tensor_data(&mask);
  CHECK_OK(chai_opt_forward(m, &got, ip, mp, B, T, false));
  double d = masked_rel(&got, &want, mp);
  if (d > 1e-5) fprintf(stderr, "%s static: max diff %g\n", name, d);
  CHECK(d <= 1e-5);
  /* The KV cache path (K of representatives only): prefill all but the last token, then one
   * step; its logits equal the full forward's last position. */
  int V = c->vocab_size;
  float *step = malloc(sizeof(float) * B * V);
  CHECK_OK(chai_opt_cache_begin(m, B, T));
  size_t w, kvb, acts;
  chai_opt_memory(m, &w, &kvb, &acts);
  CHECK(kvb >= (size_t)B * T * (3 * D + 2 * D + 2 * C) * 4 &&
        kvb < (size_t)B * T * 4 * C * 4 + 4096);
  int32_t *pre = malloc(sizeof(int32_t) * B * T), *pmask = malloc(sizeof(int32_t) * B * T);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T - 1; t++)
      pre[b * (T - 1) + t] = ip[b * T + t], pmask[b * (T - 1) + t] = mp[b * T + t];
  CHECK_OK(chai_opt_cache_step(m, NULL, pre, pmask, B, T - 1));
  int32_t last[8], lmask[8];
  for (int b = 0; b < B; b++)
    last[b] = ip[b * T + T - 1], lmask[b] = mp[b * T + T - 1];
  CHECK_OK(chai_opt_cache_step(m, step, last, lmask, B, 1));
  double md = 0;
  const float *full = chai_tensor_data(&got);
  for (int b = 0; b < B; b++)
    for (int v = 0; v < V; v++)
      md = fmax(md, fabs(step[b * V + v] - full[((size_t)b * T + T - 1) * V + v]));
  CHECK(md <= 1e-5);
  free(step), free(pre), free(pmask);
  chai_heads_plan_free(&plan);
  chai_tensor_release(&ids), chai_tensor_release(&mask), chai_tensor_release(&got),
      chai_tensor_release(&want);
  chai_opt_free(m);
}

static void online_matches_oracle(void) {
  chai_opt_model *m = load("preln");
  if (!m) return;
  chai_heads_plan plan;
  CHECK_OK(chai_heads_plan_load(&plan, FIX "/heads/chai_online_plan.json", NULL));
  CHECK_ERR(chai_opt_set_heads(m, &plan, CHAI_HEADS_STATIC), CHAI_ERR_ARG,
            "static mode needs its clusters");
  CHECK_OK(chai_opt_set_heads(m, &plan, CHAI_HEADS_ONLINE));
  chai_tensor ids = npy(FIX "/heads/chai_online_ids.npy"),
              want = npy(FIX "/heads/chai_online_logits.npy");
  chai_tensor labels = npy(FIX "/heads/chai_online_labels.npy"), got = {0};
  const int32_t *ip = chai_tensor_data(&ids);
  CHECK_OK(chai_opt_forward(m, &got, ip, NULL, 1, 10, false));
  CHECK(!chai_opt_heads_fallback(m));
  CHECK(masked_rel(&got, &want, NULL) <= 1e-5);
  const int32_t *lab = chai_tensor_data(&labels);
  for (int l = 0; l < 2; l++) {
    int K, slot[4];
    CHECK_OK(chai_opt_heads_membership(m, l, &K, slot));
    CHECK(K == (l == 0 ? 2 : 3));
    for (int h = 0; h < 4; h++)
      CHECK(slot[h] == lab[l * 4 + h]);
  }
  /* Generation through the cache: prefill clusters, decode reuses; same as the full forward. */
  chai_opt_generate_opts o;
  chai_opt_generate_defaults(m, &o);
  o.max_new_tokens = 3;
  o.eos_token_id = -1;
  int32_t out[3];
  int n = 0;
  CHECK_OK(chai_opt_generate(m, out, &n, ip, 10, &o));
  CHECK(n == 3);
  int32_t seq[13];
  memcpy(seq, ip, sizeof(int32_t) * 10);
  memcpy(seq + 10, out, sizeof(int32_t) * 2);
  chai_tensor g2 = {0};
  CHECK_OK(chai_opt_forward(m, &g2, seq, NULL, 1, 12, false));
  /* the full forward over 12 tokens clusters from the same first 5, so it predicts the same */
  const float *lg = chai_tensor_data(&g2);
  int V = chai_opt_get_config(m)->vocab_size, best = 0;
  for (int v = 1; v < V; v++)
    if (lg[11 * V + v] > lg[11 * V + best]) best = v;
  CHECK(best == out[2]);
  /* Short prompt: dense fallback, and the same logits as the dense model. */
  chai_tensor s1 = {0}, s2 = {0};
  CHECK_OK(chai_opt_forward(m, &s1, ip, NULL, 1, 5, false));
  CHECK(chai_opt_heads_fallback(m));
  int K;
  CHECK_OK(chai_opt_heads_membership(m, 0, &K, NULL));
  CHECK(K == 0);
  CHECK_OK(chai_opt_set_heads(m, NULL, CHAI_HEADS_DENSE));
  CHECK_OK(chai_opt_forward(m, &s2, ip, NULL, 1, 5, false));
  CHECK(masked_diff(&s1, &s2, NULL) == 0);
  /* Batches are refused in online mode. */
  CHECK_OK(chai_opt_set_heads(m, &plan, CHAI_HEADS_ONLINE));
  int32_t two[20];
  memcpy(two, ip, 40), memcpy(two + 10, ip, 40);
  chai_tensor t2 = {0};
  CHECK_ERR(chai_opt_forward(m, &t2, two, NULL, 2, 10, false), CHAI_ERR_ARG,
            "one prompt at a time");
  chai_tensor_release(&g2), chai_tensor_release(&s1), chai_tensor_release(&s2);
  chai_tensor_release(&ids), chai_tensor_release(&want), chai_tensor_release(&labels),
      chai_tensor_release(&got);
  chai_heads_plan_free(&plan);
  chai_opt_free(m);
}

/* Greedy tokens of `ids` (n) through chai_opt_generate; returns the count. */
static int gen(chai_opt_model *m, int32_t *out, const int32_t *ids, int n, int new_tokens) {
  chai_opt_generate_opts o;
  chai_opt_generate_defaults(m, &o);
  o.max_new_tokens = new_tokens;
  o.eos_token_id = -1;
  int got = 0;
  CHECK_OK(chai_opt_generate(m, out, &got, ids, n, &o));
  return got;
}

static size_t kv_allocated(const chai_opt_model *m) {
  size_t w, kv, acts;
  chai_opt_memory(m, &w, &kv, &acts);
  return kv;
}

/* Online mode keeps K of representatives only, as static mode does: the bytes per token are the
 * static plan's, the allocation falls, and the cache path gives the full forward's logits. A
 * prompt of < 6 real tokens re-lays the cache out at full width and runs exactly dense; prompts
 * alternating between the two layouts generate what fresh models do. */
static void online_compact_cache(void) {
  chai_opt_model *m = load("preln");
  if (!m) return;
  const chai_opt_config *c = chai_opt_get_config(m);
  int C = c->hidden_size, D = C / c->num_attention_heads, V = c->vocab_size;
  chai_heads_plan online, same_k;
  CHECK_OK(chai_heads_plan_load(&online, FIX "/heads/chai_online_plan.json", NULL));
  /* a static plan with the online plan's k: 2 in layer 0, 3 in layer 1 */
  CHECK_OK(chai_heads_plan_init(&same_k, 2));
  CHECK_OK(chai_heads_plan_set_clusters(&same_k, 0, 0, 4, (int[]){0, 1, 2, 3}, (int[]){2, 2}, 2));
  CHECK_OK(
      chai_heads_plan_set_clusters(&same_k, 1, 1, 4, (int[]){0, 1, 2, 3}, (int[]){2, 1, 1}, 3));
  chai_tensor idt = npy(FIX "/heads/chai_online_ids.npy");
  const int32_t *ip = chai_tensor_data(&idt); /* 10 tokens */
  int32_t dense_out[4], out[4];
  CHECK(gen(m, dense_out, ip, 10, 4) == 4);
  size_t dense_alloc = kv_allocated(m);
  CHECK_OK(chai_opt_set_heads(m, &same_k, CHAI_HEADS_STATIC));
  size_t static_bpt = chai_opt_kv_bytes_per_token(m);
  CHECK(kv_allocated(m) == 0); /* set_heads drops the cache and its bytes */
  CHECK(gen(m, out, ip, 10, 4) == 4);
  size_t static_alloc = kv_allocated(m);
  CHECK_OK(chai_opt_set_heads(m, &online, CHAI_HEADS_ONLINE));
  CHECK(chai_opt_kv_bytes_per_token(m) == static_bpt);
  CHECK(static_bpt == (size_t)4 * (2 * D + 3 * D + 2 * C));
  CHECK(gen(m, out, ip, 10, 4) == 4 && !chai_opt_heads_fallback(m));
  size_t online_alloc = kv_allocated(m);
  /* 13 cached tokens: K+V floats of every layer, the key mask, one count */
  CHECK(online_alloc == static_alloc &&
        online_alloc == (size_t)(13 * (5 * D + 2 * C) + 13 + 1) * 4);
  CHECK(online_alloc < dense_alloc && dense_alloc == (size_t)(13 * 4 * C + 13 + 1) * 4);

  /* The compact cache path: prefill 9 tokens, one step = the full forward's last position. */
  chai_tensor full = {0};
  CHECK_OK(chai_opt_forward(m, &full, ip, NULL, 1, 10, false));
  float *step = malloc(sizeof(float) * V), *step_dense = malloc(sizeof(float) * V);
  CHECK_OK(chai_opt_cache_begin(m, 1, 11));
  CHECK_OK(chai_opt_cache_step(m, NULL, ip, NULL, 1, 9));
  CHECK(!chai_opt_heads_fallback(m));
  CHECK_OK(chai_opt_cache_step(m, step, ip + 9, NULL, 1, 1));
  CHECK(chai_test_max_abs_diff_f(step, (const float *)chai_tensor_data(&full) + 9 * V, V) <= 1e-5);
  /* An uncached call in between replaces the cache's membership: its next step is refused. */
  chai_tensor other = {0};
  CHECK_OK(chai_opt_forward(m, &other, ip, NULL, 1, 4, false));
  CHECK(chai_opt_heads_fallback(m));
  CHECK_ERR(chai_opt_cache_step(m, step, ip, NULL, 1, 1), CHAI_ERR_STATE, "begin the cache again");
  /* Online batches are refused through the cache too. */
  CHECK_OK(chai_opt_cache_begin(m, 2, 10));
  int32_t two[10] = {0};
  memcpy(two, ip, sizeof(int32_t) * 5), memcpy(two + 5, ip, sizeof(int32_t) * 5);
  CHECK_ERR(chai_opt_cache_step(m, NULL, two, NULL, 2, 5), CHAI_ERR_ARG, "one prompt at a time");

  /* A 5-token prompt (a padded one too) falls back: the cache is re-laid out at full width and its
   * logits equal the dense model's, prefill and decode. */
  chai_opt_model *d = load("preln");
  int32_t pad_ids[7] = {1, 1, ip[0], ip[1], ip[2], ip[3], ip[4]};
  int32_t pad_mask[7] = {0, 0, 1, 1, 1, 1, 1};
  for (int padded = 0; padded < 2 && d; padded++) {
    const int32_t *pi = padded ? pad_ids : ip, *pm = padded ? pad_mask : NULL;
    int n = padded ? 7 : 5;
    CHECK_OK(chai_opt_cache_begin(m, 1, 10));
    CHECK_OK(chai_opt_cache_begin(d, 1, 10));
    CHECK_OK(chai_opt_cache_step(m, step, pi, pm, 1, n));
    CHECK(chai_opt_heads_fallback(m));
    CHECK(kv_allocated(m) >= (size_t)(10 * 4 * C + 10 + 1) * 4);
    CHECK_OK(chai_opt_cache_step(d, step_dense, pi, pm, 1, n));
    CHECK(chai_test_max_abs_diff_f(step, step_dense, V) == 0);
    CHECK_OK(chai_opt_cache_step(m, step, ip + 5, NULL, 1, 1));
    CHECK_OK(chai_opt_cache_step(d, step_dense, ip + 5, NULL, 1, 1));
    CHECK(chai_test_max_abs_diff_f(step, step_dense, V) == 0);
  }
  /* classify of a short prompt: the dense model's scores, bit for bit */
  chai_tensor cs = {0}, cd = {0};
  CHECK_OK(chai_opt_classify(m, &cs, ip, NULL, 1, 5));
  CHECK(chai_opt_heads_fallback(m));
  if (d) CHECK_OK(chai_opt_classify(d, &cd, ip, NULL, 1, 5));
  CHECK(chai_tensor_alive(&cs) && chai_tensor_alive(&cd) &&
        memcmp(chai_tensor_data(&cs), chai_tensor_data(&cd), sizeof(float) * cs.shape[1]) == 0);
  chai_tensor_release(&cs), chai_tensor_release(&cd);
  /* Long, short, long, short, long through one model = each on a fresh model; short = dense. */
  const int32_t *prompts[5] = {ip, ip + 2, ip + 1, ip + 3, ip};
  int lens[5] = {10, 4, 8, 5, 7};
  for (int i = 0; i < 5; i++) {
    int32_t fresh_out[4];
    CHECK(gen(m, out, prompts[i], lens[i], 4) == 4);
    CHECK(chai_opt_heads_fallback(m) == (lens[i] < 6));
    chai_opt_model *f = load("preln");
    if (!f) break;
    CHECK_OK(chai_opt_set_heads(f, &online, CHAI_HEADS_ONLINE));
    CHECK(gen(f, fresh_out, prompts[i], lens[i], 4) == 4);
    CHECK(memcmp(out, fresh_out, sizeof out) == 0);
    if (lens[i] < 6 && d) {
      CHECK(gen(d, fresh_out, prompts[i], lens[i], 4) == 4);
      CHECK(memcmp(out, fresh_out, sizeof out) == 0);
    }
    chai_opt_free(f);
  }
  free(step), free(step_dense);
  chai_tensor_release(&full), chai_tensor_release(&other), chai_tensor_release(&idt);
  chai_heads_plan_free(&online), chai_heads_plan_free(&same_k);
  chai_opt_free(d);
  chai_opt_free(m);
}

static void capture(void) {
  chai_opt_model *m = load("preln");
  if (!m) return;
  CHECK_OK(chai_opt_capture_begin(m, 8));
  int32_t ids[6] = {5, 9, 17, 33, 4, 60};
  chai_tensor out = {0}, dense = {0};
  CHECK_OK(chai_opt_forward(m, &out, ids, NULL, 1, 6, false));
  int T = 0;
  const float *rows = chai_opt_capture_rows(m, &T, NULL);
  CHECK(T == 6 && rows);
  for (int lh = 0; lh < 2 * 4; lh++) {
    double s = 0;
    for (int j = 0; j < 8; j++)
      s += rows[lh * 8 + j];
    CHECK_CLOSE(s, 1.0, 1e-5);
    CHECK(rows[lh * 8 + 6] == 0 && rows[lh * 8 + 7] == 0);
  }
  CHECK_ERR(chai_opt_forward(m, &dense, ids, NULL, 2, 3, false), CHAI_ERR_ARG, "one row");
  chai_opt_capture_end(m);
  CHECK_OK(chai_opt_forward(m, &dense, ids, NULL, 1, 6, false));
  CHECK(masked_diff(&out, &dense, NULL) <= rounding_bound(&dense)); /* capture changes nothing */
  chai_tensor_release(&out), chai_tensor_release(&dense);
  chai_opt_free(m);
}

/* Pruning keep=1 with the static plan: layer 0 keeps heads {0,1,3}, layer 1 keeps {1,2}. The
 * oracle is the original model with the dropped heads' out_proj columns zeroed (which removes
 * exactly their contribution). */
static void prune(void) {
  chai_opt_model *m = NULL, *p = NULL, *back = NULL, *twice = NULL;
  CHECK_OK(chai_opt_load(&m, FIX "/opt/preln/bin", NULL)); /* fp16 storages: f32 copies we own */
  if (!m) return;
  chai_heads_plan plan, online;
  CHECK_OK(chai_heads_plan_load(&plan, FIX "/heads/chai_static_plan.json", NULL));
  CHECK_OK(chai_opt_prune_heads(&p, m, &plan, 1));
  if (!p) return;
  CHECK(chai_opt_layer_heads(p, 0) == 3 && chai_opt_layer_heads(p, 1) == 2);
  const chai_opt_config *c = chai_opt_get_config(m);
  int C = c->hidden_size, D = C / c->num_attention_heads;
  CHECK(chai_opt_kv_bytes_per_token(p) == (size_t)4 * (2 * 3 * D + 2 * 2 * D));
  CHECK(chai_opt_num_parameters(p) < chai_opt_num_parameters(m));
  chai_tensor ids, mask, got = {0}, want = {0}, again = {0};
  batch("preln", &ids, &mask);
  int B = (int)ids.shape[0], T = (int)ids.shape[1];
  const int32_t *ip = chai_tensor_data(&ids), *mp = chai_tensor_data(&mask);
  CHECK_OK(chai_opt_forward(p, &got, ip, mp, B, T, false));
  int dropped[2][4] = {{0, 0, 1, 0}, {1, 0, 0, 1}};
  for (int i = 0; i < chai_opt_param_count(m); i++) {
    chai_tensor t;
    const char *name = chai_opt_param(m, i, &t);
    for (int l = 0; l < 2; l++) {
      char want_name[96];
      snprintf(want_name, sizeof want_name, "model.decoder.layers.%d.self_attn.out_proj.weight", l);
      if (strcmp(name, want_name)) continue;
      float *w = chai_tensor_data(&t);
      for (int r = 0; r < C; r++)
        for (int h = 0; h < 4; h++)
          if (dropped[l][h]) memset(w + (size_t)r * C + h * D, 0, sizeof(float) * D);
    }
  }
  CHECK_OK(chai_opt_forward(m, &want, ip, mp, B, T, false));
  CHECK(masked_diff(&got, &want, mp) <= 1e-5);
  /* The smaller model saves and loads as a normal checkpoint. */
  const char *dir = "/tmp/chai_test_pruned_model";
  CHECK_OK(chai_opt_save(p, dir));
  CHECK_OK(chai_opt_load(&back, dir, NULL));
  if (back) {
    CHECK(chai_opt_layer_heads(back, 0) == 3 && chai_opt_layer_heads(back, 1) == 2);
    CHECK_OK(chai_opt_forward(back, &again, ip, mp, B, T, false));
    CHECK(masked_diff(&again, &got, NULL) <= 1e-6);
    /* and decodes through its (smaller) KV cache like its full forward */
    int V = c->vocab_size;
    float *step = malloc(sizeof(float) * V);
    int32_t pre[6] = {2, 40, 41, 50, 7, 9};
    chai_tensor full = {0};
    CHECK_OK(chai_opt_forward(back, &full, pre, NULL, 1, 6, false));
    CHECK_OK(chai_opt_cache_begin(back, 1, 8));
    CHECK_OK(chai_opt_cache_step(back, NULL, pre, NULL, 1, 5));
    CHECK_OK(chai_opt_cache_step(back, step, pre + 5, NULL, 1, 1));
    CHECK(chai_test_max_abs_diff_f(step, (const float *)chai_tensor_data(&full) + 5 * V, V) <=
          1e-5);
    free(step);
    chai_tensor_release(&full);
    CHECK_ERR(chai_opt_set_heads(back, &plan, CHAI_HEADS_STATIC), CHAI_ERR_UNSUPPORTED, "pruned");
    CHECK_ERR(chai_opt_prune_heads(&twice, back, &plan, 1), CHAI_ERR_UNSUPPORTED, "already pruned");
  }
  FILE *f = fopen("/tmp/chai_test_pruned_model/config.json", "rb");
  char buf[4096] = {0};
  if (f) {
    CHECK(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
  }
  CHECK(strstr(buf, "\"chai_attention_heads\"") != NULL);
  /* keep >= every cluster size: nothing dropped. */
  chai_opt_model *all = NULL;
  CHECK_OK(chai_opt_prune_heads(&all, m, &plan, 3));
  if (all) CHECK(chai_opt_layer_heads(all, 0) == 4 && chai_opt_layer_heads(all, 1) == 4);
  chai_opt_model *none = NULL;
  CHECK_ERR(chai_opt_prune_heads(&none, m, &plan, 0), CHAI_ERR_ARG, "keep must be >= 1");
  CHECK_OK(chai_heads_plan_load(&online, FIX "/heads/chai_online_plan.json", NULL));
  CHECK_ERR(chai_opt_prune_heads(&none, m, &online, 1), CHAI_ERR_ARG, "pruning needs clusters");
  CHECK(none == NULL && twice == NULL);
  chai_heads_plan_free(&plan), chai_heads_plan_free(&online);
  chai_tensor_release(&ids), chai_tensor_release(&mask), chai_tensor_release(&got),
      chai_tensor_release(&want), chai_tensor_release(&again);
  chai_opt_free(all), chai_opt_free(back), chai_opt_free(p), chai_opt_free(m);
}

/* Training under a static plan computes the same clustered attention (members reuse their
 * representative's scores): its loss equals the cross-entropy of chai_opt_classify's scores.
 * A pruned model trains too (its central differences are in test_opt_backward); online plans are
 * refused. */
static double classify_ce(chai_opt_model *m, const int32_t *ip, const int32_t *mp, int B, int T,
                          const int32_t *lab) {
  chai_tensor sc = {0};
  CHECK_OK(chai_opt_classify(m, &sc, ip, mp, B, T));
  if (!chai_tensor_alive(&sc)) return NAN;
  int NL = (int)sc.shape[1];
  const float *s = chai_tensor_data(&sc);
  double ce = 0;
  for (int b = 0; b < B; b++) {
    double mx = -INFINITY, z = 0;
    for (int j = 0; j < NL; j++)
      mx = fmax(mx, s[b * NL + j]);
    for (int j = 0; j < NL; j++)
      z += exp(s[b * NL + j] - mx);
    ce += -(s[b * NL + lab[b]] - mx - log(z));
  }
  chai_tensor_release(&sc);
  return ce / B;
}

static void training(void) {
  chai_opt_model *m = load("preln");
  if (!m) return;
  chai_heads_plan plan, online;
  CHECK_OK(chai_heads_plan_load(&plan, FIX "/heads/chai_static_plan.json", NULL));
  CHECK_OK(chai_heads_plan_load(&online, FIX "/heads/chai_online_plan.json", NULL));
  chai_tensor ids, mask;
  batch("preln", &ids, &mask);
  int B = (int)ids.shape[0], T = (int)ids.shape[1];
  const int32_t *ip = chai_tensor_data(&ids), *mp = chai_tensor_data(&mask);
  int32_t lab[3] = {0, 2, 1};
  chai_opt_batch b = {.ids = ip,
                      .mask = mp,
                      .B = B,
                      .T = T,
                      .head = CHAI_OPT_HEAD_CLASSIFY,
                      .labels = lab,
                      .teacher = NULL,
                      .kd_T = 1,
                      .kd_alpha = 0,
                      .label_smoothing = 0};
  chai_kd_result r = {0};
  double dense_ce = classify_ce(m, ip, mp, B, T, lab);
  CHECK_OK(chai_opt_set_heads(m, &plan, CHAI_HEADS_STATIC));
  double ce = classify_ce(m, ip, mp, B, T, lab);
  CHECK(fabs(ce - dense_ce) > 1e-4);
  CHECK_OK(chai_opt_forward_backward(m, &b, &r));
  CHECK_CLOSE(r.loss, ce, 1e-5 * (1 + ce));
  CHECK_OK(chai_opt_set_heads(m, &online, CHAI_HEADS_ONLINE));
  CHECK_ERR(chai_opt_forward_backward(m, &b, &r), CHAI_ERR_UNSUPPORTED, "online");
  CHECK_OK(chai_opt_set_heads(m, NULL, CHAI_HEADS_DENSE));
  CHECK_OK(chai_opt_forward_backward(m, &b, &r));
  CHECK_CLOSE(r.loss, dense_ce, 1e-5 * (1 + dense_ce));
  chai_opt_model *p = NULL;
  CHECK_OK(chai_opt_prune_heads(&p, m, &plan, 1));
  if (p) { /* a pruned model trains: its loss is the cross-entropy of its own classify */
    double pce = classify_ce(p, ip, mp, B, T, lab);
    CHECK_OK(chai_opt_forward_backward(p, &b, &r));
    CHECK_CLOSE(r.loss, pce, 1e-5 * (1 + pce));
  }
  chai_opt_free(p);
  chai_heads_plan_free(&plan), chai_heads_plan_free(&online);
  chai_tensor_release(&ids), chai_tensor_release(&mask);
  chai_opt_free(m);
}

int main(void) {
  identity_equals_dense("preln");
  identity_equals_dense("postln");
  static_matches_oracle("preln");
  static_matches_oracle("postln");
  online_matches_oracle();
  online_compact_cache();
  capture();
  prune();
  training();
  return chai_test_finish();
}
