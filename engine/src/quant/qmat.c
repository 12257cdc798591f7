/* The format-tagged matrix: a row-major f32/f16 view, or one storage holding the packed codes,
 * scales and zero points in the layouts of chai/quant.h. Packing and unpacking are plain loops over
 * the layout's index formulas: they run once per matrix, at quantize, load or save time. */
#include <math.h>
#include <string.h>

#include "chai/half.h"
#include "chai/quant.h"
#include "quant/qkernels.h"

void chai_qmat_init(chai_qmat *m) {
  memset(m, 0, sizeof *m);
  m->format = CHAI_QF_F32;
}

void chai_qmat_release(chai_qmat *m) {
  chai_tensor_release(&m->t);
  chai_storage_release(m->storage);
  chai_qmat_init(m);
}

static size_t align64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

static int round_up(int n, int m) {
  return (n + m - 1) / m * m;
}

/* Bytes of the three parts of a packed matrix of this shape. */
static void part_bytes(const chai_qmat *m, size_t *data, size_t *scales, size_t *zeros) {
  size_t rp = (size_t)m->rows_p, cp = (size_t)m->cols_p;
  *data = *scales = *zeros = 0;
  switch (m->format) {
  case CHAI_QF_INT8:
    *data = rp * cp;
    *scales = rp * sizeof(float);
    break;
  case CHAI_QF_INT4: {
    size_t n = rp * (cp / (size_t)m->group);
    *data = rp * cp / 2;
    *scales = n * (m->f16_scales ? 2 : 4);
    *zeros = m->zero_point ? n : 0;
    break;
  }
  case CHAI_QF_BF16: *data = rp * cp * 2; break;
  default: break;
  }
}

size_t chai_qmat_bytes(const chai_qmat *m) {
  if (m->format == CHAI_QF_F32 || m->format == CHAI_QF_F16)
    return chai_tensor_alive(&m->t) ? chai_tensor_nbytes(&m->t) : 0;
  size_t d, s, z;
  part_bytes(m, &d, &s, &z);
  return d + s + z;
}

static chai_status check_shape(int R, int C, const char *fmt) {
  if (R < 1 || C < 1 || R > (1 << 30))
    return chai_error(CHAI_ERR_ARG, "%s matrix: shape (%d,%d) must have 1..2^30 rows and a column",
                      fmt, R, C);
  if (C > CHAI_QMAT_MAX_COLS)
    return chai_error(CHAI_ERR_ARG,
                      "%s matrix: %d columns is more than the %d a packed matrix takes", fmt, C,
                      CHAI_QMAT_MAX_COLS);
  return CHAI_OK;
}

/* Allocates the storage of a packed matrix whose format fields and cols_p are set. */
static chai_status alloc_packed(chai_qmat *m, int R, int C, const char *fmt) {
  m->rows = R;
  m->cols = C;
  m->rows_p = round_up(R, 16);
  size_t d, s, z;
  part_bytes(m, &d, &s, &z);
  chai_storage *st = chai_storage_new(align64(d) + align64(s) + z);
  if (!st) return chai_error_context(CHAI_ERR_NOMEM, "%s matrix (%d,%d)", fmt, R, C);
  m->storage = st;
  m->data = st->data;
  m->scales = s ? st->data + align64(d) : NULL;
  m->zeros = z ? st->data + align64(d) + align64(s) : NULL;
  return CHAI_OK;
}

chai_status chai_qmat_wrap(chai_qmat *out, const chai_tensor *t) {
  chai_qmat_init(out);
  char desc[96];
  if (!chai_tensor_alive(t)) return chai_error(CHAI_ERR_ARG, "qmat wrap: the tensor is released");
  if ((t->dtype != CHAI_F32 && t->dtype != CHAI_F16) || t->ndim != 2 ||
      !chai_tensor_is_contiguous(t) || t->shape[0] < 1 || t->shape[1] < 1 ||
      t->shape[0] > INT32_MAX || t->shape[1] > INT32_MAX)
    return chai_error(CHAI_ERR_ARG,
                      "qmat wrap: expected a contiguous 2-D f32 or f16 tensor with rows and "
                      "columns, got %s",
                      chai_tensor_describe(t, desc, sizeof desc));
  out->format = t->dtype == CHAI_F32 ? CHAI_QF_F32 : CHAI_QF_F16;
  out->rows = out->rows_p = (int)t->shape[0];
  out->cols = out->cols_p = (int)t->shape[1];
  chai_tensor_ref(&out->t, t);
  return CHAI_OK;
}

/* ---- int8: data[(rb·(Cp/4) + kq)·64 + i·4 + j] = q[16·rb+i][4·kq+j] + 128 -------------------- */

static size_t q8_index(const chai_qmat *m, int r, int k) {
  return ((size_t)(r / 16) * (size_t)(m->cols_p / 4) + (size_t)(k / 4)) * 64 +
         (size_t)(r % 16) * 4 + (size_t)(k % 4);
}

