/* AVX-512 (F+BW+DQ+VL) twins of the scalar kernels (see kernels.h). Tails use lane masks. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))

static inline __mmask16 tail16(size_t r) {
  return (__mmask16)((1u << r) - 1u);
}

AVX512 void chai_add_forward_avx512(float *out, const float *a, const float *b, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  if (i < n) {
    __mmask16 m = tail16(n - i);
    _mm512_mask_storeu_ps(
        out + i, m,
        _mm512_add_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

AVX512 void chai_mul_forward_avx512(float *out, const float *a, const float *b, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  if (i < n) {
    __mmask16 m = tail16(n - i);
    _mm512_mask_storeu_ps(
        out + i, m,
        _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

AVX512 void chai_scale_forward_avx512(float *out, const float *a, float s, size_t n) {
  __m512 vs = _mm512_set1_ps(s);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), vs));
  if (i < n) {
    __mmask16 m = tail16(n - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), vs));
  }
}

AVX512 void chai_axpy_avx512(float *y, float a, const float *x, size_t n) {
  __m512 va = _mm512_set1_ps(a);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    __mmask16 m = tail16(n - i);
    _mm512_mask_storeu_ps(
        y + i, m,
        _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

/* 0 as the second operand: NaN gives 0, as in the ref (see avx2.c). */
AVX512 void chai_relu_forward_avx512(float *out, const float *inp, size_t n) {
  __m512 z = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_max_ps(_mm512_loadu_ps(inp + i), z));
  if (i < n) {
    __mmask16 m = tail16(n - i);
    _mm512_mask_storeu_ps(out + i, m, _mm512_max_ps(_mm512_maskz_loadu_ps(m, inp + i), z));
  }
}

AVX512 void chai_layernorm_row_avx512(float *out, float *mean, float *rstd, const float *x,
                                      const float *w, const float *b, int C, float eps) {
  size_t n = (size_t)C, i;
  __m512 acc = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16)
    acc = _mm512_add_ps(acc, _mm512_loadu_ps(x + i));
  if (i < n) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tail16(n - i), x + i));
  float m = _mm512_reduce_add_ps(acc) / (float)C;
  __m512 vm = _mm512_set1_ps(m), vv = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm);
    vv = _mm512_fmadd_ps(d, d, vv);
  }
  if (i < n) {
    __mmask16 mk = tail16(n - i);
    __m512 d = _mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, x + i), vm);
    vv = _mm512_fmadd_ps(d, d, vv);
  }
  float r = 1.0f / sqrtf(_mm512_reduce_add_ps(vv) / (float)C + eps);
  __m512 vr = _mm512_set1_ps(r), one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (i = 0; i < n; i += 16) {
    size_t left = n - i;
    __mmask16 mk = left < 16 ? tail16(left) : (__mmask16)0xffff;
    __m512 nrm = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm), vr);
    __m512 vw = w ? _mm512_maskz_loadu_ps(mk, w + i) : one;
    __m512 vb = b ? _mm512_maskz_loadu_ps(mk, b + i) : zero;
    _mm512_mask_storeu_ps(out + i, mk, _mm512_fmadd_ps(nrm, vw, vb));
  }
  *mean = m;
  *rstd = r;
}

/* Cephes expf (see avx2.c); vscalefps applies 2^n with correct overflow to inf and gradual
 * underflow, so only the argument needs clamping (to where expf is already 0 or inf). */
AVX512 static inline __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(100.0f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, fx);
}

AVX512 void chai_exp_avx512(float *out, const float *in, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, exp16(_mm512_loadu_ps(in + i)));
  if (i < n) {
    __mmask16 m = tail16(n - i);
    _mm512_mask_storeu_ps(out + i, m, exp16(_mm512_maskz_loadu_ps(m, in + i)));
  }
}

AVX512 void chai_softmax_row_avx512(float *out, const float *x, int cols) {
  size_t n = cols > 0 ? (size_t)cols : 0, i;
  __m512 ninf = _mm512_set1_ps(-INFINITY), vm = ninf;
  for (i = 0; i + 16 <= n; i += 16)
    vm = _mm512_max_ps(_mm512_loadu_ps(x + i), vm);
  if (i < n) vm = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tail16(n - i), x + i), vm);
  float m = _mm512_reduce_max_ps(vm);
  if (m == -INFINITY) {
    for (i = 0; i < n; i++)
      out[i] = 0.0f;
    return;
  }
  vm = _mm512_set1_ps(m);
  __m512 acc = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
    _mm512_storeu_ps(out + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    __mmask16 mk = tail16(n - i);
    __m512 e = _mm512_maskz_mov_ps(mk, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm)));
    _mm512_mask_storeu_ps(out + i, mk, e);
    acc = _mm512_add_ps(acc, e);
  }
  chai_scale_forward_avx512(out, out, 1.0f / _mm512_reduce_add_ps(acc), n);
}

