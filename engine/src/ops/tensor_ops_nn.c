/* Tensor ops, part 2: the neural-network ops (softmax, layernorm, activations, embedding,
 * cross-entropy, attention). Same conventions as tensor_ops.c. */
#include <stdio.h>

#include "chai/blas.h"
#include "chai/memory.h"
#include "chai/ops.h"
#include "ops/tensor_ops_util.h"

typedef void (*rows_fn)(float *out, const float *inp, int rows, int cols);

/* Softmax-like ops along any dim: the dim is moved last (a transposed contiguous copy when it is
 * not already last), the row kernel runs, and the result is moved back. */
static chai_status along_dim(chai_tensor *out, const chai_tensor *x, int dim, const char *name,
                             rows_fn fn) {
  char what[32];
  snprintf(what, sizeof what, "%s: x", name);
  chai_status st;
  if ((st = chai_tensor_check(x, what, CHAI_F32, false))) return op_fail(out, st);
  int d = op_norm_dim(dim, x->ndim);
  if (x->ndim < 1 || d < 0 || d >= x->ndim)
    return op_fail(
        out, chai_error(CHAI_ERR_ARG, "%s: dim %d is out of range for x %s", name, dim, SHP(x)));
  if ((st = op_fits_int(x, what))) return op_fail(out, st);
  int last = x->ndim - 1;
  chai_tensor moved = {0}, tx = {0}, r = {0}, back = {0};
  if ((st = chai_tensor_transpose(&moved, x, d, last)) ||
      (st = chai_tensor_contiguous(&tx, &moved)) ||
      (st = chai_tensor_new(&r, CHAI_F32, tx.ndim, tx.shape)))
    goto done;
  int cols = (int)tx.shape[last];
  int rows = cols ? (int)(chai_tensor_numel(&tx) / cols) : 0;
  if (rows) fn(chai_tensor_data(&r), chai_tensor_data(&tx), rows, cols);
  if (d != last) {
    chai_tensor moved_back = {0};
    if ((st = chai_tensor_transpose(&moved_back, &r, d, last))) goto done;
    st = chai_tensor_clone(&back, &moved_back);
    chai_tensor_release(&moved_back);
    if (st) goto done;
    chai_tensor_release(&r);
    r = back;
  }
done:
  chai_tensor_release(&moved);
  chai_tensor_release(&tx);
  if (st) {
    chai_tensor_release(&r);
    return op_fail(out, st);
  }
  *out = r;
  return CHAI_OK;
}

chai_status chai_op_softmax(chai_tensor *out, const chai_tensor *x, int dim) {
  return along_dim(out, x, dim, "softmax", chai_softmax_forward);
}

chai_status chai_op_log_softmax(chai_tensor *out, const chai_tensor *x, int dim) {
  return along_dim(out, x, dim, "log_softmax", chai_log_softmax_forward);
}

chai_status chai_op_layernorm(chai_tensor *out, const chai_tensor *x, const chai_tensor *w,
                              const chai_tensor *b, float eps) {
  chai_tensor tx = {0}, tw = {0}, tb = {0}, r = {0};
  chai_status st;
  if ((st = chai_tensor_check(x, "layernorm: x", CHAI_F32, false)) ||
      (w && (st = chai_tensor_check(w, "layernorm: weight", CHAI_F32, false))) ||
      (b && (st = chai_tensor_check(b, "layernorm: bias", CHAI_F32, false))))
    return op_fail(out, st);
  if (x->ndim < 1)
    return op_fail(out, chai_error(CHAI_ERR_ARG, "layernorm: x %s needs at least 1 dim", SHP(x)));
  if ((st = op_fits_int(x, "layernorm: x"))) return op_fail(out, st);
  int64_t C = x->shape[x->ndim - 1];
  if (w && (w->ndim != 1 || w->shape[0] != C))
    return op_fail(out, chai_error(CHAI_ERR_ARG, "layernorm: weight %s must be (%lld) for x %s",
                                   SHP(w), (long long)C, SHP(x)));
  if (b && (b->ndim != 1 || b->shape[0] != C))
    return op_fail(out, chai_error(CHAI_ERR_ARG, "layernorm: bias %s must be (%lld) for x %s",
                                   SHP(b), (long long)C, SHP(x)));
  if (!(eps >= 0))
    return op_fail(out,
                   chai_error(CHAI_ERR_ARG, "layernorm: eps must be >= 0, got %g", (double)eps));
  if ((st = op_input_f32(&tx, x, "layernorm: x")) ||
      (w && (st = op_input_f32(&tw, w, "layernorm: weight"))) ||
      (b && (st = op_input_f32(&tb, b, "layernorm: bias"))) ||
      (st = chai_tensor_new(&r, CHAI_F32, x->ndim, x->shape)))
    goto done;
  int rows = C ? (int)(chai_tensor_numel(x) / C) : 0;
  if (rows)
    chai_layernorm_forward(chai_tensor_data(&r), NULL, NULL, chai_tensor_data(&tx),
                           w ? chai_tensor_data(&tw) : NULL, b ? chai_tensor_data(&tb) : NULL, rows,
                           (int)C, eps);
done:
  chai_tensor_release(&tx);
  chai_tensor_release(&tw);
  chai_tensor_release(&tb);
  if (st) {
    chai_tensor_release(&r);
    return op_fail(out, st);
  }
  *out = r;
  return CHAI_OK;
}

