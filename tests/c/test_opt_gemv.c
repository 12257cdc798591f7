/* The decode path (engine/src/model/opt_gemv.c and the quant room's row kernels): the row-major
 * f32/f16 kernels at each SIMD level against their scalar twin with odd sizes and every epilogue
 * (residual sum, bias, ReLU), the same bits wherever W lives; and the scheduler: a batch of
 * matrices of mixed formats (f32, f16, bf16, int8, int4) sharing one input, with row counts that
 * are not multiples of 16, gives each matrix's single-thread result bit for bit for 1 to 4 threads,
 * with or without a held team, every row written once. */
#include "../../engine/src/model/opt_model.h"
#include "../../engine/src/team.h"
#include "opt_fixture.h"

/* A batch twice in a row as the body of a held team (a decode step's products). */
typedef struct {
  opt_gemv_task *tasks;
  int n;
  const float *x;
  void *work;
} gemv_call;
static chai_status gemv_body(void *ctx) {
  gemv_call *c = ctx;
  opt_gemv_batch(c->tasks, c->n, c->x, c->work);
  opt_gemv_batch(c->tasks, c->n, c->x, c->work);
  return CHAI_OK;
}

/* W (R,C) as a row-major f32 or f16 matrix view. */
static void rowmajor(chai_qmat *q, const float *wf, int R, int C, chai_dtype dt) {
  int64_t shape[2] = {R, C};
  chai_tensor t, h;
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, 2, shape));
  memcpy(chai_tensor_data(&t), wf, (size_t)R * C * 4);
  if (dt == CHAI_F16) {
    CHECK_OK(chai_tensor_to(&h, &t, CHAI_F16));
    chai_tensor_release(&t);
    t = h;
  }
  CHECK_OK(chai_qmat_wrap(q, &t));
  chai_tensor_release(&t);
}