chai_status chai_qmat_from_int8(chai_qmat *out, const int8_t *q, const float *scale, int R, int C) {
  chai_qmat_init(out);
  chai_status st = check_shape(R, C, "int8");
  if (st) return st;
  out->format = CHAI_QF_INT8;
  out->cols_p = round_up(C, 64);
  for (int r = 0; r < R; r++) {
    if (!isfinite(scale[r]))
      return chai_error(CHAI_ERR_ARG, "int8 matrix: scale of row %d is %g", r, scale[r]);
    for (int k = 0; k < C; k++)
      if (q[(size_t)r * C + k] == -128)
        return chai_error(CHAI_ERR_ARG, "int8 matrix: code -128 at (%d,%d) (codes are -127..127)",
                          r, k);
  }
  st = alloc_packed(out, R, C, "int8");
  if (st) {
    chai_qmat_init(out);
    return st;
  }
  memset(out->data, 128, (size_t)out->rows_p * out->cols_p); /* q = 0 everywhere first */
  for (int r = 0; r < R; r++)
    for (int k = 0; k < C; k++)
      out->data[q8_index(out, r, k)] = (uint8_t)(q[(size_t)r * C + k] + 128);
  memcpy(out->scales, scale, (size_t)R * sizeof(float));
  return CHAI_OK;
}

void chai_qmat_to_int8(const chai_qmat *m, int8_t *q, float *scale) {
  CHAI_ASSERT(m->format == CHAI_QF_INT8);
  for (int r = 0; r < m->rows; r++)
    for (int k = 0; k < m->cols; k++)
      q[(size_t)r * m->cols + k] = (int8_t)(m->data[q8_index(m, r, k)] - 128);
  memcpy(scale, m->scales, (size_t)m->rows * sizeof(float));
}

/* ---- int4: data[(rb·(Cp/8) + ko)·64 + i·4 + j] = u[..][8·ko+j] | u[..][8·ko+4+j] << 4 -------- */

static size_t q4_index(const chai_qmat *m, int r, int k, int *shift) {
  *shift = (k % 8) >= 4 ? 4 : 0;
  return ((size_t)(r / 16) * (size_t)(m->cols_p / 8) + (size_t)(k / 8)) * 64 +
         (size_t)(r % 16) * 4 + (size_t)(k % 4);
}

/* The packed position of (row r, group g) among scales and zeros. */
static size_t q4_group_index(const chai_qmat *m, int r, int g) {
  return ((size_t)(r / 16) * (size_t)(m->cols_p / m->group) + (size_t)g) * 16 + (size_t)(r % 16);
}

chai_status chai_qmat_from_int4(chai_qmat *out, const uint8_t *u, const float *scale,
                                const uint8_t *zero, int R, int C, int group, bool zero_point,
                                bool f16_scales) {
  chai_qmat_init(out);
  chai_status st = check_shape(R, C, "int4");
  if (st) return st;
  if (group != 32 && group != 64 && group != 128)
    return chai_error(CHAI_ERR_ARG, "int4 matrix: group %d (expected 32, 64 or 128)", group);
  if (zero_point && !zero)
    return chai_error(CHAI_ERR_ARG, "int4 matrix: zero points asked for but none given");
  out->format = CHAI_QF_INT4;
  out->group = group;
  out->zero_point = zero_point;
  out->f16_scales = f16_scales;
  out->cols_p = round_up(C, group);
  int groups = (C + group - 1) / group;
  for (int r = 0; r < R; r++) {
    for (int g = 0; g < groups; g++) {
      float s = scale[(size_t)r * groups + g];
      if (!isfinite(s) || (f16_scales && !isfinite(chai_f16_to_f32(chai_f32_to_f16(s)))))
        return chai_error(CHAI_ERR_ARG, "int4 matrix: scale of row %d group %d is %g%s", r, g, s,
                          isfinite(s) ? " (beyond f16)" : "");
      if (zero_point && zero[(size_t)r * groups + g] > 15)
        return chai_error(CHAI_ERR_ARG, "int4 matrix: zero point %d at row %d group %d (0..15)",
                          zero[(size_t)r * groups + g], r, g);
    }
    for (int k = 0; k < C; k++)
      if (u[(size_t)r * C + k] > 15)
        return chai_error(CHAI_ERR_ARG, "int4 matrix: code %d at (%d,%d) (codes are 0..15)",
                          u[(size_t)r * C + k], r, k);
  }
  st = alloc_packed(out, R, C, "int4");
  if (st) {
    chai_qmat_init(out);
    return st;
  }
  /* Zero codes everywhere first: u = z (8 symmetric, 0 with a zero point, whose padded groups
   * keep z = 0); scales stay 0. */
  int zc = zero_point ? 0 : 8;
  memset(out->data, zc | zc << 4, (size_t)out->rows_p * out->cols_p / 2);
  for (int r = 0; r < R; r++) {
    for (int g = 0; g < groups; g++) {
      size_t gi = q4_group_index(out, r, g), src = (size_t)r * groups + g;
      if (f16_scales)
        ((uint16_t *)out->scales)[gi] = chai_f32_to_f16(scale[src]);
      else
        ((float *)out->scales)[gi] = scale[src];
      if (zero_point) out->zeros[gi] = zero[src];
    }
    /* Padding columns of a real row take its last group's zero code. */
    for (int k = 0; k < out->cols_p; k++) {
      int shift;
      size_t i = q4_index(out, r, k, &shift);
      uint8_t v = k < C        ? u[(size_t)r * C + k]
                  : zero_point ? zero[(size_t)r * groups + k / group]
                               : 8;
      out->data[i] = (uint8_t)((out->data[i] & (0xF0 >> shift)) | v << shift);
    }
  }
  return CHAI_OK;
}

