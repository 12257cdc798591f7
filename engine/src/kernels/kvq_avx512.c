/* AVX-512 (F+BW+DQ+VL) pieces of the int8 KV cache (see kernels/kvq.h). Codes are widened in
 * registers (16 at a time: vpmovsxbd, vcvtdq2ps) right before the FMA that uses them; nothing of
 * the cache is copied. A decode step (one query) with D <= 128 keeps the query, or the output
 * row, in up to 8 registers for the whole sweep over the keys: one read of each code, which is
 * what makes it bandwidth-bound. Blocks of queries widen a key's row once into a small buffer
 * (KV_PIECE floats) and use it for every query of the block. Row ends use byte masks, so no load
 * passes the end of a row. */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kvq.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define AVX512_INLINE                                                                              \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma"), always_inline)) static inline

/* PF: a decode sweep prefetches the row PF keys ahead. One head's rows are S·D bytes apart, a
 * stride the hardware prefetchers follow less well than a stream: prefetching 32 rows ahead was
 * 10-25% faster from DRAM than none or 16 in an A/B on Zen 5 (64 was no better). */
enum { W = 16, MAX_NC = 8, KV_PIECE = 256, PF = 32 };

static inline __mmask16 lane_mask(int r) {
  return r >= W ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1u);
}

/* 16 codes (the first r of them when r < 16) widened to floats. */
AVX512_INLINE __m512 widen(const int8_t *c, int r) {
  __m128i b = r >= W ? _mm_loadu_si128((const __m128i *)c) : _mm_maskz_loadu_epi8(lane_mask(r), c);
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
}

AVX512 void chai_kvq_store_row_avx512(int8_t *c, float *s, const float *x, int D) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  __m512i vmax = _mm512_setzero_si512();
  for (int d = 0; d < D; d += W) {
    __m512i b = _mm512_maskz_loadu_epi32(lane_mask(D - d), x + d);
    vmax = _mm512_max_epu32(vmax, _mm512_and_si512(b, abs_mask));
  }
  uint32_t amax_bits = _mm512_reduce_max_epu32(vmax);
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
  __m512 vs = _mm512_set1_ps(sc), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  for (int d = 0; d < D; d += W) {
    __mmask16 m = lane_mask(D - d);
    __m512 t = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + d), vs);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
    /* vcvtps2dq rounds half to even (the default MXCSR mode), as the ref's rhe */
    _mm512_mask_cvtsepi32_storeu_epi8(c + d, m, _mm512_cvtps_epi32(t));
  }
}

/* ---- scores --------------------------------------------------------------------------------- */

/* The query (NC registers) dotted with one key's row, still in 16 lanes. */
AVX512_INLINE __m512 key_dot(const __m512 *qv, const int8_t *kj, int D, const int NC) {
  __m512 acc = _mm512_mul_ps(qv[0], widen(kj, D));
#pragma GCC unroll 8
  for (int c = 1; c < NC; c++)
    acc = _mm512_fmadd_ps(qv[c], widen(kj + c * W, D - c * W), acc);
  return acc;
}

/* The horizontal sums of a[0..15] as one vector (element i = Σ of a[i]'s lanes): pairs of vectors
 * are interleaved and added (16 -> 8 -> 4), then the four 128-bit lanes are transposed and added.
 * About 3 instructions a vector instead of reduce_add's 8. */
