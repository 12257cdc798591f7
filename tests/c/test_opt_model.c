/* OPT against the Hugging Face oracle (tests/fixtures/opt): logits, left padding, classification,
 * greedy generation, for both variants (pre-LN; post-LN with project_in/out) and both checkpoint
 * formats (fp16 pytorch_model.bin, f32 model.safetensors). */
#include "opt_fixture.h"

#define TOL 1e-4

static void test_logits(const char *variant, const char *format) {
  chai_opt_model *m = opt_fixture_load(variant, format, CHAI_F32);
  const chai_opt_config *c = chai_opt_get_config(m);
  chai_tensor ids = opt_fixture_npy(variant, "ids_left"),
              mask = opt_fixture_npy(variant, "mask_left");
  chai_tensor want = opt_fixture_npy(variant, "logits_left");
  int B = (int)ids.shape[0], T = (int)ids.shape[1], V = c->vocab_size;
  const int32_t *idp = chai_tensor_data(&ids), *mp = chai_tensor_data(&mask);
  chai_tensor got;
  CHECK_OK(chai_opt_forward(m, &got, idp, mp, B, T, false));
  CHECK(got.ndim == 3 && got.shape[0] == B && got.shape[1] == T && got.shape[2] == V);
  double d = opt_masked_diff(chai_tensor_data(&got), chai_tensor_data(&want), mp, B, T, V);
  printf("%s/%s: logits max |diff| %.3g\n", variant, format, d);
  CHECK(d <= TOL);

  /* Left padding gives the same logits as no padding for the real tokens. */
  for (int b = 0; b < B; b++) {
    int start = 0;
    while (start < T && !mp[b * T + start])
      start++;
    chai_tensor alone;
    CHECK_OK(chai_opt_forward(m, &alone, idp + b * T + start, NULL, 1, T - start, false));
    const float *g = (const float *)chai_tensor_data(&got) + ((size_t)b * T + start) * V;
    double da = chai_test_max_abs_diff_f(chai_tensor_data(&alone), g, (size_t)(T - start) * V);
    if (da > 2e-5) printf("%s/%s row %d: padded vs alone %.3g\n", variant, format, b, da);
    CHECK(da <= TOL);
    chai_tensor_release(&alone);
  }

  /* last_only: the logits of position T-1 of every row. */
  chai_tensor last;
  CHECK_OK(chai_opt_forward(m, &last, idp, mp, B, T, true));
  CHECK(last.ndim == 2 && last.shape[0] == B && last.shape[1] == V);
  for (int b = 0; b < B; b++)
    CHECK(chai_test_max_abs_diff_f((const float *)chai_tensor_data(&last) + (size_t)b * V,
                                   (const float *)chai_tensor_data(&got) +
                                       ((size_t)b * T + T - 1) * V,
                                   (size_t)V) <= 1e-5);
  chai_tensor_release(&last);
  chai_tensor_release(&got);
  chai_tensor_release(&want);
  chai_tensor_release(&ids);
  chai_tensor_release(&mask);
  chai_opt_free(m);
}

static void test_classify(const char *variant, const char *format) {
  chai_opt_model *m = opt_fixture_load(variant, format, CHAI_F32);
  int NL = chai_opt_get_config(m)->num_labels;
  /* The fp16 .bin of the pre-LN model has no score.weight (as facebook/opt-125m). */
  bool has_score = !(strcmp(variant, "preln") == 0 && strcmp(format, "bin") == 0);
  const char *sides[2] = {"left", "right"};
  for (int s = 0; s < 2; s++) {
    char n_ids[32], n_mask[32], n_cls[32];
    snprintf(n_ids, sizeof n_ids, "ids_%s", sides[s]);
    snprintf(n_mask, sizeof n_mask, "mask_%s", sides[s]);
    snprintf(n_cls, sizeof n_cls, "cls_%s", sides[s]);
    chai_tensor ids = opt_fixture_npy(variant, n_ids), mask = opt_fixture_npy(variant, n_mask);
    chai_tensor want = opt_fixture_npy(variant, n_cls);
    int B = (int)ids.shape[0], T = (int)ids.shape[1];
    chai_tensor got;
    int warnings_before = chai_opt_warning_count(m);
    CHECK_OK(chai_opt_classify(m, &got, chai_tensor_data(&ids), chai_tensor_data(&mask), B, T));
    CHECK(got.ndim == 2 && got.shape[0] == B && got.shape[1] == NL);
    if (has_score) {
      double d =
          chai_test_max_abs_diff_f(chai_tensor_data(&got), chai_tensor_data(&want), (size_t)B * NL);
      printf("%s/%s: classify (%s padding) max |diff| %.3g\n", variant, format, sides[s], d);
      CHECK(d <= TOL);
      CHECK(chai_opt_warning_count(m) == 0);
    } else {
      /* A random head, announced once, at the first classify. */
      CHECK(chai_opt_warning_count(m) == 1);
      if (s == 0) CHECK(warnings_before == 0);
      CHECK(strstr(chai_opt_warning(m, 0), "no score.weight") != NULL);
    }
    chai_tensor_release(&got);
    chai_tensor_release(&want);
    chai_tensor_release(&ids);
    chai_tensor_release(&mask);
  }
  chai_opt_free(m);
}

