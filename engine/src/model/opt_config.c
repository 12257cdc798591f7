/* OPT config.json: Hugging Face's OPTConfig keys, defaults and checks. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/opt.h"
#include "model/opt_model.h"

/* ---- warnings -------------------------------------------------------------------------------- */

void chai_opt_warnings_free(chai_opt_warnings *w) {
  if (!w) return;
  for (int i = 0; i < w->n; i++)
    free(w->msg[i]);
  free(w->msg);
  w->msg = NULL;
  w->n = w->cap = 0;
}

void opt_warn(chai_opt_warnings *w, const char *fmt, ...) {
  if (!w) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 8;
    char **msg = realloc(w->msg, (size_t)cap * sizeof *msg);
    if (!msg) return; /* a warning lost to OOM is not worth failing the call */
    w->msg = msg;
    w->cap = cap;
  }
  char *s = strdup(buf);
  if (s) w->msg[w->n++] = s;
}

/* ---- defaults -------------------------------------------------------------------------------- */

void chai_opt_config_defaults(chai_opt_config *c) {
  memset(c, 0, sizeof *c);
  c->vocab_size = 50272;
  c->hidden_size = 768;
  c->num_hidden_layers = 12;
  c->num_attention_heads = 12;
  c->ffn_dim = 3072;
  c->max_position_embeddings = 2048;
  c->word_embed_proj_dim = 768;
  c->do_layer_norm_before = true;
  c->remove_final_layer_norm = false;
  c->layer_norm_elementwise_affine = true;
  c->enable_bias = true;
  c->tie_word_embeddings = true;
  c->activation_function = CHAI_OPT_ACT_RELU;
  c->pad_token_id = 1;
  c->bos_token_id = 2;
  c->eos_token_id = 2;
  c->num_labels = 2;
  c->init_std = 0.02;
  c->dropout = 0.1;
  c->attention_dropout = 0.0;
  c->activation_dropout = 0.0;
  c->layerdrop = 0.0;
}

void chai_opt_config_free(chai_opt_config *c) {
  if (!c) return;
  if (c->id2label) {
    for (int i = 0; i < c->num_labels; i++)
      free(c->id2label[i]);
    free(c->id2label);
    c->id2label = NULL;
  }
  free(c->extra_json);
  c->extra_json = NULL;
}

chai_status chai_opt_config_copy(chai_opt_config *dst, const chai_opt_config *src) {
  *dst = *src;
  dst->id2label = NULL;
  dst->extra_json = NULL;
  if (src->id2label) {
    dst->id2label = calloc((size_t)src->num_labels, sizeof(char *));
    if (!dst->id2label) return chai_error(CHAI_ERR_NOMEM, "out of memory copying an OPT config");
    for (int i = 0; i < src->num_labels; i++) {
      dst->id2label[i] = strdup(src->id2label[i] ? src->id2label[i] : "");
      if (!dst->id2label[i]) {
        chai_opt_config_free(dst);
        return chai_error(CHAI_ERR_NOMEM, "out of memory copying an OPT config");
      }
    }
  }
  if (src->extra_json && !(dst->extra_json = strdup(src->extra_json))) {
    chai_opt_config_free(dst);
    return chai_error(CHAI_ERR_NOMEM, "out of memory copying an OPT config");
  }
  return CHAI_OK;
}

const char *chai_opt_config_label(const chai_opt_config *c, int i, char *buf, size_t n) {
  if (c->id2label && i >= 0 && i < c->num_labels) return c->id2label[i];
  snprintf(buf, n, "LABEL_%d", i);
  return buf;
}

/* ---- checks ---------------------------------------------------------------------------------- */

#define SIZE_LIMIT                                                                                 \
  (1 << 24) /* keeps every product of two sizes inside int64 and kernel ints sane */

