/* OPT files: save → load gives bit-identical logits (f32 and f16), a fresh model from a config,
 * and each kind of bad checkpoint or config folder is a clear error or warning. */
#include <sys/stat.h>
#include <unistd.h>

#include "chai/checkpoint.h"
#include "opt_fixture.h"

static char tmp_root[64];

static const char *tmp_dir(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmp_root, name);
  return buf;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) exit(2);
  fputs(text, f);
  fclose(f);
}

static void copy_file(const char *from, const char *to) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  if (!a || !b) exit(2);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, a)) > 0)
    fwrite(buf, 1, n, b);
  fclose(a);
  fclose(b);
}

static chai_tensor logits_of(chai_opt_model *m) {
  int32_t ids[2 * 5] = {1, 1, 2, 9, 14, 2, 30, 4, 17, 8};
  int32_t mask[2 * 5] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
  chai_tensor t;
  CHECK_OK(chai_opt_forward(m, &t, ids, mask, 2, 5, false));
  return t;
}

static bool same_bits(const chai_tensor *a, const chai_tensor *b) {
  return chai_tensor_nbytes(a) == chai_tensor_nbytes(b) &&
         memcmp(chai_tensor_data(a), chai_tensor_data(b), chai_tensor_nbytes(a)) == 0;
}

static void test_round_trip(const char *variant, const char *format, chai_dtype dt) {
  chai_opt_model *m = opt_fixture_load(variant, format, dt);
  char dir[128];
  snprintf(dir, sizeof dir, "%s/rt-%s-%s-%s/nested", tmp_root, variant, format,
           chai_dtype_name(dt));
  CHECK_OK(chai_opt_save(m, dir));
  chai_opt_load_opts o = {.dtype = dt};
  chai_opt_model *m2 = NULL;
  CHECK_OK(chai_opt_load(&m2, dir, &o));
  if (!m2) return;
  chai_tensor a = logits_of(m), b = logits_of(m2);
  CHECK(same_bits(&a, &b));
  int32_t ids[4] = {2, 11, 12, 13};
  chai_tensor ca, cb;
  CHECK_OK(chai_opt_classify(m, &ca, ids, NULL, 1, 4));
  CHECK_OK(chai_opt_classify(m2, &cb, ids, NULL, 1, 4));
  CHECK(same_bits(&ca, &cb)); /* score.weight is saved too, even a randomly initialised one */
  CHECK(chai_opt_warning_count(m2) == 0);
  const chai_opt_config *c1 = chai_opt_get_config(m), *c2 = chai_opt_get_config(m2);
  CHECK(c1->word_embed_proj_dim == c2->word_embed_proj_dim &&
        c1->do_layer_norm_before == c2->do_layer_norm_before && c1->num_labels == c2->num_labels);
  char b1[32], b2[32];
  CHECK(strcmp(chai_opt_config_label(c1, 1, b1, sizeof b1),
               chai_opt_config_label(c2, 1, b2, sizeof b2)) == 0);
  /* The file holds Hugging Face names and the model's dtype. */
  char path[256];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, path));
  CHECK(chai_checkpoint_has(ck, "model.decoder.layers.1.fc2.bias"));
  CHECK(chai_checkpoint_has(ck, "score.weight") && !chai_checkpoint_has(ck, "lm_head.weight"));
  chai_tensor t;
  CHECK_OK(chai_checkpoint_get(ck, "model.decoder.layers.0.self_attn.q_proj.weight", &t));
  CHECK(t.dtype == dt);
  chai_tensor_release(&t);
  CHECK_OK(chai_checkpoint_get(ck, "model.decoder.layers.0.self_attn.q_proj.bias", &t));
  CHECK(t.dtype == CHAI_F32);
  chai_tensor_release(&t);
  chai_checkpoint_close(ck);
  chai_tensor_release(&a);
  chai_tensor_release(&b);
  chai_tensor_release(&ca);
  chai_tensor_release(&cb);
  chai_opt_free(m2);
  chai_opt_free(m);
}

