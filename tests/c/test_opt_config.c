/* OPT config.json: every field, HF defaults, and a clear error for each kind of bad value. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "chai/chai.h"
#include "chai/opt.h"
#include "check.h"

#define BASE                                                                                       \
  "\"vocab_size\": 100, \"hidden_size\": 32, \"num_hidden_layers\": 2, "                           \
  "\"num_attention_heads\": 4, \"ffn_dim\": 64, \"max_position_embeddings\": 64"

static chai_status parse(chai_opt_config *c, const char *json, chai_opt_warnings *w) {
  return chai_opt_config_parse(c, json, strlen(json), "cfg.json", w);
}

static void test_real_configs(void) {
  /* facebook/opt-350m's config.json as published. */
  const char *opt350 =
      "{\"_name_or_path\": \"opt-350m\", \"activation_dropout\": 0.0, \"activation_function\": "
      "\"relu\", \"architectures\": [\"OPTForCausalLM\"], \"attention_dropout\": 0.0, "
      "\"bos_token_id\": 2, \"hidden_size\": 1024, \"do_layer_norm_before\": false, \"dropout\": "
      "0.1, \"eos_token_id\": 2, \"ffn_dim\": 4096, \"init_std\": 0.02, \"layerdrop\": 0.0, "
      "\"max_position_embeddings\": 2048, \"model_type\": \"opt\", \"num_attention_heads\": 16, "
      "\"num_hidden_layers\": 24, \"pad_token_id\": 1, \"prefix\": \"</s>\", \"torch_dtype\": "
      "\"float16\", \"transformers_version\": \"4.20.0.dev0\", \"use_cache\": true, "
      "\"vocab_size\": 50272, \"word_embed_proj_dim\": 512}";
  chai_opt_config c;
  chai_opt_warnings w = {0};
  CHECK_OK(parse(&c, opt350, &w));
  CHECK(w.n == 0);
  CHECK(c.vocab_size == 50272 && c.hidden_size == 1024 && c.num_hidden_layers == 24);
  CHECK(c.num_attention_heads == 16 && c.ffn_dim == 4096 && c.max_position_embeddings == 2048);
  CHECK(c.word_embed_proj_dim == 512 && !c.do_layer_norm_before && !c.remove_final_layer_norm);
  CHECK(c.layer_norm_elementwise_affine && c.enable_bias && c.tie_word_embeddings);
  CHECK(c.activation_function == CHAI_OPT_ACT_RELU);
  CHECK(c.pad_token_id == 1 && c.bos_token_id == 2 && c.eos_token_id == 2);
  CHECK(c.num_labels == 2 && c.id2label == NULL);
  CHECK_CLOSE(c.dropout, 0.1, 0);
  CHECK(c.extra_json && strstr(c.extra_json, "\"prefix\""));

  /* Round trip through to_json: same fields, HF names, sorted keys, dtype written. */
  char *js = NULL;
  CHECK_OK(chai_opt_config_to_json(&c, CHAI_F32, &js));
  CHECK(js && strstr(js, "\"torch_dtype\":\t\"float32\"") && strstr(js, "\"prefix\":\t\"</s>\""));
  CHECK(js && strstr(js, "\"_remove_final_layer_norm\"") < strstr(js, "\"activation_function\""));
  chai_opt_config c2;
  CHECK_OK(parse(&c2, js, NULL));
  CHECK(c2.word_embed_proj_dim == 512 && !c2.do_layer_norm_before && c2.num_labels == 2);
  CHECK(c2.hidden_size == 1024 && c2.vocab_size == 50272);
  char b[32];
  CHECK(strcmp(chai_opt_config_label(&c2, 1, b, sizeof b), "LABEL_1") == 0);
  chai_opt_config_free(&c2);
  free(js);
  chai_opt_config_free(&c);
  chai_opt_warnings_free(&w);
}

static void test_defaults_and_labels(void) {
  chai_opt_config c;
  chai_opt_warnings w = {0};
  CHECK_OK(parse(&c,
                 "{" BASE ", \"id2label\": {\"1\": \"POS\", \"0\": \"NEG\", \"2\": \"MID\"}, "
                 "\"label2id\": {\"NEG\": 0}, \"_remove_final_layer_norm\": true, "
                 "\"enable_bias\": false, \"layer_norm_elementwise_affine\": false, "
                 "\"tie_word_embeddings\": false, \"activation_function\": \"gelu\", "
                 "\"pad_token_id\": null, \"my_key\": [1, 2]}",
                 &w));
  CHECK(c.word_embed_proj_dim == 32 && c.do_layer_norm_before && c.remove_final_layer_norm);
  CHECK(!c.enable_bias && !c.layer_norm_elementwise_affine && !c.tie_word_embeddings);
  CHECK(c.activation_function == CHAI_OPT_ACT_GELU && c.pad_token_id == -1);
  CHECK(c.num_labels == 3 && c.id2label && strcmp(c.id2label[0], "NEG") == 0 &&
        strcmp(c.id2label[2], "MID") == 0);
  CHECK(w.n == 1 && strstr(w.msg[0], "\"my_key\""));
  chai_opt_config d;
  CHECK_OK(chai_opt_config_copy(&d, &c));
  CHECK(d.id2label != c.id2label && strcmp(d.id2label[1], "POS") == 0);
  char *js = NULL;
  CHECK_OK(chai_opt_config_to_json(&d, CHAI_F16, &js));
  cJSON *root = cJSON_Parse(js);
  CHECK(root && cJSON_IsNull(cJSON_GetObjectItem(root, "pad_token_id")));
  CHECK(root && strcmp(cJSON_GetObjectItem(root, "torch_dtype")->valuestring, "float16") == 0);
  CHECK(root && cJSON_GetObjectItem(cJSON_GetObjectItem(root, "label2id"), "MID")->valueint == 2);
  CHECK(root && cJSON_IsArray(cJSON_GetObjectItem(root, "my_key")));
  cJSON_Delete(root);
  free(js);
  chai_opt_config_free(&d);
  chai_opt_config_free(&c);
  chai_opt_warnings_free(&w);

  CHECK_OK(parse(&c, "{" BASE ", \"num_labels\": 5}", NULL));
  CHECK(c.num_labels == 5);
  chai_opt_config_free(&c);
}