void chai_qmat_to_int4(const chai_qmat *m, uint8_t *u, float *scale, uint8_t *zero) {
  CHAI_ASSERT(m->format == CHAI_QF_INT4);
  int groups = (m->cols + m->group - 1) / m->group;
  for (int r = 0; r < m->rows; r++) {
    for (int g = 0; g < groups; g++) {
      size_t gi = q4_group_index(m, r, g);
      scale[(size_t)r * groups + g] = chai_q4_scale(m, gi);
      if (zero) zero[(size_t)r * groups + g] = m->zero_point ? m->zeros[gi] : 8;
    }
    for (int k = 0; k < m->cols; k++) {
      int shift;
      size_t at = q4_index(m, r, k, &shift);
      u[(size_t)r * m->cols + k] = (uint8_t)(m->data[at] >> shift & 15);
    }
  }
}

/* ---- bf16: data (u16) [(rb·(Cp/2) + kp)·32 + i·2 + j] = bf16(w[16·rb+i][2·kp+j]) --------------
 */

static size_t bf16_index(const chai_qmat *m, int r, int k) {
  return ((size_t)(r / 16) * (size_t)(m->cols_p / 2) + (size_t)(k / 2)) * 32 +
         (size_t)(r % 16) * 2 + (size_t)(k % 2);
}

chai_status chai_qmat_from_bf16(chai_qmat *out, const uint16_t *w, int R, int C) {
  chai_qmat_init(out);
  chai_status st = check_shape(R, C, "bf16");
  if (st) return st;
  out->format = CHAI_QF_BF16;
  out->cols_p = round_up(C, 32);
  for (int r = 0; r < R; r++)
    for (int k = 0; k < C; k++)
      if ((w[(size_t)r * C + k] & 0x7f80) == 0x7f80)
        return chai_error(CHAI_ERR_ARG, "bf16 matrix: %s at (%d,%d)",
                          (w[(size_t)r * C + k] & 0x7f) ? "NaN" : "Inf", r, k);
  st = alloc_packed(out, R, C, "bf16");
  if (st) {
    chai_qmat_init(out);
    return st;
  }
  uint16_t *d = (uint16_t *)out->data; /* zeroed by chai_storage_new: +0 padding */
  for (int r = 0; r < R; r++)
    for (int k = 0; k < C; k++)
      d[bf16_index(out, r, k)] = w[(size_t)r * C + k];
  return CHAI_OK;
}

void chai_qmat_to_bf16(const chai_qmat *m, uint16_t *w) {
  CHAI_ASSERT(m->format == CHAI_QF_BF16);
  const uint16_t *d = (const uint16_t *)m->data;
  for (int r = 0; r < m->rows; r++)
    for (int k = 0; k < m->cols; k++)
      w[(size_t)r * m->cols + k] = d[bf16_index(m, r, k)];
}

/* ---- dequantized rows ------------------------------------------------------------------------ */

void chai_qmat_dequant_rows(const chai_qmat *m, float *out, int r0, int r1) {
  CHAI_ASSERT(0 <= r0 && r0 <= r1 && r1 <= m->rows);
  int C = m->cols;
  for (int r = r0; r < r1; r++) {
    float *o = out + (size_t)(r - r0) * C;
    switch (m->format) {
    case CHAI_QF_F32:
      memcpy(o, (const float *)chai_tensor_data(&m->t) + (size_t)r * C, (size_t)C * sizeof(float));
      break;
    case CHAI_QF_F16:
      chai_f16_to_f32_array(o, (const uint16_t *)chai_tensor_data(&m->t) + (size_t)r * C,
                            (size_t)C);
      break;
    case CHAI_QF_BF16:
      for (int k = 0; k < C; k++)
        o[k] = chai_bf16_to_f32(((const uint16_t *)m->data)[bf16_index(m, r, k)]);
      break;
    case CHAI_QF_INT8: {
      float s = ((const float *)m->scales)[r];
      for (int k = 0; k < C; k++)
        o[k] = s * (float)(m->data[q8_index(m, r, k)] - 128);
      break;
    }
    case CHAI_QF_INT4:
      for (int k = 0; k < C; k++) {
        int shift;
        size_t gi = q4_group_index(m, r, k / m->group), at = q4_index(m, r, k, &shift);
        int u = m->data[at] >> shift & 15;
        int z = m->zero_point ? m->zeros[gi] : 8;
        o[k] = chai_q4_scale(m, gi) * (float)(u - z);
      }
      break;
    default: CHAI_ASSERT(0);
    }
  }
}
