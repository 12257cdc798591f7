/* The decode bandwidth ceiling: the streaming-read kernel against its scalar twin, the bandwidth
 * probe's arguments, and the bytes one decoded token reads. */
#include "chai/opt_heads.h"
#include "opt_fixture.h"

static void test_read_sum(void) {
  size_t n = 10007; /* not a multiple of the SIMD width */
  uint64_t *buf = malloc(n * sizeof *buf);
  chai_rng rng;
  chai_rng_init(&rng, 5);
  for (size_t i = 0; i < n; i++)
    buf[i] = chai_rng_u64(&rng);
  chai_simd levels[2] = {CHAI_SIMD_REF, CHAI_SIMD_AVX2};
  for (int l = 0; l < 2; l++) {
    chai_simd_force(levels[l]);
    for (size_t len = 0; len < 40; len++)
      CHECK(chai_opt_read_sum(buf + 3, len) == chai_opt_read_sum_ref(buf + 3, len));
    CHECK(chai_opt_read_sum(buf, n) == chai_opt_read_sum_ref(buf, n));
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  free(buf);
  double g = 0;
  CHECK_OK(chai_opt_read_bandwidth(8 << 20, 1, &g));
  CHECK(g > 0.1);
  CHECK_ERR(chai_opt_read_bandwidth(1000, 1, &g), CHAI_ERR_ARG, "too small");
}

static void test_decode_bytes(void) {
  chai_opt_model *m = opt_fixture_load("postln", "st", CHAI_F32);
  const chai_opt_config *c = chai_opt_get_config(m);
  int64_t C = c->hidden_size, P = c->word_embed_proj_dim, V = c->vocab_size,
          L = c->num_hidden_layers;
  int64_t params = chai_opt_num_parameters(m);
  /* Everything but the position table and the score head, plus one row of each table. */
  int64_t want = params - (c->max_position_embeddings + 2) * C - c->num_labels * P + C + P;
  CHECK((int64_t)chai_opt_decode_bytes(m, 0) == 4 * want);
  CHECK((int64_t)chai_opt_decode_bytes(m, 10) == 4 * want + 2 * L * 10 * C * 4);
  /* Under a plan merging every head of layer 0 into one cluster, the cache holds one head's K
   * there: the context costs (H - 1)·D floats a token less. */
  int H = c->num_attention_heads;
  char json[512];
  int n = snprintf(json, sizeof json, "{\"layers\":[{\"layer\":0,\"clusters\":[[");
  for (int h = 0; h < H; h++)
    n += snprintf(json + n, sizeof json - (size_t)n, "%s%d", h ? "," : "", h);
  snprintf(json + n, sizeof json - (size_t)n, "]]}]}");
  chai_heads_plan plan;
  CHECK_OK(chai_heads_plan_parse(&plan, json, strlen(json), NULL));
  CHECK_OK(chai_opt_set_heads(m, &plan, CHAI_HEADS_STATIC));
  int64_t D = C / H;
  CHECK((int64_t)(chai_opt_decode_bytes(m, 10) - chai_opt_decode_bytes(m, 0)) ==
        (2 * L * C - (H - 1) * D) * 10 * 4);
  chai_heads_plan_free(&plan);
  chai_opt_free(m);
  m = opt_fixture_load("postln", "st", CHAI_F16);
  CHECK(chai_opt_decode_bytes(m, 0) < (size_t)(4 * want * 6 / 10));
  (void)V;
  chai_opt_free(m);
}

int main(void) {
  test_read_sum();
  test_decode_bytes();
  return chai_test_finish();
}
