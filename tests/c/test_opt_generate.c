/* OPT incremental decoding and generation: the KV cache against full recomputation (batched, with
 * left padding), cache limits, generate options (greedy, eos, seeds, top-k, top-p, temperature),
 * and the sampler's distribution on hand-made logits. */
#include <math.h>

#include "../../engine/src/team.h"
#include "chai/opt_heads.h"
#include "opt_fixture.h"

/* Batched decode through the cache equals a full forward over the whole sequences. */
static void test_cache_equals_recompute(const char *variant) {
  chai_opt_model *m = opt_fixture_load(variant, "st", CHAI_F32);
  int V = chai_opt_get_config(m)->vocab_size;
  chai_tensor ids = opt_fixture_npy(variant, "ids_left"),
              mask = opt_fixture_npy(variant, "mask_left");
  int B = (int)ids.shape[0], T = (int)ids.shape[1], S = 4; /* S decode steps */
  int TT = T + S;
  int32_t *all = malloc(sizeof(int32_t) * B * TT), *allm = malloc(sizeof(int32_t) * B * TT);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < TT; t++) {
      all[b * TT + t] =
          t < T ? ((int32_t *)chai_tensor_data(&ids))[b * T + t] : 3 + (b + 5 * t) % 20;
      allm[b * TT + t] = t < T ? ((int32_t *)chai_tensor_data(&mask))[b * T + t] : 1;
    }
  chai_tensor full;
  CHECK_OK(chai_opt_forward(m, &full, all, allm, B, TT, false));
  const float *fp = chai_tensor_data(&full);

  CHECK_OK(chai_opt_cache_begin(m, B, TT));
  CHECK(chai_opt_cache_length(m) == 0);
  float *lg = malloc(sizeof(float) * B * V);
  CHECK_OK(chai_opt_cache_step(m, lg, chai_tensor_data(&ids), chai_tensor_data(&mask), B, T));
  double worst = 0;
  for (int b = 0; b < B; b++) {
    double d =
        chai_test_max_abs_diff_f(lg + (size_t)b * V, fp + ((size_t)b * TT + T - 1) * V, (size_t)V);
    worst = d > worst ? d : worst;
  }
  int32_t step_ids[8];
  for (int s = 0; s < S; s++) {
    for (int b = 0; b < B; b++)
      step_ids[b] = all[b * TT + T + s];
    CHECK_OK(chai_opt_cache_step(m, lg, step_ids, NULL, B, 1));
    for (int b = 0; b < B; b++) {
      double d = chai_test_max_abs_diff_f(lg + (size_t)b * V, fp + ((size_t)b * TT + T + s) * V,
                                          (size_t)V);
      worst = d > worst ? d : worst;
    }
  }
  printf("%s: cached decode vs recompute max |diff| %.3g\n", variant, worst);
  CHECK(worst <= 1e-4);
  CHECK(chai_opt_cache_length(m) == TT);
  /* Full: one more token is a clear error, and the cache is unchanged. */
  CHECK_ERR(chai_opt_cache_step(m, lg, step_ids, NULL, B, 1), CHAI_ERR_ARG,
            "exceed its capacity of");
  CHECK(chai_opt_cache_length(m) == TT);
  CHECK_ERR(chai_opt_cache_step(m, lg, step_ids, NULL, 1, 1), CHAI_ERR_ARG, "begun for 3");
  size_t kv;
  chai_opt_memory(m, NULL, &kv, NULL);
  CHECK(kv >= (size_t)2 * chai_opt_get_config(m)->num_hidden_layers * B * TT *
                  chai_opt_get_config(m)->hidden_size * sizeof(float));
  free(lg);
  free(all);
  free(allm);
  chai_tensor_release(&full);
  chai_tensor_release(&ids);
  chai_tensor_release(&mask);
  chai_opt_free(m);
}

