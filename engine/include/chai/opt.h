/* chai — OPT models as Hugging Face transformers defines them: config.json, weights from a
 * checkpoint, the decoder forward (pre-LN and post-LN), a causal-LM head and a
 * sequence-classification head, a per-layer KV cache, generation and saving.
 *
 * One code path serves every OPT variant: the config decides pre-LN (opt-125m, opt-1.3b) or post-LN
 * with project_in/project_out and no final LayerNorm (opt-350m). Token positions come from the
 * attention mask's cumulative sum plus 2 (OPT's learned-position offset), so left padding gives the
 * same logits for the real tokens as no padding. */
#ifndef CHAI_OPT_H
#define CHAI_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"
#include "chai/quant.h"
#include "chai/rng.h"
#include "chai/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- config ---------------------------------------------------------------------------------- */

typedef enum chai_opt_activation { CHAI_OPT_ACT_RELU = 0, CHAI_OPT_ACT_GELU } chai_opt_activation;

/* Every field carries the Hugging Face OPTConfig key of the same name (remove_final_layer_norm is
 * "_remove_final_layer_norm"). Token ids are -1 when the config has null. */
typedef struct chai_opt_config {
  int vocab_size;
  int hidden_size;
  int num_hidden_layers;
  int num_attention_heads;
  int ffn_dim;
  int max_position_embeddings;
  int word_embed_proj_dim; /* hidden_size when absent */
  bool do_layer_norm_before;
  bool remove_final_layer_norm;
  bool layer_norm_elementwise_affine;
  bool enable_bias;
  bool tie_word_embeddings;
  chai_opt_activation activation_function;
  int pad_token_id, bos_token_id, eos_token_id;
  int num_labels;
  char **id2label; /* num_labels names (owned), or NULL: then "LABEL_0", ... */
  /* Training-time values: kept so that a saved config.json round-trips. */
  double init_std, dropout, attention_dropout, activation_dropout, layerdrop;
  /* Keys this parser does not interpret (architectures, torch_dtype, ...), as a JSON object text
   * (owned), written back by chai_opt_config_to_json. NULL when there are none. */
  char *extra_json;
} chai_opt_config;

/* A list of warnings (owned strings), for things that are legal but worth saying: unknown config
 * keys, an ignored lm_head.weight, unexpected checkpoint keys, a randomly initialised score head.
 */
typedef struct chai_opt_warnings {
  int n, cap;
  char **msg;
} chai_opt_warnings;
void chai_opt_warnings_free(chai_opt_warnings *w);

/* Fills *cfg with Hugging Face's OPTConfig defaults for the optional keys (the 125m shape for the
 * rest). extra_json and id2label are NULL. */
void chai_opt_config_defaults(chai_opt_config *cfg);
/* Parses config.json text (`len` bytes). The shape keys (vocab_size, hidden_size,
 * num_hidden_layers, num_attention_heads, ffn_dim, max_position_embeddings) are required; the rest
 * default as in Hugging Face. CHAI_ERR_FORMAT for bad JSON or a missing key; CHAI_ERR_ARG for a
 * value of the wrong type, out of range, unknown (an activation, a model_type) or inconsistent with
 * another (hidden_size not divisible by num_attention_heads, a token id >= vocab_size, num_labels
 * disagreeing with id2label); the message names `origin`, the key and the value. Unknown keys are
 * kept in extra_json and, when `warnings` is not NULL, reported there. On success *cfg owns its
 * strings (chai_opt_config_free); on failure *cfg holds nothing to free. */
chai_status chai_opt_config_parse(chai_opt_config *cfg, const char *json, size_t len,
                                  const char *origin, chai_opt_warnings *warnings);
/* Reads and parses a config.json file (CHAI_ERR_IO naming the path when it cannot be read). */
chai_status chai_opt_config_load(chai_opt_config *cfg, const char *path,
                                 chai_opt_warnings *warnings);
/* The same checks as parse, on a config built in C. */
chai_status chai_opt_config_validate(const chai_opt_config *cfg, const char *origin);
/* A deep copy (dst owns new strings). */
chai_status chai_opt_config_copy(chai_opt_config *dst, const chai_opt_config *src);
void chai_opt_config_free(chai_opt_config *cfg);
/* config.json text with the Hugging Face key names (plus extra_json's keys; torch_dtype set from
 * `dtype`). *out is malloc'ed; the caller frees it with free(). */
chai_status chai_opt_config_to_json(const chai_opt_config *cfg, chai_dtype dtype, char **out);
/* The label name of class i ("LABEL_i" when the config has no id2label). */
const char *chai_opt_config_label(const chai_opt_config *cfg, int i, char *buf, size_t n);

/* ---- model ----------------------------------------------------------------------------------- */

