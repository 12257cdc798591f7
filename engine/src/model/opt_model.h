/* Internals of the OPT model shared by engine/src/model/opt_*.c (and later the backward pass,
 * head clustering and quantization). Not a public header. */
#ifndef CHAI_MODEL_OPT_MODEL_H
#define CHAI_MODEL_OPT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/ops.h"
#include "chai/checkpoint.h"
#include "chai/opt.h"
#include "chai/quant.h"
#include "chai/tensor.h"

/* Adds a printf-style warning to w (NULL is ignored). */
void opt_warn(chai_opt_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One parameter: its Hugging Face name, expected shape, and its values. Vectors are f32 tensors
 * in `t`. A matrix is `q`, the quant room's matrix: an f32/f16 `q` is a view of the row-major `t`;
 * a packed format (bf16, int8, int4) owns its bytes and `t` is released. Absent parameters (no
 * bias, no project_in, ...) are not in the table at all. */
typedef struct opt_param {
  char name[96];
  int ndim;
  int64_t shape[2];
  bool matrix;
  chai_tensor t;
  chai_qmat q; /* matrices only */
} opt_param;

/* Whether p is a matrix held in a packed format (bf16, int8, int4), with no f32/f16 tensor. */
static inline bool opt_param_packed(const opt_param *p) {
  return p && p->matrix && p->q.storage != NULL;
}
/* Whether p is a matrix in any format but f32: frozen for training (gradients flow through it). */
static inline bool opt_param_quantized(const opt_param *p) {
  return p && p->matrix && p->q.format != CHAI_QF_F32;
}
/* Makes p's matrix view follow p->t (after p->t was set): wraps an f32/f16 tensor. */
chai_status opt_param_wrap(opt_param *p);

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
  float *scores;                 /* attention scores: opt_attention_scratch_floats(keys, threads) */
  size_t keys, threads;          /* what `scores` was sized for */
} opt_acts;

/* The KV cache: K and V for every layer, (B, capacity, K width) and (B, capacity, V width), plus
 * the key mask (B, capacity) and the count of real tokens per row (for positions). f32, or int8
 * codes with one f32 scale per token and head (chai/kvq.h): ks, vs (B, capacity, width/D). */
typedef struct opt_kv {
  chai_storage *storage;
  int B, capacity, len;
  size_t k_floats;     /* Σ_l K width the layout was made for (see opt_kvcache.c) */
  chai_qformat format; /* of the layout: CHAI_QF_F32 or CHAI_QF_INT8 */
  void **k, **v;       /* per layer: float or int8_t elements */
  float **ks, **vs;    /* per layer, int8 only */
  float *mask;         /* (B, capacity) */
  int *count;          /* (B) */
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
  /* CHAI head clustering and attention capture (engine/src/heads/opt_heads.c); NULL = dense. */
  struct opt_heads *heads;
  /* Heads per layer of a pruned model (config key "chai_attention_heads"), NULL = every layer has
   * num_attention_heads. Layer l's q/k/v project to layer_heads[l]·head_dim. */
  int *layer_heads;
  chai_opt_warnings warnings;
  opt_acts acts;
  opt_kv kv;
  chai_qformat kv_format; /* CHAI_QF_F32 or CHAI_QF_INT8 */
  /* Scratch of the quant room's products (activation codes, converted blocks), sized by
   * opt_acts_reserve for the arena's tokens. */
  void *qwork;
  size_t qwork_bytes;
  /* Training state (gradients, frozen flags, saved activations): opt_train.c; NULL until used. */
  struct opt_train *train;
};

/* out[n] = table[idx[n]] (or += when add) for N rows of the table's width, any format (opt_embed.c).
 * CHAI_ERR_NOMEM only (a quantized table added needs row scratch). */
chai_status opt_gather(float *out, const opt_param *table, const int32_t *idx, int N, bool add);

/* ---- quantization (opt_quant.c) ------------------------------------------------------------ */

/* The format plan q gives parameter p (a chai_qformat or CHAI_OPT_KEEP). */
int opt_quant_target(const chai_opt_model *m, const opt_param *p, const chai_opt_quant *q);
/* CHAI_ERR_ARG naming what a plan cannot do to this model (before anything changes). */
chai_status opt_quant_validate(const chai_opt_model *m, const chai_opt_quant *q);
/* The spec of `format` under q's options (q NULL: the defaults of chai_opt_quant_init). */
chai_qspec opt_quant_spec(int format, const chai_opt_quant *q);
/* Replaces p's matrix by w (p->shape, row-major f32) in spec's format. */
chai_status opt_quant_from_f32(opt_param *p, const float *w, const chai_qspec *spec);
/* p's matrix in spec's format, from its current values (dequantized when packed); a no-op when it
 * is in that format already. */
