/* chai — numerical ops. Two layers:
 *  1. raw kernels on float arrays, llm.c style: `_forward`/`_backward` pairs side by side, outputs
 *     first, then inputs, weights, sizes. Backward kernels ACCUMULATE (+=) into gradients, and a NULL
 *     gradient pointer skips that gradient and its work (frozen parameters cost nothing).
 *     Vectorised kernels have a scalar `_ref` twin; the plain name dispatches on chai_simd_level().
 *  2. tensor ops (chai_op_*) that check dtypes and shapes, allocate a new contiguous f32 result into
 *     `out` (which receives the only reference) and call the kernels. They return CHAI_ERR_ARG with
 *     a message naming the bad shape or value; `out` is left released on failure.
 * Shapes are written in PyTorch order, e.g. x is (B,T,C). */
#ifndef CHAI_OPS_H
#define CHAI_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"
#include "chai/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- 1. kernels ---------------------------------------------------------------------------- */

/* out (N,OC) = inp (N,C) · weight (OC,C)ᵀ + bias (OC); bias may be NULL. Through cblas_sgemm. */
void chai_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int N,
                         int C, int OC);
/* dinp (N,C) += dout·weight; dweight (OC,C) += doutᵀ·inp; dbias (OC) += Σ_n dout. */
void chai_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int N, int C, int OC);

/* For each of `batch` matrices: out (M,N) = op(a)·op(b) with op(a) (M,K), op(b) (K,N); a is stored
 * (M,K) or, when ta, (K,M); b is stored (K,N) or, when tb, (N,K). Batches are contiguous. */
void chai_matmul_forward(float *out, const float *a, const float *b, int batch, int M, int N, int K,
                         bool ta, bool tb);
void chai_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                          int batch, int M, int N, int K, bool ta, bool tb);

/* Elementwise on n floats (out may alias an input). */
void chai_add_forward(float *out, const float *a, const float *b, size_t n);
void chai_add_forward_ref(float *out, const float *a, const float *b, size_t n);
void chai_add_backward(float *da, float *db, const float *dout, size_t n);
void chai_mul_forward(float *out, const float *a, const float *b, size_t n);
void chai_mul_forward_ref(float *out, const float *a, const float *b, size_t n);
void chai_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                       size_t n);
void chai_scale_forward(float *out, const float *a, float s, size_t n);
void chai_scale_forward_ref(float *out, const float *a, float s, size_t n);
void chai_scale_backward(float *da, const float *dout, float s, size_t n);
/* y += a·x */
void chai_axpy(float *y, float a, const float *x, size_t n);
void chai_axpy_ref(float *y, float a, const float *x, size_t n);

/* LayerNorm over the last dim: x (N,C); weight, bias (C) may be NULL (no affine). mean, rstd (N)
 * are saved for backward and may be NULL in inference. */
void chai_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C, float eps);
void chai_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                                const float *weight, const float *bias, int N, int C, float eps);
void chai_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C);

void chai_relu_forward(float *out, const float *inp, size_t n);
void chai_relu_forward_ref(float *out, const float *inp, size_t n);
void chai_relu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* Exact GELU, x·Φ(x) with erf (HF "gelu"). */
void chai_gelu_forward(float *out, const float *inp, size_t n);
void chai_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* Softmax / log-softmax over the last dim of (rows, cols), max-subtracted; backward from the saved
 * output. */
void chai_softmax_forward(float *out, const float *inp, int rows, int cols);
void chai_softmax_backward(float *dinp, const float *dout, const float *out, int rows, int cols);
void chai_log_softmax_forward(float *out, const float *inp, int rows, int cols);
void chai_log_softmax_backward(float *dinp, const float *dout, const float *out, int rows, int cols);

/* out (N,C) = table[ids[n]]; table (V,C). An id outside 0..V-1 is CHAI_ERR_ARG naming the id and
 * its position. */
chai_status chai_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C,
                                   int V);
/* dtable[ids[n]] += dout[n] (scatter-add; ids already validated by the forward). */
void chai_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C);

/* Multi-head scaled dot-product attention.
 *  q (B,Tq,H,D), k and v (B,Tk,H,D); each stored with its own token stride in floats (q_ts, k_ts,
 *  v_ts; H·D when packed), so they may be slices of one fused QKV buffer. out (B,Tq,H,D) packed.
 *  Query i sits at key position Tk−Tq+i: with `causal` it sees keys 0..Tk−Tq+i.
 *  key_mask (B,Tk): 1 attend, 0 padding; NULL = all keys valid.
 *  score_head (H) or NULL: head h uses the pre-softmax scores of head score_head[h] (its cluster
 *  representative, score_head[r] == r); members' q and k are never read. Each head keeps its own
 *  mask and its own V.
 *  probs (B,H,Tq,Tk) receives the attention probabilities (needed by backward; may be NULL).
 *  A query row with every key masked yields zero probabilities and a zero output. */
