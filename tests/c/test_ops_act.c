/* ReLU and exact GELU: forward against double references, backward against central differences,
 * and the tensor ops. */
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

enum { N = 15 };

typedef struct {
  double *x, *dout;
  bool gelu;
} act_ctx;

static double gelu_ref(double x) {
  return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

static double act_loss(void *p) {
  act_ctx *c = p;
  double l = 0;
  for (int i = 0; i < N; i++)
    l += (c->gelu ? gelu_ref(c->x[i]) : fmax(c->x[i], 0)) * c->dout[i];
  return l;
}

static void test_kernels(void) {
  float x[N], dout[N], out[N], dx[N], dx0[N];
  tu_fill(x, N, -4, 4);
  x[0] = 0.0f, x[1] = -0.0f; /* relu's kink: gradient 0 (checked apart from the numeric one) */
  tu_fill(dout, N, -1, 1);
  tu_fill(dx0, N, -1, 1);
  act_ctx c = {tu_dup(x, N), tu_dup(dout, N), false};
  double want[N], g[N];

  chai_relu_forward(out, x, N);
  for (int i = 0; i < N; i++)
    want[i] = fmax(x[i], 0);
  tu_check_close("relu forward", out, want, N, 0);
  CHECK(!signbit(out[1]));
  memcpy(dx, dx0, sizeof dx);
  chai_relu_backward(dx, dout, x, N);
  tu_num_grad(g, c.x, N, act_loss, &c);
  g[0] = g[1] = 0;
  tu_check_grad("relu backward", dx, dx0, g, N, 1e-6);
  chai_relu_backward(NULL, dout, x, N);

  c.gelu = true;
  chai_gelu_forward(out, x, N);
  for (int i = 0; i < N; i++)
    want[i] = gelu_ref(x[i]);
  tu_check_close("gelu forward", out, want, N, 1e-7);
  memcpy(dx, dx0, sizeof dx);
  chai_gelu_backward(dx, dout, x, N);
  tu_num_grad(g, c.x, N, act_loss, &c);
  tu_check_grad("gelu backward", dx, dx0, g, N, 1e-6);
  chai_gelu_backward(NULL, dout, x, N);

  /* known values: gelu(1) = 0.8413447, gelu(-1) = -0.1586553; saturation at ±10 */
  float k[4] = {1, -1, 10, -10}, ko[4];
  chai_gelu_forward(ko, k, 4);
  CHECK_CLOSE(ko[0], 0.8413447, 1e-6);
  CHECK_CLOSE(ko[1], -0.1586553, 1e-6);
  CHECK(ko[2] == 10.0f && ko[3] == -0.0f);
  free(c.x), free(c.dout);
}

static void test_ops(void) {
  int64_t s[2] = {3, 4};
  chai_tensor x, t, r;
  CHECK_OK(chai_tensor_new(&x, CHAI_F32, 2, s));
  tu_fill(chai_tensor_data(&x), 12, -2, 2);
  CHECK_OK(chai_tensor_transpose(&t, &x, 0, 1)); /* strided input */
  CHECK_OK(chai_op_relu(&r, &t));
  bool ok = r.shape[0] == 4 && r.shape[1] == 3;
  for (int i = 0; i < 12; i++)
    ok = ok && chai_tensor_get_flat(&r, i) == fmax(chai_tensor_get_flat(&t, i), 0);
  CHECK(ok);
  chai_tensor_release(&r);
  CHECK_OK(chai_op_gelu(&r, &t));
  ok = true;
  for (int i = 0; i < 12; i++)
    ok = ok && fabs(chai_tensor_get_flat(&r, i) - gelu_ref(chai_tensor_get_flat(&t, i))) < 1e-6;
  CHECK(ok);
  chai_tensor_release(&r);
  chai_tensor ii;
  CHECK_OK(chai_tensor_new(&ii, CHAI_I32, 2, s));
  CHECK_ERR(chai_op_relu(&r, &ii), CHAI_ERR_ARG, "relu: x: expected a f32 tensor, got i32");
  CHECK_ERR(chai_op_gelu(&r, &ii), CHAI_ERR_ARG, "gelu: x");
  chai_tensor_release(&ii), chai_tensor_release(&t), chai_tensor_release(&x);
}

int main(void) {
  test_kernels();
  test_ops();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