static void test_bad_configs(void) {
  chai_opt_config c;
  struct {
    const char *json;
    chai_status code;
    const char *needle;
  } bad[] = {
      {"{\"vocab_size\": 100", CHAI_ERR_FORMAT, "not valid JSON"},
      {"[1,2]", CHAI_ERR_FORMAT, "JSON object"},
      {"{\"hidden_size\": 32}", CHAI_ERR_FORMAT, "missing key \"vocab_size\""},
      {"{\"vocab_size\": 100, \"hidden_size\": 32, \"num_hidden_layers\": 2, "
       "\"num_attention_heads\": 4, \"max_position_embeddings\": 64}",
       CHAI_ERR_FORMAT, "missing key \"ffn_dim\""},
      {"{" BASE ", \"hidden_size\": \"32\"}", CHAI_ERR_ARG, "\"hidden_size\" must be an integer"},
      {"{\"vocab_size\": 100, \"hidden_size\": 30, \"num_hidden_layers\": 2, "
       "\"num_attention_heads\": 4, \"ffn_dim\": 64, \"max_position_embeddings\": 64}",
       CHAI_ERR_ARG, "hidden_size 30 is not divisible by num_attention_heads 4"},
      {"{\"vocab_size\": 100, \"hidden_size\": 32, \"num_hidden_layers\": 0, "
       "\"num_attention_heads\": 4, \"ffn_dim\": 64, \"max_position_embeddings\": 64}",
       CHAI_ERR_ARG, "\"num_hidden_layers\" is 0"},
      {"{\"vocab_size\": 100, \"hidden_size\": 32, \"num_hidden_layers\": 2.5, "
       "\"num_attention_heads\": 4, \"ffn_dim\": 64, \"max_position_embeddings\": 64}",
       CHAI_ERR_ARG, "got 2.5"},
      {"{" BASE ", \"activation_function\": \"swish\"}", CHAI_ERR_ARG,
       "activation_function\" is \"swish\""},
      {"{" BASE ", \"activation_function\": 3}", CHAI_ERR_ARG, "\"activation_function\" must be"},
      {"{" BASE ", \"do_layer_norm_before\": 1}", CHAI_ERR_ARG,
       "\"do_layer_norm_before\" must be true or false, got 1"},
      {"{" BASE ", \"eos_token_id\": 100}", CHAI_ERR_ARG,
       "\"eos_token_id\" is 100, outside the vocabulary"},
      {"{" BASE ", \"pad_token_id\": -3}", CHAI_ERR_ARG, "\"pad_token_id\" must be a token id"},
      {"{" BASE ", \"eos_token_id\": [2, 3]}", CHAI_ERR_ARG,
       "\"eos_token_id\" must be an integer or null, got [2,3]"},
      {"{" BASE ", \"model_type\": \"gpt2\"}", CHAI_ERR_ARG, "\"model_type\" is \"gpt2\""},
      {"{" BASE ", \"num_labels\": 3, \"id2label\": {\"0\": \"a\", \"1\": \"b\"}}", CHAI_ERR_ARG,
       "num_labels is 3 but id2label names 2 labels"},
      {"{" BASE ", \"id2label\": {\"0\": \"a\", \"5\": \"b\"}}", CHAI_ERR_ARG, "label id \"5\""},
      {"{" BASE ", \"id2label\": {\"0\": \"a\", \"1\": 7}}", CHAI_ERR_ARG,
       "entry \"1\" must be a string"},
      {"{" BASE ", \"num_labels\": 0}", CHAI_ERR_ARG, "\"num_labels\" must be an integer >= 1"},
      {"{" BASE ", \"dropout\": 1.5}", CHAI_ERR_ARG, "\"dropout\" is 1.5"},
      {"{" BASE ", \"word_embed_proj_dim\": -4}", CHAI_ERR_ARG, "\"word_embed_proj_dim\" is -4"},
      {"{" BASE ", \"vocab_size\": 100000000}", CHAI_ERR_ARG, "\"vocab_size\" is 100000000"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_ERR(parse(&c, bad[i].json, NULL), bad[i].code, bad[i].needle);
    CHECK(strstr(chai_last_error(), "cfg.json") != NULL);
  }
  CHECK_ERR(chai_opt_config_load(&c, "/nonexistent/config.json", NULL), CHAI_ERR_IO,
            "/nonexistent/config.json");
}

int main(void) {
  test_real_configs();
  test_defaults_and_labels();
  test_bad_configs();
  return chai_test_finish();
}