typedef struct chai_attention_args {
  int B, Tq, Tk, H, D;
  int q_ts, k_ts, v_ts;
  float scale;
  bool causal;
  const float *key_mask;
  const int *score_head;
} chai_attention_args;
chai_status chai_attention_forward(float *out, float *probs, const float *q, const float *k,
                                   const float *v, const chai_attention_args *a);
/* dq, dk, dv (strides as q, k, v) += gradients; representatives' dq/dk collect their members'
 * score gradients. Any of dq/dk/dv may be NULL. */
void chai_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                             const float *q, const float *k, const float *v,
                             const chai_attention_args *a);

/* Cross-entropy of logits (N,V) against targets (N); targets == ignore_index are skipped.
 * *loss = mean over counted rows (0 when none); losses (N) may be NULL (ignored rows get 0);
 * *count = counted rows (may be NULL). A target outside 0..V-1 (other than ignore_index) is
 * CHAI_ERR_ARG naming it and its row. */
chai_status chai_cross_entropy_forward(float *loss, float *losses, int *count, const float *logits,
                                       const int32_t *targets, int N, int V, int ignore_index);
/* dlogits (N,V) += dloss/count · (softmax(logits) − onehot(target)) on counted rows. */
void chai_cross_entropy_backward(float *dlogits, const float *logits, const int32_t *targets, int N,
                                 int V, int ignore_index, float dloss);

/* ---- 2. tensor ops (f32; new contiguous result in `out`) -------------------------------------- */

/* a (...,M,K) · b (K,N) or b (...,K,N) with the same leading dims → (...,M,N). */
chai_status chai_op_matmul(chai_tensor *out, const chai_tensor *a, const chai_tensor *b);
/* x (...,C) · w (OC,C)ᵀ + bias (OC) → (...,OC); bias may be NULL. */
chai_status chai_op_linear(chai_tensor *out, const chai_tensor *x, const chai_tensor *w,
                           const chai_tensor *bias);
/* Elementwise with NumPy broadcasting. */
typedef enum chai_binop { CHAI_BINOP_ADD, CHAI_BINOP_SUB, CHAI_BINOP_MUL, CHAI_BINOP_DIV } chai_binop;
chai_status chai_op_binary(chai_tensor *out, chai_binop op, const chai_tensor *a,
                           const chai_tensor *b);
/* a op s (or s op a when scalar_first). */
chai_status chai_op_binary_scalar(chai_tensor *out, chai_binop op, const chai_tensor *a, double s,
                                  bool scalar_first);
chai_status chai_op_neg(chai_tensor *out, const chai_tensor *a);
/* dim is 0-based, may be negative. */
chai_status chai_op_softmax(chai_tensor *out, const chai_tensor *x, int dim);
chai_status chai_op_log_softmax(chai_tensor *out, const chai_tensor *x, int dim);
/* Over the last dim; w, b (C) may be NULL. */
chai_status chai_op_layernorm(chai_tensor *out, const chai_tensor *x, const chai_tensor *w,
                              const chai_tensor *b, float eps);
chai_status chai_op_relu(chai_tensor *out, const chai_tensor *x);
chai_status chai_op_gelu(chai_tensor *out, const chai_tensor *x);
/* Sum of all elements (in double). */
chai_status chai_op_sum_all(double *out, const chai_tensor *x);
/* Sum over one dim (removed from the shape). */
chai_status chai_op_sum_dim(chai_tensor *out, const chai_tensor *x, int dim);
/* ids (i32/i64, any shape) → (...ids shape, C) rows of table (V,C). */
chai_status chai_op_embedding(chai_tensor *out, const chai_tensor *ids, const chai_tensor *table);
/* logits (N,V) or (V) against targets (N) i32/i64 → mean loss. */
chai_status chai_op_cross_entropy(double *loss, const chai_tensor *logits, const chai_tensor *targets,
                                  int ignore_index);
/* q, k, v (B,T,H,D) f32 → out (B,Tq,H,D); key_mask (B,Tk) f32 or NULL. */
chai_status chai_op_attention(chai_tensor *out, const chai_tensor *q, const chai_tensor *k,
                              const chai_tensor *v, const chai_tensor *key_mask, bool causal,
                              float scale);

#ifdef __cplusplus
}
#endif
#endif