AVX512_INLINE __m512 sum16(const __m512 *a) {
  __m512 x[8], z[4];
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) /* per 128-bit lane: (a0+a2, b0+b2, a1+a3, b1+b3) */
    x[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) { /* per 128-bit lane: the lane's sums of vectors 4i..4i+3 */
    __m512d u = _mm512_castps_pd(x[2 * i]), v = _mm512_castps_pd(x[2 * i + 1]);
    z[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(u, v)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(u, v)));
  }
  __m512 u01 = _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 u23 = _mm512_add_ps(_mm512_shuffle_f32x4(z[2], z[3], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(z[2], z[3], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(u01, u23, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(u01, u23, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* One query, D <= 16·NC: the query in NC registers, one pass over the keys. With D <= 64 keys go
 * 16 at a time (16 accumulators, one transposed reduction, the 16 scales gathered). */
AVX512_INLINE void scores_one(float *sc, const float *q, const int8_t *k, size_t k_ts,
                              const float *ks, int ks_ts, int n, int D, float scale, const int NC) {
  __m512 qv[MAX_NC];
#pragma GCC unroll 8
  for (int c = 0; c < NC; c++)
    qv[c] = _mm512_maskz_loadu_ps(lane_mask(D - c * W), q + c * W);
  int j = 0;
  if (NC <= 4) {
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(ks_ts));
    const __m512 vscale = _mm512_set1_ps(scale);
    for (; j + 16 <= n; j += 16) {
      __m512 acc[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) {
        if (j + i + PF < n)
          _mm_prefetch((const char *)(k + (size_t)(j + i + PF) * k_ts), _MM_HINT_T0);
        acc[i] = key_dot(qv, k + (size_t)(j + i) * k_ts, D, NC);
      }
      __m512 f = _mm512_mul_ps(_mm512_i32gather_ps(idx, ks + (size_t)j * ks_ts, 4), vscale);
      _mm512_storeu_ps(sc + j, _mm512_mul_ps(sum16(acc), f));
    }
  }
  for (; j < n; j++)
    sc[j] = _mm512_reduce_add_ps(key_dot(qv, k + (size_t)j * k_ts, D, NC)) *
            (ks[(size_t)j * ks_ts] * scale);
}

/* A block of queries, D <= 16·NC: 16 keys at a time are widened into a tile (16 rows of NC·16
 * floats, 8 KB at most), then each query's 16 dots come from 16 accumulators and one transposed
 * reduction, as in the decode sweep. Leftover keys (n mod 16) go one at a time. */
AVX512_INLINE void scores_tile(float *sc, int ldsc, const float *q, int q_ts, int bq,
                               const int8_t *k, size_t k_ts, const float *ks, int ks_ts, int n,
                               int D, float scale, const int NC) {
  float kf[16 * MAX_NC * W] __attribute__((aligned(64)));
  const __m512i idx =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(ks_ts));
  const __m512 vscale = _mm512_set1_ps(scale);
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int jj = 0; jj < 16; jj++)
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++)
        _mm512_store_ps(kf + (jj * NC + c) * W,
                        widen(k + (size_t)(j + jj) * k_ts + c * W, D - c * W));
    __m512 f = _mm512_mul_ps(_mm512_i32gather_ps(idx, ks + (size_t)j * ks_ts, 4), vscale);
    for (int i = 0; i < bq; i++) {
      __m512 qv[MAX_NC], acc[16];
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++)
        qv[c] = _mm512_maskz_loadu_ps(lane_mask(D - c * W), q + (size_t)i * q_ts + c * W);
#pragma GCC unroll 16
      for (int jj = 0; jj < 16; jj++) {
        acc[jj] = _mm512_mul_ps(qv[0], _mm512_load_ps(kf + jj * NC * W));
#pragma GCC unroll 8
        for (int c = 1; c < NC; c++)
          acc[jj] = _mm512_fmadd_ps(qv[c], _mm512_load_ps(kf + (jj * NC + c) * W), acc[jj]);
      }
      _mm512_storeu_ps(sc + (size_t)i * ldsc + j, _mm512_mul_ps(sum16(acc), f));
    }
  }
  for (; j < n; j++) {
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
      _mm512_store_ps(kf + c * W, widen(k + (size_t)j * k_ts + c * W, D - c * W));
    float f = ks[(size_t)j * ks_ts] * scale;
    for (int i = 0; i < bq; i++) {
      const float *qi = q + (size_t)i * q_ts;
      __m512 acc = _mm512_mul_ps(_mm512_maskz_loadu_ps(lane_mask(D), qi), _mm512_load_ps(kf));
#pragma GCC unroll 8
      for (int c = 1; c < NC; c++)
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lane_mask(D - c * W), qi + c * W),
                              _mm512_load_ps(kf + c * W), acc);
      sc[(size_t)i * ldsc + j] = _mm512_reduce_add_ps(acc) * f;
    }
  }
}

/* Any bq and D: each key's codes widened once per KV_PIECE floats into kf, then dotted with every
 * query of the block. */