typedef struct chai_opt_model chai_opt_model;

/* ---- quantization plan (engine/src/model/opt_quant.c; formats in chai/quant.h) ---------------- */

/* A format choice that leaves a matrix (or the KV cache) as it is. */
#define CHAI_OPT_KEEP (-1)
/* The matrices of one decoder layer, in this order. */
enum { CHAI_OPT_MQ = 0, CHAI_OPT_MK, CHAI_OPT_MV, CHAI_OPT_MOUT, CHAI_OPT_MFC1, CHAI_OPT_MFC2,
       CHAI_OPT_LAYER_MATRICES };

/* What to quantize: each field a chai_qformat or CHAI_OPT_KEEP. The int4 options (group,
 * zero_point, f16_scales) and the method apply to every matrix quantized by the call. */
typedef struct chai_opt_quant {
  int embeddings; /* embed_tokens and embed_positions */
  int lm_head;    /* tied models: CHAI_OPT_KEEP or the embeddings' format */
  int score;
  int project_in, project_out;
  int (*layers)[CHAI_OPT_LAYER_MATRICES]; /* num_hidden_layers rows, or NULL (all kept) */
  int kv;                                 /* CHAI_QF_F32 or CHAI_QF_INT8 (or KEEP) */
  int group;                              /* int4: 32, 64 or 128 */
  bool zero_point, f16_scales;
  chai_qmethod method;
} chai_opt_quant;

/* Everything kept; group 64, symmetric, f32 scales, round-to-nearest. */
void chai_opt_quant_init(chai_opt_quant *q);

typedef struct chai_opt_load_opts {
  /* The dtype the matrices are kept in: CHAI_F32 (default; exact) or CHAI_F16 / CHAI_BF16 (half
   * the memory; converted to f32 a block of rows at a time inside each matmul). Biases and
   * LayerNorms are always f32. */
  chai_dtype dtype;
  /* Draws for a score.weight the checkpoint lacks; NULL = chai_rng_global(). */
  chai_rng *rng;
  /* Copy every weight out of the mmapped file into the process's own memory instead of using it
   * in place. Costs the copy at load; decoding, which streams all weights per token, ran ~25%
   * faster here from freshly allocated memory than from long-cached page-cache pages (measured in
   * docs/benchmarks.md). false (the default) keeps the zero-copy mapping. */
  bool copy_weights;
  /* Quantize while loading (NULL: as stored): each matrix goes from the file to its format one
   * block of rows at a time, so no f32 copy of the model is ever held. */
  const chai_opt_quant *quant;
} chai_opt_load_opts;

/* Loads an OPT model from a folder holding config.json and a checkpoint (see chai/checkpoint.h:
 * model.safetensors, pytorch_model.bin or a sharded *.index.json). opts may be NULL (f32).
 * Weight keys may start with "decoder." or "model.decoder."; lm_head.weight is tied to
 * embed_tokens when tie_word_embeddings (a different stored lm_head.weight is ignored with a
 * warning naming it); a missing score.weight is drawn from opts->rng (normal, init_std) and
 * classify() warns about it. Failures name the file and key: a missing key, a shape mismatch (both
 * shapes), an unsupported dtype. Unexpected keys become warnings. F32 tensors of an f32 load are
 * used in place (no copy of an mmapped safetensors file) unless opts->copy_weights. *out is NULL on
 * failure. */
chai_status chai_opt_load(chai_opt_model **out, const char *dir, const chai_opt_load_opts *opts);
/* A new model with Hugging Face's initialisation (normal(0, init_std) matrices and embeddings,
 * zero biases, unit LayerNorms, a zero padding row) drawn from `rng` (NULL = global). */
chai_status chai_opt_create(chai_opt_model **out, const chai_opt_config *cfg, chai_dtype dtype,
                            chai_rng *rng);
/* A new model that shares nothing with src: its config, and every parameter copied in its format
 * (quantized matrices keep their codes), the KV cache format, the score head's origin. Not copied:
 * the head-clustering plan, training state, caches. */
chai_status chai_opt_clone(chai_opt_model **out, const chai_opt_model *src);
/* Frees the model and everything it owns. NULL is ignored. */
void chai_opt_free(chai_opt_model *m);

const chai_opt_config *chai_opt_get_config(const chai_opt_model *m);
/* CHAI_F32, CHAI_F16 or CHAI_BF16: the dtype of the matrices. */
chai_dtype chai_opt_dtype(const chai_opt_model *m);
/* Parameters in Hugging Face's names ("model.decoder.layers.0.fc1.weight", "lm_head.weight" only
 * when untied, "score.weight"); `*t` is a borrowed view valid while the model lives. */
