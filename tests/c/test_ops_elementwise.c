/* Elementwise kernels (add, mul, scale, axpy) and their gradients; the broadcasting tensor ops
 * (against an index-by-index reference), scalar ops, neg and sums. */
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

enum { N = 13 };

typedef struct {
  double *a, *b, *dout;
  int op; /* 0 add, 1 mul, 2 scale by S */
} ew_ctx;
static const float S = -1.75f;

static double ew_loss(void *p) {
  ew_ctx *c = p;
  double l = 0;
  for (int i = 0; i < N; i++) {
    double y = c->op == 0 ? c->a[i] + c->b[i] : c->op == 1 ? c->a[i] * c->b[i] : c->a[i] * S;
    l += y * c->dout[i];
  }
  return l;
}

static void test_kernels(void) {
  float a[N], b[N], dout[N], out[N], da[N], db[N], da0[N], db0[N];
  tu_fill(a, N, -2, 2), tu_fill(b, N, -2, 2), tu_fill(dout, N, -1, 1);
  tu_fill(da0, N, -1, 1), tu_fill(db0, N, -1, 1);
  ew_ctx c = {tu_dup(a, N), tu_dup(b, N), tu_dup(dout, N), 0};
  double want[N], ga[N], gb[N];
  const char *names[3] = {"add", "mul", "scale"};
  for (int op = 0; op < 3; op++) {
    c.op = op;
    for (int i = 0; i < N; i++)
      want[i] = op == 0 ? (double)a[i] + b[i] : op == 1 ? (double)a[i] * b[i] : (double)a[i] * S;
    if (op == 0) chai_add_forward(out, a, b, N);
    if (op == 1) chai_mul_forward(out, a, b, N);
    if (op == 2) chai_scale_forward(out, a, S, N);
    tu_check_close(names[op], out, want, N, 1e-7);
    memcpy(da, da0, sizeof da), memcpy(db, db0, sizeof db);
    if (op == 0) chai_add_backward(da, db, dout, N);
    if (op == 1) chai_mul_backward(da, db, dout, a, b, N);
    if (op == 2) chai_scale_backward(da, dout, S, N);
    tu_num_grad(ga, c.a, N, ew_loss, &c);
    tu_num_grad(gb, c.b, N, ew_loss, &c);
    tu_check_grad(names[op], da, da0, ga, N, 1e-6);
    tu_check_grad(names[op], db, db0, gb, N, 1e-6); /* scale: b untouched, gradient 0 */
  }
  chai_add_backward(NULL, NULL, dout, N);
  chai_mul_backward(NULL, NULL, dout, a, b, N);
  chai_scale_backward(NULL, dout, S, N);
  /* out may alias an input */
  memcpy(out, a, sizeof out);
  chai_add_forward(out, out, b, N);
  bool ok = true;
  for (int i = 0; i < N; i++)
    ok = ok && out[i] == a[i] + b[i];
  CHECK(ok);
  memcpy(out, b, sizeof out);
  chai_axpy(out, 0.5f, a, N);
  for (int i = 0; i < N; i++)
    want[i] = b[i] + 0.5 * a[i];
  tu_check_close("axpy", out, want, N, 1e-6);
  free(c.a), free(c.b), free(c.dout);
}

static chai_tensor rt(int ndim, const int64_t *shape) {
  chai_tensor t;
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, ndim, shape));
  tu_fill(chai_tensor_data(&t), (size_t)chai_tensor_numel(&t), 0.5f, 2);
  return t;
}

