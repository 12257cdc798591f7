/* chai — training OPT models: a forward that keeps its activations, the backward through the whole
 * model as explicit per-op backward calls walking the layers in reverse (llm.c style), gradient
 * memory, freezing, and the LM / classification losses with optional distillation.
 *
 * Gradients live beside the parameters (one f32 tensor per trainable parameter), are allocated on
 * the first backward, and ACCUMULATE over forward_backward calls until chai_opt_zero_grad. Frozen
 * parameters have no gradient memory, their weight-gradient GEMMs are skipped, and the backward
 * stops below the lowest layer that still needs a gradient. Training needs an f32 model. */
#ifndef CHAI_OPT_TRAIN_H
#define CHAI_OPT_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "chai/error.h"
#include "chai/opt.h"
#include "chai/tensor.h"
#include "chai/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum chai_opt_head {
  CHAI_OPT_HEAD_LM = 0,       /* causal LM: logits (B,T,V), next-token loss */
  CHAI_OPT_HEAD_CLASSIFY = 1, /* OPTForSequenceClassification: score on the last non-pad token */
} chai_opt_head;

/* Gradient groups, the units in which the backward hands finished gradients to a data-parallel
 * exchange: group 0 the embeddings (embed_tokens, embed_positions, project_in: their gradients
 * are final last), group l+1 the parameters of layer l, group L+1 the top (final LayerNorm,
 * project_out, score or an untied lm_head). */
typedef void (*chai_opt_grads_ready)(void *ctx, int group);

/* One training batch. ids, mask (B,T) row-major (mask NULL = all real; 1 real, 0 padding).
 *  LM: labels (B,T) as Hugging Face takes them (unshifted; position t+1's label is the target of
 *      position t's logits), -100 ignored; NULL = the ids, with padding positions ignored. A
 *      padding position never predicts (its query sees no key; Hugging Face would count a left
 *      padding position followed by a real token).
 *      teacher (B,T,V) logits or NULL.
 *  classify: labels (B) class ids 0..num_labels−1 (-100 ignored), required; teacher (B,num_labels)
 *      or NULL.
 * The loss is kd (chai/train.h) over the counted rows: plain (label-smoothed) cross-entropy when
 * teacher is NULL (alpha and T are then unused). CHAI_ERR_ARG for dropout outside [0, 1). */
typedef struct chai_opt_batch {
  const int32_t *ids, *mask;
  int B, T;
  chai_opt_head head;
  const int32_t *labels;
  const float *teacher;
  float kd_T, kd_alpha, label_smoothing;
  /* Residual dropout as Hugging Face's OPT layers apply it in training (config "dropout"): on the
   * out_proj and fc2 outputs before each residual add, kept values scaled by 1/(1−p). 0 = off.
   * The masks come from chai_rng seeded with dropout_seed (draws depend on the seed, the layer and
   * the site only), so a step is reproducible. */
  float dropout;
  uint64_t dropout_seed;
  /* A shard of a larger batch (data-parallel training): these B rows are rows first_row.. of a
   * batch padded to the same T. Dropout then draws the masks those rows have in the whole batch,
   * and when loss_count > 0 the loss and its gradient are this shard's part of the mean over
   * loss_count counted rows (the whole batch's), so the shards' gradients add up to the whole
   * batch's. 0 and 0: a batch of its own. CHAI_ERR_ARG for negative values. */
  int first_row;
  int loss_count;
  /* Called with L+1, L, …, 0, each once, on a successful call, as soon as that group's gradients
   * for this batch are final (groups the backward does not reach come at the end); NULL for none.
   * The order never depends on the data, so every rank of a data-parallel run sees the same one. */
  chai_opt_grads_ready grads_ready;
  void *grads_ctx;
} chai_opt_batch;

/* Runs the training forward, the loss and the backward; adds the gradients of the mean loss to
 * the parameters' gradients (allocating them on first use). *res gets the loss parts and the
 * count of counted rows. CHAI_ERR_UNSUPPORTED for an f16/bf16 model; CHAI_ERR_ARG naming the bad
 * value for a bad size, an id outside the vocabulary, a mask value other than 0/1, a label out of
 * range (value and 0-based row), num_labels < 2 for classify, no labels for classify; NOMEM.
 * Nothing is added to the gradients on failure. A batch where no row counts gives loss 0 and
 * leaves the gradients as they were. */
chai_status chai_opt_forward_backward(chai_opt_model *m, const chai_opt_batch *b,
                                      chai_kd_result *res);

/* Sets every existing gradient to zero (memory is kept). */
void chai_opt_zero_grad(chai_opt_model *m);

/* Parts of the model for freezing. Embeddings: embed_tokens, embed_positions, project_in and
 * project_out (and lm_head, tied to embed_tokens); attention: q/k/v/out_proj weights and biases;
 * ffn: fc1, fc2; norms: the LayerNorms (final_layer_norm included); head: score (and an untied
 * lm_head). */
enum {
  CHAI_OPT_PART_EMBEDDINGS = 1,
  CHAI_OPT_PART_ATTENTION = 2,
  CHAI_OPT_PART_FFN = 4,
  CHAI_OPT_PART_NORMS = 8,
  CHAI_OPT_PART_HEAD = 16,
  CHAI_OPT_PART_ALL = 31,
};
/* "embeddings" | "attention" | "ffn" | "norms" | "head" → bit; CHAI_ERR_ARG naming the name. */
chai_status chai_opt_part_parse(const char *name, unsigned *bit);

/* Freezes (frozen = true) or unfreezes the parameters in `parts` (a CHAI_OPT_PART_* mask) of the
 * listed layers (0-based; n_layers < 0 selects every layer AND the parameters outside the layers).
 * Freezing releases the gradient memory. A matrix in any format but f32 (quantized) stays frozen
 * when its selection is unfrozen: the rest of its layer trains. CHAI_ERR_ARG naming a layer
 * outside 0..L−1. */
chai_status chai_opt_freeze(chai_opt_model *m, const int *layers, int n_layers, unsigned parts,
                            bool frozen);
bool chai_opt_param_frozen(const chai_opt_model *m, int i);
/* Freezes or unfreezes parameter i alone (as chai_opt_freeze does for a selection); CHAI_ERR_ARG
 * for i outside 0..count−1, or for unfreezing a quantized matrix (naming it). */
chai_status chai_opt_freeze_param(chai_opt_model *m, int i, bool frozen);
/* The part bit of parameter i and its layer (−1 outside the layers). */
unsigned chai_opt_param_part(const chai_opt_model *m, int i, int *layer);
/* A new reference to parameter i's gradient (f32, the parameter's shape), or CHAI_ERR_STATE when
 * it has none (frozen, or no backward yet); CHAI_ERR_ARG for i out of range. */
chai_status chai_opt_param_grad(const chai_opt_model *m, int i, chai_tensor *out);
/* The number of gradient groups (num_hidden_layers + 2) and parameter i's group. */
int chai_opt_grad_groups(const chai_opt_model *m);
int chai_opt_param_group(const chai_opt_model *m, int i);
/* Gradient memory (zeroed) for every trainable parameter that has none yet: what a rank with no
 * rows in a step needs to take part in the gradient exchange. CHAI_ERR_NOMEM. */
chai_status chai_opt_alloc_grads(chai_opt_model *m);
/* Bytes of gradient memory and of saved training activations. */
void chai_opt_train_memory(const chai_opt_model *m, size_t *grads, size_t *activations);
/* Releases gradients and training activations (a model that goes back to inference). */
void chai_opt_train_release(chai_opt_model *m);

#ifdef __cplusplus
}
#endif
#endif
