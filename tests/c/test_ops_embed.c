/* Embedding: lookup, scatter-add backward with repeated ids (against central differences), the
 * out-of-range errors naming the id and its position, and the tensor op with i32/i64 ids. */
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

enum { V = 6, C = 5, N = 4 };
static const int32_t IDS[N] = {2, 5, 2, 0};

typedef struct {
  double *table, *dout;
} emb_ctx;

static double emb_loss(void *p) {
  emb_ctx *c = p;
  double l = 0;
  for (int n = 0; n < N; n++)
    for (int i = 0; i < C; i++)
      l += c->table[IDS[n] * C + i] * c->dout[n * C + i];
  return l;
}

static void test_kernels(void) {
  float table[V * C], out[N * C], dout[N * C], dt[V * C], dt0[V * C];
  tu_fill(table, V * C, -1, 1);
  tu_fill(dout, N * C, -1, 1);
  tu_fill(dt0, V * C, -1, 1);
  CHECK_OK(chai_embedding_forward(out, IDS, table, N, C, V));
  bool ok = true;
  for (int n = 0; n < N; n++)
    ok = ok && memcmp(out + n * C, table + IDS[n] * C, C * 4) == 0;
  CHECK(ok);
  memcpy(dt, dt0, sizeof dt);
  chai_embedding_backward(dt, dout, IDS, N, C);
  emb_ctx c = {tu_dup(table, V * C), tu_dup(dout, N * C)};
  double g[V * C];
  tu_num_grad(g, c.table, V * C, emb_loss, &c);
  tu_check_grad("embedding backward", dt, dt0, g, V * C, 1e-6);
  chai_embedding_backward(NULL, dout, IDS, N, C);
  free(c.table), free(c.dout);

  int32_t bad[3] = {1, 2, 7}, neg[2] = {0, -1};
  memset(out, 0, sizeof out);
  CHECK_ERR(chai_embedding_forward(out, bad, table, 3, C, V), CHAI_ERR_ARG,
            "id 7 at position 2 is outside 0..5");
  CHECK(out[0] == 0); /* nothing written before the check */
  CHECK_ERR(chai_embedding_forward(out, neg, table, 2, C, V), CHAI_ERR_ARG, "id -1 at position 1");
}

static void test_op(void) {
  int64_t st[2] = {V, C}, si[2] = {2, 2};
  chai_tensor table, ids, r;
  CHECK_OK(chai_tensor_new(&table, CHAI_F32, 2, st));
  tu_fill(chai_tensor_data(&table), V * C, -1, 1);
  for (int dt = 0; dt < 2; dt++) {
    CHECK_OK(chai_tensor_new(&ids, dt ? CHAI_I64 : CHAI_I32, 2, si));
    for (int i = 0; i < 4; i++)
      chai_tensor_set_flat(&ids, i, IDS[i]);
    CHECK_OK(chai_op_embedding(&r, &ids, &table));
    CHECK(r.ndim == 3 && r.shape[0] == 2 && r.shape[1] == 2 && r.shape[2] == C);
    CHECK(chai_tensor_get_flat(&r, 1 * C + 3) == chai_tensor_get_flat(&table, 5 * C + 3));
    chai_tensor_release(&r);
    chai_tensor_set_flat(&ids, 3, 6);
    CHECK_ERR(chai_op_embedding(&r, &ids, &table), CHAI_ERR_ARG,
              "id 6 at position 3 is outside 0..5");
    CHECK(!chai_tensor_alive(&r));
    chai_tensor_release(&ids);
  }
  CHECK_OK(chai_tensor_new(&ids, CHAI_I64, 2, si));
  chai_tensor_set_flat(&ids, 1, 5e9);
  CHECK_ERR(chai_op_embedding(&r, &ids, &table), CHAI_ERR_ARG, "value 5000000000 at position 1");
  chai_tensor_release(&ids);
  int64_t s4[4] = {1, 1, 1, 1};
  CHECK_OK(chai_tensor_new(&ids, CHAI_I32, 4, s4));
  CHECK_ERR(chai_op_embedding(&r, &ids, &table), CHAI_ERR_ARG, "the result would have 5 (max 4)");
  chai_tensor_release(&ids);
  CHECK_OK(chai_tensor_new(&ids, CHAI_F32, 2, si));
  CHECK_ERR(chai_op_embedding(&r, &ids, &table), CHAI_ERR_ARG,
            "expected an i32 or i64 tensor, got f32");
  chai_tensor_release(&ids);
  int64_t s1[1] = {4};
  chai_tensor flat;
  CHECK_OK(chai_tensor_new(&ids, CHAI_I32, 2, si));
  CHECK_OK(chai_tensor_new(&flat, CHAI_F32, 1, s1));
  CHECK_ERR(chai_op_embedding(&r, &ids, &flat), CHAI_ERR_ARG, "table (4) must be (V,C)");
  chai_tensor_release(&flat);
  chai_tensor_release(&ids);
  chai_tensor_release(&table);
}

int main(void) {
  test_kernels();
  test_op();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