chai_status chai_opt_config_validate(const chai_opt_config *c, const char *origin) {
  const char *o = origin ? origin : "config";
  struct {
    const char *key;
    int v;
  } sizes[] = {{"vocab_size", c->vocab_size},
               {"hidden_size", c->hidden_size},
               {"num_hidden_layers", c->num_hidden_layers},
               {"num_attention_heads", c->num_attention_heads},
               {"ffn_dim", c->ffn_dim},
               {"max_position_embeddings", c->max_position_embeddings},
               {"word_embed_proj_dim", c->word_embed_proj_dim},
               {"num_labels", c->num_labels}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    if (sizes[i].v < 1 || sizes[i].v > SIZE_LIMIT)
      return chai_error(CHAI_ERR_ARG, "%s: key \"%s\" is %d; it must be between 1 and %d", o,
                        sizes[i].key, sizes[i].v, SIZE_LIMIT);
  if (c->hidden_size % c->num_attention_heads)
    return chai_error(CHAI_ERR_ARG, "%s: hidden_size %d is not divisible by num_attention_heads %d",
                      o, c->hidden_size, c->num_attention_heads);
  if (c->activation_function != CHAI_OPT_ACT_RELU && c->activation_function != CHAI_OPT_ACT_GELU)
    return chai_error(CHAI_ERR_ARG, "%s: activation_function %d is not supported", o,
                      (int)c->activation_function);
  struct {
    const char *key;
    int v;
  } ids[] = {{"pad_token_id", c->pad_token_id},
             {"bos_token_id", c->bos_token_id},
             {"eos_token_id", c->eos_token_id}};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
    if (ids[i].v < -1 || ids[i].v >= c->vocab_size)
      return chai_error(CHAI_ERR_ARG, "%s: key \"%s\" is %d, outside the vocabulary 0..%d", o,
                        ids[i].key, ids[i].v, c->vocab_size - 1);
  struct {
    const char *key;
    double v;
  } rates[] = {{"init_std", c->init_std},
               {"dropout", c->dropout},
               {"attention_dropout", c->attention_dropout},
               {"activation_dropout", c->activation_dropout},
               {"layerdrop", c->layerdrop}};
  for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
    if (!(rates[i].v >= 0) || !isfinite(rates[i].v) || (i > 0 && rates[i].v > 1))
      return chai_error(CHAI_ERR_ARG, "%s: key \"%s\" is %g; it must be %s", o, rates[i].key,
                        rates[i].v, i == 0 ? "a finite number >= 0" : "between 0 and 1");
  return CHAI_OK;
}

/* ---- parsing --------------------------------------------------------------------------------- */

/* Keys of Hugging Face's PretrainedConfig (and generation settings older configs carry) that say
 * nothing about the OPT architecture: kept for saving, no warning. */
static const char *const generic_keys[] = {"_name_or_path",
                                           "chai_attention_heads", /* read by heads/opt_prune.c */
                                           "quantization_config",  /* read by model/opt_qio.c */
                                           "architectures",
                                           "transformers_version",
                                           "prefix",
                                           "use_cache",
                                           "problem_type",
                                           "finetuning_task",
                                           "output_attentions",
                                           "output_hidden_states",
                                           "return_dict",
                                           "torchscript",
                                           "pruned_heads",
                                           "is_decoder",
                                           "is_encoder_decoder",
                                           "add_cross_attention",
                                           "task_specific_params",
                                           "_commit_hash",
                                           "decoder_start_token_id",
                                           "sep_token_id",
                                           "chunk_size_feed_forward",
                                           "tokenizer_class",
                                           "max_length",
                                           "min_length",
                                           "do_sample",
                                           "early_stopping",
                                           "num_beams",
                                           "temperature",
                                           "top_k",
                                           "top_p",
                                           "repetition_penalty",
                                           "length_penalty",
                                           "no_repeat_ngram_size",
                                           "bad_words_ids",
                                           "num_return_sequences",
                                           "output_scores",
                                           "return_dict_in_generate",
                                           "forced_bos_token_id",
                                           "forced_eos_token_id",
                                           "remove_invalid_values",
                                           "diversity_penalty",
                                           "num_beam_groups",
                                           "typical_p",
                                           "encoder_no_repeat_ngram_size",
                                           "tf_legacy_loss",
                                           "use_bfloat16",
                                           "cross_attention_hidden_size",
                                           "tie_encoder_decoder",
                                           "exponential_decay_length_penalty",
                                           "suppress_tokens",
                                           "begin_suppress_tokens",
                                           "_attn_implementation",
                                           "attn_implementation",
                                           "output_projection",
                                           NULL};

static bool in_list(const char *const *list, const char *s) {
  for (; *list; list++)
    if (strcmp(*list, s) == 0) return true;
  return false;
}

/* The JSON text of a value, for messages (truncated). */
static const char *value_text(const cJSON *v, char *buf, size_t n) {
  char *s = cJSON_PrintUnformatted(v);
  snprintf(buf, n, "%s", s ? s : "?");
  if (s && strlen(s) >= n && n > 4) memcpy(buf + n - 4, "...", 4);
  free(s);
  return buf;
}

static chai_status bad_value(const char *o, const cJSON *v, const char *want) {
  char buf[96];
  return chai_error(CHAI_ERR_ARG, "%s: key \"%s\" must be %s, got %s", o, v->string, want,
                    value_text(v, buf, sizeof buf));
}

static chai_status get_int(const char *o, const cJSON *v, int *out, bool nullable) {
  if (nullable && cJSON_IsNull(v)) {
    *out = -1;
    return CHAI_OK;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
      fabs(v->valuedouble) > 2147483647.0)
    return bad_value(o, v, nullable ? "an integer or null" : "an integer");
  *out = (int)v->valuedouble;
  if (nullable && *out < 0) return bad_value(o, v, "a token id >= 0 or null");
  return CHAI_OK;
}

static chai_status get_bool(const char *o, const cJSON *v, bool *out) {
  if (!cJSON_IsBool(v)) return bad_value(o, v, "true or false");
  *out = cJSON_IsTrue(v);
  return CHAI_OK;
}

static chai_status get_double(const char *o, const cJSON *v, double *out) {
  if (!cJSON_IsNumber(v)) return bad_value(o, v, "a number");
  *out = v->valuedouble;
  return CHAI_OK;
}

static chai_status get_id2label(const char *o, const cJSON *v, chai_opt_config *c) {
  if (!cJSON_IsObject(v)) return bad_value(o, v, "an object like {\"0\": \"NEGATIVE\"}");
  int n = cJSON_GetArraySize(v);
  if (n < 1 || n > SIZE_LIMIT) return bad_value(o, v, "a non-empty object");
  char **names = calloc((size_t)n, sizeof(char *));
  if (!names) return chai_error(CHAI_ERR_NOMEM, "%s: out of memory reading id2label", o);
  chai_status st = CHAI_OK;
  const cJSON *e;
  cJSON_ArrayForEach(e, v) {
    char *end;
    errno = 0;
    long id = strtol(e->string, &end, 10);
    if (end == e->string || *end || errno || id < 0 || id >= n) {
      st = chai_error(CHAI_ERR_ARG,
                      "%s: key \"id2label\" has label id \"%s\"; ids must be 0..%d (one per label)",
                      o, e->string, n - 1);
      break;
    }
    if (names[id]) {
      st = chai_error(CHAI_ERR_ARG, "%s: key \"id2label\" repeats label id %ld", o, id);
      break;
    }
    if (!cJSON_IsString(e)) {
      char buf[96];
      st = chai_error(CHAI_ERR_ARG, "%s: key \"id2label\" entry \"%s\" must be a string, got %s", o,
                      e->string, value_text(e, buf, sizeof buf));
      break;
    }
    if (!(names[id] = strdup(e->valuestring))) {
      st = chai_error(CHAI_ERR_NOMEM, "%s: out of memory reading id2label", o);
      break;
    }
  }
  if (st) {
    for (int i = 0; i < n; i++)
      free(names[i]);
    free(names);
    return st;
  }
  c->id2label = names;
  c->num_labels = n;
  return CHAI_OK;
}

static const char *required_keys[] = {"vocab_size",
                                      "hidden_size",
                                      "num_hidden_layers",
                                      "num_attention_heads",
                                      "ffn_dim",
                                      "max_position_embeddings",
                                      NULL};

static chai_status parse_key(const char *o, const cJSON *v, chai_opt_config *c, int *num_labels,
                             bool *has_proj, bool *handled) {
  const char *k = v->string;
  *handled = true;
  if (!strcmp(k, "vocab_size")) return get_int(o, v, &c->vocab_size, false);
  if (!strcmp(k, "hidden_size")) return get_int(o, v, &c->hidden_size, false);
  if (!strcmp(k, "num_hidden_layers")) return get_int(o, v, &c->num_hidden_layers, false);
  if (!strcmp(k, "num_attention_heads")) return get_int(o, v, &c->num_attention_heads, false);
  if (!strcmp(k, "ffn_dim")) return get_int(o, v, &c->ffn_dim, false);
  if (!strcmp(k, "max_position_embeddings"))
    return get_int(o, v, &c->max_position_embeddings, false);
  if (!strcmp(k, "word_embed_proj_dim")) {
    if (cJSON_IsNull(v)) return CHAI_OK; /* None: hidden_size, as HF */
    *has_proj = true;
    return get_int(o, v, &c->word_embed_proj_dim, false);
  }
  if (!strcmp(k, "do_layer_norm_before")) return get_bool(o, v, &c->do_layer_norm_before);
  if (!strcmp(k, "_remove_final_layer_norm")) return get_bool(o, v, &c->remove_final_layer_norm);
  if (!strcmp(k, "layer_norm_elementwise_affine"))
    return get_bool(o, v, &c->layer_norm_elementwise_affine);
  if (!strcmp(k, "enable_bias")) return get_bool(o, v, &c->enable_bias);
  if (!strcmp(k, "tie_word_embeddings")) return get_bool(o, v, &c->tie_word_embeddings);
  if (!strcmp(k, "activation_function")) {
    if (!cJSON_IsString(v)) return bad_value(o, v, "a string (\"relu\" or \"gelu\")");
    if (!strcmp(v->valuestring, "relu"))
      c->activation_function = CHAI_OPT_ACT_RELU;
    else if (!strcmp(v->valuestring, "gelu"))
      c->activation_function = CHAI_OPT_ACT_GELU;
    else
      return chai_error(CHAI_ERR_ARG,
                        "%s: key \"activation_function\" is \"%s\", which is not supported "
                        "(supported: \"relu\", \"gelu\")",
                        o, v->valuestring);
    return CHAI_OK;
  }
  if (!strcmp(k, "pad_token_id")) return get_int(o, v, &c->pad_token_id, true);
  if (!strcmp(k, "bos_token_id")) return get_int(o, v, &c->bos_token_id, true);
  if (!strcmp(k, "eos_token_id")) return get_int(o, v, &c->eos_token_id, true);
  if (!strcmp(k, "num_labels")) {
    chai_status st = get_int(o, v, num_labels, false);
    if (!st && *num_labels < 1) return bad_value(o, v, "an integer >= 1");
    return st;
  }
  if (!strcmp(k, "id2label")) return get_id2label(o, v, c);
  if (!strcmp(k, "init_std")) return get_double(o, v, &c->init_std);
  if (!strcmp(k, "dropout")) return get_double(o, v, &c->dropout);
  if (!strcmp(k, "attention_dropout")) return get_double(o, v, &c->attention_dropout);
  if (!strcmp(k, "activation_dropout")) return get_double(o, v, &c->activation_dropout);
  if (!strcmp(k, "layerdrop")) return get_double(o, v, &c->layerdrop);
  if (!strcmp(k, "model_type")) {
    if (!cJSON_IsString(v) || strcmp(v->valuestring, "opt") != 0) {
      char buf[96];
      return chai_error(CHAI_ERR_ARG, "%s: key \"model_type\" is %s; chai reads \"opt\" models", o,
                        value_text(v, buf, sizeof buf));
    }
    return CHAI_OK;
  }
  /* Derived or rewritten on save. */
  if (!strcmp(k, "label2id") || !strcmp(k, "torch_dtype") || !strcmp(k, "dtype")) return CHAI_OK;
  *handled = false;
  return CHAI_OK;
}

chai_status chai_opt_config_parse(chai_opt_config *c, const char *json, size_t len,
                                  const char *origin, chai_opt_warnings *warnings) {
  const char *o = origin ? origin : "config.json";
  chai_opt_config_defaults(c);
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!root) {
    const char *at = cJSON_GetErrorPtr();
    long off = at && at >= json && at <= json + len ? (long)(at - json) : -1;
    return chai_error(CHAI_ERR_FORMAT, "%s: not valid JSON (near byte %ld)", o, off);
  }
  chai_status st = CHAI_OK;
  cJSON *extra = NULL;
  if (!cJSON_IsObject(root)) {
    st = chai_error(CHAI_ERR_FORMAT, "%s: expected a JSON object at the top level", o);
    goto done;
  }
  for (const char **r = required_keys; *r; r++)
    if (!cJSON_GetObjectItemCaseSensitive(root, *r)) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: missing key \"%s\"", o, *r);
      goto done;
    }
  extra = cJSON_CreateObject();
  if (!extra) {
    st = chai_error(CHAI_ERR_NOMEM, "%s: out of memory", o);
    goto done;
  }
  int num_labels = 0;
  bool has_proj = false;
  const cJSON *v;
  cJSON_ArrayForEach(v, root) {
    bool handled;
    if ((st = parse_key(o, v, c, &num_labels, &has_proj, &handled))) goto done;
    if (handled) continue;
    if (cJSON_GetObjectItemCaseSensitive(extra, v->string)) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: key \"%s\" appears twice", o, v->string);
      goto done;
    }
    if (!in_list(generic_keys, v->string))
      opt_warn(warnings, "%s: unknown key \"%s\" ignored", o, v->string);
    cJSON *dup = cJSON_Duplicate(v, 1);
    if (!dup) {
      st = chai_error(CHAI_ERR_NOMEM, "%s: out of memory", o);
      goto done;
    }
    cJSON_AddItemToObject(extra, v->string, dup);
  }
  if (!has_proj) c->word_embed_proj_dim = c->hidden_size;
  if (num_labels) {
    if (c->id2label && num_labels != c->num_labels) {
      st = chai_error(CHAI_ERR_ARG, "%s: num_labels is %d but id2label names %d labels", o,
                      num_labels, c->num_labels);
      goto done;
    }
    c->num_labels = num_labels;
  }
  if ((st = chai_opt_config_validate(c, o))) goto done;
  if (cJSON_GetArraySize(extra) > 0) {
    c->extra_json = cJSON_PrintUnformatted(extra);
    if (!c->extra_json) st = chai_error(CHAI_ERR_NOMEM, "%s: out of memory", o);
  }
