/* LayerNorm: forward (output, mean, rstd) against a double reference, with and without the affine
 * part; dinp/dweight/dbias against central differences; the tensor op and its shape checks. */
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

enum { N = 3, C = 5 };
static const float EPS = 1e-5f;

typedef struct {
  double *x, *w, *b, *dout;
} ln_ctx;

static void layernorm_ref(double *out, double *mean, double *rstd, const ln_ctx *c) {
  for (int n = 0; n < N; n++) {
    const double *x = c->x + n * C;
    double m = 0, v = 0;
    for (int i = 0; i < C; i++)
      m += x[i] / C;
    for (int i = 0; i < C; i++)
      v += (x[i] - m) * (x[i] - m) / C;
    double r = 1 / sqrt(v + EPS);
    for (int i = 0; i < C; i++)
      out[n * C + i] = (x[i] - m) * r * (c->w ? c->w[i] : 1) + (c->b ? c->b[i] : 0);
    if (mean) mean[n] = m;
    if (rstd) rstd[n] = r;
  }
}

static double layernorm_loss(void *p) {
  ln_ctx *c = p;
  double out[N * C], l = 0;
  layernorm_ref(out, NULL, NULL, c);
  for (int i = 0; i < N * C; i++)
    l += out[i] * c->dout[i];
  return l;
}

static void test_kernel(bool affine) {
  float x[N * C], w[C], b[C], dout[N * C], out[N * C], mean[N], rstd[N];
  tu_fill(x, N * C, -2, 3);
  tu_fill(w, C, 0.5f, 1.5f);
  tu_fill(b, C, -1, 1);
  tu_fill(dout, N * C, -1, 1);
  ln_ctx c = {tu_dup(x, N * C), affine ? tu_dup(w, C) : NULL, affine ? tu_dup(b, C) : NULL,
              tu_dup(dout, N * C)};
  double want[N * C], wm[N], wr[N];
  layernorm_ref(want, wm, wr, &c);
  for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AVX512; lvl++) {
    if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
    chai_layernorm_forward(out, mean, rstd, x, affine ? w : NULL, affine ? b : NULL, N, C, EPS);
    tu_check_close("layernorm out", out, want, N * C, 1e-6);
    tu_check_close("layernorm mean", mean, wm, N, 1e-6);
    tu_check_close("layernorm rstd", rstd, wr, N, 1e-6);
  }
  chai_simd_force(CHAI_SIMD_AVX512);
  chai_layernorm_forward(out, NULL, NULL, x, affine ? w : NULL, affine ? b : NULL, N, C, EPS);
  tu_check_close("layernorm out without mean/rstd", out, want, N * C, 1e-6);
  chai_layernorm_forward(out, mean, rstd, x, affine ? w : NULL, affine ? b : NULL, N, C, EPS);

  float dx[N * C], dw[C], db[C], dx0[N * C], dw0[C], db0[C];
  tu_fill(dx0, N * C, -1, 1), tu_fill(dw0, C, -1, 1), tu_fill(db0, C, -1, 1);
  memcpy(dx, dx0, sizeof dx), memcpy(dw, dw0, sizeof dw), memcpy(db, db0, sizeof db);
  chai_layernorm_backward(dx, affine ? dw : NULL, affine ? db : NULL, dout, x, affine ? w : NULL,
                          mean, rstd, N, C);
  double gx[N * C], gw[C], gb[C];
  tu_num_grad(gx, c.x, N * C, layernorm_loss, &c);
  tu_check_grad(affine ? "layernorm dinp (affine)" : "layernorm dinp", dx, dx0, gx, N * C, 2e-5);
  if (affine) {
    tu_num_grad(gw, c.w, C, layernorm_loss, &c);
    tu_num_grad(gb, c.b, C, layernorm_loss, &c);
    tu_check_grad("layernorm dweight", dw, dw0, gw, C, 2e-5);
    tu_check_grad("layernorm dbias", db, db0, gb, C, 2e-5);
    memcpy(dw, dw0, sizeof dw);
    chai_layernorm_backward(NULL, dw, NULL, dout, x, w, mean, rstd, N, C);
    tu_check_grad("layernorm dweight alone", dw, dw0, gw, C, 2e-5);
  } else {
    CHECK(memcmp(dw, dw0, sizeof dw) == 0 && memcmp(db, db0, sizeof db) == 0);
  }
  free(c.x), free(c.w), free(c.b), free(c.dout);
}

