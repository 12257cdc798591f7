/* Embedding lookups: rows of a table in any format, gathered (or added) into f32 activations. One
 * function serves the inference forward and the training forward. */
#include <omp.h>
#include <string.h>

#include "chai/half.h"
#include "chai/ops.h"
#include "model/opt_model.h"

/* Row n of opt_gather; scratch holds a row per thread for packed tables added into out. */
static void gather_row(float *out, const chai_qmat *q, const int32_t *idx, int n, bool add,
                       float *scratch) {
  int width = q->cols;
  float *o = out + (size_t)n * width;
  size_t off = (size_t)idx[n] * width;
  if (q->format == CHAI_QF_F32) {
    const float *src = (const float *)chai_tensor_data(&q->t) + off;
    if (add)
      chai_add_forward(o, o, src, (size_t)width);
    else
      memcpy(o, src, (size_t)width * sizeof(float));
  } else if (q->format == CHAI_QF_F16) {
    const uint16_t *src = (const uint16_t *)chai_tensor_data(&q->t) + off;
    for (int j = 0; j < width; j++)
      o[j] = add ? o[j] + chai_f16_to_f32(src[j]) : chai_f16_to_f32(src[j]);
  } else if (add) {
    float *row = scratch + (size_t)omp_get_thread_num() * width;
    chai_qmat_dequant_rows(q, row, idx[n], idx[n] + 1);
    chai_add_forward(o, o, row, (size_t)width);
  } else {
    chai_qmat_dequant_rows(q, o, idx[n], idx[n] + 1);
  }
}

chai_status opt_gather(float *out, const opt_param *table, const int32_t *idx, int N, bool add) {
  const chai_qmat *q = &table->q;
  int width = q->cols;
  bool packed = opt_param_packed(table);
  /* a packed row is decoded into per-thread scratch before it is added */
  float *scratch = NULL;
  size_t scratch_bytes = (size_t)omp_get_max_threads() * width * sizeof(float);
  if (packed && add && !(scratch = chai_alloc(scratch_bytes, "embedding rows")))
    return CHAI_ERR_NOMEM;
  /* a few rows (a decode step's one) outside any OpenMP region: see chai_layernorm_forward */
  if ((int64_t)N * width <= (1 << 15)) {
    for (int n = 0; n < N; n++)
      gather_row(out, q, idx, n, add, scratch);
  } else {
#pragma omp parallel for
    for (int n = 0; n < N; n++)
      gather_row(out, q, idx, n, add, scratch);
  }

  if (scratch) chai_free(scratch, scratch_bytes);
  return CHAI_OK;
}