/* Element i of r against a op b at the broadcast index, read with chai_tensor_get. */
static void check_broadcast(const chai_tensor *a, const chai_tensor *b, chai_binop op) {
  chai_tensor r;
  CHECK_OK(chai_op_binary(&r, op, a, b));
  if (!chai_tensor_alive(&r)) return;
  int nd = r.ndim;
  bool ok = true;
  for (int64_t f = 0; f < chai_tensor_numel(&r); f++) {
    int64_t idx[4], ia[4], ib[4], rem = f;
    for (int d = nd - 1; d >= 0; d--)
      idx[d] = rem % r.shape[d], rem /= r.shape[d];
    for (int d = 0; d < a->ndim; d++) {
      int rd = d + nd - a->ndim;
      ia[d] = a->shape[d] == 1 ? 0 : idx[rd];
    }
    for (int d = 0; d < b->ndim; d++) {
      int rd = d + nd - b->ndim;
      ib[d] = b->shape[d] == 1 ? 0 : idx[rd];
    }
    double x, y, got;
    CHECK_OK(chai_tensor_get(a, ia, &x));
    CHECK_OK(chai_tensor_get(b, ib, &y));
    CHECK_OK(chai_tensor_get(&r, idx, &got));
    float fx = (float)x, fy = (float)y;
    float want = op == CHAI_BINOP_ADD   ? fx + fy
                 : op == CHAI_BINOP_SUB ? fx - fy
                 : op == CHAI_BINOP_MUL ? fx * fy
                                        : fx / fy;
    ok = ok && (float)got == want;
  }
  CHECK(ok);
  chai_tensor_release(&r);
}

static void test_binary(void) {
  int64_t s23[2] = {2, 3}, s3[1] = {3}, s21[2] = {2, 1}, s2131[4] = {2, 1, 3, 1},
          s1415[4] = {1, 4, 1, 5}, s415[3] = {4, 1, 5}, s4[1] = {4}, s12[2] = {1, 2},
          s42[2] = {4, 2};
  chai_tensor a = rt(2, s23), v = rt(1, s3), col = rt(2, s21), p = rt(4, s2131), q = rt(4, s1415),
              q3 = rt(3, s415), bad = rt(1, s4), sc = rt(0, NULL), row = rt(2, s12),
              bad2 = rt(2, s42), at;
  for (int op = CHAI_BINOP_ADD; op <= CHAI_BINOP_DIV; op++) {
    check_broadcast(&a, &a, (chai_binop)op);
    check_broadcast(&a, &v, (chai_binop)op);
    check_broadcast(&v, &a, (chai_binop)op);
    check_broadcast(&a, &col, (chai_binop)op);
    check_broadcast(&p, &q, (chai_binop)op);  /* (2,1,3,1) with (1,4,1,5) -> (2,4,3,5) */
    check_broadcast(&p, &q3, (chai_binop)op); /* (2,1,3,1) with (4,1,5) */
    check_broadcast(&sc, &a, (chai_binop)op); /* 0-dim scalar tensor */
  }
  CHECK_OK(chai_tensor_transpose(&at, &a, 0, 1)); /* strided (3,2) */
  check_broadcast(&at, &row, CHAI_BINOP_SUB);     /* (3,2) with (1,2) -> (3,2) */
  check_broadcast(&p, &at, CHAI_BINOP_DIV);       /* (2,1,3,1) with (3,2) -> (2,1,3,2) */
  check_broadcast(&at, &at, CHAI_BINOP_MUL);
  chai_tensor r;
  CHECK_ERR(chai_op_binary(&r, CHAI_BINOP_ADD, &a, &bad), CHAI_ERR_ARG,
            "add: shapes (2,3) and (4) do not broadcast (dim -1: 3 vs 4)");
  CHECK(!chai_tensor_alive(&r));
  CHECK_ERR(chai_op_binary(&r, CHAI_BINOP_DIV, &p, &bad2), CHAI_ERR_ARG,
            "div: shapes (2,1,3,1) and (4,2) do not broadcast (dim -2: 3 vs 4)");
  CHECK_ERR(chai_op_binary(&r, (chai_binop)9, &a, &a), CHAI_ERR_ARG, "unknown op 9");

  /* scalars */
  CHECK_OK(chai_op_binary_scalar(&r, CHAI_BINOP_DIV, &at, 4, true));
  bool ok = r.shape[0] == 3;
  for (int i = 0; i < 6; i++)
    ok = ok && chai_tensor_get_flat(&r, i) == 4.0f / (float)chai_tensor_get_flat(&at, i);
  CHECK(ok);
  chai_tensor_release(&r);
  CHECK_OK(chai_op_binary_scalar(&r, CHAI_BINOP_SUB, &a, 0.25, false));
  ok = true;
  for (int i = 0; i < 6; i++)
    ok = ok && chai_tensor_get_flat(&r, i) == (float)chai_tensor_get_flat(&a, i) - 0.25f;
  CHECK(ok);
  chai_tensor_release(&r);
  CHECK_OK(chai_op_binary_scalar(&r, CHAI_BINOP_MUL, &a, 3, false));
  CHECK(chai_tensor_get_flat(&r, 4) == 3 * (float)chai_tensor_get_flat(&a, 4));
  chai_tensor_release(&r);
  CHECK_OK(chai_op_neg(&r, &at));
  CHECK(chai_tensor_get_flat(&r, 1) == -chai_tensor_get_flat(&at, 1));
  chai_tensor_release(&r);

  chai_tensor_release(&a), chai_tensor_release(&v), chai_tensor_release(&col);
  chai_tensor_release(&p), chai_tensor_release(&q), chai_tensor_release(&q3);
  chai_tensor_release(&bad), chai_tensor_release(&sc), chai_tensor_release(&at);
  chai_tensor_release(&row), chai_tensor_release(&bad2);
}