typedef void (*map_fn)(float *out, const float *inp, size_t n);

static chai_status map_op(chai_tensor *out, const chai_tensor *x, const char *what, map_fn fn) {
  chai_tensor tx = {0}, r = {0};
  chai_status st;
  if ((st = op_input_f32(&tx, x, what)) ||
      (st = chai_tensor_new(&r, CHAI_F32, x->ndim, x->shape))) {
    chai_tensor_release(&tx);
    return op_fail(out, st);
  }
  fn(chai_tensor_data(&r), chai_tensor_data(&tx), (size_t)chai_tensor_numel(&r));
  chai_tensor_release(&tx);
  *out = r;
  return CHAI_OK;
}

chai_status chai_op_relu(chai_tensor *out, const chai_tensor *x) {
  return map_op(out, x, "relu: x", chai_relu_forward);
}

chai_status chai_op_gelu(chai_tensor *out, const chai_tensor *x) {
  return map_op(out, x, "gelu: x", chai_gelu_forward);
}

/* ids (i32 or i64, any strides) -> a new int32 buffer; an i64 id that does not fit in int32 is
 * reported with its flat position (the kernel reports the in-range-type ones). */
static chai_status ids_to_i32(int32_t **buf, size_t *bytes, const chai_tensor *ids,
                              const char *what) {
  if (!ids->storage) return chai_error(CHAI_ERR_STATE, "%s: tensor used after free", what);
  if (ids->dtype != CHAI_I32 && ids->dtype != CHAI_I64)
    return chai_error(CHAI_ERR_ARG, "%s: expected an i32 or i64 tensor, got %s", what,
                      chai_dtype_name(ids->dtype));
  int64_t n = chai_tensor_numel(ids);
  if (n > INT_MAX) return chai_error(CHAI_ERR_ARG, "%s %s has too many elements", what, SHP(ids));
  *bytes = (size_t)(n > 0 ? n : 1) * sizeof(int32_t);
  *buf = chai_alloc(*bytes, what);
  if (!*buf) return CHAI_ERR_NOMEM;
  for (int64_t i = 0; i < n; i++) {
    double v = chai_tensor_get_flat(ids, i);
    if (v < INT32_MIN || v > INT32_MAX) {
      chai_free(*buf, *bytes);
      *buf = NULL;
      return chai_error(CHAI_ERR_ARG, "%s: value %.0f at position %lld does not fit in int32", what,
                        v, (long long)i);
    }
    (*buf)[i] = (int32_t)v;
  }
  return CHAI_OK;
}

chai_status chai_op_embedding(chai_tensor *out, const chai_tensor *ids, const chai_tensor *table) {
  chai_tensor tt = {0}, r = {0};
  chai_status st;
  if ((st = chai_tensor_check(table, "embedding: table", CHAI_F32, false))) return op_fail(out, st);
  if (table->ndim != 2)
    return op_fail(out, chai_error(CHAI_ERR_ARG, "embedding: table %s must be (V,C)", SHP(table)));
  if (ids->storage && ids->ndim >= CHAI_MAX_DIMS)
    return op_fail(out,
                   chai_error(CHAI_ERR_ARG,
                              "embedding: ids %s has %d dims; the result would have %d (max %d)",
                              SHP(ids), ids->ndim, ids->ndim + 1, CHAI_MAX_DIMS));
  if ((st = op_fits_int(table, "embedding: table"))) return op_fail(out, st);
  int32_t *buf = NULL;
  size_t bytes = 0;
  if ((st = ids_to_i32(&buf, &bytes, ids, "embedding: ids"))) return op_fail(out, st);
  int64_t shape[CHAI_MAX_DIMS], n = chai_tensor_numel(ids);
  for (int d = 0; d < ids->ndim; d++)
    shape[d] = ids->shape[d];
  shape[ids->ndim] = table->shape[1];
  if (n * table->shape[1] > INT_MAX) {
    st = chai_error(CHAI_ERR_ARG, "embedding: result of ids %s and table %s is too large", SHP(ids),
                    SHP(table));
  } else if (!(st = op_input_f32(&tt, table, "embedding: table")) &&
             !(st = chai_tensor_new(&r, CHAI_F32, ids->ndim + 1, shape))) {
    st = chai_embedding_forward(chai_tensor_data(&r), buf, chai_tensor_data(&tt), (int)n,
                                (int)table->shape[1], (int)table->shape[0]);
  }
  chai_free(buf, bytes);
  chai_tensor_release(&tt);
  if (st) {
    chai_tensor_release(&r);
    return op_fail(out, st);
  }
  *out = r;
  return CHAI_OK;
}

