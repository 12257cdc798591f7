#include "chai/tensor.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "chai/half.h"

static const struct {
  const char *name;
  size_t size;
} dtype_table[CHAI_DTYPE_COUNT] = {
    [CHAI_F32] = {"f32", 4}, [CHAI_F16] = {"f16", 2}, [CHAI_BF16] = {"bf16", 2},
    [CHAI_I32] = {"i32", 4}, [CHAI_I64] = {"i64", 8}, [CHAI_I8] = {"i8", 1},
    [CHAI_U8] = {"u8", 1},
};

size_t chai_dtype_size(chai_dtype dt) {
  return (unsigned)dt < CHAI_DTYPE_COUNT ? dtype_table[dt].size : 0;
}

const char *chai_dtype_name(chai_dtype dt) {
  return (unsigned)dt < CHAI_DTYPE_COUNT ? dtype_table[dt].name : "?";
}

chai_status chai_dtype_parse(const char *name, chai_dtype *out) {
  static const struct {
    const char *alias;
    chai_dtype dt;
  } aliases[] = {{"f32", CHAI_F32},     {"float32", CHAI_F32}, {"float", CHAI_F32},
                 {"f16", CHAI_F16},     {"float16", CHAI_F16}, {"half", CHAI_F16},
                 {"bf16", CHAI_BF16},   {"bfloat16", CHAI_BF16}, {"i32", CHAI_I32},
                 {"int32", CHAI_I32},   {"i64", CHAI_I64},     {"int64", CHAI_I64},
                 {"i8", CHAI_I8},       {"int8", CHAI_I8},     {"u8", CHAI_U8},
                 {"uint8", CHAI_U8}};
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (strcasecmp(name, aliases[i].alias) == 0) {
      *out = aliases[i].dt;
      return CHAI_OK;
    }
  return chai_error(CHAI_ERR_ARG,
                    "unknown dtype '%s' (expected f32, f16, bf16, i32, i64, i8 or u8)", name);
}

const char *chai_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t used = (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < ndim && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)shape[i]);
  if (used < n) snprintf(buf + used, n - used, ")");
  return buf;
}

const char *chai_tensor_describe(const chai_tensor *t, char *buf, size_t n) {
  if (!t->storage) {
    snprintf(buf, n, "released tensor");
    return buf;
  }
  char shape[96];
  snprintf(buf, n, "%s %s", chai_shape_str(t->ndim, t->shape, shape, sizeof shape),
           chai_dtype_name(t->dtype));
  return buf;
}

static chai_status check_shape(int ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 0 || ndim > CHAI_MAX_DIMS)
    return chai_error(CHAI_ERR_ARG, "a tensor has 0 to %d dims, not %d", CHAI_MAX_DIMS, ndim);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return chai_error(CHAI_ERR_ARG, "dim %d has negative size %lld", i + 1,
                        (long long)shape[i]);
    if (shape[i] && n > INT64_MAX / 16 / shape[i])
      return chai_error(CHAI_ERR_ARG, "shape too large (dim %d = %lld)", i + 1,
                        (long long)shape[i]);
    n *= shape[i];
  }
  *numel = n;
  return CHAI_OK;
}

static void set_contiguous_strides(chai_tensor *t) {
  int64_t s = (int64_t)chai_dtype_size(t->dtype);
  for (int i = t->ndim - 1; i >= 0; i--) {
    t->stride[i] = s;
    s *= t->shape[i];
  }
}

static void init_view(chai_tensor *t, chai_dtype dt, int ndim, const int64_t *shape) {
  memset(t, 0, sizeof *t);
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  set_contiguous_strides(t);
}

chai_status chai_tensor_new(chai_tensor *out, chai_dtype dt, int ndim, const int64_t *shape) {
  memset(out, 0, sizeof *out);
  if ((unsigned)dt >= CHAI_DTYPE_COUNT) return chai_error(CHAI_ERR_ARG, "bad dtype %d", (int)dt);
  int64_t numel;
  chai_status st = check_shape(ndim, shape, &numel);
  if (st) return st;
  chai_storage *s = chai_storage_new((size_t)numel * chai_dtype_size(dt));
  if (!s) return CHAI_ERR_NOMEM;
  init_view(out, dt, ndim, shape);
  out->storage = s;
  return CHAI_OK;
}

