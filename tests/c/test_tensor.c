/* Tensor views, storage refcounts, dtype conversion and element access. */
#include <string.h>

#include "chai/chai.h"
#include "check.h"

static void test_new_and_views(void) {
  chai_tensor t, v, tt, s, c;
  int64_t shape[2] = {2, 3};
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, 2, shape));
  CHECK(chai_tensor_numel(&t) == 6);
  CHECK(((uintptr_t)chai_tensor_data(&t) & 63) == 0);
  for (int i = 0; i < 6; i++)
    chai_tensor_set_flat(&t, i, i);
  int64_t s32[2] = {3, -1};
  CHECK_OK(chai_tensor_view(&v, &t, 2, s32));
  CHECK(v.shape[1] == 2 && v.storage == t.storage && t.storage->refs == 2);
  CHECK_OK(chai_tensor_transpose(&tt, &t, 0, 1));
  CHECK(!chai_tensor_is_contiguous(&tt));
  CHECK(chai_tensor_get_flat(&tt, 1) == 3); /* tt[0][1] = t[1][0] */
  int64_t flat[1] = {6};
  CHECK_ERR(chai_tensor_view(&c, &tt, 1, flat), CHAI_ERR_ARG, "non-contiguous");
  CHECK_OK(chai_tensor_reshape(&c, &tt, 1, flat));
  CHECK(c.storage != t.storage && chai_tensor_get_flat(&c, 1) == 3);
  chai_tensor_release(&c);
  CHECK_OK(chai_tensor_slice(&s, &t, 1, 1, 3, 1));
  CHECK(s.shape[1] == 2 && chai_tensor_get_flat(&s, 0) == 1 && chai_tensor_get_flat(&s, 2) == 4);
  CHECK_OK(chai_tensor_contiguous(&c, &s));
  CHECK(chai_tensor_is_contiguous(&c) && chai_tensor_get_flat(&c, 3) == 5);
  chai_tensor_release(&c);
  int perm[2] = {1, 0};
  CHECK_OK(chai_tensor_permute(&c, &t, perm));
  CHECK(c.shape[0] == 3 && chai_tensor_get_flat(&c, 1) == 3);
  chai_tensor_release(&c);
  int bad_perm[2] = {0, 0};
  CHECK_ERR(chai_tensor_permute(&c, &t, bad_perm), CHAI_ERR_ARG, "twice");
  CHECK_ERR(chai_tensor_slice(&c, &t, 1, 2, 5, 1), CHAI_ERR_ARG, "out of range");
  CHECK_ERR(chai_tensor_transpose(&c, &t, 0, 2), CHAI_ERR_ARG, "dim 2");
  int64_t idx[2] = {1, 2}, bad[2] = {2, 0};
  double x;
  CHECK_OK(chai_tensor_get(&t, idx, &x));
  CHECK(x == 5);
  CHECK_ERR(chai_tensor_get(&t, bad, &x), CHAI_ERR_ARG, "out of range");
  chai_tensor_release(&v);
  chai_tensor_release(&tt);
  chai_tensor_release(&s);
  CHECK(t.storage->refs == 1);
  chai_tensor_release(&t);
  chai_tensor_release(&t); /* idempotent */
  CHECK_ERR(chai_tensor_get(&t, idx, &x), CHAI_ERR_STATE, "after free");
}

static void test_dtypes(void) {
  chai_tensor t, h, b, i, back;
  int64_t n[1] = {5};
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, 1, n));
  float vals[5] = {1.0f, -2.5f, 65504.0f, 1e-8f, 3.14159f};
  memcpy(chai_tensor_data(&t), vals, sizeof vals);
  CHECK_OK(chai_tensor_to(&h, &t, CHAI_F16));
  CHECK_OK(chai_tensor_to(&b, &t, CHAI_BF16));
  CHECK_OK(chai_tensor_to(&i, &t, CHAI_I32));
  CHECK(chai_tensor_get_flat(&h, 2) == 65504.0);
  CHECK_CLOSE(chai_tensor_get_flat(&h, 4), 3.140625, 1e-9);
  CHECK_CLOSE(chai_tensor_get_flat(&b, 4), 3.140625, 1e-9);
  CHECK(chai_tensor_get_flat(&i, 1) == -2);
  CHECK_OK(chai_tensor_to(&back, &h, CHAI_F32));
  CHECK(chai_tensor_get_flat(&back, 0) == 1.0);
  chai_dtype dt;
  CHECK_OK(chai_dtype_parse("bfloat16", &dt));
  CHECK(dt == CHAI_BF16);
  CHECK_ERR(chai_dtype_parse("f64", &dt), CHAI_ERR_ARG, "f64");
  chai_tensor_release(&t), chai_tensor_release(&h), chai_tensor_release(&b);
  chai_tensor_release(&i), chai_tensor_release(&back);
}

static void test_alloc_failure(void) {
  chai_tensor t;
  int64_t n[1] = {1000};
  size_t live = chai_memory_live();
  chai_alloc_fail_after(1);
  CHECK_ERR(chai_tensor_new(&t, CHAI_F32, 1, n), CHAI_ERR_NOMEM, "out of memory");
  CHECK(!chai_tensor_alive(&t));
  chai_alloc_fail_after(2); /* the header succeeds, the data fails: nothing leaks */
  CHECK_ERR(chai_tensor_new(&t, CHAI_F32, 1, n), CHAI_ERR_NOMEM, "tensor storage");
  chai_alloc_fail_after(0);
  CHECK(chai_memory_live() == live);
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, 1, n));
  chai_tensor_release(&t);
  int64_t neg[1] = {-1};
  CHECK_ERR(chai_tensor_new(&t, CHAI_F32, 1, neg), CHAI_ERR_ARG, "negative");
}

int main(void) {
  test_new_and_views();
  test_dtypes();
  test_alloc_failure();
  return chai_test_finish();
}
