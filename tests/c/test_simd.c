/* Every vectorised kernel against its scalar _ref twin at every SIMD level this CPU has, on odd
 * lengths (tails), plus the vector exp against expf and the f16/bf16 converters bit for bit. */
#include "../../engine/src/kernels/kernels.h"
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

static const size_t LENS[] = {1, 7, 33, 1000};
enum { NL = sizeof LENS / sizeof LENS[0], MAXN = 1000 };

static bool bits_equal(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * 4) == 0;
}

static void test_elementwise(chai_simd lvl) {
  float a[MAXN + 1], b[MAXN + 1], r1[MAXN + 1], r2[MAXN + 1];
  for (int li = 0; li < NL; li++) {
    size_t n = LENS[li];
    tu_fill(a, n + 1, -3, 3), tu_fill(b, n + 1, -3, 3);
    a[0] = NAN, a[n > 1 ? 1 : 0] = -0.0f;
    /* a sentinel past the end must survive (tails never write beyond n) */
    r2[n] = r1[n] = 12345.0f;
    chai_simd_force(lvl);
    chai_add_forward(r1, a, b, n);
    chai_add_forward_ref(r2, a, b, n);
    CHECK(bits_equal(r1, r2, n + 1));
    chai_mul_forward(r1, a, b, n);
    chai_mul_forward_ref(r2, a, b, n);
    CHECK(bits_equal(r1, r2, n + 1));
    chai_scale_forward(r1, a, -0.37f, n);
    chai_scale_forward_ref(r2, a, -0.37f, n);
    CHECK(bits_equal(r1, r2, n + 1));
    chai_relu_forward(r1, a, n);
    chai_relu_forward_ref(r2, a, n);
    CHECK(bits_equal(r1, r2, n + 1));
    /* axpy: FMA rounds once, the ref twice, so allow one rounding of the result */
    memcpy(r1, b, (n + 1) * 4), memcpy(r2, b, (n + 1) * 4);
    chai_axpy(r1 + 1, 0.37f, a + 1, n - 1);
    chai_axpy_ref(r2 + 1, 0.37f, a + 1, n - 1);
    CHECK(chai_test_max_abs_diff_f(r1, r2, n + 1) <= 1e-6); /* |y| < 5: 1 ulp < 5e-7 */
    CHECK(r1[n] == b[n]);
  }
}

static void test_layernorm(chai_simd lvl) {
  static float x[3 * MAXN], w[MAXN], b[MAXN], o1[3 * MAXN], o2[3 * MAXN];
  for (int li = 0; li < NL; li++) {
    int C = (int)LENS[li];
    float m1[3], m2[3], r1[3], r2[3];
    tu_fill(x, 3 * C, -2, 4), tu_fill(w, C, -1, 1), tu_fill(b, C, -1, 1);
    chai_simd_force(lvl);
    chai_layernorm_forward(o1, m1, r1, x, w, b, 3, C, 1e-5f);
    chai_layernorm_forward_ref(o2, m2, r2, x, w, b, 3, C, 1e-5f);
    CHECK(chai_test_max_abs_diff_f(o1, o2, 3 * C) < 2e-5);
    CHECK(chai_test_max_abs_diff_f(m1, m2, 3) < 1e-6);
    CHECK(chai_test_max_abs_diff_f(r1, r2, 3) < 1e-5 * r2[0]);
    chai_layernorm_forward(o1, NULL, NULL, x, NULL, NULL, 3, C, 1e-5f);
    chai_layernorm_forward_ref(o2, NULL, NULL, x, NULL, NULL, 3, C, 1e-5f);
    CHECK(chai_test_max_abs_diff_f(o1, o2, 3 * C) < 2e-5);
  }
}

static void test_softmax(chai_simd lvl) {
  static float x[MAXN + 1], o1[MAXN + 1], o2[MAXN + 1];
  for (int li = 0; li < NL; li++) {
    int n = (int)LENS[li];
    tu_fill(x, n, -30, 30);
    if (n > 3) x[3] = -INFINITY;
    o1[n] = o2[n] = 7.0f;
    chai_simd_force(lvl);
    chai_softmax_forward(o1, x, 1, n);
    chai_simd_force(CHAI_SIMD_REF);
    chai_softmax_forward(o2, x, 1, n);
    double worst = 0;
    for (int i = 0; i < n; i++)
      worst = fmax(worst, fabs(o1[i] - o2[i]) / fmax(o2[i], 1e-30));
    CHECK(worst < 2e-6 || chai_test_max_abs_diff_f(o1, o2, n) < 1e-12);
    CHECK(o1[n] == 7.0f && (n <= 3 || o1[3] == 0));
  }
}

/* Row reductions: max exactly (NaN skipped, -inf kept), Σexp and y += a·exp within float
 * rounding of the per-term exp. */
