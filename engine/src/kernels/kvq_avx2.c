/* AVX2+FMA pieces of the int8 KV cache (see kernels/kvq.h and kvq_avx512.c, whose structure this
 * follows with 8 lanes): codes widened in registers (vpmovsxbd, vcvtdq2ps) right before their FMA;
 * a decode step with D <= 64 keeps the query or output row in up to 8 registers for one sweep over
 * the keys; blocks of queries widen each key's row once into a small buffer. AVX2 has no byte
 * masks, so a row's last partial chunk of codes is copied to a zeroed 8-byte buffer first. */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kvq.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

enum { W = 8, MAX_NC = 8, KV_PIECE = 256 };

AVX2_INLINE __m256i lane_mask(int r) {
  static const int32_t mk[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256((const __m256i *)(mk + 8 - (r >= W ? W : r)));
}

AVX2_INLINE __m256 load_ps(const float *x, int r) {
  return r >= W ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, lane_mask(r));
}

AVX2_INLINE void store_ps(float *x, int r, __m256 v) {
  if (r >= W)
    _mm256_storeu_ps(x, v);
  else
    _mm256_maskstore_ps(x, lane_mask(r), v);
}

/* 8 codes (the first r of them when r < 8) widened to floats. */
AVX2_INLINE __m256 widen(const int8_t *c, int r) {
  __m128i b;
  if (r >= W) {
    b = _mm_loadl_epi64((const __m128i *)c);
  } else {
    int8_t tmp[8] = {0};
    memcpy(tmp, c, (size_t)r);
    b = _mm_loadl_epi64((const __m128i *)tmp);
  }
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

AVX2_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

AVX2 void chai_kvq_store_row_avx2(int8_t *c, float *s, const float *x, int D) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
  __m256i vmax = _mm256_setzero_si256();
  for (int d = 0; d < D; d += W) {
    __m256i b = _mm256_castps_si256(load_ps(x + d, D - d)); /* masked lanes read as 0 */
    vmax = _mm256_max_epu32(vmax, _mm256_and_si256(b, abs_mask));
  }
  uint32_t lanes[8], amax_bits = 0;
  _mm256_storeu_si256((__m256i *)lanes, vmax);
  for (int i = 0; i < 8; i++)
    amax_bits = lanes[i] > amax_bits ? lanes[i] : amax_bits;
  if (amax_bits >= 0x7f800000u) { /* NaN or Inf: see chai/kvq.h */
    *s = __builtin_nanf("");
    memset(c, 0, (size_t)D);
    return;
  }
  float amax;
  memcpy(&amax, &amax_bits, 4);
  float sc = amax / 127.0f;
  *s = sc;
  if (sc == 0.0f) {
    memset(c, 0, (size_t)D);
    return;
  }
  __m256 vs = _mm256_set1_ps(sc), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int d = 0; d < D; d += W) {
    __m256 t = _mm256_div_ps(load_ps(x + d, D - d), vs);
    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    int32_t q[8]; /* vcvtps2dq rounds half to even (the default MXCSR mode), as the ref's rhe */
    _mm256_storeu_si256((__m256i *)q, _mm256_cvtps_epi32(t));
    int m = D - d < W ? D - d : W;
    for (int i = 0; i < m; i++)
      c[d + i] = (int8_t)q[i];
  }
}

/* ---- scores --------------------------------------------------------------------------------- */

AVX2_INLINE void scores_one(float *sc, const float *q, const int8_t *k, size_t k_ts,
                            const float *ks, int ks_ts, int n, int D, float scale, const int NC) {
  __m256 qv[MAX_NC];
#pragma GCC unroll 8
  for (int c = 0; c < NC; c++)
    qv[c] = load_ps(q + c * W, D - c * W);
  for (int j = 0; j < n; j++) {
    const int8_t *kj = k + (size_t)j * k_ts;
    __m256 acc = _mm256_mul_ps(qv[0], widen(kj, D));
#pragma GCC unroll 8
    for (int c = 1; c < NC; c++)
      acc = _mm256_fmadd_ps(qv[c], widen(kj + c * W, D - c * W), acc);
    sc[j] = hsum(acc) * (ks[(size_t)j * ks_ts] * scale);
  }
}

