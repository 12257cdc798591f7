/* The format-tagged matrix (engine/src/quant/qmat.c) and the activation quantizer (qact.c):
 * packing checked against the layout formulas of chai/quant.h written out here, round trips
 * through the to_ functions, padding (rows not a multiple of 16, columns not a multiple of the
 * chunk or group), dequantized rows, byte counts, views of f32/f16 tensors, every refused input
 * with its message, and the per-token activation codes: hand-worked cases (ties to even, NaN,
 * zeros) and every SIMD level bit for bit against the scalar twin. */
#include "../../engine/src/quant/qkernels.h"
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

static const int SHAPES[][2] = {{1, 1}, {3, 5}, {16, 64}, {17, 65}, {33, 130}, {40, 200}, {5, 256}};
enum { NSHAPES = sizeof SHAPES / sizeof SHAPES[0] };

/* 64-byte aligned memory (aligned_alloc wants a multiple of the alignment). */
static void *amalloc(size_t n) {
  return aligned_alloc(64, (n + 63) / 64 * 64);
}

static int rnd(int lo, int hi) { /* inclusive */
  return lo + (int)tu_uniform(0, (float)(hi - lo + 1) - 0.001f);
}

/* ---- int8 ------------------------------------------------------------------------------------ */

static void test_int8(int R, int C) {
  int8_t *q = malloc((size_t)R * C), *q2 = malloc((size_t)R * C);
  float *s = tu_falloc((size_t)R), *s2 = tu_falloc((size_t)R), *w = tu_falloc((size_t)R * C);
  for (int i = 0; i < R * C; i++)
    q[i] = (int8_t)rnd(-127, 127);
  tu_fill(s, (size_t)R, 0.001f, 0.1f);
  chai_qmat m;
  CHECK_OK(chai_qmat_from_int8(&m, q, s, R, C));
  CHECK(m.format == CHAI_QF_INT8 && m.rows == R && m.cols == C);
  CHECK(m.rows_p == (R + 15) / 16 * 16 && m.cols_p == (C + 63) / 64 * 64);
  CHECK(chai_qmat_bytes(&m) == (size_t)m.rows_p * m.cols_p + (size_t)m.rows_p * 4);
  CHECK(((uintptr_t)m.data & 63) == 0 && ((uintptr_t)m.scales & 63) == 0);
  /* The header's formula, element by element, padding included: q + 128, and 128 (q = 0) with
   * scale 0 outside the matrix. */
  int bad = 0;
  for (int r = 0; r < m.rows_p; r++)
    for (int k = 0; k < m.cols_p; k++) {
      size_t at = ((size_t)(r / 16) * (m.cols_p / 4) + k / 4) * 64 + (r % 16) * 4 + k % 4;
      int want = r < R && k < C ? q[(size_t)r * C + k] + 128 : 128;
      bad += m.data[at] != want;
    }
  CHECK(bad == 0);
  for (int r = R; r < m.rows_p; r++)
    CHECK(((float *)m.scales)[r] == 0.0f);
  chai_qmat_to_int8(&m, q2, s2);
  CHECK(memcmp(q, q2, (size_t)R * C) == 0 && memcmp(s, s2, (size_t)R * 4) == 0);
  /* Dequantized rows: s·q; a middle range of rows lands at the start of out. */
  int r0 = R / 3, r1 = R - R / 4;
  chai_qmat_dequant_rows(&m, w, r0, r1);
  bad = 0;
  for (int r = r0; r < r1; r++)
    for (int k = 0; k < C; k++)
      bad += w[(size_t)(r - r0) * C + k] != s[r] * (float)q[(size_t)r * C + k];
  CHECK(bad == 0);
  chai_qmat_release(&m);
  chai_qmat_release(&m); /* idempotent */
  CHECK(m.storage == NULL && m.data == NULL);
  free(q), free(q2), free(s), free(s2), free(w);
}

/* ---- int4 ------------------------------------------------------------------------------------ */