static void test_limits(void) {
  chai_opt_model *m = opt_fixture_load("preln", "st", CHAI_F32);
  int maxp = chai_opt_get_config(m)->max_position_embeddings; /* 64 */
  CHECK_ERR(chai_opt_cache_step(m, NULL, (int32_t[]){2}, NULL, 1, 1), CHAI_ERR_STATE,
            "chai_opt_cache_begin");
  CHECK_ERR(chai_opt_cache_begin(m, 1, maxp + 1), CHAI_ERR_ARG, "max_position_embeddings 64");
  CHECK_ERR(chai_opt_cache_begin(m, 0, 4), CHAI_ERR_ARG, "batch size 0");
  int32_t *ids = malloc(sizeof(int32_t) * (maxp + 2));
  for (int i = 0; i < maxp + 2; i++)
    ids[i] = 3 + i % 50;
  chai_tensor t;
  CHECK_ERR(chai_opt_forward(m, &t, ids, NULL, 1, maxp + 1, false), CHAI_ERR_ARG,
            "65 tokens, more than max_position_embeddings 64");
  CHECK(!chai_tensor_alive(&t));
  /* Padding does not use positions: 66 columns with 2 of padding fit. */
  int32_t *mask = malloc(sizeof(int32_t) * (maxp + 2));
  for (int i = 0; i < maxp + 2; i++)
    mask[i] = i >= 2;
  CHECK_OK(chai_opt_forward(m, &t, ids, mask, 1, maxp + 2, true));
  chai_tensor_release(&t);
  chai_opt_generate_opts o;
  chai_opt_generate_defaults(m, &o);
  o.max_new_tokens = 10;
  int32_t out[16];
  int n;
  CHECK_ERR(chai_opt_generate(m, out, &n, ids, 60, &o), CHAI_ERR_ARG,
            "a prompt of 60 tokens plus max_new_tokens 10 exceeds max_position_embeddings 64");
  o.max_new_tokens = 5; /* 60 + 5 - 1 = 64 positions: fits */
  CHECK_OK(chai_opt_generate(m, out, &n, ids, 60, &o));
  CHECK(n >= 1 && n <= 5);
  free(ids);
  free(mask);
  chai_opt_free(m);
}

static void test_bad_inputs(void) {
  chai_opt_model *m = opt_fixture_load("postln", "st", CHAI_F32);
  chai_tensor t;
  int32_t ids[3] = {2, 80, 5}, ok[3] = {2, 7, 5}, mask[3] = {1, 2, 1};
  CHECK_ERR(chai_opt_forward(m, &t, ids, NULL, 1, 3, false), CHAI_ERR_ARG,
            "token id 80 at row 0, position 1");
  CHECK_ERR(chai_opt_forward(m, &t, ok, mask, 1, 3, false), CHAI_ERR_ARG,
            "attention_mask value 2 at row 0, position 1");
  CHECK_ERR(chai_opt_forward(m, &t, ok, NULL, 0, 3, false), CHAI_ERR_ARG, "empty batch");
  CHECK_ERR(chai_opt_classify(m, &t, ids, NULL, 1, 3), CHAI_ERR_ARG, "token id 80");
  chai_opt_generate_opts o;
  chai_opt_generate_defaults(m, &o);
  int32_t out[4];
  int n;
  CHECK_ERR(chai_opt_generate(m, out, &n, ok, 0, &o), CHAI_ERR_ARG, "prompt is empty");
  o.max_new_tokens = -1;
  CHECK_ERR(chai_opt_generate(m, out, &n, ok, 3, &o), CHAI_ERR_ARG, "max_new_tokens is -1");
  chai_opt_generate_defaults(m, &o);
  o.max_new_tokens = 4;
  o.sample = true;
  o.temperature = 0;
  CHECK_ERR(chai_opt_generate(m, out, &n, ok, 3, &o), CHAI_ERR_ARG, "temperature 0");
  o.temperature = 1;
  o.top_k = -2;
  CHECK_ERR(chai_opt_generate(m, out, &n, ok, 3, &o), CHAI_ERR_ARG, "top_k -2");
  o.top_k = 0;
  o.top_p = 1.5f;
  CHECK_ERR(chai_opt_generate(m, out, &n, ok, 3, &o), CHAI_ERR_ARG, "top_p 1.5");
  o.top_p = 1;
  o.eos_token_id = 500;
  CHECK_ERR(chai_opt_generate(m, out, &n, ok, 3, &o), CHAI_ERR_ARG, "eos_token_id 500");
  o.max_new_tokens = 0;
  o.eos_token_id = 2;
  CHECK_OK(chai_opt_generate(m, out, &n, ok, 3, &o));
  CHECK(n == 0);
  chai_opt_free(m);
}

