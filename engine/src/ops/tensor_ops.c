/* Tensor ops, part 1: matmul, linear, broadcasting arithmetic and sums. Each checks dtypes and
 * shapes, makes strided inputs contiguous when the kernel needs it, and returns a fresh contiguous
 * f32 result. */
#include <stdio.h>

#include "chai/blas.h"
#include "chai/ops.h"
#include "ops/tensor_ops_util.h"

chai_status chai_op_matmul(chai_tensor *out, const chai_tensor *a, const chai_tensor *b) {
  chai_tensor ta = {0}, tb = {0}, r = {0};
  chai_status st;
  if ((st = chai_tensor_check(a, "matmul: a", CHAI_F32, false)) ||
      (st = chai_tensor_check(b, "matmul: b", CHAI_F32, false)))
    return op_fail(out, st);
  if (a->ndim < 2 || b->ndim < 2)
    return op_fail(out, chai_error(CHAI_ERR_ARG, "matmul: a %s and b %s must have at least 2 dims",
                                   SHP(a), SHP(b)));
  int nd = a->ndim;
  int64_t M = a->shape[nd - 2], K = a->shape[nd - 1];
  int64_t Kb = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
  if (K != Kb)
    return op_fail(out, chai_error(CHAI_ERR_ARG,
                                   "matmul: a %s and b %s: inner dims %lld and %lld differ", SHP(a),
                                   SHP(b), (long long)K, (long long)Kb));
  bool batched = b->ndim > 2;
  if (batched) {
    bool same = b->ndim == nd;
    for (int d = 0; same && d < nd - 2; d++)
      same = a->shape[d] == b->shape[d];
    if (!same)
      return op_fail(out, chai_error(CHAI_ERR_ARG,
                                     "matmul: a %s and b %s: b must be (K,N) or have a's leading "
                                     "dims",
                                     SHP(a), SHP(b)));
  }
  if ((st = op_fits_int(a, "matmul: a")) || (st = op_fits_int(b, "matmul: b")))
    return op_fail(out, st);
  int64_t shape[CHAI_MAX_DIMS];
  for (int d = 0; d < nd - 1; d++)
    shape[d] = a->shape[d];
  shape[nd - 1] = N;
  int64_t batch = 1;
  for (int d = 0; d < nd - 2; d++)
    batch *= a->shape[d];
  if (batch * M * N > INT_MAX)
    return op_fail(out, chai_error(CHAI_ERR_ARG, "matmul: result of a %s and b %s is too large",
                                   SHP(a), SHP(b)));
  if ((st = chai_blas_init())) return op_fail(out, st);
  if ((st = op_input_f32(&ta, a, "matmul: a")) || (st = op_input_f32(&tb, b, "matmul: b")) ||
      (st = chai_tensor_new(&r, CHAI_F32, nd, shape)))
    goto fail;
  if (batched)
    chai_matmul_forward(chai_tensor_data(&r), chai_tensor_data(&ta), chai_tensor_data(&tb),
                        (int)batch, (int)M, (int)N, (int)K, false, false);
  else /* b is shared: all of a's rows form one (batch·M, K) matrix */
    chai_matmul_forward(chai_tensor_data(&r), chai_tensor_data(&ta), chai_tensor_data(&tb), 1,
                        (int)(batch * M), (int)N, (int)K, false, false);
  chai_tensor_release(&ta);
  chai_tensor_release(&tb);
  *out = r;
  return CHAI_OK;
fail:
  chai_tensor_release(&ta);
  chai_tensor_release(&tb);
  chai_tensor_release(&r);
  return op_fail(out, st);
}