static void test_int4(int R, int C, int G, bool zp, bool f16) {
  int groups = (C + G - 1) / G;
  uint8_t *u = malloc((size_t)R * C), *u2 = malloc((size_t)R * C);
  uint8_t *z = malloc((size_t)R * groups), *z2 = malloc((size_t)R * groups);
  float *s = tu_falloc((size_t)R * groups), *s2 = tu_falloc((size_t)R * groups);
  float *w = tu_falloc((size_t)R * C);
  for (int i = 0; i < R * C; i++)
    u[i] = (uint8_t)rnd(0, 15);
  for (int i = 0; i < R * groups; i++) {
    z[i] = zp ? (uint8_t)rnd(0, 15) : 8;
    s[i] = tu_uniform(-0.1f, 0.1f); /* symmetric scales may be negative (m / -8) */
    if (f16) s[i] = chai_f16_to_f32(chai_f32_to_f16(s[i]));
  }
  chai_qmat m;
  CHECK_OK(chai_qmat_from_int4(&m, u, s, zp ? z : NULL, R, C, G, zp, f16));
  CHECK(m.format == CHAI_QF_INT4 && m.group == G && m.zero_point == zp && m.f16_scales == f16);
  CHECK(m.rows_p == (R + 15) / 16 * 16 && m.cols_p == groups * G);
  size_t ng = (size_t)m.rows_p * (m.cols_p / G);
  CHECK(chai_qmat_bytes(&m) ==
        (size_t)m.rows_p * m.cols_p / 2 + ng * (f16 ? 2 : 4) + (zp ? ng : 0));
  int bad = 0;
  for (int r = 0; r < m.rows_p; r++)
    for (int k = 0; k < m.cols_p; k++) {
      size_t at = ((size_t)(r / 16) * (m.cols_p / 8) + k / 8) * 64 + (r % 16) * 4 + k % 4;
      int got = m.data[at] >> ((k % 8) >= 4 ? 4 : 0) & 15;
      /* padding holds the zero code: u = z (a real row's last group, 0 or 8 beyond the rows) */
      int want = r < R && k < C ? u[(size_t)r * C + k]
                 : r < R        ? z[(size_t)r * groups + k / G]
                 : zp           ? 0
                                : 8;
      bad += got != want;
    }
  CHECK(bad == 0);
  bad = 0;
  for (int r = 0; r < m.rows_p; r++)
    for (int g = 0; g < m.cols_p / G; g++) {
      size_t at = ((size_t)(r / 16) * (m.cols_p / G) + g) * 16 + r % 16;
      float got = f16 ? chai_f16_to_f32(((uint16_t *)m.scales)[at]) : ((float *)m.scales)[at];
      bad += got != (r < R ? s[(size_t)r * groups + g] : 0.0f);
      if (zp) bad += m.zeros[at] != (r < R ? z[(size_t)r * groups + g] : 0);
    }
  CHECK(bad == 0);
  chai_qmat_to_int4(&m, u2, s2, z2);
  CHECK(memcmp(u, u2, (size_t)R * C) == 0 && memcmp(s, s2, (size_t)R * groups * 4) == 0);
  CHECK(memcmp(z, z2, (size_t)R * groups) == 0); /* 8 everywhere when symmetric */
  chai_qmat_dequant_rows(&m, w, 0, R);
  bad = 0;
  for (int r = 0; r < R; r++)
    for (int k = 0; k < C; k++) {
      int gi = r * groups + k / G;
      bad += w[(size_t)r * C + k] != s[gi] * (float)(u[(size_t)r * C + k] - z[gi]);
    }
  CHECK(bad == 0);
  chai_qmat_release(&m);
  free(u), free(u2), free(z), free(z2), free(s), free(s2), free(w);
}

/* ---- bf16 ------------------------------------------------------------------------------------ */

