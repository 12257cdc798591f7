/* The decode matrix-vector kernels (engine/src/model/opt_gemv.c): each SIMD level against the
 * scalar twin for f32/f16/bf16 weights, odd sizes (row and column tails), accumulation, and the
 * same bits for 1 and 2 threads and for any address of W. */
#include "../../engine/src/model/opt_model.h"
#include "opt_fixture.h"

static void check_case(int OC, int C, chai_dtype dt, bool acc) {
  chai_rng rng;
  chai_rng_init(&rng, (uint64_t)(OC * 131 + C));
  size_t n = (size_t)OC * C;
  float *wf = malloc(n * 4), *x = malloc((size_t)C * 4);
  chai_rng_fill_normal(&rng, wf, n, 0, 1);
  chai_rng_fill_normal(&rng, x, (size_t)C, 0, 1);
  void *w = wf;
  uint16_t *wh = NULL;
  if (dt != CHAI_F32) {
    wh = malloc(n * 2);
    if (dt == CHAI_F16)
      chai_f32_to_f16_array(wh, wf, n);
    else
      chai_f32_to_bf16_array(wh, wf, n);
    w = wh;
  }
  float *want = malloc((size_t)OC * 4), *got = malloc((size_t)OC * 4);
  for (int r = 0; r < OC; r++)
    want[r] = got[r] = (float)r * 0.25f;
  opt_gemv_rows_ref(want, w, dt, x, C, 0, OC, acc);
  /* Summation order differs between kernels: measure errors against sum |w·x|. */
  float *absx = malloc((size_t)C * 4), *scale = malloc((size_t)OC * 4);
  for (int c = 0; c < C; c++)
    absx[c] = fabsf(x[c]);
  float *absw = malloc(n * 4);
  for (size_t i = 0; i < n; i++)
    absw[i] = fabsf(dt == CHAI_F32   ? wf[i]
                    : dt == CHAI_F16 ? chai_f16_to_f32(wh[i])
                                     : chai_bf16_to_f32(wh[i]));
  opt_gemv_rows_ref(scale, absw, CHAI_F32, absx, C, 0, OC, false);
  free(absw);
  free(absx);
  chai_simd levels[3] = {CHAI_SIMD_REF, CHAI_SIMD_AVX2, CHAI_SIMD_AVX512};
  for (int l = 0; l < 3; l++) {
    chai_simd_force(levels[l]);
    for (int r = 0; r < OC; r++)
      got[r] = (float)r * 0.25f;
    opt_gemv_rows(got, w, dt, x, C, 0, OC, acc);
    double worst = 0;
    for (int r = 0; r < OC; r++) {
      double d = fabs((double)got[r] - want[r]) / (1 + scale[r] + fabs((double)want[r]));
      worst = d > worst ? d : worst;
    }
    if (worst > 1e-5)
      printf("OC=%d C=%d %s acc=%d level %d: %.3g\n", OC, C, chai_dtype_name(dt), acc, l, worst);
    CHECK(worst <= 1e-5);
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  /* Threads split rows: the same bits for 1 and 2 threads. */
  float *one = malloc((size_t)OC * 4);
  chai_threads(1);
  opt_gemv(one, w, dt, x, OC, C, false);
  chai_threads(2);
  opt_gemv(got, w, dt, x, OC, C, false);
  CHECK(memcmp(one, got, (size_t)OC * 4) == 0);
  /* ... and wherever W lives: a copy shifted by one element (as tensors sit in an mmapped
   * checkpoint at any offset) gives the same bits, for every SIMD level. */
  size_t es = dt == CHAI_F32 ? 4 : 2;
  char *shifted = malloc((n + 1) * es);
  memcpy(shifted + es, w, n * es);
  for (int l = 0; l < 3; l++) {
    chai_simd_force(levels[l]);
    opt_gemv_rows(one, w, dt, x, C, 0, OC, false);
    opt_gemv_rows(got, shifted + es, dt, x, C, 0, OC, false);
    CHECK(memcmp(one, got, (size_t)OC * 4) == 0);
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  free(shifted);
  free(one);
  free(scale);
  free(wf);
  free(wh);
  free(x);
  free(want);
  free(got);
}

int main(void) {
  chai_dtype dts[3] = {CHAI_F32, CHAI_F16, CHAI_BF16};
  int sizes[][2] = {{1, 1}, {3, 5}, {4, 16}, {7, 33}, {13, 8}, {64, 768}, {600, 301}};
  for (int d = 0; d < 3; d++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (int acc = 0; acc < 2; acc++)
        check_case(sizes[s][0], sizes[s][1], dts[d], acc);
  return chai_test_finish();
}