static void test_sums(void) {
  int64_t s[3] = {2, 3, 4};
  chai_tensor x, t, r, ii;
  CHECK_OK(chai_tensor_new(&x, CHAI_F32, 3, s));
  for (int i = 0; i < 24; i++)
    chai_tensor_set_flat(&x, i, i);
  double total;
  CHECK_OK(chai_op_sum_all(&total, &x));
  CHECK(total == 276);
  CHECK_OK(chai_tensor_transpose(&t, &x, 0, 2));
  CHECK_OK(chai_op_sum_all(&total, &t));
  CHECK(total == 276);
  CHECK_OK(chai_tensor_new(&ii, CHAI_I32, 1, s));
  chai_tensor_set_flat(&ii, 0, 5), chai_tensor_set_flat(&ii, 1, -7);
  CHECK_OK(chai_op_sum_all(&total, &ii));
  CHECK(total == -2);
  chai_tensor_release(&ii);

  CHECK_OK(chai_op_sum_dim(&r, &x, 1)); /* (2,4): r[i][k] = Σ_j (12i + 4j + k) */
  CHECK(r.ndim == 2 && r.shape[0] == 2 && r.shape[1] == 4);
  CHECK(chai_tensor_get_flat(&r, 0) == 12 && chai_tensor_get_flat(&r, 5) == 3 * 13 + 12);
  chai_tensor_release(&r);
  CHECK_OK(chai_op_sum_dim(&r, &t, -1)); /* t (4,3,2), sum over its last (x's dim 0) */
  CHECK(r.shape[0] == 4 && r.shape[1] == 3 && chai_tensor_get_flat(&r, 1) == 4 + 16);
  chai_tensor_release(&r);
  int64_t s1[1] = {3};
  chai_tensor v;
  CHECK_OK(chai_tensor_new(&v, CHAI_F32, 1, s1));
  chai_tensor_set_flat(&v, 2, 1.5);
  CHECK_OK(chai_op_sum_dim(&r, &v, 0));
  CHECK(r.ndim == 0 && chai_tensor_get_flat(&r, 0) == 1.5);
  chai_tensor_release(&r);
  CHECK_ERR(chai_op_sum_dim(&r, &x, 3), CHAI_ERR_ARG, "sum: dim 3 is out of range for x (2,3,4)");
  chai_tensor_release(&v), chai_tensor_release(&t), chai_tensor_release(&x);
}

int main(void) {
  test_kernels();
  test_binary();
  test_sums();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