done:
  cJSON_Delete(extra);
  cJSON_Delete(root);
  if (st) chai_opt_config_free(c);
  return st;
}

chai_status chai_opt_config_load(chai_opt_config *c, const char *path,
                                 chai_opt_warnings *warnings) {
  chai_opt_config_defaults(c);
  FILE *f = fopen(path, "rb");
  if (!f) return chai_error(CHAI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  /* A config is a few KB; refuse anything absurd before reading it. */
  if (fseek(f, 0, SEEK_END) != 0) {
    fclose(f);
    return chai_error(CHAI_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  }
  long n = ftell(f);
  if (n < 0 || n > (16l << 20)) {
    fclose(f);
    return chai_error(CHAI_ERR_FORMAT, "%s: %ld bytes is not a plausible config.json", path, n);
  }
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  if (!buf) {
    fclose(f);
    return chai_error(CHAI_ERR_NOMEM, "out of memory reading %s", path);
  }
  size_t got = fread(buf, 1, (size_t)n, f);
  int err = ferror(f);
  fclose(f);
  if (err || got != (size_t)n) {
    free(buf);
    return chai_error(CHAI_ERR_IO, "cannot read %s", path);
  }
  buf[n] = 0;
  chai_status st = chai_opt_config_parse(c, buf, (size_t)n, path, warnings);
  free(buf);
  return st;
}

/* ---- writing --------------------------------------------------------------------------------- */

static int cmp_items(const void *a, const void *b) {
  const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
  return strcmp(x->string, y->string);
}

static cJSON *id_or_null(int id) {
  return id < 0 ? cJSON_CreateNull() : cJSON_CreateNumber(id);
}

chai_status chai_opt_config_to_json(const chai_opt_config *c, chai_dtype dtype, char **out) {
  *out = NULL;
  cJSON *obj = c->extra_json ? cJSON_Parse(c->extra_json) : cJSON_CreateObject();
  if (!obj) return chai_error(CHAI_ERR_NOMEM, "out of memory writing an OPT config");
  const char *act = c->activation_function == CHAI_OPT_ACT_GELU ? "gelu" : "relu";
  const char *tdt = dtype == CHAI_F16 ? "float16" : dtype == CHAI_BF16 ? "bfloat16" : "float32";
  cJSON *id2label = cJSON_CreateObject(), *label2id = cJSON_CreateObject();
  for (int i = 0; id2label && label2id && i < c->num_labels; i++) {
    char key[32], nb[32];
    snprintf(key, sizeof key, "%d", i);
    const char *name = chai_opt_config_label(c, i, nb, sizeof nb);
    cJSON_AddItemToObject(id2label, key, cJSON_CreateString(name));
    if (!cJSON_GetObjectItemCaseSensitive(label2id, name))
      cJSON_AddItemToObject(label2id, name, cJSON_CreateNumber(i));
  }
  struct {
    const char *key;
    cJSON *v;
  } kv[] = {
      {"_remove_final_layer_norm", cJSON_CreateBool(c->remove_final_layer_norm)},
      {"activation_dropout", cJSON_CreateNumber(c->activation_dropout)},
      {"activation_function", cJSON_CreateString(act)},
      {"attention_dropout", cJSON_CreateNumber(c->attention_dropout)},
      {"bos_token_id", id_or_null(c->bos_token_id)},
      {"do_layer_norm_before", cJSON_CreateBool(c->do_layer_norm_before)},
      {"dropout", cJSON_CreateNumber(c->dropout)},
      {"enable_bias", cJSON_CreateBool(c->enable_bias)},
      {"eos_token_id", id_or_null(c->eos_token_id)},
      {"ffn_dim", cJSON_CreateNumber(c->ffn_dim)},
      {"hidden_size", cJSON_CreateNumber(c->hidden_size)},
      {"id2label", id2label},
      {"init_std", cJSON_CreateNumber(c->init_std)},
      {"label2id", label2id},
      {"layer_norm_elementwise_affine", cJSON_CreateBool(c->layer_norm_elementwise_affine)},
      {"layerdrop", cJSON_CreateNumber(c->layerdrop)},
      {"max_position_embeddings", cJSON_CreateNumber(c->max_position_embeddings)},
      {"model_type", cJSON_CreateString("opt")},
      {"num_attention_heads", cJSON_CreateNumber(c->num_attention_heads)},
      {"num_hidden_layers", cJSON_CreateNumber(c->num_hidden_layers)},
      {"pad_token_id", id_or_null(c->pad_token_id)},
      {"tie_word_embeddings", cJSON_CreateBool(c->tie_word_embeddings)},
      {"torch_dtype", cJSON_CreateString(tdt)},
      {"vocab_size", cJSON_CreateNumber(c->vocab_size)},
      {"word_embed_proj_dim", cJSON_CreateNumber(c->word_embed_proj_dim)},
  };
  bool ok = true;
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
    if (!kv[i].v) {
      ok = false;
      continue;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, kv[i].key);
    cJSON_AddItemToObject(obj, kv[i].key, kv[i].v);
  }
  if (!cJSON_GetObjectItemCaseSensitive(obj, "architectures")) {
    cJSON *arch = cJSON_CreateArray();
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString("OPTForCausalLM"));
    if (arch) cJSON_AddItemToObject(obj, "architectures", arch);
  }
  /* Hugging Face writes config.json with sorted keys. */
  int n = cJSON_GetArraySize(obj);
  cJSON **items = malloc((size_t)(n ? n : 1) * sizeof *items);
  if (!items) ok = false;
  if (ok) {
    int i = 0;
    cJSON *it = obj->child;
    while (it) {
      cJSON *next = it->next;
      items[i++] = cJSON_DetachItemViaPointer(obj, it);
      it = next;
    }
    qsort(items, (size_t)n, sizeof *items, cmp_items);
    for (i = 0; i < n; i++)
      cJSON_AddItemToArray(obj, items[i]); /* keeps ->string */
    *out = cJSON_Print(obj);
  }
  free(items);
  cJSON_Delete(obj);
  if (!*out) return chai_error(CHAI_ERR_NOMEM, "out of memory writing an OPT config");
  return CHAI_OK;
}