static void test_bf16(int R, int C) {
  uint16_t *h = malloc((size_t)R * C * 2), *h2 = malloc((size_t)R * C * 2);
  float *w = tu_falloc((size_t)R * C);
  for (int i = 0; i < R * C; i++)
    h[i] = chai_f32_to_bf16(tu_uniform(-2, 2));
  chai_qmat m;
  CHECK_OK(chai_qmat_from_bf16(&m, h, R, C));
  CHECK(m.rows_p == (R + 15) / 16 * 16 && m.cols_p == (C + 31) / 32 * 32);
  CHECK(chai_qmat_bytes(&m) == (size_t)m.rows_p * m.cols_p * 2 && m.scales == NULL);
  const uint16_t *d = (const uint16_t *)m.data;
  int bad = 0;
  for (int r = 0; r < m.rows_p; r++)
    for (int k = 0; k < m.cols_p; k++) {
      size_t at = ((size_t)(r / 16) * (m.cols_p / 2) + k / 2) * 32 + (r % 16) * 2 + k % 2;
      bad += d[at] != (r < R && k < C ? h[(size_t)r * C + k] : 0);
    }
  CHECK(bad == 0);
  chai_qmat_to_bf16(&m, h2);
  CHECK(memcmp(h, h2, (size_t)R * C * 2) == 0);
  chai_qmat_dequant_rows(&m, w, 0, R);
  bad = 0;
  for (int i = 0; i < R * C; i++)
    bad += w[i] != chai_bf16_to_f32(h[i]);
  CHECK(bad == 0);
  chai_qmat_release(&m);
  free(h), free(h2), free(w);
}

/* ---- views of f32/f16 tensors ---------------------------------------------------------------- */

static void test_wrap(void) {
  int64_t shape[2] = {5, 7};
  chai_tensor t, h;
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, 2, shape));
  float *td = chai_tensor_data(&t);
  for (int i = 0; i < 35; i++)
    td[i] = (float)i - 17.5f;
  CHECK_OK(chai_tensor_to(&h, &t, CHAI_F16));
  chai_qmat m;
  long refs = t.storage->refs;
  CHECK_OK(chai_qmat_wrap(&m, &t));
  CHECK(m.format == CHAI_QF_F32 && m.rows == 5 && m.cols == 7 && m.rows_p == 5 && m.cols_p == 7);
  CHECK(t.storage->refs == refs + 1 && chai_qmat_bytes(&m) == 35 * 4);
  float w[35];
  chai_qmat_dequant_rows(&m, w, 1, 4);
  CHECK(memcmp(w, td + 7, 21 * 4) == 0);
  chai_qmat_release(&m);
  CHECK(t.storage->refs == refs);
  CHECK_OK(chai_qmat_wrap(&m, &h));
  CHECK(m.format == CHAI_QF_F16 && chai_qmat_bytes(&m) == 35 * 2);
  chai_qmat_dequant_rows(&m, w, 0, 5);
  CHECK(memcmp(w, td, 35 * 4) == 0); /* halves of small integers are exact */
  chai_qmat_release(&m);
  /* refused: a transposed view, a 1-D tensor, an integer dtype, a released tensor */
  chai_tensor tt, v, i32;
  CHECK_OK(chai_tensor_transpose(&tt, &t, 0, 1));
  CHECK_ERR(chai_qmat_wrap(&m, &tt), CHAI_ERR_ARG, "contiguous 2-D f32 or f16");
  CHECK(m.storage == NULL && !chai_tensor_alive(&m.t));
  int64_t flat = 35;
  CHECK_OK(chai_tensor_view(&v, &t, 1, &flat));
  CHECK_ERR(chai_qmat_wrap(&m, &v), CHAI_ERR_ARG, "(35) f32");
  CHECK_OK(chai_tensor_new(&i32, CHAI_I32, 2, shape));
  CHECK_ERR(chai_qmat_wrap(&m, &i32), CHAI_ERR_ARG, "(5,7) i32");
  chai_tensor_release(&tt), chai_tensor_release(&v), chai_tensor_release(&i32);
  chai_tensor_release(&h), chai_tensor_release(&t);
  CHECK_ERR(chai_qmat_wrap(&m, &t), CHAI_ERR_ARG, "released");
  chai_qmat_init(&m);
  CHECK(m.format == CHAI_QF_F32 && chai_qmat_bytes(&m) == 0);
  chai_qmat_release(&m);
}

/* ---- refused inputs -------------------------------------------------------------------------- */