AVX512 float chai_max_avx512(const float *x, size_t n) {
  __m512 ninf = _mm512_set1_ps(-INFINITY), vm = ninf;
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    vm = _mm512_max_ps(_mm512_loadu_ps(x + i), vm);
  if (i < n) vm = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tail16(n - i), x + i), vm);
  return _mm512_reduce_max_ps(vm);
}

AVX512 double chai_sumexp_avx512(const float *x, float m, size_t n) {
  __m512 vm = _mm512_set1_ps(m);
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  size_t i = 0;
  for (; i < n; i += 16) {
    __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : tail16(n - i);
    __m512 e = _mm512_maskz_mov_ps(mk, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm)));
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    hi = _mm512_add_pd(
        hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

AVX512 void chai_expaxpy_avx512(float *y, float a, const float *x, float m, size_t n) {
  __m512 vm = _mm512_set1_ps(m), va = _mm512_set1_ps(a);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)),
                                            _mm512_loadu_ps(y + i)));
  if (i < n) {
    __mmask16 mk = tail16(n - i);
    __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm));
    _mm512_mask_storeu_ps(y + i, mk, _mm512_fmadd_ps(va, e, _mm512_maskz_loadu_ps(mk, y + i)));
  }
}

/* ---- decode attention over f32 rows (twins in src/ops/attention_rows.c) -------------------- */

/* The heads' run of row j + ATTN_PF is fetched by hand: rows are H·D floats apart, and a run of
 * a few heads at that stride is followed late by the hardware prefetchers. */
enum { ATTN_PF = 8 };

AVX512 static inline void prefetch_run(const float *lo, const float *hi) {
  for (const char *c = (const char *)lo; c < (const char *)hi; c += 64)
    _mm_prefetch(c, _MM_HINT_T0);
}

AVX512 void chai_attn_scores_avx512(float *sc, int ldsc, const float *q, const float *k,
                                    size_t k_ts, const int *heads, int nh, int n, int D,
                                    float scale) {
  size_t lo = (size_t)heads[0] * D, hi = (size_t)heads[nh - 1] * D + D;
  for (int j = 0; j < n; j++) {
    const float *kj = k + (size_t)j * k_ts;
    if (j + ATTN_PF < n) prefetch_run(kj + ATTN_PF * k_ts + lo, kj + ATTN_PF * k_ts + hi);
    for (int i = 0; i < nh; i++) {
      const float *qh = q + (size_t)heads[i] * D, *kh = kj + (size_t)heads[i] * D;
      __m512 acc = _mm512_setzero_ps();
      for (int d = 0; d < D; d += 16) {
        __mmask16 m = D - d >= 16 ? (__mmask16)0xffff : tail16((size_t)(D - d));
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qh + d), _mm512_maskz_loadu_ps(m, kh + d),
                              acc);
      }
      sc[(size_t)i * ldsc + j] = _mm512_reduce_add_ps(acc) * scale;
    }
  }
}

AVX512 void chai_attn_values_avx512(float *o, const float *p, int ldp, const int *prow,
                                    const int *heads, int nh, const float *v, size_t v_ts, int n,
                                    int D) {
  for (int i = 0; i < nh; i++)
    memset(o + (size_t)heads[i] * D, 0, (size_t)D * sizeof(float));
  size_t lo = (size_t)heads[0] * D, hi = (size_t)heads[nh - 1] * D + D;
  for (int j = 0; j < n; j++) {
    const float *vj = v + (size_t)j * v_ts;
    if (j + ATTN_PF < n) prefetch_run(vj + ATTN_PF * v_ts + lo, vj + ATTN_PF * v_ts + hi);
    for (int i = 0; i < nh; i++) {
      float pj = p[(size_t)prow[i] * ldp + j];
      if (pj == 0.0f) continue;
      __m512 vp = _mm512_set1_ps(pj);
      float *oh = o + (size_t)heads[i] * D;
      const float *vh = vj + (size_t)heads[i] * D;
      for (int d = 0; d < D; d += 16) {
        __mmask16 m = D - d >= 16 ? (__mmask16)0xffff : tail16((size_t)(D - d));
        _mm512_mask_storeu_ps(oh + d, m,
                              _mm512_fmadd_ps(vp, _mm512_maskz_loadu_ps(m, vh + d),
                                              _mm512_maskz_loadu_ps(m, oh + d)));
      }
    }
  }
}