static void test_generate_options(const char *variant) {
  chai_opt_model *m = opt_fixture_load(variant, "st", CHAI_F32);
  chai_tensor prompt = opt_fixture_npy(variant, "greedy_prompt");
  chai_tensor want = opt_fixture_npy(variant, "greedy_tokens");
  const int32_t *p = chai_tensor_data(&prompt), *g = chai_tensor_data(&want);
  int np = (int)prompt.shape[0], ng = (int)want.shape[0];
  chai_opt_generate_opts o;
  int32_t out[12], out2[12];
  int n, n2;

  /* An eos that ends generation is included: make the 4th greedy token the eos. */
  int k = 3;
  while (k < ng) {
    bool earlier = false;
    for (int i = 0; i < k; i++)
      earlier |= g[i] == g[k];
    if (!earlier) break;
    k++;
  }
  CHECK(k < ng);
  chai_opt_generate_defaults(m, &o);
  o.max_new_tokens = 12;
  o.eos_token_id = g[k];
  CHECK_OK(chai_opt_generate(m, out, &n, p, np, &o));
  CHECK(n == k + 1 && memcmp(out, g, (size_t)n * 4) == 0);

  /* Sampling that can only pick the top token is greedy: top_k 1, a tiny top_p, a tiny
   * temperature. */
  chai_opt_generate_defaults(m, &o);
  o.max_new_tokens = ng;
  o.eos_token_id = -1;
  o.sample = true;
  o.top_k = 1;
  o.seed = 7;
  CHECK_OK(chai_opt_generate(m, out, &n, p, np, &o));
  CHECK(n == ng && memcmp(out, g, (size_t)n * 4) == 0);
  o.top_k = 0;
  o.top_p = 1e-6f;
  CHECK_OK(chai_opt_generate(m, out, &n, p, np, &o));
  CHECK(n == ng && memcmp(out, g, (size_t)n * 4) == 0);
  o.top_p = 1;
  o.temperature = 1e-4f;
  CHECK_OK(chai_opt_generate(m, out, &n, p, np, &o));
  CHECK(n == ng && memcmp(out, g, (size_t)n * 4) == 0);

  /* Same seed, same tokens; some other seed gives other tokens at temperature 2. */
  o.temperature = 2;
  o.seed = 11;
  CHECK_OK(chai_opt_generate(m, out, &n, p, np, &o));
  CHECK_OK(chai_opt_generate(m, out2, &n2, p, np, &o));
  CHECK(n == ng && n2 == n && memcmp(out, out2, (size_t)n * 4) == 0);
  bool differs = false;
  for (uint64_t s = 12; s < 20 && !differs; s++) {
    o.seed = s;
    CHECK_OK(chai_opt_generate(m, out2, &n2, p, np, &o));
    differs = memcmp(out, out2, (size_t)n * 4) != 0;
  }
  CHECK(differs);
  /* top_k 3 at a high temperature stays within each step's 3 best tokens (checked by
   * recomputing the logits of the generated prefix). */
  o.top_k = 3;
  o.temperature = 5;
  o.seed = 3;
  CHECK_OK(chai_opt_generate(m, out, &n, p, np, &o));
  int V = chai_opt_get_config(m)->vocab_size;
  int32_t seq[64];
  memcpy(seq, p, (size_t)np * 4);
  for (int i = 0; i < n; i++) {
    chai_tensor lg;
    CHECK_OK(chai_opt_forward(m, &lg, seq, NULL, 1, np + i, true));
    const float *l = chai_tensor_data(&lg);
    int better = 0;
    for (int v = 0; v < V; v++)
      better += l[v] > l[out[i]];
    CHECK(better < 3);
    chai_tensor_release(&lg);
    seq[np + i] = out[i];
  }
  chai_tensor_release(&prompt);
  chai_tensor_release(&want);
  chai_opt_free(m);
}

