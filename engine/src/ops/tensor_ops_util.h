/* Internal helpers shared by the chai_op_* files: input checks and shape strings for messages. */
#ifndef CHAI_TENSOR_OPS_UTIL_H
#define CHAI_TENSOR_OPS_UTIL_H

#include <limits.h>
#include <string.h>

#include "chai/ops.h"
#include "chai/tensor.h"

/* A shape formatted for an error message, "(2,3)"; the buffer lives in the caller's frame. */
typedef struct op_shape_str {
  char s[96];
} op_shape_str;
static inline op_shape_str op_shape(const chai_tensor *t) {
  op_shape_str r;
  chai_shape_str(t->ndim, t->shape, r.s, sizeof r.s);
  return r;
}
#define SHP(t) (op_shape(t).s)

/* `tmp` becomes a contiguous f32 reference to t (a copy when t is strided). `what` names the
 * argument in messages ("linear: x"). Nothing to release on failure. */
static inline chai_status op_input_f32(chai_tensor *tmp, const chai_tensor *t, const char *what) {
  chai_status st = chai_tensor_check(t, what, CHAI_F32, false);
  if (st) return st;
  st = chai_tensor_contiguous(tmp, t);
  if (st) return chai_error_context(st, "%s", what);
  return CHAI_OK;
}

/* Kernels take int sizes; a tensor with more elements than that is refused up front. */
static inline chai_status op_fits_int(const chai_tensor *t, const char *what) {
  if (chai_tensor_numel(t) > INT_MAX)
    return chai_error(CHAI_ERR_ARG, "%s %s has %lld elements, more than the kernels take (%d)",
                      what, SHP(t), (long long)chai_tensor_numel(t), INT_MAX);
  return CHAI_OK;
}

/* On failure every op leaves `out` released. */
static inline chai_status op_fail(chai_tensor *out, chai_status st) {
  memset(out, 0, sizeof *out);
  return st;
}

static inline int op_norm_dim(int dim, int ndim) {
  return dim < 0 ? dim + ndim : dim;
}

#endif