static void test_create(void) {
  chai_opt_config c;
  chai_opt_config_defaults(&c);
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.ffn_dim = 32;
  c.max_position_embeddings = 20;
  c.word_embed_proj_dim = 8;
  c.do_layer_norm_before = false;
  chai_rng rng;
  chai_rng_init(&rng, 42);
  chai_opt_model *m = NULL;
  CHECK_OK(chai_opt_create(&m, &c, CHAI_F32, &rng));
  chai_tensor emb;
  chai_opt_param(m, 0, &emb);
  const float *e = chai_tensor_data(&emb);
  CHECK(e[1 * 8 + 3] == 0.0f && e[0] != 0.0f); /* the pad row (id 1) is zero */
  char dir[128];
  CHECK_OK(chai_opt_save(m, tmp_dir(dir, sizeof dir, "created")));
  chai_opt_model *m2 = NULL;
  CHECK_OK(chai_opt_load(&m2, dir, NULL));
  chai_tensor a = logits_of(m), b = logits_of(m2);
  CHECK(same_bits(&a, &b));
  chai_tensor_release(&a);
  chai_tensor_release(&b);
  /* Same seed, same model. */
  chai_rng_init(&rng, 42);
  chai_opt_model *m3 = NULL;
  CHECK_OK(chai_opt_create(&m3, &c, CHAI_F32, &rng));
  a = logits_of(m3);
  b = logits_of(m);
  CHECK(same_bits(&a, &b));
  chai_tensor_release(&a);
  chai_tensor_release(&b);
  c.hidden_size = 15;
  chai_opt_model *bad = NULL;
  CHECK_ERR(chai_opt_create(&bad, &c, CHAI_F32, &rng), CHAI_ERR_ARG, "not divisible");
  c.hidden_size = 16;
  CHECK_ERR(chai_opt_create(&bad, &c, CHAI_I32, &rng), CHAI_ERR_ARG, "dtype i32");
  CHECK(bad == NULL);
  chai_opt_free(m3);
  chai_opt_free(m2);
  chai_opt_free(m);
}

/* A folder with the postln config and a safetensors file of the given tensors. */
static void make_folder(const char *dir, int n, const char *const *names, const chai_tensor *ts) {
  mkdir(dir, 0777);
  char src[512], dst[512];
  snprintf(src, sizeof src, "%s/opt/postln/st/config.json", CHAI_TEST_FIXTURES);
  snprintf(dst, sizeof dst, "%s/config.json", dir);
  copy_file(src, dst);
  snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
  if (chai_safetensors_save(dst, n, names, ts, NULL) != CHAI_OK) {
    fprintf(stderr, "%s\n", chai_last_error());
    exit(2);
  }
}

