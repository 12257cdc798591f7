/* Quantized codes (chai/quant.h section 1) against the NumPy oracle in tests/fixtures/quant (codes,
 * scales, zeros and dequantized values bit for bit, every int4 variant, RTN and MSE), round-trip
 * error bounds, MSE never worse than RTN, rows alone or in a matrix and any thread count giving the
 * same bits, and the refusals (NaN/Inf naming the element, bad sizes and groups, f16 overflow). */
#include <float.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/chai.h"
#include "chai/npy.h"
#include "chai/quant.h"
#include "check.h"

typedef struct fixture {
  chai_tensor t;
  int R, C;
  const float *x;
} fixture;

static bool load(fixture *f, const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/quant/%s.npy", CHAI_TEST_FIXTURES, name);
  chai_status st = chai_npy_load(&f->t, path);
  CHECK_OK(st);
  if (st) return false;
  f->R = (int)f->t.shape[0];
  f->C = (int)f->t.shape[1];
  f->x = chai_tensor_data(&f->t);
  return true;
}

/* Counts mismatches between C results and the oracle row r (bit-exact, -0 == 0). */
static int mismatches = 0;
static void expect_eq(float got, float want, const char *what, const char *tag, int r, int c) {
  if (got == want) return;
  if (mismatches++ < 10)
    fprintf(stderr, "%s: %s mismatch at (%d, %d): got %.9g, want %.9g\n", tag, what, r, c,
            (double)got, (double)want);
}

static void check_int8(const fixture *w, const char *in, chai_qmethod method) {
  char tag[128];
  snprintf(tag, sizeof tag, "%s_int8_%s", in, method == CHAI_QM_MSE ? "mse" : "rtn");
  fixture o;
  if (!load(&o, tag)) return;
  int R = w->R, C = w->C;
  CHECK(o.R == R && o.C == 2 * C + 1);
  int8_t *q = malloc((size_t)R * C);
  float *s = malloc(sizeof(float) * R), *deq = malloc(sizeof(float) * R * C);
  int before = mismatches;
  CHECK_OK(chai_quant_int8_codes(q, s, w->x, R, C, method, tag));
  chai_dequant_int8_codes(deq, q, s, R, C);
  for (int r = 0; r < R; r++) {
    const float *want = o.x + (size_t)r * o.C;
    for (int c = 0; c < C; c++) {
      expect_eq((float)q[(size_t)r * C + c], want[c], "code", tag, r, c);
      expect_eq(deq[(size_t)r * C + c], want[C + 1 + c], "dequantized", tag, r, c);
    }
    expect_eq(s[r], want[C], "scale", tag, r, C);
  }
  CHECK(mismatches == before);
  /* RTN: each element within s/2 (plus float rounding), where s is a normal float. */
  if (method == CHAI_QM_RTN)
    for (int r = 0; r < R; r++) {
      if (s[r] < FLT_MIN) continue;
      double worst = 0;
      for (int c = 0; c < C; c++) {
        double e = fabs((double)w->x[(size_t)r * C + c] - deq[(size_t)r * C + c]);
        worst = e > worst ? e : worst;
      }
      CHECK(worst <= 0.50002 * s[r]);
    }
  free(q);
  free(s);
  free(deq);
  chai_tensor_release(&o.t);
}

/* Σ (w − d)² of one group, as the header defines E. */
static double group_err(const float *w, const float *d, int n) {
  double e = 0;
  for (int k = 0; k < n; k++) {
    double diff = (double)w[k] - (double)d[k];
    e += diff * diff;
  }
  return e;
}

typedef struct int4_out {
  uint8_t *u, *z;
  float *s, *deq;
} int4_out;

static void int4_run(int4_out *o, const float *w, int R, int C, int G, bool zp, bool f16,
                     chai_qmethod method, const char *what) {
  int ng = (C + G - 1) / G;
  o->u = malloc((size_t)R * C);
  o->z = malloc((size_t)R * ng);
  o->s = malloc(sizeof(float) * R * ng);
  o->deq = malloc(sizeof(float) * R * C);
  memset(o->z, 0xee, (size_t)R * ng);
  CHECK_OK(chai_quant_int4_codes(o->u, o->s, o->z, w, R, C, G, zp, f16, method, what));
  chai_dequant_int4_codes(o->deq, o->u, o->s, o->z, R, C, G);
}

static void int4_free(int4_out *o) {
  free(o->u);
  free(o->z);
  free(o->s);
  free(o->deq);
}