AVX512 static void scores_block(float *sc, int ldsc, const float *q, int q_ts, int bq,
                                const int8_t *k, size_t k_ts, const float *ks, int ks_ts, int n,
                                int D, float scale) {
  float kf[KV_PIECE] __attribute__((aligned(64)));
  for (int j = 0; j < n; j++) {
    const int8_t *kj = k + (size_t)j * k_ts;
    for (int p0 = 0; p0 < D; p0 += KV_PIECE) {
      int m = D - p0 < KV_PIECE ? D - p0 : KV_PIECE;
      for (int d = 0; d < m; d += W)
        _mm512_store_ps(kf + d, widen(kj + p0 + d, m - d));
      for (int i = 0; i < bq; i++) {
        const float *qi = q + (size_t)i * q_ts + p0;
        __m512 acc = _mm512_setzero_ps();
        for (int d = 0; d < m; d += W)
          acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lane_mask(m - d), qi + d),
                                _mm512_load_ps(kf + d), acc);
        float part = _mm512_reduce_add_ps(acc);
        sc[(size_t)i * ldsc + j] = p0 == 0 ? part : sc[(size_t)i * ldsc + j] + part;
      }
    }
    float f = ks[(size_t)j * ks_ts] * scale;
    for (int i = 0; i < bq; i++)
      sc[(size_t)i * ldsc + j] *= f;
  }
}

/* The NC-specialised calls: CALL(nc) for nc = ceil(D/16) in 1..8. */
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

AVX512 void chai_kvq_scores_avx512(float *sc, int ldsc, const float *q, int q_ts, int bq,
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

/* One query, a piece of NC·16 >= m columns of the head: the output piece in NC registers, twice
 * (even and odd keys) when NC <= 4, so consecutive keys' FMAs do not wait for each other. */
AVX512_INLINE void values_one(float *o, const float *p, const int8_t *v, size_t v_ts,
                              const float *vs, int vs_ts, int n, int m, const int NC) {
  __m512 acc[MAX_NC], acc2[MAX_NC];
#pragma GCC unroll 8
  for (int c = 0; c < NC; c++)
    acc[c] = acc2[c] = _mm512_setzero_ps();
  int j = 0;
  if (NC <= 4)
    for (; j + 2 <= n; j += 2) {
      if (p[j] == 0.0f || p[j + 1] == 0.0f) { /* rare (masked keys): one at a time */
        for (int jj = j; jj < j + 2; jj++) {
          if (p[jj] == 0.0f) continue;
          __m512 w = _mm512_set1_ps(p[jj] * vs[(size_t)jj * vs_ts]);
#pragma GCC unroll 8
          for (int c = 0; c < NC; c++)
            acc[c] = _mm512_fmadd_ps(w, widen(v + (size_t)jj * v_ts + c * W, m - c * W), acc[c]);
        }
        continue;
      }
      __m512 w0 = _mm512_set1_ps(p[j] * vs[(size_t)j * vs_ts]);
      __m512 w1 = _mm512_set1_ps(p[j + 1] * vs[(size_t)(j + 1) * vs_ts]);
      const int8_t *v0 = v + (size_t)j * v_ts, *v1 = v0 + v_ts;
      if (j + 1 + PF < n) {
        _mm_prefetch((const char *)(v0 + (size_t)PF * v_ts), _MM_HINT_T0);
        _mm_prefetch((const char *)(v1 + (size_t)PF * v_ts), _MM_HINT_T0);
      }
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++) {
        acc[c] = _mm512_fmadd_ps(w0, widen(v0 + c * W, m - c * W), acc[c]);
        acc2[c] = _mm512_fmadd_ps(w1, widen(v1 + c * W, m - c * W), acc2[c]);
      }
    }
  for (; j < n; j++) {
    if (p[j] == 0.0f) continue;
    __m512 w = _mm512_set1_ps(p[j] * vs[(size_t)j * vs_ts]);
    const int8_t *vj = v + (size_t)j * v_ts;
#pragma GCC unroll 8
    for (int c = 0; c < NC; c++)
      acc[c] = _mm512_fmadd_ps(w, widen(vj + c * W, m - c * W), acc[c]);
  }
#pragma GCC unroll 8
  for (int c = 0; c < NC; c++)
    _mm512_mask_storeu_ps(o + c * W, lane_mask(m - c * W), _mm512_add_ps(acc[c], acc2[c]));
}

