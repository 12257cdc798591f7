/* Linear and matmul: forward against a naive double reference, every gradient against central
 * differences of that reference, accumulation (+=) and NULL-gradient skipping, and the tensor ops'
 * shape checks. */
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

enum { N = 3, C = 5, OC = 4 };

/* ---- linear ---- */
typedef struct {
  double *inp, *w, *b, *dout;
} lin_ctx;

static void linear_ref(double *out, const lin_ctx *c) {
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      double s = c->b ? c->b[o] : 0;
      for (int k = 0; k < C; k++)
        s += c->inp[n * C + k] * c->w[o * C + k];
      out[n * OC + o] = s;
    }
}

static double linear_loss(void *p) {
  lin_ctx *c = p;
  double out[N * OC], l = 0;
  linear_ref(out, c);
  for (int i = 0; i < N * OC; i++)
    l += out[i] * c->dout[i];
  return l;
}

static void test_linear(void) {
  float inp[N * C], w[OC * C], b[OC], dout[N * OC], out[N * OC];
  tu_fill(inp, N * C, -1, 1);
  tu_fill(w, OC * C, -1, 1);
  tu_fill(b, OC, -1, 1);
  tu_fill(dout, N * OC, -1, 1);
  lin_ctx c = {tu_dup(inp, N * C), tu_dup(w, OC * C), tu_dup(b, OC), tu_dup(dout, N * OC)};
  double want[N * OC];
  linear_ref(want, &c);
  chai_linear_forward(out, inp, w, b, N, C, OC);
  tu_check_close("linear forward", out, want, N * OC, 1e-6);
  lin_ctx nb = c;
  nb.b = NULL;
  linear_ref(want, &nb);
  chai_linear_forward(out, inp, w, NULL, N, C, OC);
  tu_check_close("linear forward, no bias", out, want, N * OC, 1e-6);

  /* gradients accumulate onto non-zero starting values */
  float dinp[N * C], dw[OC * C], db[OC], dinp0[N * C], dw0[OC * C], db0[OC];
  tu_fill(dinp0, N * C, -1, 1);
  tu_fill(dw0, OC * C, -1, 1);
  tu_fill(db0, OC, -1, 1);
  memcpy(dinp, dinp0, sizeof dinp);
  memcpy(dw, dw0, sizeof dw);
  memcpy(db, db0, sizeof db);
  chai_linear_backward(dinp, dw, db, dout, inp, w, N, C, OC);
  double g_inp[N * C], g_w[OC * C], g_b[OC];
  tu_num_grad(g_inp, c.inp, N * C, linear_loss, &c);
  tu_num_grad(g_w, c.w, OC * C, linear_loss, &c);
  tu_num_grad(g_b, c.b, OC, linear_loss, &c);
  tu_check_grad("linear dinp", dinp, dinp0, g_inp, N * C, 1e-5);
  tu_check_grad("linear dweight", dw, dw0, g_w, OC * C, 1e-5);
  tu_check_grad("linear dbias", db, db0, g_b, OC, 1e-5);

  /* NULL gradients are skipped; the others are still right */
  memcpy(dw, dw0, sizeof dw);
  chai_linear_backward(NULL, dw, NULL, dout, inp, w, N, C, OC);
  tu_check_grad("linear dweight alone", dw, dw0, g_w, OC * C, 1e-5);
  chai_linear_backward(NULL, NULL, NULL, dout, inp, w, N, C, OC);
  free(c.inp), free(c.w), free(c.b), free(c.dout);
}

/* ---- matmul: batch 2, (M,K)·(K,N) with every transpose combination ---- */
enum { BT = 2, MM = 3, MN = 4, MK = 5 };
typedef struct {
  double *a, *b, *dout;
  bool ta, tb;
} mm_ctx;

static void matmul_ref(double *out, const mm_ctx *c) {
  for (int z = 0; z < BT; z++)
    for (int i = 0; i < MM; i++)
      for (int j = 0; j < MN; j++) {
        double s = 0;
        for (int k = 0; k < MK; k++) {
          double x = c->ta ? c->a[z * MM * MK + k * MM + i] : c->a[z * MM * MK + i * MK + k];
          double y = c->tb ? c->b[z * MK * MN + j * MK + k] : c->b[z * MK * MN + k * MN + j];
          s += x * y;
        }
        out[(z * MM + i) * MN + j] = s;
      }
}

