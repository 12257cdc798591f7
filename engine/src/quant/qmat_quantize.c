/* From f32 weights to a packed matrix: the codes (codes.c) packed by qmat.c. */
#include <stdlib.h>
#include <string.h>

#include "chai/half.h"
#include "chai/quant.h"

chai_status chai_qmat_quantize(chai_qmat *out, const float *w, int R, int C, const chai_qspec *spec,
                               const char *what) {
  chai_qmat_init(out);
  if (R < 1 || C < 1)
    return chai_error(CHAI_ERR_ARG, "quantize %s: a (%d,%d) matrix is empty", what, R, C);
  size_t n = (size_t)R * C;
  chai_status st;
  switch (spec->format) {
  case CHAI_QF_F32:
  case CHAI_QF_F16: {
    int64_t shape[2] = {R, C};
    chai_tensor t;
    if ((st = chai_tensor_new(&t, spec->format == CHAI_QF_F32 ? CHAI_F32 : CHAI_F16, 2, shape)))
      return st;
    if (spec->format == CHAI_QF_F32)
      memcpy(chai_tensor_data(&t), w, n * sizeof(float));
    else
      chai_f32_to_f16_array(chai_tensor_data(&t), w, n);
    st = chai_qmat_wrap(out, &t);
    chai_tensor_release(&t);
    return st;
  }
  case CHAI_QF_BF16: {
    for (size_t i = 0; i < n; i++)
      if (w[i] - w[i] != 0)
        return chai_error(CHAI_ERR_ARG,
                          "quantize %s: element (%zu, %zu) is %g; weights must be finite", what,
                          i / C, i % C, (double)w[i]);
    uint16_t *b = malloc(n * sizeof *b);
    if (!b) return chai_error(CHAI_ERR_NOMEM, "quantize %s: out of memory", what);
    chai_f32_to_bf16_array(b, w, n);
    st = chai_qmat_from_bf16(out, b, R, C);
    free(b);
    return st;
  }
  case CHAI_QF_INT8: {
    int8_t *q = malloc(n);
    float *s = malloc((size_t)R * sizeof *s);
    st = q && s ? chai_quant_int8_codes(q, s, w, R, C, spec->method, what)
                : chai_error(CHAI_ERR_NOMEM, "quantize %s: out of memory", what);
    if (!st) st = chai_qmat_from_int8(out, q, s, R, C);
    free(q);
    free(s);
    return st;
  }
  case CHAI_QF_INT4: {
    int G = spec->group ? spec->group : 64;
    size_t ng = (size_t)R * ((C + G - 1) / G);
    uint8_t *u = malloc(n), *z = malloc(ng);
    float *s = malloc(ng * sizeof *s);
    st = u && z && s ? chai_quant_int4_codes(u, s, z, w, R, C, G, spec->zero_point,
                                             spec->f16_scales, spec->method, what)
                     : chai_error(CHAI_ERR_NOMEM, "quantize %s: out of memory", what);
    if (!st) st = chai_qmat_from_int4(out, u, s, z, R, C, G, spec->zero_point, spec->f16_scales);
    free(u);
    free(z);
    free(s);
    return st;
  }
  default:
    return chai_error(CHAI_ERR_ARG, "quantize %s: unknown format %d", what, (int)spec->format);
  }
}