/* A big common offset must not cancel the variance (two-pass). */
static void test_offset(void) {
  float x[4] = {1000.5f, 1001.5f, 1000.5f, 1001.5f}, out[4], m, r;
  for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AVX512; lvl++) {
    if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
    chai_layernorm_forward(out, &m, &r, x, NULL, NULL, 1, 4, 0);
    CHECK_CLOSE(out[0], -1, 1e-5);
    CHECK_CLOSE(out[1], 1, 1e-5);
    CHECK_CLOSE(r, 2, 1e-5);
  }
}

static void test_op(void) {
  int64_t sx[3] = {2, 2, 5}, sw[1] = {5}, sbad[1] = {4};
  chai_tensor x, w, b, bad, r;
  CHECK_OK(chai_tensor_new(&x, CHAI_F32, 3, sx));
  CHECK_OK(chai_tensor_new(&w, CHAI_F32, 1, sw));
  CHECK_OK(chai_tensor_new(&b, CHAI_F32, 1, sw));
  CHECK_OK(chai_tensor_new(&bad, CHAI_F32, 1, sbad));
  tu_fill(chai_tensor_data(&x), 20, -1, 1);
  tu_fill(chai_tensor_data(&w), 5, -1, 1);
  tu_fill(chai_tensor_data(&b), 5, -1, 1);
  CHECK_OK(chai_op_layernorm(&r, &x, &w, &b, 1e-5f));
  float want[20];
  chai_layernorm_forward(want, NULL, NULL, chai_tensor_data(&x), chai_tensor_data(&w),
                         chai_tensor_data(&b), 4, 5, 1e-5f);
  CHECK(r.ndim == 3 && memcmp(want, chai_tensor_data(&r), sizeof want) == 0);
  chai_tensor_release(&r);
  CHECK_OK(chai_op_layernorm(&r, &x, NULL, NULL, 1e-5f));
  chai_tensor_release(&r);
  CHECK_ERR(chai_op_layernorm(&r, &x, &bad, NULL, 1e-5f), CHAI_ERR_ARG,
            "weight (4) must be (5) for x (2,2,5)");
  CHECK_ERR(chai_op_layernorm(&r, &x, &w, &bad, 1e-5f), CHAI_ERR_ARG, "bias (4) must be (5)");
  CHECK_ERR(chai_op_layernorm(&r, &x, &w, &b, -1.0f), CHAI_ERR_ARG, "eps must be >= 0");
  chai_tensor_release(&x), chai_tensor_release(&w), chai_tensor_release(&b),
      chai_tensor_release(&bad);
}

/* Rows are independent: 1 and 2 threads give the same bits. */
static void test_threads(void) {
  enum { R = 64, K = 777 };
  float *x = tu_falloc(R * K), *o1 = tu_falloc(R * K), *o2 = tu_falloc(R * K), m1[R], m2[R];
  tu_fill(x, R * K, -3, 3);
  CHECK_OK(chai_threads(1));
  chai_layernorm_forward(o1, m1, NULL, x, NULL, NULL, R, K, 1e-5f);
  CHECK_OK(chai_threads(2));
  chai_layernorm_forward(o2, m2, NULL, x, NULL, NULL, R, K, 1e-5f);
  CHECK(memcmp(o1, o2, sizeof(float) * R * K) == 0 && memcmp(m1, m2, sizeof m1) == 0);
  free(x), free(o1), free(o2);
}

int main(void) {
  test_kernel(true);
  test_kernel(false);
  test_offset();
  test_op();
  test_threads();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
