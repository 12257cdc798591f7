/* Softmax and log-softmax: forward against double references (at every SIMD level), backward
 * against central differences, fully masked (-inf) rows, the tensor ops along any dim, and the
 * same bits for 1 and 2 threads. */
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

enum { R = 3, K = 5 };

typedef struct {
  double *x, *dout;
  bool log;
} sm_ctx;

static void softmax_ref(double *out, const double *x, int rows, int cols, bool log_) {
  for (int r = 0; r < rows; r++) {
    const double *xr = x + r * cols;
    double m = -INFINITY, s = 0;
    for (int j = 0; j < cols; j++)
      m = fmax(m, xr[j]);
    for (int j = 0; j < cols; j++)
      s += exp(xr[j] - m);
    for (int j = 0; j < cols; j++)
      out[r * cols + j] = log_ ? xr[j] - m - log(s) : exp(xr[j] - m) / s;
  }
}

static double sm_loss(void *p) {
  sm_ctx *c = p;
  double out[R * K], l = 0;
  softmax_ref(out, c->x, R, K, c->log);
  for (int i = 0; i < R * K; i++)
    l += out[i] * c->dout[i];
  return l;
}

static void test_kernels(void) {
  float x[R * K], dout[R * K], out[R * K], dx[R * K], dx0[R * K];
  tu_fill(x, R * K, -3, 3);
  x[K] = 80, x[K + 1] = 79; /* large logits: max subtraction keeps them finite */
  tu_fill(dout, R * K, -1, 1);
  tu_fill(dx0, R * K, -1, 1);
  sm_ctx c = {tu_dup(x, R * K), tu_dup(dout, R * K), false};
  double want[R * K], g[R * K];
  for (int lg = 0; lg < 2; lg++) {
    c.log = lg;
    softmax_ref(want, c.x, R, K, lg);
    for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AVX512; lvl++) {
      if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
      if (lg)
        chai_log_softmax_forward(out, x, R, K);
      else
        chai_softmax_forward(out, x, R, K);
      tu_check_close(lg ? "log_softmax forward" : "softmax forward", out, want, R * K, 1e-6);
    }
    memcpy(dx, dx0, sizeof dx);
    if (lg)
      chai_log_softmax_backward(dx, dout, out, R, K);
    else
      chai_softmax_backward(dx, dout, out, R, K);
    tu_num_grad(g, c.x, R * K, sm_loss, &c);
    tu_check_grad(lg ? "log_softmax backward" : "softmax backward", dx, dx0, g, R * K, 1e-5);
  }
  chai_softmax_backward(NULL, dout, out, R, K);
  chai_log_softmax_backward(NULL, dout, out, R, K);
  free(c.x), free(c.dout);
}

/* -inf entries get probability 0; a row of only -inf gives zeros (softmax) or -inf (log-softmax)
 * and passes no gradient. */
static void test_masked(void) {
  float x[2 * 4] = {1, -INFINITY, 2, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  float out[8], dx[8] = {0}, dout[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AVX512; lvl++) {
    if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
    chai_softmax_forward(out, x, 2, 4);
    CHECK(out[1] == 0 && out[3] == 0 && fabsf(out[0] + out[2] - 1) < 1e-6f);
    CHECK(out[4] == 0 && out[5] == 0 && out[6] == 0 && out[7] == 0);
  }
  chai_softmax_backward(dx, dout, out, 2, 4);
  CHECK(dx[1] == 0 && dx[3] == 0 && dx[4] == 0 && dx[7] == 0 && dx[0] != 0);
  chai_log_softmax_forward(out, x, 2, 4);
  CHECK(out[1] == -INFINITY && out[4] == -INFINITY && out[7] == -INFINITY);
  CHECK_CLOSE(out[0], 1 - log(exp(1) + exp(2)), 1e-6);
  memset(dx, 0, sizeof dx);
  chai_log_softmax_backward(dx, dout, out, 2, 4);
  CHECK(dx[4] == 0 && dx[5] == 0 && dx[6] == 0 && dx[7] == 0 && dx[1] == dout[1]);
}

static void test_ops(void) {
  int64_t s[3] = {2, 3, 4};
  chai_tensor x, r, t, c;
  CHECK_OK(chai_tensor_new(&x, CHAI_F32, 3, s));
  tu_fill(chai_tensor_data(&x), 24, -2, 2);
  for (int dim = -3; dim < 3; dim++) {
    int d = dim < 0 ? dim + 3 : dim;
    CHECK_OK(chai_op_softmax(&r, &x, dim));
    /* reference: move d last, softmax rows, compare element by element */
    CHECK_OK(chai_tensor_transpose(&t, &x, d, 2));
    CHECK_OK(chai_tensor_contiguous(&c, &t));
    int cols = (int)c.shape[2], rows = 24 / cols;
    double *xd = tu_dup(chai_tensor_data(&c), 24), want[24];
    softmax_ref(want, xd, rows, cols, false);
    chai_tensor rt;
    CHECK_OK(chai_tensor_transpose(&rt, &r, d, 2));
    double worst = 0;
    for (int i = 0; i < 24; i++)
      worst = fmax(worst, fabs(chai_tensor_get_flat(&rt, i) - want[i]));
    CHECK(worst < 1e-6 && chai_tensor_is_contiguous(&r) && r.shape[0] == 2 && r.shape[2] == 4);
    chai_tensor_release(&rt), chai_tensor_release(&r), chai_tensor_release(&c),
        chai_tensor_release(&t);
    free(xd);
  }
  CHECK_OK(chai_op_log_softmax(&r, &x, 1));
  double s0 = 0;
  for (int j = 0; j < 3; j++)
    s0 += exp(chai_tensor_get_flat(&r, j * 4 + 1));
  CHECK_CLOSE(s0, 1, 1e-6);
  chai_tensor_release(&r);
  CHECK_ERR(chai_op_softmax(&r, &x, 3), CHAI_ERR_ARG,
            "softmax: dim 3 is out of range for x (2,3,4)");
  CHECK_ERR(chai_op_log_softmax(&r, &x, -4), CHAI_ERR_ARG, "dim -4 is out of range");
  chai_tensor_release(&x);
}

static void test_threads(void) {
  enum { RR = 200, KK = 333 };
  float *x = tu_falloc(RR * KK), *o1 = tu_falloc(RR * KK), *o2 = tu_falloc(RR * KK);
  tu_fill(x, RR * KK, -10, 10);
  chai_simd_force(CHAI_SIMD_AVX512);
  CHECK_OK(chai_threads(1));
  chai_softmax_forward(o1, x, RR, KK);
  CHECK_OK(chai_threads(2));
  chai_softmax_forward(o2, x, RR, KK);
  CHECK(memcmp(o1, o2, sizeof(float) * RR * KK) == 0);
  free(x), free(o1), free(o2);
}

int main(void) {
  test_kernels();
  test_masked();
  test_ops();
  test_threads();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