chai_status opt_quant_convert(opt_param *p, const chai_qspec *spec);
/* Matrices not in f32 are frozen for training and their gradients freed (opt_train.c; no-op
 * before training state exists, which then starts them frozen). */
void opt_train_freeze_quantized(chai_opt_model *m);
/* Re-packs the CHAI representatives' copies of W_q/W_k after their matrices changed format
 * (opt_heads.c). */
chai_status opt_heads_weights_changed(chai_opt_model *m);
/* Bytes one token of one cache row takes in layer l (K and V under the plan's widths, or the
 * current request's): f32, or int8 codes plus one f32 scale per head. */
size_t opt_kv_layer_bytes(const chai_opt_model *m, int l, bool as_planned, chai_qformat f);
/* Drops the KV cache and its storage (its layout changed); the caller begins again. */
void opt_kv_drop(chai_opt_model *m);
/* Stores one token's K row (layer l's K width) and V row (its V width) at position `pos` of cache
 * row b, in the cache's format; a NULL row is left alone (already written in place). */
void opt_kv_store(chai_opt_model *m, int l, int b, int pos, const float *k, const float *v);
/* Where K and V of Tn tokens of cache row b from position pos go when the projections can write
 * into the cache directly (f32 cache), else NULL (project into the arena, then opt_kv_store). */
float *opt_kv_f32_k(chai_opt_model *m, int l, int b, int pos);
float *opt_kv_f32_v(chai_opt_model *m, int l, int b, int pos);
/* Attention of Tq queries q (row stride q_ts; S score heads of D) of cache row b over its first Tk
 * tokens (causal: query i at position Tk − Tq + i), into out (Tq, H·D). slot (H) maps each head to
 * its score head (a CHAI-clustered layer, S = its representatives), or NULL (S = H). */
chai_status opt_kv_attend(chai_opt_model *m, int l, int b, float *out, const float *q, int q_ts,
                          int Tq, int Tk, int S, const int *slot);

/* ---- quantized checkpoints (opt_qio.c) -------------------------------------------------------- */

struct cJSON;
/* The tensors chai_opt_save writes (packed matrices as codes + scales) and their metadata. */
typedef struct opt_qio_list {
  int n, cap;
  char **names;
  chai_tensor *ts;
  char **meta; /* key, value, ..., NULL */
  int n_meta;
} opt_qio_list;
chai_status opt_qio_tensors(const chai_opt_model *m, opt_qio_list *l);
void opt_qio_list_free(opt_qio_list *l);
/* config.json text with the quantization_config block of the model's formats (none when all f32). */
chai_status opt_qio_config_json(const chai_opt_model *m, char **out);
/* The checkpoint's quantization_config (from config.json) as a new cJSON object, or NULL when it
 * has none; CHAI_ERR_FORMAT / CHAI_ERR_UNSUPPORTED naming what is wrong with it. *kv gets the KV
 * cache format it records. */
chai_status opt_qio_modules(const chai_opt_model *m, const char *origin, struct cJSON **out,
                            chai_qformat *kv);
/* CHAI_ERR_FORMAT naming a module the model does not have. */
chai_status opt_qio_check_names(const chai_opt_model *m, const struct cJSON *qc,
                                const char *origin);
/* Whether qc lists parameter `name` (so its payload has _scale/_zero_point companions). */
bool opt_qio_listed(const struct cJSON *qc, const char *name);
/* Reads p from its stored codes when qc lists it (*done true), naming the file and key on a
 * malformed payload (unknown format, wrong dtype or shape, zero point out of range). */
chai_status opt_qio_read(opt_param *p, const chai_checkpoint *ck, const char *key,
                         const struct cJSON *qc, const char *origin, bool *done);

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
/* Makes the arena hold `tokens` tokens, `mask` key-mask floats, `rows` gathered rows and attention
 * scores over `keys` keys for the current thread count. */
chai_status opt_acts_reserve(chai_opt_model *m, size_t tokens, size_t mask, size_t rows,
                             size_t keys);

/* One matrix of a decode batch: y (R) = epilogue(w (R,C) · x), any format. */
typedef chai_qmat_product opt_gemv_task;
/* The decode path of every linear: the tasks' matrices, which read the same x (one matrix, or a
 * layer's Q, K and V; all of one C), their rows end to end in blocks of 16, shared between threads
 * in one parallel region. Each row is a fixed-order dot product by one thread: the same bits for
 * any thread count and any batching. `work`: opt_gemv_work_bytes(C) bytes (64-aligned) for the
 * token's 8-bit codes. */
