/* AVX2+FMA pieces of the int8 KV cache (see kernels/kvq.h and kvq_avx512.c, whose structure this
 * follows with 8 lanes and 16 registers): codes widened in registers (vpmovsxbd, vcvtdq2ps) right
 * before their FMA; decode dots 8 keys at a time with one transposed reduction (the query stays in
 * L1, the accumulators take the registers) and keeps the output row in up to 8 registers; blocks of
 * queries widen 8 keys into a tile and reuse it for every query. AVX2 has no byte masks, so a row's
 * last partial chunk of codes is copied to a zeroed 8-byte buffer first. */
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

/* The horizontal sums of a[0..7] as one vector (element i = Σ of a[i]'s lanes). */
AVX2_INLINE __m256 sum8(const __m256 *a) {
  __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
  __m256 h45 = _mm256_hadd_ps(a[4], a[5]), h67 = _mm256_hadd_ps(a[6], a[7]);
  __m256 lo = _mm256_hadd_ps(h01, h23), hi = _mm256_hadd_ps(h45, h67);
  return _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20), _mm256_permute2f128_ps(lo, hi, 0x31));
}

/* The query (from memory: 16 registers do not hold it and 8 accumulators) dotted with one key's
 * row, in 8 lanes. */
AVX2_INLINE __m256 key_dot(const float *q, const int8_t *kj, int D, const int NC) {
  __m256 acc = _mm256_mul_ps(load_ps(q, D), widen(kj, D));
#pragma GCC unroll 8
  for (int c = 1; c < NC; c++)
    acc = _mm256_fmadd_ps(load_ps(q + c * W, D - c * W), widen(kj + c * W, D - c * W), acc);
  return acc;
}

/* One query, D <= 8·NC: keys 8 at a time, one transposed reduction each. */
AVX2_INLINE void scores_one(float *sc, const float *q, const int8_t *k, size_t k_ts,
                            const float *ks, int ks_ts, int n, int D, float scale, const int NC) {
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
      acc[i] = key_dot(q, k + (size_t)(j + i) * k_ts, D, NC);
    _mm256_storeu_ps(sc + j, sum8(acc));
    for (int i = 0; i < 8; i++)
      sc[j + i] *= ks[(size_t)(j + i) * ks_ts] * scale;
  }
  for (; j < n; j++)
    sc[j] = hsum(key_dot(q, k + (size_t)j * k_ts, D, NC)) * (ks[(size_t)j * ks_ts] * scale);
}

/* A block of queries, D <= 8·NC: 8 keys at a time widened into a tile, each query's 8 dots from
 * 8 accumulators and one transposed reduction; leftover keys one at a time. */
AVX2_INLINE void scores_tile(float *sc, int ldsc, const float *q, int q_ts, int bq, const int8_t *k,
                             size_t k_ts, const float *ks, int ks_ts, int n, int D, float scale,
                             const int NC) {
  float kf[8 * MAX_NC * W] __attribute__((aligned(32)));
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int jj = 0; jj < 8; jj++)
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++)
        _mm256_store_ps(kf + (jj * NC + c) * W,
                        widen(k + (size_t)(j + jj) * k_ts + c * W, D - c * W));
    float fl[8];
    for (int jj = 0; jj < 8; jj++)
      fl[jj] = ks[(size_t)(j + jj) * ks_ts] * scale;
    __m256 f = _mm256_loadu_ps(fl);
    for (int i = 0; i < bq; i++) {
      const float *qi = q + (size_t)i * q_ts;
      __m256 acc[8];
#pragma GCC unroll 8
      for (int jj = 0; jj < 8; jj++) {
        acc[jj] = _mm256_mul_ps(load_ps(qi, D), _mm256_load_ps(kf + jj * NC * W));
#pragma GCC unroll 8
        for (int c = 1; c < NC; c++)
          acc[jj] = _mm256_fmadd_ps(load_ps(qi + c * W, D - c * W),
                                    _mm256_load_ps(kf + (jj * NC + c) * W), acc[jj]);
      }
      _mm256_storeu_ps(sc + (size_t)i * ldsc + j, _mm256_mul_ps(sum8(acc), f));
    }
  }
  for (; j < n; j++) {
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
      _mm256_store_ps(kf + c * W, widen(k + (size_t)j * k_ts + c * W, D - c * W));
    float f = ks[(size_t)j * ks_ts] * scale;
    for (int i = 0; i < bq; i++) {
      const float *qi = q + (size_t)i * q_ts;
      __m256 acc = _mm256_mul_ps(load_ps(qi, D), _mm256_load_ps(kf));
#pragma GCC unroll 8
      for (int c = 1; c < NC; c++)
        acc = _mm256_fmadd_ps(load_ps(qi + c * W, D - c * W), _mm256_load_ps(kf + c * W), acc);
      sc[(size_t)i * ldsc + j] = hsum(acc) * f;
    }
  }
}

