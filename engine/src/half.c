#include "chai/half.h"

#include <immintrin.h>
#include <string.h>

#include "chai/cpu.h"

float chai_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: normalise */
      int e = -1;
      do {
        man <<= 1;
        e++;
      } while (!(man & 0x400));
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0);
  } else {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t chai_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) /* Inf or NaN */
    return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
  if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: Inf */
  if (absx < 0x38800000) {                                    /* below f16's smallest normal */
    if (absx < 0x33000000) return (uint16_t)sign;             /* < half the smallest subnormal */
    uint32_t e = absx >> 23, man = (absx & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((absx >> 13) - (112u << 10));
  uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return (uint16_t)(sign | half);
}

float chai_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t chai_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
  /* Subnormal inputs become signed zero, as AVX-512-BF16's VCVTNEPS2BF16 does, so both paths give
   * the same bits; bf16 has no use for values below 1.2e-38 here. */
  if ((x & 0x7f800000) == 0) return (uint16_t)((x >> 16) & 0x8000);
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

void chai_f16_to_f32_array_ref(float *out, const uint16_t *in, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = chai_f16_to_f32(in[i]);
}
void chai_f32_to_f16_array_ref(uint16_t *out, const float *in, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = chai_f32_to_f16(in[i]);
}
void chai_bf16_to_f32_array_ref(float *out, const uint16_t *in, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = chai_bf16_to_f32(in[i]);
}
void chai_f32_to_bf16_array_ref(uint16_t *out, const float *in, size_t n) {
  for (size_t i = 0; i < n; i++) out[i] = chai_f32_to_bf16(in[i]);
}

__attribute__((target("avx2,f16c"))) static void f16_to_f32_f16c(float *out, const uint16_t *in,
                                                                   size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
  chai_f16_to_f32_array_ref(out + i, in + i, n - i);
}

__attribute__((target("avx2,f16c"))) static void f32_to_f16_f16c(uint16_t *out, const float *in,
                                                                   size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
  chai_f32_to_f16_array_ref(out + i, in + i, n - i);
}

__attribute__((target("avx512f"))) static void bf16_to_f32_avx512(float *out, const uint16_t *in,
                                                                    size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(in + i)));
    _mm512_storeu_si512(out + i, _mm512_slli_epi32(w, 16));
  }
  chai_bf16_to_f32_array_ref(out + i, in + i, n - i);
}

__attribute__((target("avx512f,avx512bf16,avx512vl"))) static void
f32_to_bf16_avx512bf16(uint16_t *out, const float *in, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + i));
    memcpy(out + i, &h, 32);
  }
  chai_f32_to_bf16_array_ref(out + i, in + i, n - i);
}

void chai_f16_to_f32_array(float *out, const uint16_t *in, size_t n) {
  if (chai_simd_level() >= CHAI_SIMD_AVX2 && chai_cpu_info_get()->f16c)
    f16_to_f32_f16c(out, in, n);
  else
    chai_f16_to_f32_array_ref(out, in, n);
}

void chai_f32_to_f16_array(uint16_t *out, const float *in, size_t n) {
  if (chai_simd_level() >= CHAI_SIMD_AVX2 && chai_cpu_info_get()->f16c)
    f32_to_f16_f16c(out, in, n);
  else
    chai_f32_to_f16_array_ref(out, in, n);
}

void chai_bf16_to_f32_array(float *out, const uint16_t *in, size_t n) {
  if (chai_simd_level() >= CHAI_SIMD_AVX512)
    bf16_to_f32_avx512(out, in, n);
  else
    chai_bf16_to_f32_array_ref(out, in, n);
}

void chai_f32_to_bf16_array(uint16_t *out, const float *in, size_t n) {
  if (chai_simd_level() >= CHAI_SIMD_AVX512 && chai_cpu_info_get()->avx512_bf16)
    f32_to_bf16_avx512bf16(out, in, n);
  else
    chai_f32_to_bf16_array_ref(out, in, n);
}