void opt_gemv_batch(const opt_gemv_task *tasks, int n_tasks, const float *x, void *work);
size_t opt_gemv_work_bytes(int C);
/* out (N,R) (+)= epilogue(inp (N,C) · Wᵀ) for a matrix of any format: one token through the decode
 * batch (all threads), more through chai_qmat_matmul; scratch from the model's arena (reserved by
 * opt_acts_reserve for N tokens). */
void opt_qlinear(chai_opt_model *m, float *out, const float *inp, const chai_qmat *w,
                 const float *bias, int N, bool accumulate, bool relu);
/* Products of one input inp (N,C) as a batch (a layer's Q, K and V): for N tokens one quantization
 * of the input and one parallel region (chai_qmat_matmul_batch), for one token one pass of the
 * decode batch. The bits of one opt_qlinear call each. */
void opt_qlinear_batch(chai_opt_model *m, const opt_gemv_task *tasks, int count, const float *inp,
                       int N);

/* Queries per attention task. */
#define OPT_ATTN_QBLOCK 64
/* Scratch floats opt_attention_forward needs for Tk keys on `threads` threads. */
size_t opt_attention_scratch_floats(int Tk, int threads);
/* chai_attention_forward's contract (chai/ops.h) with probs == NULL, computed with two sgemm
 * calls per (row, score head, block of OPT_ATTN_QBLOCK queries); requires Tk >= Tq.
 * CHAI_ERR_ARG for bad sizes or a bad score_head map, CHAI_ERR_STATE when scratch is too small. */
chai_status opt_attention_forward(float *out, const float *q, const float *k, const float *v,
                                  const chai_attention_args *a, float *scratch,
                                  size_t scratch_floats);

/* Makes m->qwork hold the scratch of any of the model's matrix products over `tokens` tokens, and
 * of the int8 KV cache's attention of that many queries over `keys` keys (0: none). */
chai_status opt_qwork_reserve(chai_opt_model *m, size_t tokens, size_t keys);
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

/* ---- CHAI hooks (engine/src/heads/opt_heads.c, opt_prune.c) -------------------------------- */

/* Layer l's attention when head clustering or capture is on: from the attention input `in`
 * (B·T,C) it writes the heads' outputs (B·T,C) into m->acts.att (and the layer's K and V into the
 * cache when use_cache) and sets *done; *done false means "run the dense path". */
chai_status opt_heads_attention(chai_opt_model *m, int l, int B, int T, bool use_cache,
                                const float *in, const float *keymask, bool *done);
/* True when layer l runs plain dense attention for the current request: no capture, and the layer
 * is not clustered (not in the plan, or an online request that fell back). */
bool opt_heads_layer_dense(const chai_opt_model *m, int l);
/* Reads "chai_attention_heads" (one count per layer, 1..num_attention_heads) from the config's
 * extra keys into m->layer_heads; CHAI_ERR_ARG naming a bad value. */
chai_status opt_layer_heads_parse(chai_opt_model *m);
/* Heads of layer l (num_attention_heads unless the model is pruned). */
int opt_layer_heads(const chai_opt_model *m, int l);
/* Floats per token of layer l's K cache: heads·D when dense, representatives·D when clustered
 * (online: unless the current request fell back to dense, then heads·D; `as_planned` ignores the
 * fallback and gives the plan's width); and of its V cache: heads·D. */
int opt_heads_k_width(const chai_opt_model *m, int l, bool as_planned);
int opt_heads_v_width(const chai_opt_model *m, int l);
/* Every decoder run passes here before its first layer (chai_opt_cache_step; opt_decoder_run for
 * an uncached run). Online mode only: a new request (uncached, or the first step of a cache)
 * must be one row (CHAI_ERR_ARG naming the batch) and is decided from `mask` (B·T, NULL = all
 * real): fewer than 6 real tokens run dense, else each clustered layer takes its membership from
 * the first 5 (so opt_heads_k_width may change: the cache re-lays itself out). A later step of a
 * cache is refused (CHAI_ERR_STATE) when an uncached request ran since its first step. */
chai_status opt_heads_request(chai_opt_model *m, const int32_t *mask, int B, int T, bool use_cache);
void opt_heads_free(chai_opt_model *m);
/* CHAI_OK when training can run: a static plan trains through m->score_head (members reuse their
 * representative's scores), a pruned model with its per-layer head counts; an online plan is
 * refused (CHAI_ERR_UNSUPPORTED). */
chai_status opt_heads_check_trainable(const chai_opt_model *m);

#endif