AVX2 static void scores_block(float *sc, int ldsc, const float *q, int q_ts, int bq,
                              const int8_t *k, size_t k_ts, const float *ks, int ks_ts, int n,
                              int D, float scale) {
  float kf[KV_PIECE] __attribute__((aligned(32)));
  for (int j = 0; j < n; j++) {
    const int8_t *kj = k + (size_t)j * k_ts;
    for (int p0 = 0; p0 < D; p0 += KV_PIECE) {
      int m = D - p0 < KV_PIECE ? D - p0 : KV_PIECE;
      for (int d = 0; d < m; d += W)
        _mm256_store_ps(kf + d, widen(kj + p0 + d, m - d));
      for (int i = 0; i < bq; i++) {
        const float *qi = q + (size_t)i * q_ts + p0;
        __m256 acc = _mm256_setzero_ps();
        for (int d = 0; d < m; d += W)
          acc = _mm256_fmadd_ps(load_ps(qi + d, m - d), _mm256_load_ps(kf + d), acc);
        float part = hsum(acc);
        sc[(size_t)i * ldsc + j] = p0 == 0 ? part : sc[(size_t)i * ldsc + j] + part;
      }
    }
    float f = ks[(size_t)j * ks_ts] * scale;
    for (int i = 0; i < bq; i++)
      sc[(size_t)i * ldsc + j] *= f;
  }
}

AVX2 void chai_kvq_scores_avx2(float *sc, int ldsc, const float *q, int q_ts, int bq,
                               const int8_t *k, size_t k_ts, const float *ks, int ks_ts, int n,
                               int D, float scale) {
  if (bq == 1 && D <= W * MAX_NC) {
    switch ((D + W - 1) / W) {
    case 1: scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, 1); return;
    case 2: scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, 2); return;
    case 3: scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, 3); return;
    case 4: scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, 4); return;
    case 5: scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, 5); return;
    case 6: scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, 6); return;
    case 7: scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, 7); return;
    default: scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, 8); return;
    }
  }
  scores_block(sc, ldsc, q, q_ts, bq, k, k_ts, ks, ks_ts, n, D, scale);
}

/* ---- values --------------------------------------------------------------------------------- */

AVX2_INLINE void values_one(float *o, const float *p, const int8_t *v, size_t v_ts, const float *vs,
                            int vs_ts, int n, int m, const int NC) {
  __m256 acc[MAX_NC];
#pragma GCC unroll 8
  for (int c = 0; c < NC; c++)
    acc[c] = _mm256_setzero_ps();
  for (int j = 0; j < n; j++) {
    if (p[j] == 0.0f) continue;
    __m256 w = _mm256_set1_ps(p[j] * vs[(size_t)j * vs_ts]);
    const int8_t *vj = v + (size_t)j * v_ts;
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
      acc[c] = _mm256_fmadd_ps(w, widen(vj + c * W, m - c * W), acc[c]);
  }
#pragma GCC unroll 8
  for (int c = 0; c < NC; c++)
    store_ps(o + c * W, m - c * W, acc[c]);
}

AVX2 static void values_block(float *o, int o_ts, const float *p, int ldp, int bq, const int8_t *v,
                              size_t v_ts, const float *vs, int vs_ts, int n, int D) {
  float vf[KV_PIECE] __attribute__((aligned(32)));
  for (int i = 0; i < bq; i++)
    memset(o + (size_t)i * o_ts, 0, (size_t)D * sizeof(float));
  for (int j = 0; j < n; j++) {
    bool any = false;
    for (int i = 0; i < bq && !any; i++)
      any = p[(size_t)i * ldp + j] != 0.0f;
    if (!any) continue;
    const int8_t *vj = v + (size_t)j * v_ts;
    float sj = vs[(size_t)j * vs_ts];
    for (int p0 = 0; p0 < D; p0 += KV_PIECE) {
      int m = D - p0 < KV_PIECE ? D - p0 : KV_PIECE;
      for (int d = 0; d < m; d += W)
        _mm256_store_ps(vf + d, widen(vj + p0 + d, m - d));
      for (int i = 0; i < bq; i++) {
        float pij = p[(size_t)i * ldp + j];
        if (pij == 0.0f) continue;
        __m256 w = _mm256_set1_ps(pij * sj);
        float *oi = o + (size_t)i * o_ts + p0;
        for (int d = 0; d < m; d += W)
          store_ps(oi + d, m - d,
                   _mm256_fmadd_ps(w, _mm256_load_ps(vf + d), load_ps(oi + d, m - d)));
      }
    }
  }
}

AVX2 void chai_kvq_values_avx2(float *o, int o_ts, const float *p, int ldp, int bq, const int8_t *v,
                               size_t v_ts, const float *vs, int vs_ts, int n, int D) {
  if (bq != 1) {
    values_block(o, o_ts, p, ldp, bq, v, v_ts, vs, vs_ts, n, D);
    return;
  }
  for (int p0 = 0; p0 < D; p0 += W * MAX_NC) {
    int m = D - p0 < W * MAX_NC ? D - p0 : W * MAX_NC;
    switch ((m + W - 1) / W) {
    case 1: values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, 1); break;
    case 2: values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, 2); break;
    case 3: values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, 3); break;
    case 4: values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, 4); break;
    case 5: values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, 5); break;
    case 6: values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, 6); break;
    case 7: values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, 7); break;
    default: values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, 8); break;
    }
  }
}