static void check_case(int OC, int C, chai_dtype dt, bool acc, bool with_bias, bool relu) {
  chai_rng rng;
  chai_rng_init(&rng, (uint64_t)(OC * 131 + C));
  size_t n = (size_t)OC * C;
  float *wf = malloc(n * 4), *x = malloc((size_t)C * 4);
  chai_rng_fill_normal(&rng, wf, n, 0, 1);
  chai_rng_fill_normal(&rng, x, (size_t)C, 0, 1);
  chai_qmat w;
  rowmajor(&w, wf, OC, C, dt);
  float *want = malloc((size_t)OC * 4), *got = malloc((size_t)OC * 4);
  float *bias = malloc((size_t)OC * 4);
  chai_rng_fill_normal(&rng, bias, (size_t)OC, 0, 1);
  chai_qepilogue e = {.bias = with_bias ? bias : NULL, .accumulate = acc, .relu = relu};
  chai_qepilogue plain = {0};
  for (int r = 0; r < OC; r++)
    want[r] = got[r] = (float)r * 0.25f - 10.0f;
  chai_qmat_gemv_rows_ref(want, &w, x, NULL, 0, OC, &e);
  /* The epilogue in the twin, spelled out: the sum, the bias, then ReLU. */
  float *plain_dot = malloc((size_t)OC * 4);
  chai_qmat_gemv_rows_ref(plain_dot, &w, x, NULL, 0, OC, &plain);
  for (int r = 0; r < OC; r++) {
    float v = acc ? ((float)r * 0.25f - 10.0f) + plain_dot[r] : plain_dot[r];
    if (with_bias) v += bias[r];
    if (relu) v = v > 0.0f ? v : 0.0f;
    CHECK(v == want[r]);
  }
  free(plain_dot);
  /* Summation order differs between kernels: measure errors against sum |w·x|. */
  float *absx = malloc((size_t)C * 4), *scale = malloc((size_t)OC * 4), *absw = malloc(n * 4);
  for (int c = 0; c < C; c++)
    absx[c] = fabsf(x[c]);
  for (size_t i = 0; i < n; i++)
    absw[i] = fabsf(dt == CHAI_F32 ? wf[i] : chai_f16_to_f32(chai_f32_to_f16(wf[i])));
  chai_qmat aw;
  rowmajor(&aw, absw, OC, C, CHAI_F32);
  chai_qmat_gemv_rows_ref(scale, &aw, absx, NULL, 0, OC, &plain);
  chai_qmat_release(&aw);
  free(absw);
  free(absx);
  chai_simd levels[3] = {CHAI_SIMD_REF, CHAI_SIMD_AVX2, CHAI_SIMD_AVX512};
  for (int l = 0; l < 3; l++) {
    chai_simd_force(levels[l]);
    for (int r = 0; r < OC; r++)
      got[r] = (float)r * 0.25f - 10.0f;
    chai_qmat_gemv_rows(got, &w, x, NULL, 0, OC, &e);
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
  /* ... and wherever W lives: a copy shifted by one element (as tensors sit in an mmapped
   * checkpoint at any offset) gives the same bits, for every SIMD level. */
  size_t es = dt == CHAI_F32 ? 4 : 2;
  chai_storage *sh = chai_storage_new((n + 1) * es);
  memcpy(sh->data + es, chai_tensor_data(&w.t), n * es);
  chai_tensor st;
  int64_t shape[2] = {OC, C};
  CHECK_OK(chai_tensor_from_storage(&st, sh, es, dt, 2, shape));
  chai_storage_release(sh);
  chai_qmat ws;
  CHECK_OK(chai_qmat_wrap(&ws, &st));
  chai_tensor_release(&st);
  float *one = malloc((size_t)OC * 4);
  for (int l = 0; l < 3; l++) {
    chai_simd_force(levels[l]);
    chai_qmat_gemv_rows(one, &w, x, NULL, 0, OC, &plain);
    chai_qmat_gemv_rows(got, &ws, x, NULL, 0, OC, &plain);
    CHECK(memcmp(one, got, (size_t)OC * 4) == 0);
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  chai_qmat_release(&ws);
  chai_qmat_release(&w);
  free(one);
  free(scale);
  free(wf);
  free(x);
  free(bias);
  free(want);
  free(got);
}

/* A batch of matrices with one input (a layer's Q, K, V): blocks end to end, claims crossing from
 * one matrix into the next; each output as the single-thread scalar twin gives it (bit for bit:
 * the integer formats are exact, and each row runs the same kernel whichever thread takes it),
 * for 1 to 4 threads. */
static void check_batch(void) {
  enum { C = 96, N = 6 };
  int OCs[N] = {1500, 7, 1029, 2, 333, 48};
  chai_qspec specs[N] = {{.format = CHAI_QF_F32},
                         {.format = CHAI_QF_F16},
                         {.format = CHAI_QF_BF16},
                         {.format = CHAI_QF_INT8},
                         {.format = CHAI_QF_INT4, .group = 32},
                         {.format = CHAI_QF_INT4, .group = 64, .zero_point = true}};
  chai_rng rng;
  chai_rng_init(&rng, 7);
  float x[C];
  chai_rng_fill_normal(&rng, x, C, 0, 1);
  opt_gemv_task tasks[N];
  chai_qmat w[N];
  float *want[N], *bias[N];
  size_t wb = opt_gemv_work_bytes(C);
  void *work = chai_alloc(wb, "test");
  for (int i = 0; i < N; i++) {
    size_t n = (size_t)OCs[i] * C;
    float *wf = malloc(n * 4);
    chai_rng_fill_normal(&rng, wf, n, 0, 1);
    CHECK_OK(chai_qmat_quantize(&w[i], wf, OCs[i], C, &specs[i], "test"));
    free(wf);
    bias[i] = malloc((size_t)OCs[i] * 4);
    chai_rng_fill_normal(&rng, bias[i], (size_t)OCs[i], 0, 1);
    want[i] = malloc((size_t)OCs[i] * 4);
    tasks[i] = (opt_gemv_task){.w = &w[i], .e = {.bias = i % 2 ? NULL : bias[i], .relu = i == 2}};
    chai_threads(1);
    opt_gemv_task one = tasks[i];
    one.y = want[i];
    opt_gemv_batch(&one, 1, x, work);
  }
  for (int nt = 1; nt <= 4; nt++) {
    chai_threads(nt);
    for (int i = 0; i < N; i++) {
      tasks[i].y = malloc((size_t)OCs[i] * 4);
      for (int r = 0; r < OCs[i]; r++)
        tasks[i].y[r] = NAN;
    }
    opt_gemv_batch(tasks, N, x, work);
    for (int i = 0; i < N; i++) {
      CHECK(memcmp(tasks[i].y, want[i], (size_t)OCs[i] * 4) == 0);
      for (int r = 0; r < OCs[i]; r++)
        tasks[i].y[r] = NAN;
    }
    gemv_call call = {tasks, N, x, work};
    CHECK_OK(chai_team_hold(gemv_body, &call));
    for (int i = 0; i < N; i++) {
      CHECK(memcmp(tasks[i].y, want[i], (size_t)OCs[i] * 4) == 0);
      free(tasks[i].y);
    }
  }
  /* the single-thread batch is the scalar twin's result (integer formats: bit for bit) */
  chai_qact xa;
  void *mem = chai_alloc(chai_qact_bytes(1, C, true), "test");
  chai_qact_quantize_ref(&xa, mem, x, 1, C, true);
  for (int i = 3; i < N; i++) {
    float *ref = malloc((size_t)OCs[i] * 4);
    chai_qmat_gemv_rows_ref(ref, &w[i], x, &xa, 0, OCs[i], &tasks[i].e);
    CHECK(memcmp(ref, want[i], (size_t)OCs[i] * 4) == 0);
    free(ref);
  }
  chai_free(mem, chai_qact_bytes(1, C, true));
  chai_threads(2);
  chai_free(work, wb);
  for (int i = 0; i < N; i++) {
    chai_qmat_release(&w[i]);
    free(bias[i]);
    free(want[i]);
  }
}

int main(void) {
  check_batch();
  chai_dtype dts[2] = {CHAI_F32, CHAI_F16};
  int sizes[][2] = {{1, 1}, {3, 5}, {4, 16}, {7, 33}, {13, 8}, {64, 768}, {600, 301}, {2051, 96}};
  for (int d = 0; d < 2; d++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (int ep = 0; ep < 8; ep++)
        check_case(sizes[s][0], sizes[s][1], dts[d], ep & 1, ep & 2, ep & 4);
  return chai_test_finish();
}