/* The sampler on logits whose probabilities are known: 0.5, 0.3, 0.15, 0.05. */
static void test_sampler(void) {
  float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
  float scratch[4];
  int32_t order[4];
  chai_opt_generate_opts o;
  chai_opt_generate_defaults(NULL, &o);
  CHECK(chai_opt_sample(logits, 4, &o, NULL, scratch, order) == 0); /* greedy needs no rng */
  o.sample = true;
  chai_rng rng;
  chai_rng_init(&rng, 1);
  struct {
    int top_k;
    float top_p;
    double p[4];
  } cases[] = {
      {0, 1.0f, {0.5, 0.3, 0.15, 0.05}},
      {2, 1.0f, {0.5 / 0.8, 0.3 / 0.8, 0, 0}},
      {0, 0.5f, {1, 0, 0, 0}}, /* 0.5 reached by the top token alone */
      {0, 0.6f, {0.5 / 0.8, 0.3 / 0.8, 0, 0}},
      {0, 0.9f, {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0}},
      {3, 0.6f, {0.5 / 0.8, 0.3 / 0.8, 0, 0}},
  };
  int draws = 20000;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    o.top_k = cases[c].top_k;
    o.top_p = cases[c].top_p;
    int count[4] = {0};
    for (int i = 0; i < draws; i++)
      count[chai_opt_sample(logits, 4, &o, &rng, scratch, order)]++;
    for (int v = 0; v < 4; v++) {
      double f = (double)count[v] / draws;
      if (cases[c].p[v] == 0)
        CHECK(count[v] == 0);
      else
        CHECK_CLOSE(f, cases[c].p[v], 0.015);
    }
  }
  /* Temperature 0.5 squares the probabilities before normalising. */
  o.top_k = 0;
  o.top_p = 1;
  o.temperature = 0.5f;
  int count[4] = {0};
  for (int i = 0; i < draws; i++)
    count[chai_opt_sample(logits, 4, &o, &rng, scratch, order)]++;
  double z = 0.25 + 0.09 + 0.0225 + 0.0025;
  CHECK_CLOSE((double)count[0] / draws, 0.25 / z, 0.015);
  CHECK_CLOSE((double)count[1] / draws, 0.09 / z, 0.015);
  /* A tie at the top-k boundary keeps both tied tokens. */
  float tie[4] = {2, 1, 1, 0};
  o.temperature = 1;
  o.top_k = 2;
  int seen[4] = {0};
  for (int i = 0; i < 4000; i++)
    seen[chai_opt_sample(tie, 4, &o, &rng, scratch, order)]++;
  CHECK(seen[1] > 0 && seen[2] > 0 && seen[3] == 0);
}

/* Decoding one token holds a thread team for the step (engine/src/team.c): the logits of every
 * step are the same bits for 1, 2 and 3 threads, with f32 weights, int4 weights with the int8 KV
 * cache, and clustered heads. The model is just large enough that the team takes the layers'
 * products, the LM head, and (past 1024 cached tokens) the attention over both caches. */
static void decode_steps(chai_opt_model *m, const int32_t *prompt, int n_prompt, float *lg, int V,
                         int steps) {
  CHECK_OK(chai_opt_cache_begin(m, 1, n_prompt + steps));
  CHECK_OK(chai_opt_cache_step(m, lg, prompt, NULL, 1, n_prompt));
  for (int s = 0; s < steps; s++) {
    int32_t tok = 3 + (int32_t)((s * 7919) % (V - 3));
    CHECK_OK(chai_opt_cache_step(m, lg + (size_t)(s + 1) * V, &tok, NULL, 1, 1));
  }
}

