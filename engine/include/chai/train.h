/* chai — training: distillation and label-smoothed losses, optimizers (AdamW, SGD), learning-rate
 * schedules and gradient clipping. The model's backward lives in chai/opt.h; this header has what
 * does not depend on a model.
 *
 * Losses follow the kernel conventions of chai/ops.h: logits are (N,V) rows, gradients ACCUMULATE
 * (+=) into the caller's buffer, and the loss is the mean over the rows that count. */
#ifndef CHAI_TRAIN_H
#define CHAI_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"
#include "chai/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- losses -------------------------------------------------------------------------------- */

/* KD = alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−alpha)·CE_ε(s, y), per row, averaged over the
 * counted rows (torch: kl_div(log_softmax(s/T), softmax(t/T), "batchmean")·T² on those rows, and
 * cross_entropy(s, y, label_smoothing=ε)). CE_ε uses the target distribution (1−ε)·onehot(y) + ε/V.
 * A row counts when row_mask is NULL or row_mask[n] != 0, and targets is NULL or targets[n] !=
 * ignore_index; both terms use the same rows. */
typedef struct chai_kd_args {
  float T;               /* temperature, > 0 (2 is usual) */
  float alpha;           /* weight of the soft term, 0..1 (0 = plain CE, 1 = pure KD) */
  float label_smoothing; /* ε for the CE term, 0 <= ε < 1 */
  int ignore_index;      /* targets equal to it are skipped (-100 in Hugging Face) */
} chai_kd_args;

/* Means over the counted rows (0 when none count) and the count. */
typedef struct chai_kd_result {
  float loss; /* alpha·T²·kl + (1−alpha)·ce */
  float kl; /* mean KL(softmax(t/T) ‖ softmax(s/T)) without the T² factor (0 when alpha == 0) */
  float ce; /* mean label-smoothed CE (0 when alpha == 1: not computed) */
  int count;
} chai_kd_result;

/* student, teacher (N,V); targets (N) or NULL (allowed only when alpha == 1); teacher may be NULL
 * only when alpha == 0; row_mask (N) or NULL; losses (N) or NULL receives each row's loss (0 on
 * rows that do not count). Errors (CHAI_ERR_ARG, naming the value): T not > 0 or not finite,
 * alpha outside 0..1, ε outside [0,1), a missing teacher/targets, N or V < 1, and a counted target
 * outside 0..V−1 (the message names the value and its row). CHAI_ERR_NOMEM for scratch. Row sums
 * run in double and are added in row order, so the result does not depend on the thread count. */
chai_status chai_kd_forward(chai_kd_result *res, float *losses, const float *student,
                            const float *teacher, const int32_t *targets, const float *row_mask,
                            int N, int V, const chai_kd_args *a);
/* dstudent (N,V) += dloss · d(mean loss)/d(student); rows that do not count get nothing. Checks
 * and errors as chai_kd_forward (nothing is written on error). */
chai_status chai_kd_backward(float *dstudent, const float *student, const float *teacher,
                             const int32_t *targets, const float *row_mask, int N, int V,
                             const chai_kd_args *a, float dloss);
/* Both at once (the softmaxes are computed once): res as the forward, dstudent as the backward
 * with dloss = 1. dstudent may be NULL (then it is just the forward). */
chai_status chai_kd_forward_backward(chai_kd_result *res, float *dstudent, const float *student,
                                     const float *teacher, const int32_t *targets,
                                     const float *row_mask, int N, int V, const chai_kd_args *a);

/* Cross-entropy with label smoothing ε (torch's cross_entropy(label_smoothing=ε)): the KD loss
 * with alpha = 0. *loss is the mean over counted rows, *count (may be NULL) their number. */
chai_status chai_cross_entropy_smooth_forward(float *loss, int *count, const float *logits,
                                              const int32_t *targets, int N, int V,
                                              int ignore_index, float smoothing);
chai_status chai_cross_entropy_smooth_backward(float *dlogits, const float *logits,
                                               const int32_t *targets, int N, int V,
                                               int ignore_index, float smoothing, float dloss);

/* ---- optimizers ---------------------------------------------------------------------------- */

typedef enum chai_optim_kind { CHAI_OPTIM_ADAMW = 0, CHAI_OPTIM_SGD = 1 } chai_optim_kind;