/* A block of queries, D <= 16·NC: 16 keys at a time are widened into a tile (only keys some
 * query of the block attends), then each query adds its 16 weighted rows in NC registers and its
 * output row once per tile. */
AVX512_INLINE void values_tile(float *o, int o_ts, const float *p, int ldp, int bq, const int8_t *v,
                               size_t v_ts, const float *vs, int vs_ts, int n, int D,
                               const int NC) {
  float vf[16 * MAX_NC * W] __attribute__((aligned(64)));
  for (int i = 0; i < bq; i++)
    memset(o + (size_t)i * o_ts, 0, (size_t)D * sizeof(float));
  for (int j0 = 0; j0 < n; j0 += 16) {
    int ng = n - j0 < 16 ? n - j0 : 16, used = 0;
    for (int jj = 0; jj < ng; jj++) {
      bool any = false;
      for (int i = 0; i < bq && !any; i++)
        any = p[(size_t)i * ldp + j0 + jj] != 0.0f;
      if (!any) continue;
      used++;
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++)
        _mm512_store_ps(vf + (jj * NC + c) * W,
                        widen(v + (size_t)(j0 + jj) * v_ts + c * W, D - c * W));
    }
    if (!used) continue;
    for (int i = 0; i < bq; i++) {
      const float *pi = p + (size_t)i * ldp + j0;
      __m512 acc[MAX_NC];
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++)
        acc[c] = _mm512_setzero_ps();
      for (int jj = 0; jj < ng; jj++) {
        if (pi[jj] == 0.0f) continue;
        __m512 w = _mm512_set1_ps(pi[jj] * vs[(size_t)(j0 + jj) * vs_ts]);
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
          acc[c] = _mm512_fmadd_ps(w, _mm512_load_ps(vf + (jj * NC + c) * W), acc[c]);
      }
      float *oi = o + (size_t)i * o_ts;
#pragma GCC unroll 8
      for (int c = 0; c < NC; c++) {
        __mmask16 mk = lane_mask(D - c * W);
        _mm512_mask_storeu_ps(oi + c * W, mk,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(mk, oi + c * W), acc[c]));
      }
    }
  }
}

/* Any bq: each key's codes widened once per KV_PIECE into vf, added into every query's output row
 * whose probability for the key is not 0. */
AVX512 static void values_block(float *o, int o_ts, const float *p, int ldp, int bq,
                                const int8_t *v, size_t v_ts, const float *vs, int vs_ts, int n,
                                int D) {
  float vf[KV_PIECE] __attribute__((aligned(64)));
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
        _mm512_store_ps(vf + d, widen(vj + p0 + d, m - d));
      for (int i = 0; i < bq; i++) {
        float pij = p[(size_t)i * ldp + j];
        if (pij == 0.0f) continue;
        __m512 w = _mm512_set1_ps(pij * sj);
        float *oi = o + (size_t)i * o_ts + p0;
        for (int d = 0; d < m; d += W) {
          __mmask16 mk = lane_mask(m - d);
          _mm512_mask_storeu_ps(
              oi + d, mk,
              _mm512_fmadd_ps(w, _mm512_load_ps(vf + d), _mm512_maskz_loadu_ps(mk, oi + d)));
        }
      }
    }
  }
}

AVX512 void chai_kvq_values_avx512(float *o, int o_ts, const float *p, int ldp, int bq,
                                   const int8_t *v, size_t v_ts, const float *vs, int vs_ts, int n,
                                   int D) {
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
  /* One query: pieces of up to 128 columns, each one sweep over the keys with its output in
   * registers (D <= 128, all OPT sizes, is a single sweep). */
  for (int p0 = 0; p0 < D; p0 += W * MAX_NC) {
    int m = D - p0 < W * MAX_NC ? D - p0 : W * MAX_NC;
#define ONE(nc) values_one(o + p0, p, v + p0, v_ts, vs, vs_ts, n, m, nc)
    NC_SWITCH((m + W - 1) / W, ONE)
#undef ONE
  }
}
