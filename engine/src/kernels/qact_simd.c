/* SIMD twins of chai_qact_rows_ref (quant/qact.c): the same operations lane by lane, so the codes,
 * scales, block sums and bf16 copies are bit-identical. max_ps(v, m) returns m when v is NaN and
 * max_ps(r, -127) returns -127 when r is NaN: the scalar fmaxf/compare rules. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "chai/half.h"
#include "quant/qkernels.h"

#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,bmi2")))
#define TGT2 __attribute__((target("avx2,fma")))

/* chai_f32_to_bf16 on 16 lanes: quiet NaN, subnormal to signed zero, else round to nearest even. */
TGT512 static inline __m256i bf16_16(__m512 v) {
  __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
  __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                                                 _mm512_and_si512(hi, _mm512_set1_epi32(1))),
                                16);
  __mmask16 sub = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
  __mmask16 nan = _mm512_cmpgt_epi32_mask(absu, _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_mov_epi32(r, sub, _mm512_and_si512(hi, _mm512_set1_epi32(0x8000)));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

/* The two 32-code block sums of 64 codes: vpsadbw adds 8 bytes of u = c + 128 (the codes with the
 * sign bit flipped); a block's four sums less 32·128 is its Σ c. */
TGT512 static inline void block_sums64(int32_t *g, __m512i codes) {
  __m512i u = _mm512_xor_si512(codes, _mm512_set1_epi8((char)0x80));
  __m512i sad = _mm512_sad_epu8(u, _mm512_setzero_si512()); /* blocks: qwords 0-3, 4-7 */
  __m256i lo = _mm512_castsi512_si256(sad), hi = _mm512_extracti64x4_epi64(sad, 1);
  __m256i t = _mm256_add_epi64(_mm256_unpacklo_epi64(lo, hi), _mm256_unpackhi_epi64(lo, hi));
  __m128i b2 = _mm_add_epi64(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
  g[0] = (int32_t)_mm_cvtsi128_si64(b2) - 32 * 128;
  g[1] = (int32_t)_mm_extract_epi64(b2, 1) - 32 * 128;
}

/* The lanes of x[k .. k+15] below C. */
TGT512 static inline __mmask16 below(int k, int C) {
  int n = C - k < 0 ? 0 : C - k > 16 ? 16 : C - k; /* bzhi reads only the index's low byte */
  return (__mmask16)_bzhi_u32(0xFFFF, (unsigned)n);
}

TGT512 void chai_qact_rows_avx512(chai_qact *a, const float *x, int n0, int n1) {
  int C = a->C, S = a->stride;
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int n = n0; n < n1; n++) {
    const float *xr = x + (size_t)n * C;
    int8_t *q = a->q + (size_t)n * S;
    int32_t *g = a->gsum + (size_t)n * (S / 32);
    __m512 m = _mm512_setzero_ps();
    for (int k = 0; k < C; k += 16)
      m = _mm512_max_ps(_mm512_and_ps(_mm512_maskz_loadu_ps(below(k, C), xr + k), absmask), m);
    float amax = _mm512_reduce_max_ps(m);
    bool zero = amax < CHAI_QACT_TINY;
    a->scale[n] = zero ? 0.0f : amax / 127.0f;
    if (zero) {
      memset(q, 0, (size_t)S);
      memset(g, 0, (size_t)(S / 32) * sizeof(int32_t));
      a->sum[n] = 0;
    } else {
      /* 64 codes at a time: x·inv rounded to nearest even by the conversion itself, four int32
       * vectors narrowed by two saturating packs and put back in order by one dword permutation
       * (a vpmovdb store is slow on some cores). No product exceeds 127·(1 + 2^-23), so none
       * rounds above 127; a NaN converts to INT_MIN, which the packs saturate to -128 and the
       * clamp makes -127, the scalar rule. Zeros beyond C give code 0. */
      __m512 inv = _mm512_set1_ps(127.0f / amax);
      const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
      int32_t total = 0;
      for (int k = 0; k < S; k += 64) {
        __m512i c[4];
#pragma GCC unroll 4
        for (int h = 0; h < 4; h++) {
          int kk = k + 16 * h;
          c[h] = _mm512_cvt_roundps_epi32(
              _mm512_mul_ps(_mm512_maskz_loadu_ps(below(kk, C), xr + kk), inv),
              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        }
        __m512i p =
            _mm512_packs_epi16(_mm512_packs_epi32(c[0], c[1]), _mm512_packs_epi32(c[2], c[3]));
        p = _mm512_permutexvar_epi32(order, _mm512_max_epi8(p, _mm512_set1_epi8(-127)));
        _mm512_store_si512(q + k, p);
        block_sums64(g + k / 32, p);
        total += g[k / 32] + g[k / 32 + 1];
      }
      a->sum[n] = total;
    }
    if (a->bf) {
      uint16_t *bf = a->bf + (size_t)n * S;
      for (int k = 0; k < S; k += 16)
        _mm256_storeu_si256((__m256i *)(bf + k),
                            bf16_16(_mm512_maskz_loadu_ps(below(k, C), xr + k)));
    }
  }
}

/* ---- AVX2: full 8-lane chunks in SIMD, the last C % 8 elements by the scalar rule -------------
 */

TGT2 static inline __m128i bf16_8(__m256 v) {
  __m256i u = _mm256_castps_si256(v), hi = _mm256_srli_epi32(u, 16);
  __m256i absu = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)),
                                                 _mm256_and_si256(hi, _mm256_set1_epi32(1))),
                                16);
  __m256i sub = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)),
                                   _mm256_setzero_si256());
  __m256i nan = _mm256_cmpgt_epi32(absu, _mm256_set1_epi32(0x7f800000));
  r = _mm256_blendv_epi8(r, _mm256_and_si256(hi, _mm256_set1_epi32(0x8000)), sub);
  r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
  __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  return _mm256_castsi256_si128(p);
}

