/* The decode matrix-vector kernels (engine/src/model/opt_gemv.c): each SIMD level against the
 * scalar twin for f32/f16/bf16 weights, odd sizes (row and column tails), every epilogue (residual
 * sum, bias, ReLU), the same bits for 1 to 4 threads and for any address of W, and batches of
 * matrices sharing one input. */
#include "../../engine/src/model/opt_model.h"
#include "opt_fixture.h"

static void gemv_one(float *y, const void *W, chai_dtype dt, const float *x, int OC, int C,
                     const opt_gemv_epilogue *e) {
  opt_gemv_task task = {.y = y, .W = W, .dt = dt, .OC = OC, .e = *e};
  opt_gemv_batch(&task, 1, x, C);
}

static void check_case(int OC, int C, chai_dtype dt, bool acc, bool with_bias, bool relu) {
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
  float *bias = malloc((size_t)OC * 4);
  chai_rng_fill_normal(&rng, bias, (size_t)OC, 0, 1);
  opt_gemv_epilogue e = {.bias = with_bias ? bias : NULL, .accumulate = acc, .relu = relu};
  opt_gemv_epilogue plain = {0};
  for (int r = 0; r < OC; r++)
    want[r] = got[r] = (float)r * 0.25f - 10.0f;
  opt_gemv_rows_ref(want, w, dt, x, C, 0, OC, &e);
  /* The epilogue in the twin, spelled out: the sum, the bias, then ReLU. */
  float *plain_dot = malloc((size_t)OC * 4);
  opt_gemv_rows_ref(plain_dot, w, dt, x, C, 0, OC, &plain);
  for (int r = 0; r < OC; r++) {
    float v = acc ? ((float)r * 0.25f - 10.0f) + plain_dot[r] : plain_dot[r];
    if (with_bias) v += bias[r];
    if (relu) v = v > 0.0f ? v : 0.0f;
    CHECK(v == want[r]);
  }
  free(plain_dot);
  /* Summation order differs between kernels: measure errors against sum |w·x|. */
  float *absx = malloc((size_t)C * 4), *scale = malloc((size_t)OC * 4);
  for (int c = 0; c < C; c++)
    absx[c] = fabsf(x[c]);
  float *absw = malloc(n * 4);
  for (size_t i = 0; i < n; i++)
    absw[i] = fabsf(dt == CHAI_F32   ? wf[i]
                    : dt == CHAI_F16 ? chai_f16_to_f32(wh[i])
                                     : chai_bf16_to_f32(wh[i]));
  opt_gemv_rows_ref(scale, absw, CHAI_F32, absx, C, 0, OC, &plain);
  free(absw);
  free(absx);
  chai_simd levels[3] = {CHAI_SIMD_REF, CHAI_SIMD_AVX2, CHAI_SIMD_AVX512};
  for (int l = 0; l < 3; l++) {
    chai_simd_force(levels[l]);
    for (int r = 0; r < OC; r++)
      got[r] = (float)r * 0.25f - 10.0f;
    opt_gemv_rows(got, w, dt, x, C, 0, OC, &e);
    double worst = 0;
    for (int r = 0; r < OC; r++) {
      double d = fabs((double)got[r] - want[r]) / (1 + scale[r] + fabs((double)want[r]));
      worst = d > worst ? d : worst;
    }
    if (worst > 1e-5)
      printf("OC=%d C=%d %s acc=%d bias=%d relu=%d level %d: %.3g\n", OC, C, chai_dtype_name(dt),
             acc, with_bias, relu, l, worst);
    CHECK(worst <= 1e-5);
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  /* Threads share rows (pairs claim chunks from both ends of a segment): every row computed
   * once, the same bits for 1 to 4 threads. NaN marks a row nobody wrote. */
  float *one = malloc((size_t)OC * 4);
  chai_threads(1);
  for (int r = 0; r < OC; r++)
    one[r] = (float)r * 0.25f - 10.0f;
  gemv_one(one, w, dt, x, OC, C, &e);
  for (int nt = 2; nt <= 4; nt++) {
    chai_threads(nt);
    for (int r = 0; r < OC; r++)
      got[r] = acc ? (float)r * 0.25f - 10.0f : NAN;
    gemv_one(got, w, dt, x, OC, C, &e);
    CHECK(memcmp(one, got, (size_t)OC * 4) == 0);
  }
  chai_threads(2);
  /* ... and wherever W lives: a copy shifted by one element (as tensors sit in an mmapped
   * checkpoint at any offset) gives the same bits, for every SIMD level. */
  size_t es = dt == CHAI_F32 ? 4 : 2;
  char *shifted = malloc((n + 1) * es);
  memcpy(shifted + es, w, n * es);
  for (int l = 0; l < 3; l++) {
    chai_simd_force(levels[l]);
    opt_gemv_rows(one, w, dt, x, C, 0, OC, &plain);
    opt_gemv_rows(got, shifted + es, dt, x, C, 0, OC, &plain);
    CHECK(memcmp(one, got, (size_t)OC * 4) == 0);
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  free(shifted);
  free(one);
  free(scale);
  free(wf);
  free(wh);
  free(x);
  free(bias);
  free(want);
  free(got);
}

/* A batch of matrices with one input (a layer's Q, K, V): rows end to end, claims crossing from
 * one matrix into the next; each output as a batch of one gives it, for 1 to 4 threads. */
static void check_batch(void) {
  enum { C = 96, N = 4 };
  int OCs[N] = {1500, 7, 1029, 2};
  chai_dtype dts[N] = {CHAI_F32, CHAI_F16, CHAI_BF16, CHAI_F32};
  chai_rng rng;
  chai_rng_init(&rng, 7);
  float x[C];
  chai_rng_fill_normal(&rng, x, C, 0, 1);
  opt_gemv_task tasks[N];
  float *want[N], *bias[N];
  void *w[N];
  for (int i = 0; i < N; i++) {
    size_t n = (size_t)OCs[i] * C;
    float *wf = malloc(n * 4);
    chai_rng_fill_normal(&rng, wf, n, 0, 1);
    if (dts[i] == CHAI_F32) {
      w[i] = wf;
    } else {
      w[i] = malloc(n * 2);
      if (dts[i] == CHAI_F16)
        chai_f32_to_f16_array(w[i], wf, n);
      else
        chai_f32_to_bf16_array(w[i], wf, n);
      free(wf);
    }
    bias[i] = malloc((size_t)OCs[i] * 4);
    chai_rng_fill_normal(&rng, bias[i], (size_t)OCs[i], 0, 1);
    want[i] = malloc((size_t)OCs[i] * 4);
    tasks[i] = (opt_gemv_task){.W = w[i],
                               .dt = dts[i],
                               .OC = OCs[i],
                               .e = {.bias = i % 2 ? NULL : bias[i], .relu = i == 2}};
    chai_threads(1);
    gemv_one(want[i], w[i], dts[i], x, OCs[i], C, &tasks[i].e);
  }
  for (int nt = 1; nt <= 4; nt++) {
    chai_threads(nt);
    for (int i = 0; i < N; i++) {
      tasks[i].y = malloc((size_t)OCs[i] * 4);
      for (int r = 0; r < OCs[i]; r++)
        tasks[i].y[r] = NAN;
    }
    opt_gemv_batch(tasks, N, x, C);
    for (int i = 0; i < N; i++) {
      CHECK(memcmp(tasks[i].y, want[i], (size_t)OCs[i] * 4) == 0);
      free(tasks[i].y);
    }
  }
  chai_threads(2);
  for (int i = 0; i < N; i++) {
    free(w[i]);
    free(bias[i]);
    free(want[i]);
  }
}

int main(void) {
  check_batch();
  chai_dtype dts[3] = {CHAI_F32, CHAI_F16, CHAI_BF16};
  /* the last two are large enough for several threads and many claims */
  int sizes[][2] = {{1, 1}, {3, 5}, {4, 16}, {7, 33}, {13, 8}, {64, 768}, {600, 301}, {2051, 96}};
  for (int d = 0; d < 3; d++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (int ep = 0; ep < 8; ep++)
        check_case(sizes[s][0], sizes[s][1], dts[d], ep & 1, ep & 2, ep & 4);
  return chai_test_finish();
}