static void check_int4(const fixture *w, const char *in, int G, bool zp, bool f16) {
  int R = w->R, C = w->C, ng = (C + G - 1) / G;
  int4_out res[2];
  for (int m = 0; m < 2; m++) {
    char tag[128];
    snprintf(tag, sizeof tag, "%s_int4_%s_g%d_%s_%s", in, zp ? "zp" : "sym", G, f16 ? "f16" : "f32",
             m ? "mse" : "rtn");
    fixture o;
    if (!load(&o, tag)) return;
    CHECK(o.R == R && o.C == 2 * C + 2 * ng);
    int4_out *x = &res[m];
    int4_run(x, w->x, R, C, G, zp, f16, m ? CHAI_QM_MSE : CHAI_QM_RTN, tag);
    int before = mismatches;
    for (int r = 0; r < R; r++) {
      const float *want = o.x + (size_t)r * o.C;
      for (int c = 0; c < C; c++) {
        expect_eq((float)x->u[(size_t)r * C + c], want[c], "code", tag, r, c);
        expect_eq(x->deq[(size_t)r * C + c], want[C + 2 * ng + c], "dequantized", tag, r, c);
      }
      for (int g = 0; g < ng; g++) {
        expect_eq(x->s[(size_t)r * ng + g], want[C + g], "scale", tag, r, g);
        expect_eq((float)x->z[(size_t)r * ng + g], want[C + ng + g], "zero", tag, r, g);
      }
    }
    CHECK(mismatches == before);
    chai_tensor_release(&o.t);
  }
  /* RTN bounds per element, for scales in the normal range of their storage; MSE's E <= RTN's per
   * group. */
  float smin = f16 ? 6.103515625e-05f : FLT_MIN;
  double tol = f16 ? 0.51 : 0.50002;
  for (int r = 0; r < R; r++)
    for (int g = 0; g < ng; g++) {
      int c0 = g * G, n = C - c0 < G ? C - c0 : G;
      size_t at = (size_t)r * C + c0;
      float s = fabsf(res[0].s[(size_t)r * ng + g]);
      if (s >= smin) {
        bool ok = true;
        for (int k = 0; k < n; k++) {
          double e = fabs((double)w->x[at + k] - res[0].deq[at + k]);
          /* symmetric: the opposite extreme beyond 7.5·|s| clamps to 7 (Q4_0's rule) */
          double bound =
              (!zp && w->x[at + k] / res[0].s[(size_t)r * ng + g] > 7.5f) ? 1.00002 : tol;
          ok &= e <= bound * s;
        }
        CHECK(ok);
      }
      CHECK(group_err(w->x + at, res[1].deq + at, n) <= group_err(w->x + at, res[0].deq + at, n));
    }
  int4_free(&res[0]);
  int4_free(&res[1]);
}

static void test_fixtures(void) {
  fixture w, huge;
  if (!load(&w, "w") || !load(&huge, "w_huge")) return;
  for (int m = 0; m < 2; m++) {
    check_int8(&w, "w", m ? CHAI_QM_MSE : CHAI_QM_RTN);
    check_int8(&huge, "w_huge", m ? CHAI_QM_MSE : CHAI_QM_RTN);
  }
  int groups[3] = {32, 64, 128};
  for (int gi = 0; gi < 3; gi++)
    for (int zp = 0; zp < 2; zp++) {
      for (int f16 = 0; f16 < 2; f16++)
        check_int4(&w, "w", groups[gi], zp, f16);
      check_int4(&huge, "w_huge", groups[gi], zp, false);
    }
  /* The oracle's outlier row (7) is where clipping pays: MSE lowers int4's error there. */
  int4_out rtn, mse;
  const float *row7 = w.x + (size_t)7 * w.C;
  int4_run(&rtn, row7, 1, w.C, 32, false, false, CHAI_QM_RTN, "row 7");
  int4_run(&mse, row7, 1, w.C, 32, false, false, CHAI_QM_MSE, "row 7");
  CHECK(group_err(row7, mse.deq, w.C) < group_err(row7, rtn.deq, w.C));
  int4_free(&rtn);
  int4_free(&mse);
  /* R = 1: each row alone gives the same bits as in the matrix. */
  int C = w.C;
  int4_out all, one;
  int4_run(&all, w.x, w.R, C, 32, true, true, CHAI_QM_MSE, "all");
  int ng = (C + 31) / 32;
  bool same = true;
  for (int r = 0; r < w.R; r++) {
    int4_run(&one, w.x + (size_t)r * C, 1, C, 32, true, true, CHAI_QM_MSE, "one");
    same &= memcmp(one.u, all.u + (size_t)r * C, (size_t)C) == 0 &&
            memcmp(one.s, all.s + (size_t)r * ng, sizeof(float) * ng) == 0 &&
            memcmp(one.z, all.z + (size_t)r * ng, (size_t)ng) == 0;
    int4_free(&one);
  }
  CHECK(same);
  int4_free(&all);
  chai_tensor_release(&w.t);
  chai_tensor_release(&huge.t);
}