static void test_rowexp(chai_simd lvl) {
  static float x[MAXN + 1], y1[MAXN + 1], y2[MAXN + 1];
  for (int li = 0; li < NL; li++) {
    size_t n = LENS[li];
    tu_fill(x, n, -20, 5);
    if (n > 1) x[n / 2] = -INFINITY;
    if (n > 2) x[1] = NAN;
    x[n] = 1000; /* beyond the end: must not be read into the max */
    chai_simd_force(lvl);
    float m1 = chai_max(x, n);
    CHECK(m1 == chai_max_ref(x, n));
    if (n > 2) x[1] = -1;
    double s1 = chai_sumexp(x, m1, n), s2 = chai_sumexp_ref(x, m1, n);
    CHECK(fabs(s1 - s2) <= 3e-7 * s2);
    tu_fill(y1, n + 1, -1, 1);
    memcpy(y2, y1, (n + 1) * 4);
    chai_expaxpy(y1, 0.7f, x, m1, n);
    chai_expaxpy_ref(y2, 0.7f, x, m1, n);
    CHECK(chai_test_max_abs_diff_f(y1, y2, n + 1) <= 5e-7);
    CHECK(y1[n] == y2[n]);
  }
  CHECK(chai_max(x, 0) == -INFINITY && chai_sumexp(x, 0, 0) == 0);
}

/* argmax: the first of tied maxima, NaNs passed over, 0 when every value is NaN. */
static void test_argmax(chai_simd lvl) {
  static float x[MAXN + 1];
  chai_simd_force(lvl);
  for (int li = 0; li < NL; li++) {
    size_t n = LENS[li];
    tu_fill(x, n, -20, 5);
    x[n] = 1000; /* beyond the end */
    size_t want = 0;
    for (size_t i = 1; i < n; i++)
      if (x[i] > x[want]) want = i;
    CHECK(chai_argmax(x, n) == want);
    if (n > 2) {
      x[n - 1] = x[n - 2] = 9; /* a tie: the first wins */
      x[0] = NAN;
      CHECK(chai_argmax(x, n) == n - 2);
    }
  }
  float nan3[3] = {NAN, NAN, NAN}, ninf[3] = {NAN, -INFINITY, -INFINITY};
  CHECK(chai_argmax(nan3, 3) == 0);
  CHECK(chai_argmax(ninf, 3) == 1);
}

/* The decode-attention row kernels against their twins: D with and without a vector tail, heads
 * chosen out of order of the row (a subset, as a thread's share or a cluster's representatives),
 * probabilities of 0 (those rows unread), and o's other heads untouched. */
static void test_attn_rows(chai_simd lvl) {
  enum { H = 5, N = 37, MAXD = 80 };
  static float q[H * MAXD], kv[N * H * MAXD], p[3 * N], s1[3 * N], s2[3 * N];
  static float o1[H * MAXD], o2[H * MAXD];
  const int Ds[] = {16, 20, 64, 80, 7};
  const int heads[3] = {1, 2, 4}, prow[3] = {0, 2, 1};
  for (int di = 0; di < 5; di++) {
    int D = Ds[di];
    size_t ts = (size_t)H * D;
    tu_fill(q, (size_t)H * D, -1, 1), tu_fill(kv, N * ts, -2, 2);
    chai_simd_force(lvl);
    chai_attn_scores(s1, N, q, kv, ts, heads, 3, N, D, 0.125f);
    chai_attn_scores_ref(s2, N, q, kv, ts, heads, 3, N, D, 0.125f);
    CHECK(chai_test_max_abs_diff_f(s1, s2, 3 * N) <= 1e-5);
    tu_fill(p, 3 * N, 0, 0.1f);
    p[0] = p[N + 5] = p[2 * N + N - 1] = 0;
    for (int i = 0; i < H * D; i++)
      o1[i] = o2[i] = 42.0f;
    chai_attn_values(o1, p, N, prow, heads, 3, kv, ts, N, D);
    chai_attn_values_ref(o2, p, N, prow, heads, 3, kv, ts, N, D);
    CHECK(chai_test_max_abs_diff_f(o1, o2, (size_t)H * D) <= 1e-5);
    CHECK(o1[0] == 42.0f && o1[3 * D] == 42.0f); /* heads 0 and 3 are not in the list */
  }
  /* a row whose probability is 0 is never read: a NaN there stays out */
  int head0 = 0;
  float pv[2] = {1, 0}, vv[2 * 16], ov[16];
  for (int i = 0; i < 16; i++)
    vv[i] = 0.5f, vv[16 + i] = NAN;
  chai_simd_force(lvl);
  chai_attn_values(ov, pv, 2, &head0, &head0, 1, vv, 16, 2, 16);
  CHECK(ov[0] == 0.5f && ov[15] == 0.5f);
}

