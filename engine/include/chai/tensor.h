/* chai — dtypes and tensor views over refcounted storage. */
#ifndef CHAI_TENSOR_H
#define CHAI_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"
#include "chai/memory.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHAI_MAX_DIMS 4

typedef enum chai_dtype {
  CHAI_F32 = 0,
  CHAI_F16,
  CHAI_BF16,
  CHAI_I32,
  CHAI_I64,
  CHAI_I8,
  CHAI_U8,
  CHAI_DTYPE_COUNT
} chai_dtype;

size_t chai_dtype_size(chai_dtype dt);
const char *chai_dtype_name(chai_dtype dt);
/* Parses "f32", "float32", "f16", "float16", "half", "bf16", "bfloat16", "i32", "int32", "i64",
 * "int64", "i8", "int8", "u8", "uint8"; CHAI_ERR_ARG naming the string otherwise. */
chai_status chai_dtype_parse(const char *name, chai_dtype *out);

/* A view: dtype, up to 4 dims in PyTorch order, byte strides, a storage reference and a byte
 * offset into it. A released tensor has storage == NULL. Tensors are plain values: copying the struct
 * does not add a reference; use chai_tensor_ref for that. */
typedef struct chai_tensor {
  chai_dtype dtype;
  int ndim;
  int64_t shape[CHAI_MAX_DIMS];
  int64_t stride[CHAI_MAX_DIMS]; /* in bytes */
  size_t offset;                 /* in bytes, into storage->data */
  chai_storage *storage;
} chai_tensor;

/* A new contiguous zeroed tensor; `out` receives the only reference. On failure `out` is left
 * released. Dims must be >= 0 and ndim in 0..4. */
chai_status chai_tensor_new(chai_tensor *out, chai_dtype dt, int ndim, const int64_t *shape);
/* A contiguous tensor over an existing storage at byte `offset` (adds a reference); checks that the
 * bytes fit. */
chai_status chai_tensor_from_storage(chai_tensor *out, chai_storage *s, size_t offset, chai_dtype dt,
                                     int ndim, const int64_t *shape);
/* `out` becomes another reference to the same view. */
void chai_tensor_ref(chai_tensor *out, const chai_tensor *t);
/* Drops the reference and marks `t` released; idempotent. */
void chai_tensor_release(chai_tensor *t);
bool chai_tensor_alive(const chai_tensor *t);

int64_t chai_tensor_numel(const chai_tensor *t);
size_t chai_tensor_nbytes(const chai_tensor *t);
bool chai_tensor_is_contiguous(const chai_tensor *t);
/* Pointer to the first element (storage data + offset). */
void *chai_tensor_data(const chai_tensor *t);
/* "(2,3) f32" style description into buf. */
const char *chai_tensor_describe(const chai_tensor *t, char *buf, size_t n);
/* Formats a shape as "(2,3)". */
const char *chai_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* Views (no copy; `out` gets a new reference). Dims are 0-based and may be negative (from the end).
 * reshape copies only when the view cannot be expressed with strides (then `out` is contiguous);
 * one dim may be -1. */
chai_status chai_tensor_view(chai_tensor *out, const chai_tensor *t, int ndim, const int64_t *shape);
chai_status chai_tensor_reshape(chai_tensor *out, const chai_tensor *t, int ndim,
                                const int64_t *shape);
chai_status chai_tensor_transpose(chai_tensor *out, const chai_tensor *t, int d0, int d1);
chai_status chai_tensor_permute(chai_tensor *out, const chai_tensor *t, const int *perm);
/* Elements start..stop-1 (step >= 1) along dim. */
chai_status chai_tensor_slice(chai_tensor *out, const chai_tensor *t, int dim, int64_t start,
                              int64_t stop, int64_t step);
/* A contiguous copy (or a new reference when t is already contiguous). */
chai_status chai_tensor_contiguous(chai_tensor *out, const chai_tensor *t);
/* Always a fresh contiguous copy. */
chai_status chai_tensor_clone(chai_tensor *out, const chai_tensor *t);
/* A new contiguous tensor of dtype `dt` (float types convert with round-to-nearest-even; float to
 * integer truncates toward zero). */
chai_status chai_tensor_to(chai_tensor *out, const chai_tensor *t, chai_dtype dt);
/* Copies src into dst elementwise (same shape, any dtypes and strides). */
chai_status chai_tensor_copy(chai_tensor *dst, const chai_tensor *src);

/* Element access by a full 0-based index (bounds checked), as double. */
chai_status chai_tensor_get(const chai_tensor *t, const int64_t *index, double *value);
chai_status chai_tensor_set(chai_tensor *t, const int64_t *index, double value);
/* Reads element `flat` (row-major order over the view) as double; no checks. */
double chai_tensor_get_flat(const chai_tensor *t, int64_t flat);
void chai_tensor_set_flat(chai_tensor *t, int64_t flat, double value);

/* Checks used by ops: CHAI_ERR_ARG with a message naming `what` when t is released, or its dtype
 * differs, or it is not contiguous. */
chai_status chai_tensor_check(const chai_tensor *t, const char *what, chai_dtype dt,
                              bool need_contiguous);

#ifdef __cplusplus
}
#endif
#endif