int chai_opt_param_count(const chai_opt_model *m);
const char *chai_opt_param(const chai_opt_model *m, int i, chai_tensor *t);
/* As Hugging Face counts them: the decoder plus an untied lm_head, plus score.weight when the
 * checkpoint carried it. */
int64_t chai_opt_num_parameters(const chai_opt_model *m);
/* Bytes held: parameters, the KV cache, the activation arena. */
void chai_opt_memory(const chai_opt_model *m, size_t *weights, size_t *kv_cache,
                     size_t *activations);
/* True when the classification head was drawn at load (the checkpoint had no score.weight) and
 * has not been marked trained since: its logits are those of a random head. */
bool chai_opt_score_random(const chai_opt_model *m);
/* Marks the classification head as trained (after training it; chai.ktq does): score_random turns
 * false and classify no longer warns about a random head. */
void chai_opt_score_mark_trained(chai_opt_model *m);
/* Warnings collected so far (load, classify); strings owned by the model. */
int chai_opt_warning_count(const chai_opt_model *m);
const char *chai_opt_warning(const chai_opt_model *m, int i);

/* Causal-LM logits. ids (B,T) row-major; mask (B,T) with 1 for real tokens and 0 for padding,
 * or NULL (all real). *logits gets a new f32 tensor (B,T,vocab), or (B,vocab) when last_only (the
 * logits of position T-1). Logits at padding positions are computed but carry no meaning.
 * CHAI_ERR_ARG for a bad size, an id outside the vocabulary (naming it and its position), a mask
 * value other than 0/1, or T beyond max_position_embeddings. */
chai_status chai_opt_forward(chai_opt_model *m, chai_tensor *logits, const int32_t *ids,
                             const int32_t *mask, int B, int T, bool last_only);
/* Sequence-classification logits (B,num_labels) from the `score` head on each row's last non-pad
 * token, found exactly as Hugging Face's OPTForSequenceClassification does: the rightmost position
 * whose id is not pad_token_id (position 0 when all are pad). With left or right padding that is
 * the last real token. With no pad_token_id, B must be 1 and the last position is used. */
chai_status chai_opt_classify(chai_opt_model *m, chai_tensor *scores, const int32_t *ids,
                              const int32_t *mask, int B, int T);

/* ---- quantization ---------------------------------------------------------------------------- */

/* Puts the model's matrices and KV cache in the formats q names (in place). A matrix already in a
 * quantized format is requantized from its dequantized values; one already in the asked format (same
 * group and options) is left untouched. Quantized matrices are frozen for training (their inputs'
 * gradients still flow through them). CHAI_ERR_ARG naming the matrix for a format it cannot take
 * (an lm_head format that differs from the tied embeddings', a kv format other than f32/int8, a
 * group other than 32/64/128), or for NaN/Inf weights; CHAI_ERR_UNSUPPORTED for a pruned model.
 * On failure the matrices done so far keep their new formats. */
chai_status chai_opt_quantize(chai_opt_model *m, const chai_opt_quant *q);
/* The format of parameter i (vectors are f32); *spec (may be NULL) gets its int4 options. */
chai_qformat chai_opt_param_format(const chai_opt_model *m, int i, chai_qspec *spec);
/* The matrix of parameter i as the quant room holds it, or NULL for a vector. Borrowed. */
const chai_qmat *chai_opt_param_qmat(const chai_opt_model *m, int i);
/* CHAI_QF_F32 or CHAI_QF_INT8. */
chai_qformat chai_opt_kv_format(const chai_opt_model *m);
/* Bytes of the parameters by format (scales and zero points included), indexed by chai_qformat. */
void chai_opt_weight_bytes(const chai_opt_model *m, size_t bytes[CHAI_QF_COUNT]);

/* ---- incremental decoding -------------------------------------------------------------------- */

/* Empties the KV cache and (re)allocates it for B rows of up to `capacity` tokens each
 * (capacity <= max_position_embeddings, else CHAI_ERR_ARG naming both). The buffer is kept for
 * later calls with the same or smaller sizes. */
chai_status chai_opt_cache_begin(chai_opt_model *m, int B, int capacity);
/* Tokens held in the cache so far (0 after begin). */
int chai_opt_cache_length(const chai_opt_model *m);
/* Runs ids (B,T) (mask as in chai_opt_forward, NULL = all real) after the cached tokens, appends
 * their keys and values to the cache and writes the logits of the last position, (B,vocab), to
 * `logits` (caller's buffer; may be NULL to skip the LM head). CHAI_ERR_ARG naming the sizes when
 * the tokens would not fit in the capacity, or B differs from chai_opt_cache_begin's. */
chai_status chai_opt_cache_step(chai_opt_model *m, float *logits, const int32_t *ids,
                                const int32_t *mask, int B, int T);

/* ---- generation ------------------------------------------------------------------------------ */