/* Hyperparameters (the learning rate is given to each step, so a schedule can drive it).
 * AdamW is torch.optim.AdamW (amsgrad off): decoupled decay p ← p·(1 − lr·wd), bias-corrected
 * moments, p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps).
 * SGD is torch.optim.SGD: d = g + wd·p (coupled L2, as torch does), momentum buffer b ← d on a
 * parameter's first step and b ← μ·b + (1−dampening)·d afterwards, d ← b (or d + μ·b with
 * nesterov), p ← p − lr·d. */
typedef struct chai_optim_config {
  chai_optim_kind kind;
  /* In double, as torch holds them: derived constants (1−β2, lr·wd, ...) are formed in double and
   * rounded to float once, which keeps trajectories within float rounding of torch's. */
  double beta1, beta2, eps; /* AdamW: 0.9, 0.999, 1e-8 */
  double weight_decay;      /* both; never applied to no_decay parameters */
  double momentum;          /* SGD: 0 = plain SGD (no buffer) */
  double dampening;         /* SGD */
  bool nesterov;            /* SGD: needs momentum > 0 and dampening 0 */
} chai_optim_config;

/* Fills the torch defaults for `kind` (weight_decay 0.01 for AdamW, 0 for SGD). */
void chai_optim_config_default(chai_optim_config *c, chai_optim_kind kind);
const char *chai_optim_kind_name(chai_optim_kind kind);
/* "adamw" | "sgd" → kind; CHAI_ERR_ARG naming the string otherwise. */
chai_status chai_optim_kind_parse(const char *name, chai_optim_kind *out);

/* One parameter as a step sees it. name identifies its state across steps (and in saved state);
 * grad NULL means "no gradient this step" (a frozen parameter): it is skipped and its state left
 * untouched, as torch skips p.grad is None. no_decay: biases and LayerNorm weights. */
typedef struct chai_param {
  const char *name;
  float *data;
  const float *grad;
  size_t n;
  bool no_decay;
} chai_param;

/* True for names that conventionally get no weight decay: biases ("...bias") and LayerNorm
 * parameters ("...layer_norm...", "...layernorm...", "...ln_..."). */
bool chai_param_default_no_decay(const char *name);

/* The optimizer holds the configuration and, per parameter name, its state (per-parameter step
 * count and moments), allocated on that parameter's first step. */
typedef struct chai_optim chai_optim;

/* *out owns a new optimizer (free with chai_optim_free). CHAI_ERR_ARG naming a bad
 * hyperparameter (β outside [0,1), eps <= 0, weight_decay < 0, momentum < 0, nesterov without
 * momentum or with dampening); *out is NULL on failure. */
chai_status chai_optim_new(chai_optim **out, const chai_optim_config *cfg);
void chai_optim_free(chai_optim *o);
const chai_optim_config *chai_optim_get_config(const chai_optim *o);

/* One update of every parameter with a gradient, in one fused pass per tensor: the gradient is
 * read as grad·grad_scale (the clipping factor; 1 for none). lr >= 0. CHAI_ERR_ARG for a bad lr or
 * grad_scale, a parameter without a name or data, two parameters with one name, and a parameter
 * whose size differs from its saved state (naming it and both sizes); nothing is updated then.
 * CHAI_ERR_NOMEM when state cannot be allocated (parameters are updated only after all state
 * exists). A non-finite value in the result is not checked here (see chai_grad_global_norm). */
chai_status chai_optim_step(chai_optim *o, const chai_param *params, int count, double lr,
                            float grad_scale);

/* The fused update kernels (one tensor of n floats). The plain names dispatch on
 * chai_simd_level(); the _ref twins are the scalar definitions. The constants come rounded to float
 * from their double definitions (see chai_adamw_consts_make). */
typedef struct chai_adamw_consts {
  float decay; /* 1 − lr·wd (wd = 0 for no_decay) */
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bc2_sqrt; /* √(1 − β2ᵗ) */
  float eps;
  float neg_step;   /* −lr / (1 − β1ᵗ) */
  float grad_scale; /* the gradient is read as g·grad_scale */
} chai_adamw_consts;
/* The constants for step t (>= 1) of a parameter. */
chai_adamw_consts chai_adamw_consts_make(const chai_optim_config *c, double lr, double wd,
                                         int64_t t, float grad_scale);