static void test_errors(void) {
  int8_t q[8] = {1, 2, 3, 4, 5, 6, -128, 8};
  float s[4] = {1, 1, NAN, 1};
  uint8_t u[8] = {0, 1, 2, 3, 4, 5, 16, 7}, z[2] = {3, 16};
  chai_qmat m;
  CHECK_ERR(chai_qmat_from_int8(&m, q, s, 2, 4), CHAI_ERR_ARG, "code -128 at (1,2)");
  CHECK(m.storage == NULL);
  q[6] = 0;
  CHECK_ERR(chai_qmat_from_int8(&m, q, s, 4, 2), CHAI_ERR_ARG, "scale of row 2 is nan");
  CHECK_ERR(chai_qmat_from_int8(&m, q, s, 0, 4), CHAI_ERR_ARG, "shape (0,4)");
  CHECK_ERR(chai_qmat_from_int8(&m, q, s, 1, CHAI_QMAT_MAX_COLS + 1), CHAI_ERR_ARG,
            "131073 columns");
  float s1[2] = {1, 1};
  CHECK_ERR(chai_qmat_from_int4(&m, u, s1, NULL, 2, 4, 48, false, false), CHAI_ERR_ARG, "group 48");
  CHECK_ERR(chai_qmat_from_int4(&m, u, s1, NULL, 2, 4, 32, false, false), CHAI_ERR_ARG,
            "code 16 at (1,2)");
  u[6] = 6;
  CHECK_ERR(chai_qmat_from_int4(&m, u, s1, NULL, 2, 4, 32, true, false), CHAI_ERR_ARG,
            "zero points asked for but none given");
  CHECK_ERR(chai_qmat_from_int4(&m, u, s1, z, 2, 4, 32, true, false), CHAI_ERR_ARG,
            "zero point 16 at row 1 group 0");
  float big[2] = {1, 1e6f};
  CHECK_ERR(chai_qmat_from_int4(&m, u, big, NULL, 2, 4, 32, false, true), CHAI_ERR_ARG,
            "row 1 group 0 is 1e+06 (beyond f16)");
  float inf[2] = {INFINITY, 1};
  CHECK_ERR(chai_qmat_from_int4(&m, u, inf, NULL, 2, 4, 32, false, false), CHAI_ERR_ARG,
            "row 0 group 0 is inf");
  uint16_t h[4] = {0x3f80, 0x7f80, 0, 0};
  CHECK_ERR(chai_qmat_from_bf16(&m, h, 2, 2), CHAI_ERR_ARG, "Inf at (0,1)");
  h[1] = 0x7fc1;
  CHECK_ERR(chai_qmat_from_bf16(&m, h, 2, 2), CHAI_ERR_ARG, "NaN at (0,1)");
  /* an allocation that fails leaves the matrix released */
  h[1] = 0;
  chai_alloc_fail_after(1);
  CHECK_ERR(chai_qmat_from_bf16(&m, h, 2, 2), CHAI_ERR_NOMEM, "bf16 matrix (2,2)");
  chai_alloc_fail_after(0);
  CHECK(m.storage == NULL && m.data == NULL);
}

/* ---- activations ----------------------------------------------------------------------------- */

static bool qact_equal(const chai_qact *a, const chai_qact *b, bool bf16) {
  size_t n = (size_t)a->N, s = (size_t)a->stride;
  bool ok = a->N == b->N && a->C == b->C && a->stride == b->stride &&
            memcmp(a->q, b->q, n * s) == 0 && memcmp(a->scale, b->scale, n * 4) == 0 &&
            memcmp(a->gsum, b->gsum, n * (s / 32) * 4) == 0 && memcmp(a->sum, b->sum, n * 4) == 0;
  for (size_t i = 0; i < n; i++) { /* sum is the total of the block sums */
    int32_t t = 0;
    for (size_t j = 0; j < s / 32; j++)
      t += a->gsum[i * (s / 32) + j];
    ok = ok && t == a->sum[i];
  }
  return ok && (!bf16 || memcmp(a->bf, b->bf, n * s * 2) == 0);
}

