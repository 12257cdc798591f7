/* A matrix of chosen rows of another, in the same format with the same codes: CHAI's packed
 * representatives of W_q and W_k are these rows of the layer's matrices. */
#include <string.h>

#include "chai/quant.h"

chai_status chai_qmat_gather_rows(chai_qmat *out, const chai_qmat *src, const int *rows, int n) {
  chai_qmat_init(out);
  int R = src->rows, C = src->cols;
  for (int i = 0; i < n; i++)
    if (rows[i] < 0 || rows[i] >= R)
      return chai_error(CHAI_ERR_ARG, "gather_rows: row %d is outside 0..%d", rows[i], R - 1);
  if (n < 1) return chai_error(CHAI_ERR_ARG, "gather_rows: no rows asked for");
  chai_status st = CHAI_OK;
  if (src->format == CHAI_QF_F32 || src->format == CHAI_QF_F16) {
    int64_t shape[2] = {n, C};
    chai_tensor t;
    if ((st = chai_tensor_new(&t, src->t.dtype, 2, shape))) return st;
    size_t row_bytes = (size_t)C * chai_dtype_size(src->t.dtype);
    const uint8_t *s = chai_tensor_data(&src->t);
    uint8_t *d = chai_tensor_data(&t);
    for (int i = 0; i < n; i++)
      memcpy(d + (size_t)i * row_bytes, s + (size_t)rows[i] * row_bytes, row_bytes);
    st = chai_qmat_wrap(out, &t);
    chai_tensor_release(&t);
    return st;
  }
  /* Packed formats: through the row-major codes (exactly what from_* packs back). */
  int G = src->format == CHAI_QF_INT4 ? src->group : 1, ng = (C + G - 1) / G;
  size_t code_bytes = src->format == CHAI_QF_BF16 ? 2 : 1;
  size_t full = (size_t)R * C * code_bytes, part = (size_t)n * C * code_bytes;
  size_t sc_full = (size_t)R * ng, sc_part = (size_t)n * ng;
  size_t bytes = full + part + 4 + 2 * (sc_full + sc_part) * sizeof(float);
  uint8_t *buf = chai_alloc(bytes, "gathered rows");
  if (!buf) return CHAI_ERR_NOMEM;
  uint8_t *codes = buf, *pick = codes + full;
  float *scale = (float *)(pick + part + (-(size_t)(part + full) & 3)), *pscale = scale + sc_full;
  uint8_t *zero = (uint8_t *)(pscale + sc_part), *pzero = zero + sc_full;
  if (src->format == CHAI_QF_INT8)
    chai_qmat_to_int8(src, (int8_t *)codes, scale);
  else if (src->format == CHAI_QF_INT4)
    chai_qmat_to_int4(src, codes, scale, zero);
  else
    chai_qmat_to_bf16(src, (uint16_t *)codes);
  size_t row_bytes = (size_t)C * code_bytes;
  for (int i = 0; i < n; i++) {
    memcpy(pick + i * row_bytes, codes + (size_t)rows[i] * row_bytes, row_bytes);
    if (src->format == CHAI_QF_BF16) continue;
    size_t per = src->format == CHAI_QF_INT4 ? (size_t)ng : 1;
    memcpy(pscale + i * per, scale + (size_t)rows[i] * per, per * sizeof(float));
    if (src->format == CHAI_QF_INT4) memcpy(pzero + i * per, zero + (size_t)rows[i] * per, per);
  }
  if (src->format == CHAI_QF_INT8)
    st = chai_qmat_from_int8(out, (const int8_t *)pick, pscale, n, C);
  else if (src->format == CHAI_QF_INT4)
    st = chai_qmat_from_int4(out, pick, pscale, pzero, n, C, src->group, src->zero_point,
                             src->f16_scales);
  else
    st = chai_qmat_from_bf16(out, (const uint16_t *)pick, n, C);
  chai_free(buf, bytes);
  return st;
}

chai_status chai_qmat_copy(chai_qmat *out, const chai_qmat *src) {
  chai_qmat_init(out);
  if (!src->storage) { /* f32/f16: a copy of the tensor */
    chai_tensor t;
    chai_status st = chai_tensor_clone(&t, &src->t);
    if (st) return st;
    st = chai_qmat_wrap(out, &t);
    chai_tensor_release(&t);
    return st;
  }
  chai_storage *s = chai_storage_new(src->storage->bytes);
  if (!s) return chai_error_context(CHAI_ERR_NOMEM, "copying a %s matrix", chai_qformat_name(src->format));
  memcpy(s->data, src->storage->data, src->storage->bytes);
  *out = *src;
  out->storage = s;
  out->data = s->data + (src->data - src->storage->data);
  if (src->scales) out->scales = s->data + ((const uint8_t *)src->scales - src->storage->data);
  if (src->zeros) out->zeros = s->data + (src->zeros - src->storage->data);
  return CHAI_OK;
}