/* A matrix big enough for the rows to run in parallel gives the same bits on 1 and 2 threads. */
static void test_threads(void) {
  int R = 96, C = 200, ng = (C + 63) / 64;
  float *w = malloc(sizeof(float) * R * C);
  chai_rng rng;
  chai_rng_init(&rng, 5);
  chai_rng_fill_normal(&rng, w, (size_t)R * C, 0, 1);
  int8_t *q[2];
  float *s8[2];
  int4_out o4[2];
  int saved = omp_get_max_threads();
  for (int t = 0; t < 2; t++) {
    omp_set_num_threads(t + 1);
    q[t] = malloc((size_t)R * C);
    s8[t] = malloc(sizeof(float) * R);
    CHECK_OK(chai_quant_int8_codes(q[t], s8[t], w, R, C, CHAI_QM_MSE, "threads"));
    int4_run(&o4[t], w, R, C, 64, false, true, CHAI_QM_MSE, "threads");
  }
  omp_set_num_threads(saved);
  CHECK(memcmp(q[0], q[1], (size_t)R * C) == 0);
  CHECK(memcmp(s8[0], s8[1], sizeof(float) * R) == 0);
  CHECK(memcmp(o4[0].u, o4[1].u, (size_t)R * C) == 0);
  CHECK(memcmp(o4[0].s, o4[1].s, sizeof(float) * R * ng) == 0);
  for (int t = 0; t < 2; t++) {
    free(q[t]);
    free(s8[t]);
    int4_free(&o4[t]);
  }
  free(w);
}

static void test_errors(void) {
  enum { R = 3, C = 70 };
  float w[R * C];
  for (int i = 0; i < R * C; i++)
    w[i] = (float)(i % 13) - 6.0f;
  int8_t q[R * C];
  uint8_t u[R * C], z[R * 3];
  float s[R * 3];
  w[2 * C + 5] = NAN;
  CHECK_ERR(chai_quant_int8_codes(q, s, w, R, C, CHAI_QM_RTN, "layers.1.fc1"), CHAI_ERR_ARG,
            "layers.1.fc1: NaN at (row 2, column 5)");
  CHECK_ERR(chai_quant_int4_codes(u, s, z, w, R, C, 32, false, false, CHAI_QM_MSE, "emb"),
            CHAI_ERR_ARG, "emb: NaN at (row 2, column 5)");
  w[1 * C + 69] = -INFINITY;
  CHECK_ERR(chai_quant_int8_codes(q, s, w, R, C, CHAI_QM_MSE, "k_proj"), CHAI_ERR_ARG,
            "k_proj: Inf at (row 1, column 69)");
  w[1 * C + 69] = 1;
  w[2 * C + 5] = 1;
  CHECK_ERR(chai_quant_int8_codes(q, s, w, 0, C, CHAI_QM_RTN, "m"), CHAI_ERR_ARG, "0 x 70");
  CHECK_ERR(chai_quant_int8_codes(q, s, w, R, -1, CHAI_QM_RTN, "m"), CHAI_ERR_ARG, "3 x -1");
  CHECK_ERR(chai_quant_int8_codes(NULL, s, w, R, C, CHAI_QM_RTN, "m"), CHAI_ERR_ARG, "NULL");
  CHECK_ERR(chai_quant_int8_codes(q, s, w, R, C, (chai_qmethod)7, "m"), CHAI_ERR_ARG, "method 7");
  CHECK_ERR(chai_quant_int4_codes(u, s, z, w, R, C, 48, false, false, CHAI_QM_RTN, "m"),
            CHAI_ERR_ARG, "group must be 32, 64 or 128, got 48");
  CHECK_ERR(chai_quant_int4_codes(u, s, z, w, R, C, 0, false, false, CHAI_QM_RTN, "m"),
            CHAI_ERR_ARG, "got 0");
  CHECK_ERR(chai_quant_int4_codes(u, s, NULL, w, R, C, 32, true, false, CHAI_QM_RTN, "m"),
            CHAI_ERR_ARG, "zero buffer");
  /* symmetric without a zero buffer is fine */
  CHECK_OK(chai_quant_int4_codes(u, s, NULL, w, R, C, 32, false, false, CHAI_QM_RTN, "m"));
  /* f16 overflow: |m| = 524160 gives s = -65520, which rounds to Inf; 524152 gives 65519 -> 65504.
   */
  w[1 * C + 40] = 524160.0f;
  CHECK_ERR(chai_quant_int4_codes(u, s, z, w, R, C, 32, false, true, CHAI_QM_MSE, "out_proj"),
            CHAI_ERR_ARG, "out_proj: int4 scale -65520 of row 1, group 1 (columns 32..63)");
  CHECK_OK(chai_quant_int4_codes(u, s, z, w, R, C, 32, false, false, CHAI_QM_MSE, "out_proj"));
  w[1 * C + 40] = 524152.0f;
  CHECK_OK(chai_quant_int4_codes(u, s, z, w, R, C, 32, false, true, CHAI_QM_RTN, "out_proj"));
  CHECK(s[1 * 3 + 1] == -65504.0f);
  /* zero point: the range hi - lo = 982800 gives 65520 */
  w[1 * C + 40] = 982800.0f;
  CHECK_ERR(chai_quant_int4_codes(u, s, z, w, R, C, 64, true, true, CHAI_QM_RTN, "fc2"),
            CHAI_ERR_ARG, "fc2: int4 scale 65520.4 of row 1, group 0 (columns 0..63)");
  /* the first bad group in row-major order is named, whatever thread found it */
  w[2 * C + 69] = 1e7f;
  CHECK_ERR(chai_quant_int4_codes(u, s, z, w, R, C, 64, true, true, CHAI_QM_RTN, "fc2"),
            CHAI_ERR_ARG, "row 1, group 0");
}