chai_status chai_tensor_from_storage(chai_tensor *out, chai_storage *s, size_t offset, chai_dtype dt,
                                     int ndim, const int64_t *shape) {
  memset(out, 0, sizeof *out);
  int64_t numel;
  chai_status st = check_shape(ndim, shape, &numel);
  if (st) return st;
  size_t need = (size_t)numel * chai_dtype_size(dt);
  if (offset > s->bytes || need > s->bytes - offset)
    return chai_error(CHAI_ERR_ARG, "a %zu-byte tensor at offset %zu does not fit in %zu bytes",
                      need, offset, s->bytes);
  init_view(out, dt, ndim, shape);
  out->offset = offset;
  chai_storage_retain(s);
  out->storage = s;
  return CHAI_OK;
}

void chai_tensor_ref(chai_tensor *out, const chai_tensor *t) {
  *out = *t;
  chai_storage_retain(out->storage);
}

void chai_tensor_release(chai_tensor *t) {
  if (!t) return;
  chai_storage *s = t->storage;
  t->storage = NULL;
  chai_storage_release(s);
}

bool chai_tensor_alive(const chai_tensor *t) { return t && t->storage; }

int64_t chai_tensor_numel(const chai_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

size_t chai_tensor_nbytes(const chai_tensor *t) {
  return (size_t)chai_tensor_numel(t) * chai_dtype_size(t->dtype);
}

bool chai_tensor_is_contiguous(const chai_tensor *t) {
  int64_t s = (int64_t)chai_dtype_size(t->dtype);
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s) return false;
    s *= t->shape[i];
  }
  return true;
}

void *chai_tensor_data(const chai_tensor *t) { return t->storage->data + t->offset; }

static int norm_dim(int dim, int ndim, chai_status *st) {
  int d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim) {
    *st = chai_error(CHAI_ERR_ARG, "dim %d out of range for a %d-dim tensor", dim, ndim);
    return -1;
  }
  *st = CHAI_OK;
  return d;
}

static chai_status need_alive(const chai_tensor *t) {
  if (!t->storage) return chai_error(CHAI_ERR_STATE, "tensor used after free");
  return CHAI_OK;
}

/* Resolves one -1 in `shape` against `numel`. */
static chai_status infer_shape(int ndim, const int64_t *shape, int64_t numel, int64_t *out) {
  int infer = -1;
  int64_t known = 1;
  if (ndim < 0 || ndim > CHAI_MAX_DIMS)
    return chai_error(CHAI_ERR_ARG, "a tensor has 0 to %d dims, not %d", CHAI_MAX_DIMS, ndim);
  for (int i = 0; i < ndim; i++) {
    out[i] = shape[i];
    if (shape[i] == -1) {
      if (infer >= 0) return chai_error(CHAI_ERR_ARG, "only one dim may be -1");
      infer = i;
    } else if (shape[i] < 0) {
      return chai_error(CHAI_ERR_ARG, "dim %d has negative size %lld", i + 1,
                        (long long)shape[i]);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known)
      return chai_error(CHAI_ERR_ARG, "cannot infer dim %d: %lld elements do not divide by %lld",
                        infer + 1, (long long)numel, (long long)known);
    out[infer] = numel / known;
    known = numel;
  }
  if (known != numel) {
    char a[96];
    return chai_error(CHAI_ERR_ARG, "cannot reshape %lld elements to %s (%lld elements)",
                      (long long)numel, chai_shape_str(ndim, out, a, sizeof a), (long long)known);
  }
  return CHAI_OK;
}

/* Computes strides for viewing t as `shape` without copying, as PyTorch's computeStride does;
 * false when impossible. */