static double matmul_loss(void *p) {
  mm_ctx *c = p;
  double out[BT * MM * MN], l = 0;
  matmul_ref(out, c);
  for (int i = 0; i < BT * MM * MN; i++)
    l += out[i] * c->dout[i];
  return l;
}

static void test_matmul(void) {
  enum { NA = BT * MM * MK, NB = BT * MK * MN, NO = BT * MM * MN };
  for (int combo = 0; combo < 4; combo++) {
    bool ta = combo & 1, tb = combo & 2;
    float a[NA], b[NB], dout[NO], out[NO], da[NA], db[NB], da0[NA], db0[NB];
    tu_fill(a, NA, -1, 1);
    tu_fill(b, NB, -1, 1);
    tu_fill(dout, NO, -1, 1);
    tu_fill(da0, NA, -1, 1);
    tu_fill(db0, NB, -1, 1);
    mm_ctx c = {tu_dup(a, NA), tu_dup(b, NB), tu_dup(dout, NO), ta, tb};
    double want[NO], ga[NA], gb[NB];
    matmul_ref(want, &c);
    chai_matmul_forward(out, a, b, BT, MM, MN, MK, ta, tb);
    char what[64];
    snprintf(what, sizeof what, "matmul forward ta=%d tb=%d", ta, tb);
    tu_check_close(what, out, want, NO, 1e-6);
    memcpy(da, da0, sizeof da);
    memcpy(db, db0, sizeof db);
    chai_matmul_backward(da, db, dout, a, b, BT, MM, MN, MK, ta, tb);
    tu_num_grad(ga, c.a, NA, matmul_loss, &c);
    tu_num_grad(gb, c.b, NB, matmul_loss, &c);
    snprintf(what, sizeof what, "matmul da ta=%d tb=%d", ta, tb);
    tu_check_grad(what, da, da0, ga, NA, 1e-5);
    snprintf(what, sizeof what, "matmul db ta=%d tb=%d", ta, tb);
    tu_check_grad(what, db, db0, gb, NB, 1e-5);
    memcpy(db, db0, sizeof db);
    chai_matmul_backward(NULL, db, dout, a, b, BT, MM, MN, MK, ta, tb);
    tu_check_grad("matmul db alone", db, db0, gb, NB, 1e-5);
    free(c.a), free(c.b), free(c.dout);
  }
}

/* ---- tensor ops ---- */
static chai_tensor rand_tensor(int ndim, const int64_t *shape) {
  chai_tensor t;
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, ndim, shape));
  tu_fill(chai_tensor_data(&t), (size_t)chai_tensor_numel(&t), -1, 1);
  return t;
}