/* Values at float's ends: FLT_MAX stays finite through int8 and symmetric int4 (the zero-point
 * grid that would pass it is refused above); subnormal rows keep finite codes. */
static void test_extremes(void) {
  enum { C = 40 };
  float w[2 * C];
  for (int c = 0; c < C; c++) {
    w[c] = (float)(c - 20) * 1e36f;
    w[C + c] = (float)(c - 20) * 1e-44f;
  }
  w[3] = FLT_MAX;
  w[9] = -FLT_MAX;
  int8_t q[2 * C];
  uint8_t u[2 * C];
  float s[4], deq[2 * C];
  bool finite = true;
  CHECK_OK(chai_quant_int8_codes(q, s, w, 2, C, CHAI_QM_MSE, "extremes"));
  chai_dequant_int8_codes(deq, q, s, 2, C);
  for (int i = 0; i < 2 * C; i++)
    finite &= isfinite(deq[i]);
  CHECK(q[3] == 127 && q[9] == -127 && deq[3] <= FLT_MAX);
  CHECK_OK(chai_quant_int4_codes(u, s, NULL, w, 2, C, 32, false, false, CHAI_QM_RTN, "extremes"));
  chai_dequant_int4_codes(deq, u, s, NULL, 2, C, 32);
  for (int i = 0; i < 2 * C; i++)
    finite &= isfinite(deq[i]);
  CHECK(u[3] == 0 && deq[3] == FLT_MAX && u[9] == 15); /* m = FLT_MAX maps to -8 */
  CHECK(finite);
  /* a zero point on [-3.4e38, 1.1e37]: s = 2.34e37, z = 15, and 15·s passes FLT_MAX */
  uint8_t z[4];
  w[3] = -3.4e38f;
  w[9] = 1e37f;
  CHECK_ERR(chai_quant_int4_codes(u, s, z, w, 2, C, 32, true, false, CHAI_QM_MSE, "lm_head"),
            CHAI_ERR_ARG, "lm_head: int4 row 0, group 0 (columns 0..31) spans -3.4e+38..1.1e+37");
}

static void test_names(void) {
  for (int f = 0; f < CHAI_QF_COUNT; f++) {
    chai_qformat back = CHAI_QF_COUNT;
    CHECK_OK(chai_qformat_parse(chai_qformat_name((chai_qformat)f), &back));
    CHECK(back == (chai_qformat)f);
  }
  CHECK(strcmp(chai_qformat_name(CHAI_QF_INT4), "int4") == 0);
  CHECK(strcmp(chai_qformat_name(CHAI_QF_BF16), "bf16") == 0);
  CHECK(strcmp(chai_qformat_name((chai_qformat)99), "?") == 0);
  chai_qformat f;
  CHECK_ERR(chai_qformat_parse("int3", &f), CHAI_ERR_ARG, "unknown quant format 'int3'");
  CHECK_ERR(chai_qformat_parse("INT8", &f), CHAI_ERR_ARG, "'INT8'");
  CHECK_ERR(chai_qformat_parse(NULL, &f), CHAI_ERR_ARG, "no name");
}

int main(void) {
  test_names();
  test_fixtures();
  test_threads();
  test_errors();
  test_extremes();
  return chai_test_finish();
}
