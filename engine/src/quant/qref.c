/* The scalar twins of every product kernel: the arithmetic of chai/quant.h spelled out one row
 * and one token at a time, reading the packed layouts through their index formulas. The SIMD
 * kernels are tested against these bit for bit (int8, int4) or up to subnormals (bf16). */
#include <math.h>

#include "chai/half.h"
#include "quant/qkernels.h"

static inline float finish(float v, const float *y, int r, const chai_qepilogue *e) {
  float out = e->accumulate ? y[r] + v : v;
  if (e->bias) out += e->bias[r];
  if (e->relu) out = out > 0.0f ? out : 0.0f;
  return out;
}

/* ---- row-major f32/f16/bf16 ------------------------------------------------------------------ */

static inline float widen(const void *w, chai_dtype dt, size_t i) {
  if (dt == CHAI_F32) return ((const float *)w)[i];
  uint16_t h = ((const uint16_t *)w)[i];
  return dt == CHAI_F16 ? chai_f16_to_f32(h) : chai_bf16_to_f32(h);
}

void chai_rows_gemv_ref(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                        int r1, const chai_qepilogue *e) {
  for (int r = r0; r < r1; r++) {
    float s = 0;
    for (int c = 0; c < C; c++)
      s += widen(W, dt, (size_t)r * C + c) * x[c];
    y[r] = finish(s, y, r, e);
  }
}

/* ---- one (token, row) product per packed format ---------------------------------------------- */

/* Token n's codes against row r: (float)Σ q·a · (sx · s[r]). */
static float q8_value(const chai_qmat *w, const chai_qact *a, int n, int r) {
  const uint8_t *blk = w->data + (size_t)(r / 16) * chai_qmat_block_bytes(w) + (size_t)(r % 16) * 4;
  const int8_t *q = a->q + (size_t)n * a->stride;
  int32_t dot = 0;
  for (int kq = 0; kq < w->cols_p / 4; kq++)
    for (int j = 0; j < 4; j++)
      dot += ((int32_t)blk[(size_t)kq * 64 + j] - 128) * q[4 * kq + j];
  return (float)dot * (a->scale[n] * ((const float *)w->scales)[r]);
}

/* Groups in order: acc = fmaf((float)(Σ u·a − z·Σ a), s, acc); then acc · sx. */
static float q4_value(const chai_qmat *w, const chai_qact *a, int n, int r) {
  int G = w->group, groups = w->cols_p / G, rb = r / 16, i = r % 16;
  const uint8_t *blk = w->data + (size_t)rb * chai_qmat_block_bytes(w) + (size_t)i * 4;
  const int8_t *q = a->q + (size_t)n * a->stride;
  const int32_t *gs = a->gsum + (size_t)n * (a->stride / 32);
  float acc = 0;
  for (int g = 0; g < groups; g++) {
    int32_t d = 0, s = 0;
    for (int k = g * G; k < (g + 1) * G; k++) {
      int u = blk[(size_t)(k / 8) * 64 + (size_t)(k % 4)] >> ((k % 8) >= 4 ? 4 : 0) & 15;
      d += u * q[k];
    }
    for (int b = g * (G / 32); b < (g + 1) * (G / 32); b++)
      s += gs[b];
    size_t gi = ((size_t)rb * (size_t)groups + (size_t)g) * 16 + (size_t)i;
    int z = w->zero_point ? w->zeros[gi] : 8;
    acc = fmaf((float)(d - z * s), chai_q4_scale(w, gi), acc);
  }
  return acc * a->scale[n];
}

/* Pairs in order, odd element first (vdpbf16ps's order): two fmaf per pair. */
static float bf16_value(const chai_qmat *w, const chai_qact *a, int n, int r) {
  const uint16_t *blk = (const uint16_t *)(w->data + (size_t)(r / 16) * chai_qmat_block_bytes(w)) +
                        (size_t)(r % 16) * 2;
  const uint16_t *x = a->bf + (size_t)n * a->stride;
  float acc = 0;
  for (int kp = 0; kp < w->cols_p / 2; kp++) {
    const uint16_t *p = blk + (size_t)kp * 32;
    acc = fmaf(chai_bf16_to_f32(p[1]), chai_bf16_to_f32(x[2 * kp + 1]), acc);
    acc = fmaf(chai_bf16_to_f32(p[0]), chai_bf16_to_f32(x[2 * kp]), acc);
  }
  return acc;
}

typedef float (*value_fn)(const chai_qmat *w, const chai_qact *a, int n, int r);

static void gemv_ref(value_fn f, float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,
                     const chai_qepilogue *e) {
  int end = r1 < w->rows ? r1 : w->rows;
  for (int r = r0; r < end; r++)
    y[r] = finish(f(w, xa, 0, r), y, r, e);
}

static void gemm_ref(value_fn f, float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,
                     int rb1, int n0, int n1, const chai_qepilogue *e) {
  int nend = n1 < N ? n1 : N, rend = 16 * rb1 < w->rows ? 16 * rb1 : w->rows;
  for (int n = n0; n < nend; n++) {
    float *yn = y + (size_t)n * w->rows;
    for (int r = 16 * rb0; r < rend; r++)
      yn[r] = finish(f(w, a, n, r), yn, r, e);
  }
}

#define REF_PAIR(fmt)                                                                              \
  void chai_##fmt##_gemv_ref(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,    \
                             const chai_qepilogue *e) {                                            \
    gemv_ref(fmt##_value, y, w, xa, r0, r1, e);                                                    \
  }                                                                                                \
  void chai_##fmt##_gemm_ref(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,     \
                             int rb1, int n0, int n1, const chai_qepilogue *e) {                   \
    gemm_ref(fmt##_value, y, N, w, a, rb0, rb1, n0, n1, e);                                        \
  }
REF_PAIR(q8)
REF_PAIR(q4)
REF_PAIR(bf16)