static void test_greedy(const char *variant, const char *format) {
  chai_opt_model *m = opt_fixture_load(variant, format, CHAI_F32);
  chai_tensor prompt = opt_fixture_npy(variant, "greedy_prompt");
  chai_tensor want = opt_fixture_npy(variant, "greedy_tokens");
  chai_opt_generate_opts o;
  chai_opt_generate_defaults(m, &o);
  o.max_new_tokens = 12;
  int32_t out[12];
  int n = 0;
  CHECK_OK(chai_opt_generate(m, out, &n, chai_tensor_data(&prompt), (int)prompt.shape[0], &o));
  CHECK(n == (int)want.shape[0]);
  CHECK(n == (int)want.shape[0] &&
        memcmp(out, chai_tensor_data(&want), (size_t)n * sizeof(int32_t)) == 0);
  chai_tensor_release(&prompt);
  chai_tensor_release(&want);
  chai_opt_free(m);
}

/* Half-precision weights: f16 holds the fixture's fp16 weights exactly, so f16 logits match the
 * oracle as well as f32 does; bf16 rounds them, so it is only close. */
static void test_half(const char *variant) {
  chai_tensor ids = opt_fixture_npy(variant, "ids_left"),
              mask = opt_fixture_npy(variant, "mask_left");
  chai_tensor want = opt_fixture_npy(variant, "logits_left");
  int B = (int)ids.shape[0], T = (int)ids.shape[1];
  chai_dtype dts[2] = {CHAI_F16, CHAI_BF16};
  for (int i = 0; i < 2; i++) {
    chai_opt_model *m = opt_fixture_load(variant, "st", dts[i]);
    CHECK(chai_opt_dtype(m) == dts[i]);
    int V = chai_opt_get_config(m)->vocab_size;
    chai_tensor got;
    CHECK_OK(
        chai_opt_forward(m, &got, chai_tensor_data(&ids), chai_tensor_data(&mask), B, T, false));
    double d = opt_masked_diff(chai_tensor_data(&got), chai_tensor_data(&want),
                               chai_tensor_data(&mask), B, T, V);
    printf("%s/st as %s: logits max |diff| %.3g\n", variant, chai_dtype_name(dts[i]), d);
    CHECK(d <= (dts[i] == CHAI_F16 ? TOL : 0.5));
    size_t w16, kv, acts;
    chai_opt_memory(m, &w16, &kv, &acts);
    chai_opt_model *m32 = opt_fixture_load(variant, "st", CHAI_F32);
    size_t w32;
    chai_opt_memory(m32, &w32, NULL, NULL);
    /* matrices at 2 bytes, vectors at 4; packed bf16 pads rows to 16 (this model's 2-row score
     * head becomes 16) */
    if (w16 >= w32 * (dts[i] == CHAI_F16 ? 6 : 7) / 10) printf("  %zu of %zu bytes\n", w16, w32);
    CHECK(w16 < w32 * (dts[i] == CHAI_F16 ? 6 : 7) / 10);
    CHECK(chai_opt_num_parameters(m) == chai_opt_num_parameters(m32));
    chai_opt_free(m32);
    chai_tensor_release(&got);
    chai_opt_free(m);
  }
  chai_tensor_release(&ids);
  chai_tensor_release(&mask);
  chai_tensor_release(&want);
}

static void test_counts(void) {
  chai_opt_model *m = opt_fixture_load("postln", "st", CHAI_F32);
  const chai_opt_config *c = chai_opt_get_config(m);
  int64_t C = c->hidden_size, F = c->ffn_dim, P = c->word_embed_proj_dim, V = c->vocab_size;
  int64_t layer = 4 * (C * C + C) + 2 * C * F + F + C + 4 * C;
  int64_t want = V * P + (c->max_position_embeddings + 2) * C + 2 * C * P +
                 c->num_hidden_layers * layer + c->num_labels * P;
  CHECK(chai_opt_num_parameters(m) == want);
  size_t w, kv, acts;
  chai_opt_memory(m, &w, &kv, &acts);
  CHECK(w == (size_t)want * 4 && kv == 0 && acts == 0);
  chai_tensor t;
  CHECK(strcmp(chai_opt_param(m, 0, &t), "model.decoder.embed_tokens.weight") == 0);
  CHECK(t.shape[0] == V && t.shape[1] == P);
  CHECK(chai_opt_param(m, chai_opt_param_count(m), NULL) == NULL);
  int32_t ids[4] = {2, 5, 6, 7};
  chai_tensor lg;
  CHECK_OK(chai_opt_forward(m, &lg, ids, NULL, 1, 4, false));
  chai_opt_memory(m, NULL, NULL, &acts);
  CHECK(acts > 0);
  chai_tensor_release(&lg);
  /* The .bin variant also stores lm_head.weight (the same storage as the embeddings): no warning.
   */
  chai_opt_model *mb = opt_fixture_load("postln", "bin", CHAI_F32);
  CHECK(chai_opt_warning_count(mb) == 0);
  chai_opt_free(mb);
  chai_opt_free(m);
}

int main(void) {
  for (int v = 0; v < 2; v++)
    for (int f = 0; f < 2; f++) {
      test_logits(opt_variants[v], opt_formats[f]);
      test_classify(opt_variants[v], opt_formats[f]);
      test_greedy(opt_variants[v], opt_formats[f]);
    }
  test_half("preln");
  test_half("postln");
  test_counts();
  return chai_test_finish();
}