TGT2 void chai_qact_rows_avx2(chai_qact *a, const float *x, int n0, int n1) {
  int C = a->C, S = a->stride, C8 = C & ~7;
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int n = n0; n < n1; n++) {
    const float *xr = x + (size_t)n * C;
    int8_t *q = a->q + (size_t)n * S;
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < C8; k += 8)
      m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xr + k), absmask), m);
    float lanes[8], amax = 0;
    _mm256_storeu_ps(lanes, m);
    for (int i = 0; i < 8; i++)
      amax = lanes[i] > amax ? lanes[i] : amax;
    for (int k = C8; k < C; k++) {
      float v = fabsf(xr[k]);
      amax = v > amax ? v : amax;
    }
    bool zero = amax < CHAI_QACT_TINY;
    float inv = zero ? 0.0f : 127.0f / amax;
    a->scale[n] = zero ? 0.0f : amax / 127.0f;
    memset(q, 0, (size_t)S);
    if (!zero) {
      __m256 vi = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
      for (int k = 0; k < C8; k += 8) {
        __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + k), vi),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i c = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
        __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
        _mm_storel_epi64((__m128i *)(q + k), _mm_packs_epi16(p, p));
      }
      for (int k = C8; k < C; k++)
        q[k] = (int8_t)fminf(fmaxf(nearbyintf(xr[k] * inv), -127.0f), 127.0f);
    }
    /* Block sums as in block_sums_avx512, 32 bytes at a time. */
    int32_t *g = a->gsum + (size_t)n * (S / 32), total = 0;
    for (int b = 0; b < S / 32; b++) {
      __m256i u = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(q + 32 * b)),
                                   _mm256_set1_epi8((char)0x80));
      __m256i sad = _mm256_sad_epu8(u, _mm256_setzero_si256());
      __m128i t = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
      t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
      g[b] = (int32_t)_mm_cvtsi128_si64(t) - 32 * 128;
      total += g[b];
    }
    a->sum[n] = total;
    if (a->bf) {
      uint16_t *bf = a->bf + (size_t)n * S;
      memset(bf + C8, 0, (size_t)(S - C8) * sizeof(uint16_t));
      for (int k = 0; k < C8; k += 8)
        _mm_storeu_si128((__m128i *)(bf + k), bf16_8(_mm256_loadu_ps(xr + k)));
      for (int k = C8; k < C; k++)
        bf[k] = chai_f32_to_bf16(xr[k]);
    }
  }
}