/* Any bq and D (here: D > 64): each key's codes widened once per KV_PIECE floats, then dotted
 * with every query of the block. */
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

/* The NC-specialised calls: CALL(nc) for nc = ceil(D/8) in 1..8. */
#define NC_SWITCH(nc, CALL)                                                                        \
  switch (nc) {                                                                                    \
  case 1: CALL(1); break;                                                                          \
  case 2: CALL(2); break;                                                                          \
  case 3: CALL(3); break;                                                                          \
  case 4: CALL(4); break;                                                                          \
  case 5: CALL(5); break;                                                                          \
  case 6: CALL(6); break;                                                                          \
  case 7: CALL(7); break;                                                                          \
  default: CALL(8); break;                                                                         \
  }

AVX2 void chai_kvq_scores_avx2(float *sc, int ldsc, const float *q, int q_ts, int bq,
                               const int8_t *k, size_t k_ts, const float *ks, int ks_ts, int n,
                               int D, float scale) {
  if (D > W * MAX_NC) {
    scores_block(sc, ldsc, q, q_ts, bq, k, k_ts, ks, ks_ts, n, D, scale);
  } else if (bq == 1) {
#define ONE(nc) scores_one(sc, q, k, k_ts, ks, ks_ts, n, D, scale, nc)
    NC_SWITCH((D + W - 1) / W, ONE)
#undef ONE
  } else {
#define TILE(nc) scores_tile(sc, ldsc, q, q_ts, bq, k, k_ts, ks, ks_ts, n, D, scale, nc)
    NC_SWITCH((D + W - 1) / W, TILE)
#undef TILE
  }
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

/* A block of queries, D <= 8·NC: 8 keys at a time widened into a tile (only keys some query of
 * the block attends), then each query adds its 8 weighted rows in NC registers. */
AVX2_INLINE void values_tile(float *o, int o_ts, const float *p, int ldp, int bq, const int8_t *v,
                             size_t v_ts, const float *vs, int vs_ts, int n, int D, const int NC) {
  float vf[8 * MAX_NC * W] __attribute__((aligned(32)));
  for (int i = 0; i < bq; i++)
    memset(o + (size_t)i * o_ts, 0, (size_t)D * sizeof(float));
  for (int j0 = 0; j0 < n; j0 += 8) {
    int ng = n - j0 < 8 ? n - j0 : 8, used = 0;
    for (int jj = 0; jj < ng; jj++) {
      bool any = false;
      for (int i = 0; i < bq && !any; i++)
        any = p[(size_t)i * ldp + j0 + jj] != 0.0f;
      if (!any) continue;
      used++;
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++)
        _mm256_store_ps(vf + (jj * NC + c) * W,
                        widen(v + (size_t)(j0 + jj) * v_ts + c * W, D - c * W));
    }
    if (!used) continue;
    for (int i = 0; i < bq; i++) {
      const float *pi = p + (size_t)i * ldp + j0;
      __m256 acc[MAX_NC];
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++)
        acc[c] = _mm256_setzero_ps();
      for (int jj = 0; jj < ng; jj++) {
        if (pi[jj] == 0.0f) continue;
        __m256 w = _mm256_set1_ps(pi[jj] * vs[(size_t)(j0 + jj) * vs_ts]);
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
          acc[c] = _mm256_fmadd_ps(w, _mm256_load_ps(vf + (jj * NC + c) * W), acc[c]);
      }
      float *oi = o + (size_t)i * o_ts;
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++)
        store_ps(oi + c * W, D - c * W, _mm256_add_ps(load_ps(oi + c * W, D - c * W), acc[c]));
    }
  }
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
    if (D > W * MAX_NC) {
      values_block(o, o_ts, p, ldp, bq, v, v_ts, vs, vs_ts, n, D);
    } else {
#define TILE(nc) values_tile(o, o_ts, p, ldp, bq, v, v_ts, vs, vs_ts, n, D, nc)
      NC_SWITCH((D + W - 1) / W, TILE)
#undef TILE
    }
    return;
  }
  /* One query: pieces of up to 64 columns, each one sweep over the keys with its output in
   * registers. */
  for (int p0 = 0; p0 < D; p0 += W * MAX_NC) {
    int m = D - p0 < W * MAX_NC ? D - p0 : W * MAX_NC;
#define ONE(nc) values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, nc)
    NC_SWITCH((m + W - 1) / W, ONE)
#undef ONE
  }
}
