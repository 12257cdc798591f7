/* AVX2+FMA twins of the scalar kernels (see kernels.h). Tails go through masked loads/stores so a
 * row of any length is handled in one pass without reading past its end. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

#define AVX2 __attribute__((target("avx2,fma")))

/* A lane mask with the first r (0..8) lanes set. */
AVX2 static inline __m256i tail_mask(size_t r) {
  static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256((const __m256i *)(m + 8 - r));
}

AVX2 void chai_add_forward_avx2(float *out, const float *a, const float *b, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(out + i, m,
                        _mm256_add_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m)));
  }
}

AVX2 void chai_mul_forward_avx2(float *out, const float *a, const float *b, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(out + i, m,
                        _mm256_mul_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m)));
  }
}

AVX2 void chai_scale_forward_avx2(float *out, const float *a, float s, size_t n) {
  __m256 vs = _mm256_set1_ps(s);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), vs));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(_mm256_maskload_ps(a + i, m), vs));
  }
}

AVX2 void chai_axpy_avx2(float *y, float a, const float *x, size_t n) {
  __m256 va = _mm256_set1_ps(a);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(
        y + i, m, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
  }
}

/* max(x, 0) with x as the second operand of maxps would return x for NaN; the ref returns 0 for
 * NaN (x > 0 is false), so 0 goes second: maxps returns the second operand when either is NaN. */
AVX2 void chai_relu_forward_avx2(float *out, const float *inp, size_t n) {
  __m256 z = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_max_ps(_mm256_loadu_ps(inp + i), z));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(out + i, m, _mm256_max_ps(_mm256_maskload_ps(inp + i, m), z));
  }
}

AVX2 static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Masked tail lanes load as 0 and are excluded from the variance by the same mask. */
AVX2 void chai_layernorm_row_avx2(float *out, float *mean, float *rstd, const float *x,
                                  const float *w, const float *b, int C, float eps) {
  size_t n = (size_t)C, i;
  __m256 acc = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8)
    acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
  if (i < n) acc = _mm256_add_ps(acc, _mm256_maskload_ps(x + i, tail_mask(n - i)));
  float m = hsum8(acc) / (float)C;
  __m256 vm = _mm256_set1_ps(m), vv = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
    vv = _mm256_fmadd_ps(d, d, vv);
  }
  if (i < n) {
    __m256i mk = tail_mask(n - i);
    __m256 d =
        _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), _mm256_castsi256_ps(mk));
    vv = _mm256_fmadd_ps(d, d, vv);
  }
  float r = 1.0f / sqrtf(hsum8(vv) / (float)C + eps);
  __m256 vr = _mm256_set1_ps(r), one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  for (i = 0; i < n; i += 8) {
    size_t left = n - i;
    __m256i mk = tail_mask(left < 8 ? left : 8);
    __m256 nrm = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm), vr);
    __m256 vw = w ? _mm256_maskload_ps(w + i, mk) : one;
    __m256 vb = b ? _mm256_maskload_ps(b + i, mk) : zero;
    _mm256_maskstore_ps(out + i, mk, _mm256_fmadd_ps(nrm, vw, vb));
  }
  *mean = m;
  *rstd = r;
}

/* Cephes expf: x = n·ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n by building
 * two exponent fields (n split in halves so n = 128 and n = -126 both stay representable). NaN
 * passes through min/max because it is their second operand. */
AVX2 static inline __m256 exp8(__m256 x) {
  __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3365447504f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_set1_ps(100.0f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-87.3365447504f), x);
  __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i n = _mm256_cvtps_epi32(fx), n1 = _mm256_srai_epi32(n, 1);
  __m256i n2 = _mm256_sub_epi32(n, n1), bias = _mm256_set1_epi32(127);
  __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  y = _mm256_mul_ps(_mm256_mul_ps(y, p1), p2);
  return _mm256_andnot_ps(under, y);
}

AVX2 void chai_exp_avx2(float *out, const float *in, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, exp8(_mm256_loadu_ps(in + i)));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(out + i, m, exp8(_mm256_maskload_ps(in + i, m)));
  }
}

