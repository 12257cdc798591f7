/* Internals of OPT training shared by opt_train.c (state, gradients, freezing, the loss driver),
 * opt_train_forward.c (the forward that keeps activations) and opt_backward.c. Not public. */
#ifndef CHAI_MODEL_OPT_TRAIN_H
#define CHAI_MODEL_OPT_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/opt_train.h"
#include "model/opt_model.h"

#define OPT_LN_EPS 1e-5f /* nn.LayerNorm's default, as the inference forward */

/* What one layer's forward keeps for its backward (N = B·T tokens).
 *  pre-LN:  ln1 = LN1(xin); q,k,v from ln1; res1 = xin + out_proj(att); ln2 = LN2(res1);
 *           fch = act(fc1(ln2)); output = res1 + fc2(fch).
 *  post-LN: q,k,v from xin; res1 = xin + out_proj(att); ln1 = LN1(res1);
 *           fch = act(fc1(ln1)); ln2 = ln1 + fc2(fch) (the sum); output = LN2(ln2).
 * mean/rstd belong to the LayerNorm of the same number. fpre (fc1 before the activation) is kept
 * only for GELU; ReLU's backward reads fch (fch > 0 exactly where fc1 > 0). */
typedef struct opt_layer_acts {
  float *xin;           /* (N,C) */
  float *ln1;           /* (N,C) */
  float *mean1, *rstd1; /* (N) */
  float *q, *k, *v;     /* (N,C) */
  float *probs;         /* (B,H,T,T) */
  float *att;           /* (N,C) */
  float *res1;          /* (N,C) */
  float *ln2;           /* (N,C) */
  float *mean2, *rstd2; /* (N) */
  float *fpre;          /* (N,F) or NULL */
  float *fch;           /* (N,F) */
} opt_layer_acts;

typedef struct opt_train {
  int n_params;
  bool *frozen;      /* (n_params) */
  chai_tensor *grad; /* (n_params): released = no gradient memory */
  /* One storage for the activations of the last training forward, the backward's scratch and
   * the head's logits; laid out for (B,T,head) by opt_train_layout. */
  chai_storage *arena;
  int B, T;
  chai_opt_head head;
  opt_layer_acts *layer;      /* (L) */
  float *xL;                  /* (N,C) the last layer's output */
  float *lnf, *meanf, *rstdf; /* final LayerNorm (N,C), (N), (N) */
  float *feats;               /* (N,P) the decoder's output (points at xL or lnf when P == C and no
                                 project_out) */
  float *emb;                 /* (N,P) token embeddings before project_in (project_in only) */
  float *keymask;             /* (N) 1/0, or unused when the batch has no mask */
  int32_t *pos;               /* (N) position ids + 2 */
  int32_t *targets;           /* (N) LM targets (shifted labels) or (B) class labels */
  int *rows;                  /* (B) classify: flat token index of each row's last non-pad token */
  /* Rows mode (classify): the score head reads one token per row, so after its attention the last
   * layer (out_proj, residual, LayerNorms, FFN), the final LayerNorm and project_out run on those
   * B rows only; their buffers hold B rows, gathered here: */
  bool rows_mode;
  float dropout; /* residual dropout p of this step (0 = off) */
  uint64_t dropout_seed;
  int first_row; /* the batch's first row in the whole batch it is a shard of (dropout draws) */
  /* the data-parallel hook of this call (NULL outside chai_opt_forward_backward) and the next
   * group it is owed */
  chai_opt_grads_ready grads_ready;
  void *grads_ctx;
  int next_group;
  float *dmask;            /* (N,C) uniform draws of one dropout site (regenerated in backward) */
  float *g_drop;           /* (N,C) the gradient of a dropped branch */
  float *att_r, *xin_r;    /* (B,C) the last layer's attention output and input at the rows */
  float *rowsP;            /* (B,P) their features */
  float *logits, *dlogits; /* (N,V) or (B,num_labels) */
  /* backward scratch */
  float *g_res, *g_res2, *g_ln, *g_q, *g_k, *g_v, *g_att; /* (N,C) */
  float *g_fch, *g_fpre;                                  /* (N,F) */
  float *g_feats, *g_emb;                                 /* (N,P) */
  float *g_rows;                                          /* (B,P) */
} opt_train;

/* out (N,OC) = inp (N,C)·Wᵀ + b through a parameter matrix of any format (f32 as before training
 * had formats; others through the quant room). */
void opt_train_linear(chai_opt_model *m, float *out, const float *inp, const opt_param *w,
                      const opt_param *b, int N, int C, int OC);
/* chai_linear_backward for a parameter matrix of any format: an f16 or packed matrix is frozen
 * (dweight must be NULL); dinp += dout · its values. */
void opt_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const opt_param *w, int N, int C, int OC);
/* m->train, created on first use (frozen flags all false, but for packed matrices). */
chai_status opt_train_get(chai_opt_model *m, opt_train **out);
/* Sizes and carves the arena for a batch (grows it when needed). */
chai_status opt_train_layout(chai_opt_model *m, opt_train *tr, int B, int T, chai_opt_head head);
/* The gradient buffer of parameter p, or NULL (absent parameter, frozen, or no memory). */
float *opt_grad(const chai_opt_model *m, const opt_param *p);
/* Whether p exists and is not frozen. */
bool opt_train_trainable(const chai_opt_model *m, const opt_param *p);
/* Whether any parameter below layer l (layers 0..l-1, embed_tokens, embed_positions, project_in)
 * needs a gradient, i.e. whether the gradient must flow out of layer l's input. */
bool opt_train_need_below(const chai_opt_model *m, int l);
/* Whether anything inside the decoder (below the head) needs a gradient. */
bool opt_train_need_decoder(const chai_opt_model *m);

/* Hands every group from tr->next_group down to `group` to the call's grads_ready hook (none
 * without one): the backward calls it as it finishes the top and each layer. */
void opt_train_grads_ready(const chai_opt_model *m, opt_train *tr, int group);

/* Residual dropout of layer l, site s (0: out_proj, 1: fc2) over n = M·C values: fills tr->dmask
 * with the site's draws; then x[i] = keep ? x[i]/(1−p) : 0 (opt_train_dropout, forward) or
 * out[i] = keep ? g[i]/(1−p) : 0 (opt_train_dropout_grad, backward). */
void opt_train_dropout(opt_train *tr, int l, int site, float *x, size_t n);
void opt_train_dropout_grad(opt_train *tr, int l, int site, float *out, const float *g, size_t n);

/* CHAI_ERR_ARG naming an id outside the vocabulary or a mask value other than 0/1. */
chai_status opt_train_check_inputs(const chai_opt_model *m, const int32_t *ids, const int32_t *mask,
                                   int B, int T);
/* The forward over checked ids (B,T) keeping activations in the arena (laid out already); fills
 * tr->feats: (N,P), or (B,P) for tr->rows in rows mode. */
chai_status opt_train_forward(chai_opt_model *m, opt_train *tr, const int32_t *ids,
                              const int32_t *mask);
/* The backward from tr->g_feats (N,P), accumulating into the parameter gradients. ids are the
 * batch's (for the token-embedding scatter). */
void opt_train_backward(chai_opt_model *m, opt_train *tr, const int32_t *ids);

#endif