static void test_bad_checkpoints(void) {
  chai_opt_model *m = opt_fixture_load("postln", "st", CHAI_F32);
  int n = chai_opt_param_count(m);
  const char *names[80];
  chai_tensor ts[80];
  for (int i = 0; i < n; i++)
    names[i] = chai_opt_param(m, i, &ts[i]);
  char dir[128];
  chai_opt_model *bad = NULL;

  /* A missing weight, by name. */
  make_folder(tmp_dir(dir, sizeof dir, "missing"), n - 2, names + 2, ts + 2);
  CHECK_ERR(chai_opt_load(&bad, dir, NULL), CHAI_ERR_FORMAT,
            "missing 2 weights: model.decoder.embed_tokens.weight");
  CHECK(strstr(chai_last_error(), ", model.decoder.embed_positions.weight") != NULL);

  /* Both prefixes are accepted, but at least one must be there. */
  const char *odd[1] = {"transformer.wte.weight"};
  make_folder(tmp_dir(dir, sizeof dir, "notopt"), 1, odd, ts);
  CHECK_ERR(chai_opt_load(&bad, dir, NULL), CHAI_ERR_FORMAT, "is this an OPT checkpoint?");

  /* A shape mismatch names both shapes. */
  chai_tensor saved = ts[4];
  chai_tensor sl;
  CHECK_OK(chai_tensor_slice(&sl, &ts[4], 0, 0, ts[4].shape[0] - 1, 1));
  ts[4] = sl;
  make_folder(tmp_dir(dir, sizeof dir, "shape"), n, names, ts);
  CHECK_ERR(chai_opt_load(&bad, dir, NULL), CHAI_ERR_FORMAT, names[4]);
  CHECK(strstr(chai_last_error(), "has shape (31,32), expected (32,32)") != NULL);
  chai_tensor_release(&sl);

  /* An integer weight. */
  chai_tensor it;
  CHECK_OK(chai_tensor_to(&it, &saved, CHAI_I32));
  ts[4] = it;
  make_folder(tmp_dir(dir, sizeof dir, "dtype"), n, names, ts);
  CHECK_ERR(chai_opt_load(&bad, dir, NULL), CHAI_ERR_FORMAT, "has dtype i32");
  chai_tensor_release(&it);
  ts[4] = saved;

  /* Unexpected keys and a different lm_head are warnings; a missing score is drawn from the seed
   * and classify() says so. */
  const char *names2[82];
  chai_tensor ts2[82];
  int k = 0;
  for (int i = 0; i < n; i++)
    if (strcmp(names[i], "score.weight") != 0) {
      names2[k] = names[i];
      ts2[k++] = ts[i];
    }
  chai_tensor lm;
  CHECK_OK(chai_tensor_clone(&lm, &ts[0]));
  ((float *)chai_tensor_data(&lm))[3] += 1.0f;
  names2[k] = "lm_head.weight";
  ts2[k++] = lm;
  names2[k] = "model.decoder.version";
  ts2[k++] = ts[5];
  make_folder(tmp_dir(dir, sizeof dir, "warn"), k, names2, ts2);
  chai_opt_model *w = NULL;
  CHECK_OK(chai_opt_load(&w, dir, NULL));
  if (w) {
    CHECK(chai_opt_warning_count(w) == 2);
    bool lm_warned = false, extra_warned = false;
    for (int i = 0; i < chai_opt_warning_count(w); i++) {
      lm_warned |= strstr(chai_opt_warning(w, i), "lm_head.weight differs") != NULL;
      extra_warned |= strstr(chai_opt_warning(w, i), "unexpected weight ignored: "
                                                     "model.decoder.version") != NULL;
    }
    CHECK(lm_warned && extra_warned);
    CHECK(chai_opt_num_parameters(w) == chai_opt_num_parameters(m) - 2 * 16);
    chai_tensor a = logits_of(w), b = logits_of(m);
    CHECK(same_bits(&a, &b)); /* the tied head ignores lm_head.weight */
    chai_tensor_release(&a);
    chai_tensor_release(&b);
    int32_t ids[3] = {2, 5, 6};
    CHECK_OK(chai_opt_classify(w, &a, ids, NULL, 1, 3));
    CHECK(chai_opt_warning_count(w) == 3 &&
          strstr(chai_opt_warning(w, 2), "no score.weight; the classification head (2 labels)"));
    CHECK_OK(chai_opt_classify(w, &b, ids, NULL, 1, 3));
    CHECK(chai_opt_warning_count(w) == 3); /* once */
    chai_tensor_release(&a);
    chai_tensor_release(&b);
    chai_opt_free(w);
  }
  chai_tensor_release(&lm);

  /* Untied embeddings need lm_head.weight. */
  make_folder(tmp_dir(dir, sizeof dir, "untied"), n, names, ts);
  char cfg[256];
  snprintf(cfg, sizeof cfg, "%s/config.json", dir);
  write_file(cfg, "{\"vocab_size\": 80, \"hidden_size\": 32, \"num_hidden_layers\": 2, "
                  "\"num_attention_heads\": 4, \"ffn_dim\": 48, \"max_position_embeddings\": 48, "
                  "\"do_layer_norm_before\": false, \"word_embed_proj_dim\": 16, "
                  "\"tie_word_embeddings\": false}");
  CHECK_ERR(chai_opt_load(&bad, dir, NULL), CHAI_ERR_FORMAT, "missing 1 weight: lm_head.weight");

  /* A config that disagrees with the weights: a shape error naming config.json. */
  write_file(cfg, "{\"vocab_size\": 80, \"hidden_size\": 32, \"num_hidden_layers\": 2, "
                  "\"num_attention_heads\": 4, \"ffn_dim\": 64, \"max_position_embeddings\": 48, "
                  "\"do_layer_norm_before\": false, \"word_embed_proj_dim\": 16}");
  CHECK_ERR(chai_opt_load(&bad, dir, NULL), CHAI_ERR_FORMAT,
            "fc1.weight has shape (48,32), expected (64,32) (from config.json)");
  write_file(cfg, "{\"vocab_size\": 80, \"hidden_size\": 32}");
  CHECK_ERR(chai_opt_load(&bad, dir, NULL), CHAI_ERR_FORMAT, "missing key \"num_hidden_layers\"");
  unlink(cfg);
  CHECK_ERR(chai_opt_load(&bad, dir, NULL), CHAI_ERR_IO, "config.json");
  CHECK_ERR(chai_opt_load(&bad, "/nonexistent/model", NULL), CHAI_ERR_IO, "/nonexistent/model");
  /* No weights file next to a good config. */
  mkdir(tmp_dir(dir, sizeof dir, "noweights"), 0777);
  char src[512];
  snprintf(src, sizeof src, "%s/opt/postln/st/config.json", CHAI_TEST_FIXTURES);
  snprintf(cfg, sizeof cfg, "%s/config.json", dir);
  copy_file(src, cfg);
  CHECK(chai_opt_load(&bad, dir, NULL) != CHAI_OK && bad == NULL);
  chai_opt_load_opts o = {.dtype = CHAI_I8};
  CHECK_ERR(chai_opt_load(&bad, dir, &o), CHAI_ERR_ARG, "dtype i8");
  /* Saving into a path that is a file fails cleanly. */
  CHECK_ERR(chai_opt_save(m, cfg), CHAI_ERR_IO, "config.json");
  chai_opt_free(m);
}