chai_status chai_op_linear(chai_tensor *out, const chai_tensor *x, const chai_tensor *w,
                           const chai_tensor *bias) {
  chai_tensor tx = {0}, tw = {0}, tbias = {0}, r = {0};
  chai_status st;
  if ((st = chai_tensor_check(x, "linear: x", CHAI_F32, false)) ||
      (st = chai_tensor_check(w, "linear: w", CHAI_F32, false)) ||
      (bias && (st = chai_tensor_check(bias, "linear: bias", CHAI_F32, false))))
    return op_fail(out, st);
  if (x->ndim < 1 || w->ndim != 2)
    return op_fail(out, chai_error(CHAI_ERR_ARG,
                                   "linear: x %s must have at least 1 dim and w %s must be (OC,C)",
                                   SHP(x), SHP(w)));
  int64_t C = x->shape[x->ndim - 1], OC = w->shape[0];
  if (w->shape[1] != C)
    return op_fail(out, chai_error(CHAI_ERR_ARG, "linear: x %s has C=%lld but w %s has C=%lld",
                                   SHP(x), (long long)C, SHP(w), (long long)w->shape[1]));
  if (bias && (bias->ndim != 1 || bias->shape[0] != OC))
    return op_fail(out, chai_error(CHAI_ERR_ARG, "linear: bias %s must be (%lld) to match w %s",
                                   SHP(bias), (long long)OC, SHP(w)));
  int64_t rows = 1;
  for (int d = 0; d < x->ndim - 1; d++)
    rows *= x->shape[d];
  if ((st = op_fits_int(x, "linear: x")) || (st = op_fits_int(w, "linear: w")))
    return op_fail(out, st);
  if (rows * OC > INT_MAX)
    return op_fail(out, chai_error(CHAI_ERR_ARG, "linear: result of x %s and w %s is too large",
                                   SHP(x), SHP(w)));
  int64_t shape[CHAI_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++)
    shape[d] = x->shape[d];
  shape[x->ndim - 1] = OC;
  if ((st = chai_blas_init())) return op_fail(out, st);
  if ((st = op_input_f32(&tx, x, "linear: x")) || (st = op_input_f32(&tw, w, "linear: w")) ||
      (bias && (st = op_input_f32(&tbias, bias, "linear: bias"))) ||
      (st = chai_tensor_new(&r, CHAI_F32, x->ndim, shape)))
    goto fail;
  chai_linear_forward(chai_tensor_data(&r), chai_tensor_data(&tx), chai_tensor_data(&tw),
                      bias ? chai_tensor_data(&tbias) : NULL, (int)rows, (int)C, (int)OC);
  chai_tensor_release(&tx);
  chai_tensor_release(&tw);
  chai_tensor_release(&tbias);
  *out = r;
  return CHAI_OK;
fail:
  chai_tensor_release(&tx);
  chai_tensor_release(&tw);
  chai_tensor_release(&tbias);
  chai_tensor_release(&r);
  return op_fail(out, st);
}

static const char *binop_name(chai_binop op) {
  switch (op) {
  case CHAI_BINOP_ADD: return "add";
  case CHAI_BINOP_SUB: return "sub";
  case CHAI_BINOP_MUL: return "mul";
  case CHAI_BINOP_DIV: return "div";
  }
  return "?";
}

static inline float binop_apply(chai_binop op, float x, float y) {
  switch (op) {
  case CHAI_BINOP_ADD: return x + y;
  case CHAI_BINOP_SUB: return x - y;
  case CHAI_BINOP_MUL: return x * y;
  case CHAI_BINOP_DIV: return x / y;
  }
  return 0;
}

/* Both operands are read through their own strides (0 along broadcast dims), so strided inputs
 * need no copy. Shapes are right-aligned and padded to 4 dims. */
chai_status chai_op_binary(chai_tensor *out, chai_binop op, const chai_tensor *a,
                           const chai_tensor *b) {
  const char *name = binop_name(op);
  char wa[32], wb[32];
  snprintf(wa, sizeof wa, "%s: a", name);
  snprintf(wb, sizeof wb, "%s: b", name);
  chai_status st;
  if ((unsigned)op > CHAI_BINOP_DIV)
    return op_fail(out, chai_error(CHAI_ERR_ARG, "binary: unknown op %d", (int)op));
  if ((st = chai_tensor_check(a, wa, CHAI_F32, false)) ||
      (st = chai_tensor_check(b, wb, CHAI_F32, false)))
    return op_fail(out, st);
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  int64_t shape[CHAI_MAX_DIMS], n4[4], sa[4], sb[4];
  for (int i = 0; i < 4; i++) { /* i indexes the padded 4-dim shape */
    int d = i - (4 - nd), da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t ea = da >= 0 ? a->shape[da] : 1, eb = db >= 0 ? b->shape[db] : 1;
    if (ea != eb && ea != 1 && eb != 1)
      return op_fail(out, chai_error(CHAI_ERR_ARG,
                                     "%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)",
                                     name, SHP(a), SHP(b), d - nd, (long long)ea, (long long)eb));
    n4[i] = ea == 1 ? eb : ea;
    if (d >= 0) shape[d] = n4[i];
    sa[i] = ea == 1 ? 0 : a->stride[da] / (int64_t)sizeof(float);
    sb[i] = eb == 1 ? 0 : b->stride[db] / (int64_t)sizeof(float);
  }
  chai_tensor r = {0};
  if ((st = chai_tensor_new(&r, CHAI_F32, nd, shape))) return op_fail(out, st);
  float *o = chai_tensor_data(&r);
  const float *pa = chai_tensor_data(a), *pb = chai_tensor_data(b);
  size_t n = (size_t)chai_tensor_numel(&r);
  bool flat = a->ndim == b->ndim && chai_tensor_is_contiguous(a) && chai_tensor_is_contiguous(b);
  for (int d = 0; flat && d < a->ndim; d++)
    flat = a->shape[d] == b->shape[d];
  if (flat && op == CHAI_BINOP_ADD) {
    chai_add_forward(o, pa, pb, n);
  } else if (flat && op == CHAI_BINOP_MUL) {
    chai_mul_forward(o, pa, pb, n);
  } else if (flat) {
    for (size_t i = 0; i < n; i++)
      o[i] = binop_apply(op, pa[i], pb[i]);
  } else {
    for (int64_t i0 = 0; i0 < n4[0]; i0++)
      for (int64_t i1 = 0; i1 < n4[1]; i1++)
        for (int64_t i2 = 0; i2 < n4[2]; i2++) {
          const float *ra = pa + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
          const float *rb = pb + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
          for (int64_t i3 = 0; i3 < n4[3]; i3++)
            *o++ = binop_apply(op, ra[i3 * sa[3]], rb[i3 * sb[3]]);
        }
  }
  *out = r;
  return CHAI_OK;
}

