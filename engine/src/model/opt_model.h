/* Internals of the OPT model shared by engine/src/model/opt_*.c (and later the backward pass,
 * head clustering and quantization). Not a public header. */
#ifndef CHAI_MODEL_OPT_MODEL_H
#define CHAI_MODEL_OPT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/opt.h"
#include "chai/tensor.h"

/* Adds a printf-style warning to w (NULL is ignored). */
void opt_warn(chai_opt_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One parameter: its Hugging Face name, expected shape, and the tensor (f32, or the model dtype
 * for matrices). Absent parameters (no bias, no project_in, ...) are not in the table at all. */
typedef struct opt_param {
  char name[96];
  int ndim;
  int64_t shape[2];
  bool matrix; /* kept in the model dtype; vectors are always f32 */
  chai_tensor t;
} opt_param;

/* Pointers into the parameter table for one decoder layer; NULL when the config has no such
 * parameter (enable_bias false, layer_norm_elementwise_affine false). */
typedef struct opt_layer {
  opt_param *ln1_w, *ln1_b;                                 /* self_attn_layer_norm (C) */
  opt_param *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b; /* (C,C), (C) */
  opt_param *ln2_w, *ln2_b;                                 /* final_layer_norm (C) */
  opt_param *fc1_w, *fc1_b;                                 /* (F,C), (F) */
  opt_param *fc2_w, *fc2_b;                                 /* (C,F), (C) */
} opt_layer;

/* The activation arena: float buffers for one forward over up to `tokens` (B·T) tokens with key
 * masks of up to `mask` floats. One layer's buffers serve every layer in inference. */
typedef struct opt_acts {
  chai_storage *storage;
  size_t tokens, mask_cap, rows; /* capacities: tokens, key-mask floats, gathered rows */
  float *x;                      /* (N,C) residual stream */
  float *h;                      /* (N,C) LayerNorm output, then attention output projection */
  float *q;                      /* (N,C) */
  float *k, *v;                  /* (N,C) keys and values when no KV cache is used */
  float *att;                    /* (N,C) attention output (heads concatenated) */
  float *ffh;                    /* (N,F) FFN hidden */
  float *emb;                    /* (N,P) token embeddings before project_in (when P != C) */
  float *rowsC;                  /* (R,C) gathered last rows */
  float *rowsP;                  /* (R,P) their final features */
  float *rowsC2;                 /* (R,C) LayerNorm scratch for the gathered rows */
  float *keymask;                /* (mask_cap) */
  int32_t *pos;                  /* (N) position ids + 2 */
  int *rowidx;                   /* (R) flat token indices of the gathered rows */
} opt_acts;

/* The KV cache: K and V for every layer, (B, capacity, C) each, plus the key mask (B, capacity)
 * and the count of real tokens per row (for positions). */
typedef struct opt_kv {
  chai_storage *storage;
  int B, capacity, len;
  float **k, **v; /* per layer */
  float *mask;    /* (B, capacity) */
  int *count;     /* (B) */
} opt_kv;

struct chai_opt_model {
  chai_opt_config cfg;
  chai_dtype dtype;
  int n_params;
  opt_param *params;
  opt_layer *layers;
  opt_param *embed_tokens, *embed_positions, *project_in, *project_out;
  opt_param *final_ln_w, *final_ln_b;
  opt_param *lm_head; /* == embed_tokens when tied */
  opt_param *score;
  bool score_from_checkpoint; /* else drawn at load; classify() warns once */
  bool score_warned;
  char score_note[512];
  /* Per-layer head-cluster maps for attention (chai_attention_args.score_head), NULL = every head
   * scores for itself. Set by head clustering (issue 6); owned by whoever sets them. */
  const int **score_head;
  chai_opt_warnings warnings;
  opt_acts acts;
  opt_kv kv;
  /* f32 rows of a low-precision matrix, converted a block at a time. */
  float *lowp_scratch;
  size_t lowp_scratch_floats;
  /* Training state (gradients, frozen flags, saved activations): opt_train.c; NULL until used. */
  struct opt_train *train;
};

/* Frees m->train (opt_train.c); called by opt_model_destroy. */
void opt_train_free(chai_opt_model *m);

/* Builds the parameter table and layer pointers for m->cfg (tensors released). */
chai_status opt_params_build(chai_opt_model *m);
/* Releases tensors, arena, cache, warnings, config; frees the model. */
void opt_model_destroy(chai_opt_model *m);
/* Finds a parameter by its full name, or NULL. */
opt_param *opt_param_find(chai_opt_model *m, const char *name);

/* out (N,OC) = inp (N,C) · W (OC,C)ᵀ + bias (OC); W f32, f16 or bf16 (converted in row blocks). */
void opt_linear(chai_opt_model *m, float *out, const float *inp, const opt_param *w,
                const opt_param *bias, int N, int C, int OC);
/* Makes the arena hold `tokens` tokens, `mask` key-mask floats and `rows` gathered rows. */
chai_status opt_acts_reserve(chai_opt_model *m, size_t tokens, size_t mask, size_t rows);

/* The arena request of a decoder run over B·T tokens gathering n_rows rows. */
chai_status opt_acts_reserve_run(chai_opt_model *m, int B, int T, const int32_t *mask,
                                 bool use_cache, int n_rows);
/* The decoder over ids (B,T), after the cached tokens when use_cache (their keys and values are
 * appended to the cache; the caller advances it). *feats points at the final features (in the
 * arena): (n_rows,P) for the flat token indices in `rows`, or (B·T,P) when rows is NULL. The
 * caller has made the arena big enough with opt_acts_reserve_run (rows may live in it). */
chai_status opt_decoder_run(chai_opt_model *m, const int32_t *ids, const int32_t *mask, int B,
                            int T, bool use_cache, const int *rows, int n_rows,
                            const float **feats);

#endif
