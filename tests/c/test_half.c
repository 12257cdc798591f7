/* f16/bf16 conversion: scalar conversions against exact references, and every SIMD converter
 * bit-exact against its _ref twin at each SIMD level this CPU has. */
#include <stdlib.h>
#include <string.h>

#include "chai/chai.h"
#include "check.h"

/* Exact f16 value of bits h, computed independently in double. */
static double f16_exact(uint16_t h) {
  int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return s ? -v : v;
}

static void test_f16_scalar(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    double want = f16_exact((uint16_t)h);
    float got = chai_f16_to_f32((uint16_t)h);
    if (isnan(want) ? !isnan(got) : (double)got != want) bad++;
    /* f16 -> f32 -> f16 is the identity (NaNs stay NaN) */
    uint16_t back = chai_f32_to_f16(got);
    if (isnan(want) ? (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != h) bad++;
  }
  CHECK(bad == 0);
  /* rounding: halfway cases go to even */
  CHECK(chai_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00);                 /* tie → even (down) */
  CHECK(chai_f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02);             /* tie → even (up) */
  CHECK(chai_f32_to_f16(65519.0f) == 0x7bff && chai_f32_to_f16(65520.0f) == 0x7c00);
  CHECK(chai_f32_to_f16(ldexpf(1, -25)) == 0 && chai_f32_to_f16(ldexpf(1.5f, -25)) == 1);
  CHECK(chai_f32_to_f16(-0.0f) == 0x8000);
}

static void test_bf16_scalar(void) {
  CHECK(chai_f32_to_bf16(1.0f) == 0x3f80);
  CHECK(chai_bf16_to_f32(0x4049) == 3.140625f);
  float tie_even = 1.0f + ldexpf(1, -8), tie_odd = 1.0f + 3 * ldexpf(1, -8);
  CHECK(chai_f32_to_bf16(tie_even) == 0x3f80 && chai_f32_to_bf16(tie_odd) == 0x3f82);
  CHECK(chai_f32_to_bf16(ldexpf(1, -130)) == 0); /* subnormal → 0, as the hardware does */
  uint16_t nan = chai_f32_to_bf16(NAN);
  CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f));
}

static float random_float(chai_rng *r) {
  uint32_t bits = (uint32_t)chai_rng_u64(r);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static void test_simd_twins(void) {
  size_t lens[] = {1, 7, 16, 33, 1000};
  chai_rng r;
  chai_rng_init(&r, 42);
  for (int level = CHAI_SIMD_REF; level <= CHAI_SIMD_AVX512; level++) {
    if (chai_simd_force((chai_simd)level) != (chai_simd)level) continue;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
      size_t n = lens[li];
      float *x = malloc(n * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4);
      uint16_t *h = malloc(n * 2), *h1 = malloc(n * 2), *h2 = malloc(n * 2);
      for (size_t i = 0; i < n; i++) {
        x[i] = i % 3 ? random_float(&r) : (float)(chai_rng_uniform(&r) * 200 - 100);
        h[i] = (uint16_t)chai_rng_u64(&r);
      }
      chai_f32_to_f16_array(h1, x, n);
      chai_f32_to_f16_array_ref(h2, x, n);
      CHECK(memcmp(h1, h2, n * 2) == 0);
      chai_f32_to_bf16_array(h1, x, n);
      chai_f32_to_bf16_array_ref(h2, x, n);
      CHECK(memcmp(h1, h2, n * 2) == 0);
      chai_f16_to_f32_array(y1, h, n);
      chai_f16_to_f32_array_ref(y2, h, n);
      CHECK(memcmp(y1, y2, n * 4) == 0);
      chai_bf16_to_f32_array(y1, h, n);
      chai_bf16_to_f32_array_ref(y2, h, n);
      CHECK(memcmp(y1, y2, n * 4) == 0);
      free(x), free(y1), free(y2), free(h), free(h1), free(h2);
    }
  }
  chai_simd_force(CHAI_SIMD_AVX512);
}

int main(void) {
  test_f16_scalar();
  test_bf16_scalar();
  test_simd_twins();
  return chai_test_finish();
}