/* The vector exp against expf: relative error <= 3e-7 (about 2.5 ulp) across its range, exact
 * 1 at 0, 0 at -inf, inf at +inf and beyond 88.8, and tiny (< 1.2e-38) where expf is subnormal. */
static void test_exp(chai_simd lvl) {
  enum { M = 20001 };
  static float x[M], y[M];
  for (int i = 0; i < M; i++)
    x[i] = -87.3f + (88.7f + 87.3f) * (float)i / (M - 1);
  if (lvl == CHAI_SIMD_AVX2)
    chai_exp_avx2(y, x, M);
  else
    chai_exp_avx512(y, x, M);
  double worst = 0;
  for (int i = 0; i < M; i++)
    worst = fmax(worst, fabs((double)y[i] - expf(x[i])) / expf(x[i]));
  printf("exp %s: max relative error vs expf over [-87.3, 88.7] = %.3g\n", chai_simd_name(lvl),
         worst);
  CHECK(worst <= 3e-7);
  float sp[7] = {0, -INFINITY, INFINITY, 89.0f, -88.0f, -100.0f, NAN}, sy[7];
  if (lvl == CHAI_SIMD_AVX2)
    chai_exp_avx2(sy, sp, 7);
  else
    chai_exp_avx512(sy, sp, 7);
  CHECK(sy[0] == 1.0f && sy[1] == 0.0f && isinf(sy[2]) && isinf(sy[3]));
  CHECK(sy[4] < 1.2e-38f && sy[5] < 1.2e-38f && sy[4] >= 0 && sy[5] >= 0 && isnan(sy[6]));
}

/* All 65536 half patterns widen identically; f32 -> half narrowing on specials, every f16
 * boundary region and random bit patterns gives identical bits. */
static void test_half(chai_simd lvl) {
  enum { H = 65536, R = 100003 };
  static uint16_t h[H];
  static float f1[H], f2[H], rf[R];
  static uint16_t n1[R], n2[R];
  for (int i = 0; i < H; i++)
    h[i] = (uint16_t)i;
  chai_simd_force(lvl);
  chai_f16_to_f32_array(f1, h, H);
  chai_f16_to_f32_array_ref(f2, h, H);
  CHECK(memcmp(f1, f2, sizeof f1) == 0);
  chai_bf16_to_f32_array(f1, h, H);
  chai_bf16_to_f32_array_ref(f2, h, H);
  CHECK(memcmp(f1, f2, sizeof f1) == 0);
  /* narrowing: random bits (every exponent, NaNs, subnormals), then values at f16 rounding ties */
  uint32_t s = 12345;
  for (int i = 0; i < R; i++) {
    s = s * 1664525u + 1013904223u;
    uint32_t bits = s;
    if (i % 3 == 1) bits = (bits & 0x8fffffffu) | 0x30000000u; /* near f16's range */
    if (i % 7 == 2) bits = (bits & 0xffffe000u) | 0x1000u;     /* exact f16 ties */
    memcpy(&rf[i], &bits, 4);
  }
  float specials[8] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 65504.0f, 65520.0f, 5.96e-8f};
  memcpy(rf, specials, sizeof specials);
  for (int li = 0; li < NL; li++) { /* tails at the odd lengths, then everything */
    size_t n = LENS[li];
    chai_f32_to_f16_array(n1, rf + 9, n);
    chai_f32_to_f16_array_ref(n2, rf + 9, n);
    CHECK(memcmp(n1, n2, n * 2) == 0);
  }
  chai_f32_to_f16_array(n1, rf, R);
  chai_f32_to_f16_array_ref(n2, rf, R);
  CHECK(memcmp(n1, n2, sizeof n1) == 0);
  chai_f32_to_bf16_array(n1, rf, R);
  chai_f32_to_bf16_array_ref(n2, rf, R);
  CHECK(memcmp(n1, n2, sizeof n1) == 0);
}

int main(void) {
  CHECK_OK(chai_blas_init());
  printf("cpu: %s\n", chai_cpu_features());
  for (int l = CHAI_SIMD_REF; l <= CHAI_SIMD_AVX512; l++) {
    chai_simd lvl = (chai_simd)l;
    if (chai_simd_force(lvl) != lvl) {
      printf("level %s: not on this CPU, skipped\n", chai_simd_name(lvl));
      continue;
    }
    printf("level %s\n", chai_simd_name(lvl));
    test_elementwise(lvl);
    test_layernorm(lvl);
    test_softmax(lvl);
    test_rowexp(lvl);
    test_argmax(lvl);
    test_attn_rows(lvl);
    test_half(lvl);
    if (lvl != CHAI_SIMD_REF) test_exp(lvl);
  }
  return chai_test_finish();
}