/* A sharded checkpoint (model.safetensors.index.json + two shards) loads like the single file. */
static void test_sharded(void) {
  chai_opt_model *m = opt_fixture_load("preln", "st", CHAI_F32);
  int n = chai_opt_param_count(m), half = n / 2;
  const char *names[80];
  chai_tensor ts[80];
  for (int i = 0; i < n; i++)
    names[i] = chai_opt_param(m, i, &ts[i]);
  char dir[128], path[256];
  mkdir(tmp_dir(dir, sizeof dir, "sharded"), 0777);
  snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
  CHECK_OK(chai_safetensors_save(path, half, names, ts, NULL));
  snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
  CHECK_OK(chai_safetensors_save(path, n - half, names + half, ts + half, NULL));
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  FILE *f = fopen(path, "wb");
  fputs("{\"metadata\": {}, \"weight_map\": {", f);
  for (int i = 0; i < n; i++)
    fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "", names[i],
            i < half ? 1 : 2);
  fputs("}}", f);
  fclose(f);
  char src[512];
  snprintf(src, sizeof src, "%s/opt/preln/st/config.json", CHAI_TEST_FIXTURES);
  snprintf(path, sizeof path, "%s/config.json", dir);
  copy_file(src, path);
  chai_opt_model *m2 = NULL;
  CHECK_OK(chai_opt_load(&m2, dir, NULL));
  if (m2) {
    chai_tensor a = logits_of(m), b = logits_of(m2);
    CHECK(same_bits(&a, &b));
    CHECK(chai_opt_warning_count(m2) == 0);
    chai_tensor_release(&a);
    chai_tensor_release(&b);
    chai_opt_free(m2);
  }
  chai_opt_free(m);
}

/* Every chai allocation that can fail during load, forward, classify, generate: a clean
 * CHAI_ERR_NOMEM, nothing half-built, nothing leaked (the sanitizer build checks the last). */
static void test_alloc_failures(void) {
  char dir[512];
  opt_fixture_dir(dir, sizeof dir, "postln", "bin");
  int32_t ids[6] = {2, 9, 14, 2, 30, 4};
  int failures = 0;
  for (long n = 1; n < 200; n++) {
    chai_opt_model *m = NULL;
    chai_alloc_fail_after(n);
    chai_status st = chai_opt_load(&m, dir, NULL);
    chai_tensor t = {0};
    if (!st) st = chai_opt_forward(m, &t, ids, NULL, 2, 3, false);
    chai_tensor_release(&t);
    if (!st) st = chai_opt_classify(m, &t, ids, NULL, 2, 3);
    chai_tensor_release(&t);
    int32_t out[4];
    int k;
    chai_opt_generate_opts o;
    chai_opt_generate_defaults(m, &o);
    o.max_new_tokens = 4;
    if (!st) st = chai_opt_generate(m, out, &k, ids, 3, &o);
    chai_alloc_fail_after(0);
    if (st) {
      failures++;
      CHECK(st == CHAI_ERR_NOMEM);
      if (!m) CHECK(st == CHAI_ERR_NOMEM);
    }
    chai_opt_free(m);
    if (!st) break; /* past the last allocation: everything succeeded */
  }
  CHECK(failures > 5);
}

int main(void) {
  snprintf(tmp_root, sizeof tmp_root, "/tmp/chai-test-opt-io-XXXXXX");
  if (!mkdtemp(tmp_root)) return 2;
  for (int v = 0; v < 2; v++)
    for (int f = 0; f < 2; f++)
      test_round_trip(opt_variants[v], opt_formats[f], CHAI_F32);
  test_round_trip("postln", "bin", CHAI_F16);
  test_round_trip("preln", "st", CHAI_BF16);
  test_create();
  test_bad_checkpoints();
  test_sharded();
  test_alloc_failures();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
  return chai_test_finish();
}