chai_status chai_op_cross_entropy(double *loss, const chai_tensor *logits,
                                  const chai_tensor *targets, int ignore_index) {
  chai_tensor tl = {0};
  chai_status st;
  if ((st = chai_tensor_check(logits, "cross_entropy: logits", CHAI_F32, false))) return st;
  if (logits->ndim != 1 && logits->ndim != 2)
    return chai_error(CHAI_ERR_ARG, "cross_entropy: logits %s must be (N,V) or (V)", SHP(logits));
  if ((st = op_fits_int(logits, "cross_entropy: logits"))) return st;
  int64_t N = logits->ndim == 2 ? logits->shape[0] : 1, V = logits->shape[logits->ndim - 1];
  if (targets->storage && (targets->ndim > 1 || chai_tensor_numel(targets) != N))
    return chai_error(CHAI_ERR_ARG, "cross_entropy: targets %s must be (%lld) for logits %s",
                      SHP(targets), (long long)N, SHP(logits));
  int32_t *buf = NULL;
  size_t bytes = 0;
  if ((st = ids_to_i32(&buf, &bytes, targets, "cross_entropy: targets"))) return st;
  float l = 0;
  if (!(st = op_input_f32(&tl, logits, "cross_entropy: logits")))
    st = chai_cross_entropy_forward(&l, NULL, NULL, chai_tensor_data(&tl), buf, (int)N, (int)V,
                                    ignore_index);
  chai_free(buf, bytes);
  chai_tensor_release(&tl);
  if (st) return st;
  *loss = l;
  return CHAI_OK;
}

chai_status chai_op_attention(chai_tensor *out, const chai_tensor *q, const chai_tensor *k,
                              const chai_tensor *v, const chai_tensor *key_mask, bool causal,
                              float scale) {
  chai_tensor tq = {0}, tk = {0}, tv = {0}, tm = {0}, r = {0};
  chai_status st;
  if ((st = chai_tensor_check(q, "attention: q", CHAI_F32, false)) ||
      (st = chai_tensor_check(k, "attention: k", CHAI_F32, false)) ||
      (st = chai_tensor_check(v, "attention: v", CHAI_F32, false)) ||
      (key_mask && (st = chai_tensor_check(key_mask, "attention: key_mask", CHAI_F32, false))))
    return op_fail(out, st);
  if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
    return op_fail(out,
                   chai_error(CHAI_ERR_ARG, "attention: q %s, k %s and v %s must all be (B,T,H,D)",
                              SHP(q), SHP(k), SHP(v)));
  bool same_kv = true;
  for (int d = 0; d < 4; d++)
    same_kv = same_kv && k->shape[d] == v->shape[d];
  if (!same_kv || q->shape[0] != k->shape[0] || q->shape[2] != k->shape[2] ||
      q->shape[3] != k->shape[3])
    return op_fail(out, chai_error(CHAI_ERR_ARG,
                                   "attention: q %s, k %s, v %s: need q (B,Tq,H,D) and k, v "
                                   "(B,Tk,H,D)",
                                   SHP(q), SHP(k), SHP(v)));
  int64_t B = q->shape[0], Tq = q->shape[1], Tk = k->shape[1], H = q->shape[2], D = q->shape[3];
  if (key_mask && (key_mask->ndim != 2 || key_mask->shape[0] != B || key_mask->shape[1] != Tk))
    return op_fail(out, chai_error(CHAI_ERR_ARG, "attention: key_mask %s must be (%lld,%lld)",
                                   SHP(key_mask), (long long)B, (long long)Tk));
  if ((st = op_fits_int(q, "attention: q")) || (st = op_fits_int(k, "attention: k")))
    return op_fail(out, st);
  if (H < 1 || D < 1)
    return op_fail(out,
                   chai_error(CHAI_ERR_ARG, "attention: q %s has no heads or head dims", SHP(q)));
  if ((st = chai_blas_init())) return op_fail(out, st);
  if ((st = op_input_f32(&tq, q, "attention: q")) || (st = op_input_f32(&tk, k, "attention: k")) ||
      (st = op_input_f32(&tv, v, "attention: v")) ||
      (key_mask && (st = op_input_f32(&tm, key_mask, "attention: key_mask"))) ||
      (st = chai_tensor_new(&r, CHAI_F32, 4, q->shape)))
    goto done;
  chai_attention_args a = {.B = (int)B,
                           .Tq = (int)Tq,
                           .Tk = (int)Tk,
                           .H = (int)H,
                           .D = (int)D,
                           .q_ts = (int)(H * D),
                           .k_ts = (int)(H * D),
                           .v_ts = (int)(H * D),
                           .scale = scale,
                           .causal = causal,
                           .key_mask = key_mask ? chai_tensor_data(&tm) : NULL,
                           .score_head = NULL};
  st = chai_attention_forward(chai_tensor_data(&r), NULL, chai_tensor_data(&tq),
                              chai_tensor_data(&tk), chai_tensor_data(&tv), &a);
done:
  chai_tensor_release(&tq);
  chai_tensor_release(&tk);
  chai_tensor_release(&tv);
  chai_tensor_release(&tm);
  if (st) {
    chai_tensor_release(&r);
    return op_fail(out, st);
  }
  *out = r;
  return CHAI_OK;
}