/* p ← p·decay; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; p ← p + neg_step·m/(√v/bc2_sqrt + eps).
 */
void chai_adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                       const chai_adamw_consts *k);
void chai_adamw_update_ref(float *p, const float *g, float *m, float *v, size_t n,
                           const chai_adamw_consts *k);
/* SGD on n floats: d = g·grad_scale + wd·p; buf (NULL when momentum is 0) ← d on the first step,
 * else momentum·buf + (1−dampening)·d; d ← buf (nesterov: d + momentum·buf); p ← p − lr·d. */
void chai_sgd_update(float *p, const float *g, float *buf, size_t n, float lr, float momentum,
                     float one_minus_dampening, bool nesterov, float wd, bool first,
                     float grad_scale);

/* State, for saving: tensor i (0-based) of chai_optim_state_count() — per parameter
 * "<name>.step" (i64, shape (1)), then "<name>.exp_avg" and "<name>.exp_avg_sq" (AdamW) or
 * "<name>.momentum_buffer" (SGD with momentum), f32 (n). *name lives until the next step/set/free;
 * `out` receives a new reference to the live state (a copy is the caller's job). CHAI_ERR_ARG
 * for i out of range. */
int chai_optim_state_count(const chai_optim *o);
chai_status chai_optim_state_get(const chai_optim *o, int i, const char **name, chai_tensor *out);
/* Restores one state tensor by its name as above (the values are copied). CHAI_ERR_ARG for a name
 * that is not a state of this kind of optimizer (naming it), a wrong dtype, or a size that differs
 * from the parameter's other state tensors (naming both sizes). */
chai_status chai_optim_state_set(chai_optim *o, const char *name, const chai_tensor *t);
/* Forgets all state (as a fresh optimizer). */
void chai_optim_reset(chai_optim *o);

/* Polyak averaging of weights: ema ← decay·ema + (1−decay)·p over n floats (elementwise, split
 * over threads in fixed chunks). */
void chai_ema_update(float *ema, const float *p, size_t n, float decay);

/* ---- schedules and clipping ---------------------------------------------------------------- */

typedef enum chai_schedule_kind {
  CHAI_SCHEDULE_CONSTANT = 0, /* warmup, then 1 */
  CHAI_SCHEDULE_LINEAR = 1,   /* warmup, then linear decay to 0 at total_steps */
  CHAI_SCHEDULE_COSINE = 2,   /* warmup, then half a cosine to 0 at total_steps */
} chai_schedule_kind;

typedef struct chai_schedule {
  chai_schedule_kind kind;
  long warmup_steps; /* >= 0 */
  long total_steps;  /* > warmup_steps for linear/cosine */
  float min_ratio;   /* floor of the decay, 0..1 (0 = Hugging Face's schedules) */
} chai_schedule;

/* The multiplier of the base lr for optimizer step `step` (0-based: the first update uses step 0),
 * as Hugging Face's get_{constant,linear,cosine}_schedule_with_warmup: step/warmup during warmup;
 * then 1, or max(0,(total−step)/(total−warmup)), or 0.5·(1+cos(π·progress)); then at least
 * min_ratio after warmup. */
double chai_schedule_factor(const chai_schedule *s, long step);
/* CHAI_ERR_ARG naming a bad field (negative warmup, total <= warmup for a decaying kind, min_ratio
 * outside 0..1). */
chai_status chai_schedule_check(const chai_schedule *s);
/* "constant" | "linear" | "cosine" → kind. */
chai_status chai_schedule_kind_parse(const char *name, chai_schedule_kind *out);
const char *chai_schedule_kind_name(chai_schedule_kind kind);

/* The global L2 norm of all gradients (NULL grads skipped), summed in double in parameter order.
 * Returns it in *norm; *finite is false when a gradient holds NaN/Inf (then *norm is NaN or Inf).
 */
void chai_grad_global_norm(double *norm, bool *finite, const chai_param *params, int count);
/* torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); 1 when max_norm <= 0
 * (clipping off). */
float chai_clip_factor(double norm, float max_norm);

#ifdef __cplusplus
}
#endif
#endif