typedef struct chai_opt_generate_opts {
  int max_new_tokens; /* >= 0 */
  bool sample;        /* false: greedy (temperature, top_k, top_p unused) */
  float temperature;  /* > 0; logits are divided by it */
  int top_k;          /* 0: off; else keep the k most likely tokens */
  float top_p;        /* (0,1]; 1: off; else the smallest set with probability >= top_p */
  uint64_t seed;      /* sampling draws come from chai_rng seeded with this */
  int eos_token_id;   /* stop after emitting it; -1: never stop early */
} chai_opt_generate_opts;

/* The config's eos, greedy, 20 new tokens, temperature 1, no top-k/top-p, seed 0. */
void chai_opt_generate_defaults(const chai_opt_model *m, chai_opt_generate_opts *o);
/* Continues one prompt ids[0..n_prompt-1]: fills out[0..*n_out-1] with the new tokens (at most
 * max_new_tokens; an eos that ends generation is included). `out` must hold max_new_tokens ids.
 * Uses the KV cache (prompt through one batched prefill, then one token per step).
 * CHAI_ERR_ARG when the prompt is empty, an option is out of range (naming it), or prompt plus new
 * tokens would exceed max_position_embeddings (naming the three numbers). */
chai_status chai_opt_generate(chai_opt_model *m, int32_t *out, int *n_out, const int32_t *ids,
                              int n_prompt, const chai_opt_generate_opts *o);
/* Picks the next token from logits (V) under o (greedy: the first maximum, as torch.argmax).
 * Sampling follows Hugging Face's warper order: temperature, then top-k, then top-p, then one draw
 * from `rng`. `scratch` holds V floats and `order` V ints. Used by chai_opt_generate; exposed for
 * tests. */
int chai_opt_sample(const float *logits, int V, const chai_opt_generate_opts *o, chai_rng *rng,
                    float *scratch, int32_t *order);

/* ---- scoring (zero-shot evaluation) ---------------------------------------------------------- */

/* One multiple-choice item: a context and its continuations (token ids). ll and greedy are
 * outputs, one per continuation. */
typedef struct chai_opt_score_item {
  const int32_t *ctx;
  int ctx_len; /* >= 1 */
  int n_choices;
  const int32_t *const *cont; /* cont[j] has cont_len[j] >= 1 ids */
  const int *cont_len;
  double *ll;   /* out: summed log-probability of cont[j] after ctx (log-softmax in double) */
  bool *greedy; /* out: every token of cont[j] is the argmax of its prediction */
} chai_opt_score_item;

/* Scores every continuation of every item as lm-evaluation-harness does: log p(cont | ctx) summed
 * over the continuation tokens, each predicted from the position before it. The items' contexts run
 * once, as one left-padded batch, into the KV cache; each choice then runs from the cached context
 * and the cache is rolled back. Uses (and resets) the model's KV cache. CHAI_ERR_ARG naming the
 * item for an empty context or continuation, an id outside the vocabulary, or a context plus
 * continuation longer than max_position_embeddings (truncate the context first). */
chai_status chai_opt_score_continuations(chai_opt_model *m, const chai_opt_score_item *items,
                                         int n_items);

/* ---- saving ---------------------------------------------------------------------------------- */

/* Writes dir/config.json and dir/model.safetensors (Hugging Face key names, "model.decoder."
 * prefix, lm_head.weight only when untied, score.weight) in the model's dtype; creates `dir` when
 * missing. Loading it back gives bit-identical logits. CHAI_ERR_IO naming the path on failure. */
chai_status chai_opt_save(const chai_opt_model *m, const char *dir);

/* ---- the decoding bandwidth ceiling ---------------------------------------------------------- */

/* Bytes one decoded token reads: every weight matrix (the tied embedding once, as the LM head),
 * one row of each embedding table, and the cached keys and values of `context` tokens as the
 * cache holds them (chai_opt_kv_bytes_per_token: fewer K under head clustering, fewer K and V
 * in a pruned model). */
size_t chai_opt_decode_bytes(const chai_opt_model *m, int64_t context);
/* Streams a `bytes` buffer with every thread `reps` times; *gbps = the best read rate in 1e9
 * bytes/s. CHAI_ERR_ARG below 1 MB, CHAI_ERR_NOMEM when the buffer cannot be had. */
chai_status chai_opt_read_bandwidth(size_t bytes, int reps, double *gbps);
/* The streaming kernel: the wrapping sum of n words (AVX2 when available; _ref is the scalar
 * twin; both exact). */
uint64_t chai_opt_read_sum(const uint64_t *p, size_t n);
uint64_t chai_opt_read_sum_ref(const uint64_t *p, size_t n);

#ifdef __cplusplus
}
#endif
#endif
