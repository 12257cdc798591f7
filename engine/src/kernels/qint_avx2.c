/* int8/int4 products on plain AVX2 (no VNNI): vpdpbusd emulated exactly. The unsigned bytes of w
 * and the signed bytes of a are split into their even and odd bytes widened to 16 bits; two
 * vpmaddwd give w0·a0 + w2·a2 and w1·a1 + w3·a3 per 32-bit lane (each at most 2·255·127 in
 * magnitude: no saturation), whose sum is vpdpbusd's. The kernels are qint_256_impl.h. */
#include <immintrin.h>

#define Q256_TGT __attribute__((target("avx2,fma,f16c")))

Q256_TGT static inline __attribute__((always_inline)) __m256i dpbusd_avx2(__m256i acc, __m256i w,
                                                                          __m256i a) {
  __m256i w_even = _mm256_and_si256(w, _mm256_set1_epi16(0x00FF)), w_odd = _mm256_srli_epi16(w, 8);
  __m256i a_even = _mm256_srai_epi16(_mm256_slli_epi16(a, 8), 8), a_odd = _mm256_srai_epi16(a, 8);
  __m256i p = _mm256_add_epi32(_mm256_madd_epi16(w_even, a_even), _mm256_madd_epi16(w_odd, a_odd));
  return _mm256_add_epi32(acc, p);
}

#define Q256_DPBUSD(acc, w, a) dpbusd_avx2(acc, w, a)
#define Q256_NAME(fmt, kind) chai_##fmt##_##kind##_avx2
#include "kernels/qint_256_impl.h"
