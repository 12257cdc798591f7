/* Activations quantized per token for the integer kernels (rules in chai/quant.h): the layout of a
 * chai_qact over caller memory, the scalar twin, and the dispatch to the SIMD ones
 * (kernels/qact_simd.c). */
#include <math.h>
#include <string.h>

#include "chai/half.h"
#include "chai/quant.h"
#include "quant/qkernels.h"

static size_t align64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

static int act_stride(int C) {
  return (C + 127) / 128 * 128;
}

size_t chai_qact_bytes(int N, int C, bool bf16) {
  size_t n = (size_t)N, stride = (size_t)act_stride(C);
  return n * stride + align64(n * sizeof(float)) + align64(n * (stride / 32) * sizeof(int32_t)) +
         align64(n * sizeof(int32_t)) + (bf16 ? n * stride * sizeof(uint16_t) : 0);
}

void chai_qact_layout(chai_qact *a, void *mem, int N, int C, bool bf16) {
  size_t n = (size_t)N, stride = (size_t)act_stride(C);
  uint8_t *p = mem;
  a->N = N;
  a->C = C;
  a->stride = (int)stride;
  a->q = (int8_t *)p;
  p += n * stride;
  a->scale = (float *)p;
  p += align64(n * sizeof(float));
  a->gsum = (int32_t *)p;
  p += align64(n * (stride / 32) * sizeof(int32_t));
  a->sum = (int32_t *)p;
  p += align64(n * sizeof(int32_t));
  a->bf = bf16 ? (uint16_t *)p : NULL;
}

void chai_qact_zero_rows(chai_qact *a, int n0, int n1) {
  if (n0 >= n1) return;
  size_t s = (size_t)a->stride, k = (size_t)(n1 - n0);
  memset(a->q + (size_t)n0 * s, 0, k * s);
  memset(a->scale + n0, 0, k * sizeof(float));
  memset(a->gsum + (size_t)n0 * (s / 32), 0, k * (s / 32) * sizeof(int32_t));
  memset(a->sum + n0, 0, k * sizeof(int32_t));
  if (a->bf) memset(a->bf + (size_t)n0 * s, 0, k * s * sizeof(uint16_t));
}

void chai_qact_rows_ref(chai_qact *a, const float *x, int n0, int n1) {
  int C = a->C, S = a->stride;
  for (int n = n0; n < n1; n++) {
    const float *xr = x + (size_t)n * C;
    int8_t *q = a->q + (size_t)n * S;
    float amax = 0;
    for (int k = 0; k < C; k++) {
      float v = fabsf(xr[k]);
      amax = v > amax ? v : amax; /* a NaN compares false: skipped */
    }
    bool zero = amax < CHAI_QACT_TINY;
    float sx = zero ? 0.0f : amax / 127.0f, inv = zero ? 0.0f : 127.0f / amax;
    a->scale[n] = sx;
    for (int k = 0; k < C; k++)
      q[k] = zero ? 0 : (int8_t)fminf(fmaxf(nearbyintf(xr[k] * inv), -127.0f), 127.0f);
    memset(q + C, 0, (size_t)(S - C));
    int32_t *g = a->gsum + (size_t)n * (S / 32), total = 0;
    for (int b = 0; b < S / 32; b++) {
      int32_t s = 0;
      for (int j = 0; j < 32; j++)
        s += q[b * 32 + j];
      g[b] = s;
      total += s;
    }
    a->sum[n] = total;
    if (a->bf) {
      uint16_t *bf = a->bf + (size_t)n * S;
      for (int k = 0; k < C; k++)
        bf[k] = chai_f32_to_bf16(xr[k]);
      memset(bf + C, 0, (size_t)(S - C) * sizeof(uint16_t));
    }
  }
}

void chai_qact_rows(chai_qact *a, const float *x, int n0, int n1) {
  chai_simd s = chai_simd_level();
  if (s >= CHAI_SIMD_AVX512)
    chai_qact_rows_avx512(a, x, n0, n1);
  else if (s >= CHAI_SIMD_AVX2)
    chai_qact_rows_avx2(a, x, n0, n1);
  else
    chai_qact_rows_ref(a, x, n0, n1);
}

void chai_qact_quantize(chai_qact *a, void *mem, const float *x, int N, int C, bool bf16) {
  chai_qact_layout(a, mem, N, C, bf16);
  chai_qact_rows(a, x, 0, N);
}

void chai_qact_quantize_ref(chai_qact *a, void *mem, const float *x, int N, int C, bool bf16) {
  chai_qact_layout(a, mem, N, C, bf16);
  chai_qact_rows_ref(a, x, 0, N);
}