AVX2 static inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX2 void chai_softmax_row_avx2(float *out, const float *x, int cols) {
  size_t n = cols > 0 ? (size_t)cols : 0, i;
  __m256 ninf = _mm256_set1_ps(-INFINITY), vm = ninf;
  for (i = 0; i + 8 <= n; i += 8)
    vm = _mm256_max_ps(_mm256_loadu_ps(x + i), vm);
  if (i < n) {
    __m256i mk = tail_mask(n - i);
    vm = _mm256_max_ps(
        _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, mk), _mm256_castsi256_ps(mk)), vm);
  }
  float m = hmax8(vm);
  if (m == -INFINITY) {
    for (i = 0; i < n; i++)
      out[i] = 0.0f;
    return;
  }
  vm = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    _mm256_storeu_ps(out + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (i < n) {
    __m256i mk = tail_mask(n - i);
    __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm)),
                             _mm256_castsi256_ps(mk));
    _mm256_maskstore_ps(out + i, mk, e);
    acc = _mm256_add_ps(acc, e);
  }
  chai_scale_forward_avx2(out, out, 1.0f / hsum8(acc), n);
}

AVX2 float chai_max_avx2(const float *x, size_t n) {
  __m256 ninf = _mm256_set1_ps(-INFINITY), vm = ninf;
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    vm = _mm256_max_ps(_mm256_loadu_ps(x + i), vm);
  if (i < n) {
    __m256i mk = tail_mask(n - i);
    vm = _mm256_max_ps(
        _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, mk), _mm256_castsi256_ps(mk)), vm);
  }
  return hmax8(vm);
}

/* Terms in float, accumulated in two double vectors (the low and high halves of each 8). */
AVX2 double chai_sumexp_avx2(const float *x, float m, size_t n) {
  __m256 vm = _mm256_set1_ps(m);
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  size_t i = 0;
  for (; i < n; i += 8) {
    __m256 e;
    if (i + 8 <= n) {
      e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    } else {
      __m256i mk = tail_mask(n - i);
      e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm)),
                        _mm256_castsi256_ps(mk));
    }
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  double t[4];
  _mm256_storeu_pd(t, _mm256_add_pd(lo, hi));
  return (t[0] + t[1]) + (t[2] + t[3]);
}

AVX2 void chai_expaxpy_avx2(float *y, float a, const float *x, float m, size_t n) {
  __m256 vm = _mm256_set1_ps(m), va = _mm256_set1_ps(a);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)),
                                            _mm256_loadu_ps(y + i)));
  if (i < n) {
    __m256i mk = tail_mask(n - i);
    __m256 e = exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm));
    _mm256_maskstore_ps(y + i, mk, _mm256_fmadd_ps(va, e, _mm256_maskload_ps(y + i, mk)));
  }
}

/* ---- decode attention over f32 rows (twins in src/ops/attention_rows.c) -------------------- */

enum { ATTN_PF = 8 }; /* as in avx512.c: the heads' run of row j + ATTN_PF is fetched by hand */

AVX2 static inline void prefetch_run(const float *lo, const float *hi) {
  for (const char *c = (const char *)lo; c < (const char *)hi; c += 64)
    _mm_prefetch(c, _MM_HINT_T0);
}

AVX2 void chai_attn_scores_avx2(float *sc, int ldsc, const float *q, const float *k, size_t k_ts,
                                const int *heads, int nh, int n, int D, float scale) {
  size_t lo = (size_t)heads[0] * D, hi = (size_t)heads[nh - 1] * D + D;
  for (int j = 0; j < n; j++) {
    const float *kj = k + (size_t)j * k_ts;
    if (j + ATTN_PF < n) prefetch_run(kj + ATTN_PF * k_ts + lo, kj + ATTN_PF * k_ts + hi);
    for (int i = 0; i < nh; i++) {
      const float *qh = q + (size_t)heads[i] * D, *kh = kj + (size_t)heads[i] * D;
      __m256 acc = _mm256_setzero_ps();
      int d = 0;
      for (; d + 8 <= D; d += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(kh + d), acc);
      if (d < D) {
        __m256i m = tail_mask((size_t)(D - d));
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(qh + d, m), _mm256_maskload_ps(kh + d, m), acc);
      }
      sc[(size_t)i * ldsc + j] = hsum8(acc) * scale;
    }
  }
}

AVX2 void chai_attn_values_avx2(float *o, const float *p, int ldp, const int *prow,
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
      __m256 vp = _mm256_set1_ps(pj);
      float *oh = o + (size_t)heads[i] * D;
      const float *vh = vj + (size_t)heads[i] * D;
      int d = 0;
      for (; d + 8 <= D; d += 8)
        _mm256_storeu_ps(oh + d,
                         _mm256_fmadd_ps(vp, _mm256_loadu_ps(vh + d), _mm256_loadu_ps(oh + d)));
      if (d < D) {
        __m256i m = tail_mask((size_t)(D - d));
        _mm256_maskstore_ps(
            oh + d, m,
            _mm256_fmadd_ps(vp, _mm256_maskload_ps(vh + d, m), _mm256_maskload_ps(oh + d, m)));
      }
    }
  }
}