/* Applies f elementwise over any strided f32 tensor into a fresh contiguous result. */
static chai_status unary_map(chai_tensor *out, const chai_tensor *a, const char *what,
                             chai_binop op, float s, bool scalar_first, bool negate) {
  chai_tensor ta = {0}, r = {0};
  chai_status st;
  if ((st = op_input_f32(&ta, a, what)) ||
      (st = chai_tensor_new(&r, CHAI_F32, a->ndim, a->shape))) {
    chai_tensor_release(&ta);
    return op_fail(out, st);
  }
  const float *x = chai_tensor_data(&ta);
  float *o = chai_tensor_data(&r);
  size_t n = (size_t)chai_tensor_numel(&r);
  if (negate)
    for (size_t i = 0; i < n; i++)
      o[i] = -x[i];
  else if (op == CHAI_BINOP_MUL)
    chai_scale_forward(o, x, s, n);
  else if (scalar_first)
    for (size_t i = 0; i < n; i++)
      o[i] = binop_apply(op, s, x[i]);
  else
    for (size_t i = 0; i < n; i++)
      o[i] = binop_apply(op, x[i], s);
  chai_tensor_release(&ta);
  *out = r;
  return CHAI_OK;
}

chai_status chai_op_binary_scalar(chai_tensor *out, chai_binop op, const chai_tensor *a, double s,
                                  bool scalar_first) {
  if ((unsigned)op > CHAI_BINOP_DIV)
    return op_fail(out, chai_error(CHAI_ERR_ARG, "binary: unknown op %d", (int)op));
  char what[32];
  snprintf(what, sizeof what, "%s: a", binop_name(op));
  return unary_map(out, a, what, op, (float)s, scalar_first, false);
}

chai_status chai_op_neg(chai_tensor *out, const chai_tensor *a) {
  return unary_map(out, a, "neg: a", CHAI_BINOP_ADD, 0, false, true);
}

/* Any dtype; f32 contiguous tensors take the direct loop, others go through get_flat. */
chai_status chai_op_sum_all(double *out, const chai_tensor *x) {
  if (!x->storage) return chai_error(CHAI_ERR_STATE, "sum: tensor used after free");
  int64_t n = chai_tensor_numel(x);
  double s = 0;
  if (x->dtype == CHAI_F32 && chai_tensor_is_contiguous(x)) {
    const float *p = chai_tensor_data(x);
    for (int64_t i = 0; i < n; i++)
      s += p[i];
  } else {
    for (int64_t i = 0; i < n; i++)
      s += chai_tensor_get_flat(x, i);
  }
  *out = s;
  return CHAI_OK;
}

/* x viewed as (outer, D, inner); each output is summed over D in order, in double. */
chai_status chai_op_sum_dim(chai_tensor *out, const chai_tensor *x, int dim) {
  chai_tensor tx = {0}, r = {0};
  chai_status st;
  if ((st = chai_tensor_check(x, "sum: x", CHAI_F32, false))) return op_fail(out, st);
  int d = op_norm_dim(dim, x->ndim);
  if (x->ndim < 1 || d < 0 || d >= x->ndim)
    return op_fail(out,
                   chai_error(CHAI_ERR_ARG, "sum: dim %d is out of range for x %s", dim, SHP(x)));
  int64_t shape[CHAI_MAX_DIMS], outer = 1, inner = 1, D = x->shape[d];
  for (int i = 0, j = 0; i < x->ndim; i++) {
    if (i == d) continue;
    shape[j++] = x->shape[i];
    if (i < d)
      outer *= x->shape[i];
    else
      inner *= x->shape[i];
  }
  if ((st = op_input_f32(&tx, x, "sum: x")) ||
      (st = chai_tensor_new(&r, CHAI_F32, x->ndim - 1, shape))) {
    chai_tensor_release(&tx);
    return op_fail(out, st);
  }
  const float *p = chai_tensor_data(&tx);
  float *o = chai_tensor_data(&r);
  for (int64_t i = 0; i < outer; i++)
    for (int64_t k = 0; k < inner; k++) {
      double s = 0;
      for (int64_t j = 0; j < D; j++)
        s += p[(i * D + j) * inner + k];
      o[i * inner + k] = (float)s;
    }
  chai_tensor_release(&tx);
  *out = r;
  return CHAI_OK;
}
