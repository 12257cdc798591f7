/* chai — CHAI head clustering on an OPT model: static plans, online membership, attention capture
 * for calibration, and the KV-cache size under a plan. */
#ifndef CHAI_OPT_HEADS_H
#define CHAI_OPT_HEADS_H

#include <stddef.h>

#include "chai/heads.h"
#include "chai/opt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum chai_heads_mode {
  CHAI_HEADS_DENSE = 0,
  CHAI_HEADS_STATIC = 1, /* membership from the plan; any batch */
  CHAI_HEADS_ONLINE = 2, /* k from the plan, membership per request from its first 5 tokens */
} chai_heads_mode;

/* Installs a copy of `plan` on the model (NULL or CHAI_HEADS_DENSE: back to dense attention).
 * In a clustered layer, Q and K are projected for the representatives only (packed f32 copies of
 * their W_q/W_k rows), scores are computed for representatives, members reuse them with their own
 * mask, every head keeps its own V.
 * STATIC: every listed layer needs clusters; the K cache of a clustered layer holds its
 * representatives only (chai_opt_kv_bytes_per_token falls).
 * ONLINE: every listed layer needs k. Each request (a forward/classify call, or a KV-cache prefill)
 * takes its membership from the first 5 real tokens, as the paper: per head softmax(QKᵀ/√d) of
 * those tokens with no causal mask, cosine distance, average linkage into k, lowest-index
 * representative; decode steps reuse it. Batch size must be 1 (CHAI_ERR_ARG). Prompts with fewer
 * than 6 real tokens run dense (chai_opt_heads_fallback tells). The K cache holds the
 * representatives only, as in static mode; the first step of a prompt that falls back re-lays the
 * empty cache out at full width (growing its storage if needed). A cache's later steps are refused
 * (CHAI_ERR_STATE) once a forward/classify call has begun another request.
 * The plan is validated against the model (CHAI_ERR_ARG with the reason); the KV cache is dropped
 * and its storage freed (call chai_opt_cache_begin again). */
chai_status chai_opt_set_heads(chai_opt_model *m, const chai_heads_plan *plan,
                               chai_heads_mode mode);
/* The plan in force (borrowed; NULL when dense) and its mode (may be NULL). */
const chai_heads_plan *chai_opt_get_heads(const chai_opt_model *m, chai_heads_mode *mode);
/* Online mode: 1 when the last request fell back to dense (prompt shorter than 6 real tokens). */
int chai_opt_heads_fallback(const chai_opt_model *m);
/* The membership layer l uses now: *K clusters (0 = dense) and slot (H) = each head's cluster,
 * numbered by representative order; slot may be NULL. Online: the last request's membership. */
chai_status chai_opt_heads_membership(const chai_opt_model *m, int layer, int *K, int *slot);
/* Bytes of K and V cache one token takes in one batch row under the current plan, in the cache's
 * format (f32, or int8 codes with a scale per head); online mode reports the plan's compact
 * figure, not a fallen-back prompt's. */
size_t chai_opt_kv_bytes_per_token(const chai_opt_model *m);

/* Structural pruning (what the CHAI-KTQ project calls CHAI-base, done right): a new model in which
 * every clustered layer of `plan` keeps only the first `keep` heads of each cluster
 * (representative first; all heads of a smaller cluster), made by slicing the real q/k/v rows and
 * out_proj columns; nothing is re-initialised and every other parameter is copied. The per-layer
 * head counts go into config.json as "chai_attention_heads", so chai_opt_save/chai_opt_load
 * round-trip the smaller model (Hugging Face cannot load it). A pruned layer computes exactly what
 * the original does with the dropped heads' outputs removed. Every listed layer needs clusters;
 * keep >= 1; the source model must not be pruned already. *out is NULL on failure. */
chai_status chai_opt_prune_heads(chai_opt_model **out, const chai_opt_model *m,
                                 const chai_heads_plan *plan, int keep);
/* Heads of each layer (H entries = num_hidden_layers): num_attention_heads unless pruned. */
int chai_opt_layer_heads(const chai_opt_model *m, int layer);

/* Attention capture for calibration: after chai_opt_capture_begin(m, T_max), each forward with one
 * row of T <= T_max tokens (dense attention, no KV cache) records, per layer and head, the
 * attention probabilities of the last query over keys 0..T−1: rows (L,H,T_max), zero-padded, read
 * with chai_opt_capture_rows (borrowed; *T = the T of the last forward, 0 before any; *T_max as
 * begun, may be NULL). end frees.
 * CHAI_ERR_ARG when a captured forward has B != 1 or T > T_max, or the model is clustered. */
chai_status chai_opt_capture_begin(chai_opt_model *m, int T_max);
const float *chai_opt_capture_rows(const chai_opt_model *m, int *T, int *T_max);
/* The attention statistics (chai_heads_attention_stats) of every captured forward since
 * capture_begin, per layer and head: (L,H) borrowed, valid until capture_end; NULL when not
 * capturing. Each forward's full (H,T,T) probabilities count, not only the last query's row. */
const chai_attention_stats *chai_opt_capture_stats(const chai_opt_model *m);
void chai_opt_capture_end(chai_opt_model *m);

#ifdef __cplusplus
}
#endif
#endif