static void test_qact_cases(void) {
  /* amax 127: sx = 1; 63.5 and 2.5 and -1.5 and 0.5 are ties, to even */
  float x[2][6] = {{127, 63.5f, -1.5f, 0.5f, 2.5f, -127}, {0, -0.0f, NAN, 0, 0, 0}};
  void *mem = amalloc(chai_qact_bytes(2, 6, true));
  chai_qact a;
  chai_qact_quantize_ref(&a, mem, &x[0][0], 2, 6, true);
  CHECK(a.N == 2 && a.C == 6 && a.stride == 128);
  int8_t want[6] = {127, 64, -2, 0, 2, -127};
  CHECK(memcmp(a.q, want, 6) == 0 && a.scale[0] == 1.0f);
  CHECK(a.gsum[0] == 64 && a.gsum[1] == 0 && a.gsum[3] == 0 && a.sum[0] == 64 && a.sum[1] == 0);
  for (int k = 6; k < 128; k++)
    CHECK(a.q[k] == 0 && a.bf[k] == 0);
  CHECK(a.bf[1] == chai_f32_to_bf16(63.5f));
  /* all zero (and a NaN, skipped by the maximum): scale 0, codes 0; so is a token of tiny values
   * (127 / amax would overflow) */
  CHECK(a.scale[1] == 0.0f && a.gsum[4] == 0);
  for (int k = 0; k < 128; k++)
    CHECK(a.q[128 + k] == 0);
  /* a NaN among real values quantizes to -127, and is skipped by the maximum */
  float tiny[3] = {1e-31f, -2e-31f, 0};
  for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AMX; lvl++) {
    if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
    chai_qact_quantize(&a, mem, tiny, 1, 3, false);
    CHECK(a.scale[0] == 0 && a.q[0] == 0 && a.q[1] == 0 && a.sum[0] == 0);
  }
  chai_simd_force(chai_simd_best());
  float y[4] = {-127, NAN, -63.5f, 0.9f};
  chai_qact_quantize_ref(&a, mem, y, 1, 4, false);
  CHECK(a.scale[0] == 1.0f && a.q[0] == -127 && a.q[1] == -127 && a.q[2] == -64 && a.q[3] == 1);
  CHECK(a.bf == NULL && chai_qact_bytes(1, 4, false) < chai_qact_bytes(1, 4, true));
  free(mem);
}

static void test_qact_levels(void) {
  int Ns[] = {1, 3, 17}, Cs[] = {1, 7, 31, 32, 100, 129, 768};
  for (size_t ci = 0; ci < sizeof Cs / sizeof Cs[0]; ci++)
    for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
      int N = Ns[ni], C = Cs[ci];
      float *x = tu_falloc((size_t)N * C);
      tu_fill(x, (size_t)N * C, -3, 3);
      if (N * C > 5) x[3] = NAN, x[4] = 1e-40f, x[5] = -0.0f; /* NaN, a subnormal, -0 */
      if (N > 1)
        for (int k = 0; k < C; k++)
          x[C + k] = 0; /* an all-zero token */
      size_t bytes = chai_qact_bytes(N, C, true);
      void *m1 = amalloc(bytes), *m2 = amalloc(bytes);
      memset(m1, 0xAB, bytes), memset(m2, 0xCD, bytes);
      chai_qact a, b;
      chai_qact_quantize_ref(&a, m1, x, N, C, true);
      for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AMX; lvl++) {
        if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
        chai_qact_quantize(&b, m2, x, N, C, true);
        CHECK(qact_equal(&a, &b, true));
      }
      chai_simd_force(chai_simd_best());
      free(x), free(m1), free(m2);
    }
}

int main(void) {
  tu_seed(11);
  for (int i = 0; i < NSHAPES; i++) {
    test_int8(SHAPES[i][0], SHAPES[i][1]);
    test_bf16(SHAPES[i][0], SHAPES[i][1]);
    int groups[3] = {32, 64, 128};
    for (int g = 0; g < 3; g++)
      for (int v = 0; v < 4; v++)
        test_int4(SHAPES[i][0], SHAPES[i][1], groups[g], v & 1, v & 2);
  }
  test_wrap();
  test_errors();
  test_qact_cases();
  test_qact_levels();
  return chai_test_finish();
}
