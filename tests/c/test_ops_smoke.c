/* Smoke test of the chai_op_* layer: every op runs on a small input and gives the hand-computed
 * answer; the per-family tests (test_ops_*.c) check kernels and gradients in depth. */
#include <math.h>
#include <string.h>

#include "chai/chai.h"
#include "check.h"

static chai_tensor make(int ndim, const int64_t *shape, const float *vals) {
  chai_tensor t;
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, ndim, shape));
  memcpy(chai_tensor_data(&t), vals, chai_tensor_nbytes(&t));
  return t;
}

static float at(const chai_tensor *t, int64_t i) {
  return (float)chai_tensor_get_flat(t, i);
}

int main(void) {
  int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s3[1] = {3};
  float av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {1, 0, 0, 1, 1, 1}, cv[3] = {10, 20, 30};
  chai_tensor a = make(2, s23, av), b = make(2, s32, bv), c = make(1, s3, cv), r;

  CHECK_OK(chai_op_matmul(&r, &a, &b)); /* (2,3)·(3,2) */
  CHECK(r.shape[0] == 2 && r.shape[1] == 2 && at(&r, 0) == 4 && at(&r, 1) == 5 && at(&r, 3) == 11);
  chai_tensor_release(&r);

  CHECK_OK(chai_op_linear(&r, &a, &a, NULL)); /* a·aᵀ */
  CHECK(r.shape[1] == 2 && at(&r, 0) == 14 && at(&r, 1) == 32 && at(&r, 3) == 77);
  chai_tensor_release(&r);
  CHECK_ERR(chai_op_linear(&r, &a, &a, &c), CHAI_ERR_ARG, "bias (3) must be (2)");

  CHECK_OK(chai_op_binary(&r, CHAI_BINOP_ADD, &a, &c)); /* broadcast (2,3)+(3) */
  CHECK(at(&r, 0) == 11 && at(&r, 5) == 36);
  chai_tensor_release(&r);

  CHECK_OK(chai_op_binary_scalar(&r, CHAI_BINOP_SUB, &a, 1, true));
  CHECK(at(&r, 0) == 0 && at(&r, 5) == -5);
  chai_tensor_release(&r);

  CHECK_OK(chai_op_softmax(&r, &a, -1));
  CHECK(fabsf(at(&r, 0) + at(&r, 1) + at(&r, 2) - 1) < 1e-6f);
  chai_tensor_release(&r);

  CHECK_OK(chai_op_layernorm(&r, &a, NULL, NULL, 1e-5f));
  CHECK(fabsf(at(&r, 1)) < 1e-6f && at(&r, 0) < 0);
  chai_tensor_release(&r);

  double sum;
  CHECK_OK(chai_op_sum_all(&sum, &a));
  CHECK(sum == 21);

  int64_t s2[1] = {2};
  chai_tensor ids;
  CHECK_OK(chai_tensor_new(&ids, CHAI_I32, 1, s2));
  ((int32_t *)chai_tensor_data(&ids))[0] = 1;
  CHECK_OK(chai_op_embedding(&r, &ids, &a));
  CHECK(r.shape[0] == 2 && r.shape[1] == 3 && at(&r, 0) == 4 && at(&r, 3) == 1);
  chai_tensor_release(&r);

  double loss;
  CHECK_OK(chai_op_cross_entropy(&loss, &a, &ids, -100));
  CHECK(fabs(loss - (log(exp(1) + exp(2) + exp(3)) - 2 + log(exp(4) + exp(5) + exp(6)) - 4) / 2) <
        1e-5);

  int64_t s4[4] = {1, 2, 1, 3};
  chai_tensor q = make(4, s4, av);
  CHECK_OK(chai_op_attention(&r, &q, &q, &q, NULL, true, 1.0f));
  CHECK(at(&r, 0) == 1 && at(&r, 2) == 3); /* the first query sees only itself */
  chai_tensor_release(&r);

  chai_tensor_release(&q);
  chai_tensor_release(&ids);
  chai_tensor_release(&a);
  chai_tensor_release(&b);
  chai_tensor_release(&c);
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