static void test_op_matmul(void) {
  int64_t sa[3] = {2, 3, 4}, sb[2] = {4, 5}, sbb[3] = {2, 4, 5}, sbad[2] = {3, 5};
  chai_tensor a = rand_tensor(3, sa), b = rand_tensor(2, sb), bb = rand_tensor(3, sbb), r;
  CHECK_OK(chai_op_matmul(&r, &a, &b));
  CHECK(r.ndim == 3 && r.shape[0] == 2 && r.shape[1] == 3 && r.shape[2] == 5);
  double worst = 0;
  for (int z = 0; z < 2; z++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 5; j++) {
        double s = 0;
        for (int k = 0; k < 4; k++)
          s += chai_tensor_get_flat(&a, (z * 3 + i) * 4 + k) * chai_tensor_get_flat(&b, k * 5 + j);
        worst = fmax(worst, fabs(s - chai_tensor_get_flat(&r, (z * 3 + i) * 5 + j)));
      }
  CHECK(worst < 1e-5);
  chai_tensor_release(&r);
  CHECK_OK(chai_op_matmul(&r, &a, &bb));
  worst = 0;
  for (int z = 0; z < 2; z++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 5; j++) {
        double s = 0;
        for (int k = 0; k < 4; k++)
          s += chai_tensor_get_flat(&a, (z * 3 + i) * 4 + k) *
               chai_tensor_get_flat(&bb, (z * 4 + k) * 5 + j);
        worst = fmax(worst, fabs(s - chai_tensor_get_flat(&r, (z * 3 + i) * 5 + j)));
      }
  CHECK(worst < 1e-5);
  chai_tensor_release(&r);

  /* a strided (transposed) operand is read correctly: bᵀ (5,4) transposed back */
  chai_tensor bt, btt, bc;
  CHECK_OK(chai_tensor_transpose(&bt, &b, 0, 1));
  CHECK_OK(chai_tensor_contiguous(&bc, &bt));
  CHECK_OK(chai_tensor_transpose(&btt, &bc, 0, 1)); /* (4,5), not contiguous */
  CHECK(!chai_tensor_is_contiguous(&btt));
  chai_tensor r2;
  CHECK_OK(chai_op_matmul(&r, &a, &b));
  CHECK_OK(chai_op_matmul(&r2, &a, &btt));
  CHECK(memcmp(chai_tensor_data(&r), chai_tensor_data(&r2), chai_tensor_nbytes(&r)) == 0);
  chai_tensor_release(&r);
  chai_tensor_release(&r2);

  chai_tensor bad = rand_tensor(2, sbad);
  CHECK_ERR(chai_op_matmul(&r, &a, &bad), CHAI_ERR_ARG, "inner dims 4 and 3 differ");
  CHECK(!chai_tensor_alive(&r));
  int64_t sbb2[3] = {3, 4, 5};
  chai_tensor bb2 = rand_tensor(3, sbb2);
  CHECK_ERR(chai_op_matmul(&r, &a, &bb2), CHAI_ERR_ARG,
            "b (3,4,5): b must be (K,N) or have a's leading dims");
  CHECK_ERR(chai_op_matmul(&r, &a, &a), CHAI_ERR_ARG, "a (2,3,4) and b (2,3,4)");
  int64_t s1[1] = {4};
  chai_tensor v = rand_tensor(1, s1), ii;
  CHECK_ERR(chai_op_matmul(&r, &v, &b), CHAI_ERR_ARG, "at least 2 dims");
  CHECK_OK(chai_tensor_new(&ii, CHAI_I32, 2, sb));
  CHECK_ERR(chai_op_matmul(&r, &a, &ii), CHAI_ERR_ARG, "matmul: b: expected a f32 tensor, got i32");
  chai_tensor_release(&ii);
  CHECK_ERR(chai_op_matmul(&r, &a, &ii), CHAI_ERR_STATE, "after free");
  chai_tensor_release(&v);
  chai_tensor_release(&bb2);
  chai_tensor_release(&bad);
  chai_tensor_release(&bt);
  chai_tensor_release(&bc);
  chai_tensor_release(&btt);
  chai_tensor_release(&a);
  chai_tensor_release(&b);
  chai_tensor_release(&bb);
}

static void test_op_linear(void) {
  int64_t sx[3] = {2, 2, 3}, sw[2] = {4, 3}, sb[1] = {4}, sbad[1] = {3};
  chai_tensor x = rand_tensor(3, sx), w = rand_tensor(2, sw), b = rand_tensor(1, sb), r;
  CHECK_OK(chai_op_linear(&r, &x, &w, &b));
  CHECK(r.ndim == 3 && r.shape[2] == 4);
  double worst = 0;
  for (int n = 0; n < 4; n++)
    for (int o = 0; o < 4; o++) {
      double s = chai_tensor_get_flat(&b, o);
      for (int k = 0; k < 3; k++)
        s += chai_tensor_get_flat(&x, n * 3 + k) * chai_tensor_get_flat(&w, o * 3 + k);
      worst = fmax(worst, fabs(s - chai_tensor_get_flat(&r, n * 4 + o)));
    }
  CHECK(worst < 1e-5);
  chai_tensor_release(&r);
  chai_tensor bad = rand_tensor(1, sbad);
  CHECK_ERR(chai_op_linear(&r, &x, &w, &bad), CHAI_ERR_ARG, "bias (3) must be (4)");
  CHECK_ERR(chai_op_linear(&r, &w, &x, NULL), CHAI_ERR_ARG, "w (2,2,3) must be (OC,C)");
  int64_t sw2[2] = {4, 5};
  chai_tensor w2 = rand_tensor(2, sw2);
  CHECK_ERR(chai_op_linear(&r, &x, &w2, NULL), CHAI_ERR_ARG,
            "x (2,2,3) has C=3 but w (4,5) has C=5");
  chai_tensor_release(&w2);
  chai_tensor_release(&bad);
  chai_tensor_release(&x);
  chai_tensor_release(&w);
  chai_tensor_release(&b);
}

int main(void) {
  CHECK_OK(chai_blas_init());
  test_linear();
  test_matmul();
  test_op_matmul();
  test_op_linear();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