static bool view_strides(const chai_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
  int64_t numel = chai_tensor_numel(t);
  if (numel == 0 || chai_tensor_is_contiguous(t)) {
    int64_t s = (int64_t)chai_dtype_size(t->dtype);
    for (int i = ndim - 1; i >= 0; i--) {
      stride[i] = s;
      s *= shape[i] ? shape[i] : 1;
    }
    return true;
  }
  int view_d = ndim - 1;
  int64_t chunk_base_stride = t->ndim ? t->stride[t->ndim - 1] : 1;
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    tensor_numel *= t->shape[d];
    if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        stride[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = t->stride[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

chai_status chai_tensor_view(chai_tensor *out, const chai_tensor *t, int ndim, const int64_t *shape) {
  chai_status st = need_alive(t);
  if (st) return st;
  int64_t resolved[CHAI_MAX_DIMS], stride[CHAI_MAX_DIMS];
  if ((st = infer_shape(ndim, shape, chai_tensor_numel(t), resolved))) return st;
  if (!view_strides(t, ndim, resolved, stride)) {
    char a[96];
    return chai_error(CHAI_ERR_ARG,
                      "cannot view a non-contiguous %s tensor as %s without a copy (use reshape)",
                      chai_shape_str(t->ndim, t->shape, a, sizeof a),
                      chai_shape_str(ndim, resolved, (char[96]){0}, 96));
  }
  chai_tensor v = *t;
  v.ndim = ndim;
  for (int i = 0; i < ndim; i++) {
    v.shape[i] = resolved[i];
    v.stride[i] = stride[i];
  }
  chai_tensor_ref(out, &v);
  return CHAI_OK;
}

chai_status chai_tensor_reshape(chai_tensor *out, const chai_tensor *t, int ndim,
                                const int64_t *shape) {
  chai_status st = need_alive(t);
  if (st) return st;
  int64_t resolved[CHAI_MAX_DIMS], stride[CHAI_MAX_DIMS];
  if ((st = infer_shape(ndim, shape, chai_tensor_numel(t), resolved))) return st;
  if (view_strides(t, ndim, resolved, stride)) return chai_tensor_view(out, t, ndim, resolved);
  chai_tensor c;
  if ((st = chai_tensor_clone(&c, t))) return st;
  st = chai_tensor_view(out, &c, ndim, resolved);
  chai_tensor_release(&c);
  return st;
}

chai_status chai_tensor_transpose(chai_tensor *out, const chai_tensor *t, int d0, int d1) {
  chai_status st = need_alive(t);
  if (st) return st;
  int a = norm_dim(d0, t->ndim, &st);
  if (st) return st;
  int b = norm_dim(d1, t->ndim, &st);
  if (st) return st;
  chai_tensor v = *t;
  v.shape[a] = t->shape[b];
  v.shape[b] = t->shape[a];
  v.stride[a] = t->stride[b];
  v.stride[b] = t->stride[a];
  chai_tensor_ref(out, &v);
  return CHAI_OK;
}

chai_status chai_tensor_permute(chai_tensor *out, const chai_tensor *t, const int *perm) {
  chai_status st = need_alive(t);
  if (st) return st;
  bool seen[CHAI_MAX_DIMS] = {0};
  chai_tensor v = *t;
  for (int i = 0; i < t->ndim; i++) {
    int d = norm_dim(perm[i], t->ndim, &st);
    if (st) return st;
    if (seen[d]) return chai_error(CHAI_ERR_ARG, "permute: dim %d appears twice", perm[i]);
    seen[d] = true;
    v.shape[i] = t->shape[d];
    v.stride[i] = t->stride[d];
  }
  chai_tensor_ref(out, &v);
  return CHAI_OK;
}

chai_status chai_tensor_slice(chai_tensor *out, const chai_tensor *t, int dim, int64_t start,
                              int64_t stop, int64_t step) {
  chai_status st = need_alive(t);
  if (st) return st;
  int d = norm_dim(dim, t->ndim, &st);
  if (st) return st;
  if (step < 1) return chai_error(CHAI_ERR_ARG, "slice step must be >= 1, got %lld", (long long)step);
  if (start < 0 || stop > t->shape[d] || start > stop)
    return chai_error(CHAI_ERR_ARG, "slice [%lld, %lld) out of range for dim %d of size %lld",
                      (long long)start, (long long)stop, d, (long long)t->shape[d]);
  chai_tensor v = *t;
  v.offset = t->offset + (size_t)(start * t->stride[d]);
  v.shape[d] = (stop - start + step - 1) / step;
  v.stride[d] = t->stride[d] * step;
  chai_tensor_ref(out, &v);
  return CHAI_OK;
}

/* Byte offset of row-major element `flat` in the view. */
static int64_t flat_offset(const chai_tensor *t, int64_t flat) {
  int64_t off = 0;
  for (int i = t->ndim - 1; i >= 0; i--) {
    int64_t n = t->shape[i];
    off += (flat % n) * t->stride[i];
    flat /= n;
  }
  return off;
}

static double load(const uint8_t *p, chai_dtype dt) {
  switch (dt) {
  case CHAI_F32: { float v; memcpy(&v, p, 4); return v; }
  case CHAI_F16: { uint16_t v; memcpy(&v, p, 2); return chai_f16_to_f32(v); }
  case CHAI_BF16: { uint16_t v; memcpy(&v, p, 2); return chai_bf16_to_f32(v); }
  case CHAI_I32: { int32_t v; memcpy(&v, p, 4); return v; }
  case CHAI_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
  case CHAI_I8: return (int8_t)*p;
  case CHAI_U8: return *p;
  default: return 0;
  }
}

static void store(uint8_t *p, chai_dtype dt, double x) {
  switch (dt) {
  case CHAI_F32: { float v = (float)x; memcpy(p, &v, 4); break; }
  case CHAI_F16: { uint16_t v = chai_f32_to_f16((float)x); memcpy(p, &v, 2); break; }
  case CHAI_BF16: { uint16_t v = chai_f32_to_bf16((float)x); memcpy(p, &v, 2); break; }
  case CHAI_I32: { int32_t v = (int32_t)x; memcpy(p, &v, 4); break; }
  case CHAI_I64: { int64_t v = (int64_t)x; memcpy(p, &v, 8); break; }
  case CHAI_I8: *p = (uint8_t)(int8_t)x; break;
  case CHAI_U8: *p = (uint8_t)x; break;
  default: break;
  }
}

double chai_tensor_get_flat(const chai_tensor *t, int64_t flat) {
  return load((const uint8_t *)chai_tensor_data(t) + flat_offset(t, flat), t->dtype);
}

void chai_tensor_set_flat(chai_tensor *t, int64_t flat, double value) {
  store((uint8_t *)chai_tensor_data(t) + flat_offset(t, flat), t->dtype, value);
}

static chai_status index_offset(const chai_tensor *t, const int64_t *index, int64_t *off) {
  *off = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (index[i] < 0 || index[i] >= t->shape[i])
      return chai_error(CHAI_ERR_ARG, "index %lld out of range for dim %d of size %lld",
                        (long long)index[i] + 1, i + 1, (long long)t->shape[i]);
    *off += index[i] * t->stride[i];
  }
  return CHAI_OK;
}

chai_status chai_tensor_get(const chai_tensor *t, const int64_t *index, double *value) {
  chai_status st = need_alive(t);
  int64_t off;
  if (st || (st = index_offset(t, index, &off))) return st;
  *value = load((const uint8_t *)chai_tensor_data(t) + off, t->dtype);
  return CHAI_OK;
}

chai_status chai_tensor_set(chai_tensor *t, const int64_t *index, double value) {
  chai_status st = need_alive(t);
  int64_t off;
  if (st || (st = index_offset(t, index, &off))) return st;
  store((uint8_t *)chai_tensor_data(t) + off, t->dtype, value);
  return CHAI_OK;
}

chai_status chai_tensor_copy(chai_tensor *dst, const chai_tensor *src) {
  chai_status st;
  if ((st = need_alive(dst)) || (st = need_alive(src))) return st;
  bool same_shape = dst->ndim == src->ndim;
  for (int i = 0; same_shape && i < src->ndim; i++) same_shape = dst->shape[i] == src->shape[i];
  if (!same_shape) {
    char a[96], b[96];
    return chai_error(CHAI_ERR_ARG, "copy: shapes differ: %s vs %s",
                      chai_shape_str(dst->ndim, dst->shape, a, sizeof a),
                      chai_shape_str(src->ndim, src->shape, b, sizeof b));
  }
  int64_t n = chai_tensor_numel(src);
  uint8_t *d = chai_tensor_data(dst);
  const uint8_t *s = chai_tensor_data(src);
  if (dst->dtype == src->dtype && chai_tensor_is_contiguous(dst) && chai_tensor_is_contiguous(src)) {
    memmove(d, s, (size_t)n * chai_dtype_size(src->dtype));
    return CHAI_OK;
  }
  if (chai_tensor_is_contiguous(dst) && chai_tensor_is_contiguous(src) && dst->dtype == CHAI_F32) {
    if (src->dtype == CHAI_F16) { chai_f16_to_f32_array((float *)d, (const uint16_t *)s, (size_t)n); return CHAI_OK; }
    if (src->dtype == CHAI_BF16) { chai_bf16_to_f32_array((float *)d, (const uint16_t *)s, (size_t)n); return CHAI_OK; }
  }
  if (chai_tensor_is_contiguous(dst) && chai_tensor_is_contiguous(src) && src->dtype == CHAI_F32) {
    if (dst->dtype == CHAI_F16) { chai_f32_to_f16_array((uint16_t *)d, (const float *)s, (size_t)n); return CHAI_OK; }
    if (dst->dtype == CHAI_BF16) { chai_f32_to_bf16_array((uint16_t *)d, (const float *)s, (size_t)n); return CHAI_OK; }
  }
  if (dst->dtype == src->dtype) {
    size_t es = chai_dtype_size(src->dtype);
    for (int64_t i = 0; i < n; i++) memcpy(d + flat_offset(dst, i), s + flat_offset(src, i), es);
    return CHAI_OK;
  }
  for (int64_t i = 0; i < n; i++)
    store(d + flat_offset(dst, i), dst->dtype, load(s + flat_offset(src, i), src->dtype));
  return CHAI_OK;
}

chai_status chai_tensor_clone(chai_tensor *out, const chai_tensor *t) {
  return chai_tensor_to(out, t, t->dtype);
}

chai_status chai_tensor_to(chai_tensor *out, const chai_tensor *t, chai_dtype dt) {
  chai_status st = need_alive(t);
  memset(out, 0, sizeof *out);
  if (st) return st;
  if ((st = chai_tensor_new(out, dt, t->ndim, t->shape))) return st;
  if ((st = chai_tensor_copy(out, t))) chai_tensor_release(out);
  return st;
}

chai_status chai_tensor_contiguous(chai_tensor *out, const chai_tensor *t) {
  chai_status st = need_alive(t);
  if (st) return st;
  if (chai_tensor_is_contiguous(t)) {
    chai_tensor_ref(out, t);
    return CHAI_OK;
  }
  return chai_tensor_clone(out, t);
}

chai_status chai_tensor_check(const chai_tensor *t, const char *what, chai_dtype dt,
                              bool need_contiguous) {
  if (!t->storage) return chai_error(CHAI_ERR_STATE, "%s: tensor used after free", what);
  if (t->dtype != dt)
    return chai_error(CHAI_ERR_ARG, "%s: expected a %s tensor, got %s", what, chai_dtype_name(dt),
                      chai_dtype_name(t->dtype));
  if (need_contiguous && !chai_tensor_is_contiguous(t))
    return chai_error(CHAI_ERR_ARG, "%s: expected a contiguous tensor", what);
  return CHAI_OK;
}