static void test_threads_same_bits(void) {
  chai_opt_config cfg;
  chai_opt_config_defaults(&cfg);
  cfg.vocab_size = 2048, cfg.hidden_size = 256, cfg.num_hidden_layers = 2;
  cfg.num_attention_heads = 8, cfg.ffn_dim = 1024, cfg.max_position_embeddings = 1100;
  cfg.word_embed_proj_dim = 256, cfg.pad_token_id = 1, cfg.bos_token_id = 2, cfg.eos_token_id = 2;
  chai_rng rng;
  chai_rng_init(&rng, 5);
  chai_opt_model *m;
  CHECK_OK(chai_opt_create(&m, &cfg, CHAI_F32, &rng));
  if (!m) return;
  enum { PROMPT = 1064, STEPS = 3 };
  int V = cfg.vocab_size, saved = chai_threads_get();
  int32_t *prompt = malloc(sizeof(int32_t) * PROMPT);
  for (int t = 0; t < PROMPT; t++)
    prompt[t] = t == 0 ? 2 : 3 + (t * 104729) % (V - 3);
  size_t n = (size_t)(STEPS + 1) * V;
  float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
  for (int variant = 0; variant < 3; variant++) {
    if (variant == 1) {
      chai_opt_quant q;
      chai_opt_quant_init(&q);
      int layers[2][CHAI_OPT_LAYER_MATRICES];
      for (int l = 0; l < 2; l++)
        for (int j = 0; j < CHAI_OPT_LAYER_MATRICES; j++)
          layers[l][j] = CHAI_QF_INT4;
      q.layers = layers, q.embeddings = CHAI_QF_INT8, q.lm_head = CHAI_QF_INT8;
      q.kv = CHAI_QF_INT8;
      CHECK_OK(chai_opt_quantize(m, &q));
    } else if (variant == 2) { /* clustered heads on the int8 cache: 3 clusters a layer */
      chai_heads_plan plan;
      CHECK_OK(chai_heads_plan_init(&plan, 2));
      int labels[8] = {0, 1, 2, 0, 1, 2, 0, 0};
      for (int l = 0; l < 2; l++)
        CHECK_OK(chai_heads_plan_set_labels(&plan, l, l, labels, 8));
      CHECK_OK(chai_opt_set_heads(m, &plan, CHAI_HEADS_STATIC));
      chai_heads_plan_free(&plan);
    }
    /* the held team against none, at each thread count */
    for (int threads = 2; threads <= 3; threads++) {
      CHECK_OK(chai_threads(threads));
      chai_team_allow(0);
      decode_steps(m, prompt, PROMPT, want, V, STEPS);
      chai_team_allow(1);
      decode_steps(m, prompt, PROMPT, got, V, STEPS);
      bool same = memcmp(want, got, n * sizeof(float)) == 0;
      if (!same)
        printf("variant %d, %d threads: held and unheld logits differ\n", variant, threads);
      CHECK(same);
    }
    /* and across thread counts, where the prefill's products are thread-invariant too (chai's
     * packed kernels; OpenBLAS's f32 GEMM splits differently) */
    if (variant == 0) continue;
    CHECK_OK(chai_threads(1));
    decode_steps(m, prompt, PROMPT, want, V, STEPS);
    for (int threads = 2; threads <= 3; threads++) {
      CHECK_OK(chai_threads(threads));
      decode_steps(m, prompt, PROMPT, got, V, STEPS);
      bool same = memcmp(want, got, n * sizeof(float)) == 0;
      if (!same)
        printf("variant %d, %d threads: logits differ from 1 thread's\n", variant, threads);
      CHECK(same);
    }
  }
  CHECK_OK(chai_threads(saved));
  free(want);
  free(got);
  free(prompt);
  chai_opt_free(m);
}

int main(void) {
  test_threads_same_bits();
  test_cache_equals_recompute("preln");
  test_cache_equals_recompute("postln");
  test_limits();
  test_bad_inputs();
  test_generate_options("preln");
  test_generate_options("postln");
  test_sampler();
  return chai_test_finish();
}
