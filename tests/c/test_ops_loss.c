/* Cross-entropy: per-row and mean loss against a double log-sum-exp reference, ignore_index rows,
 * huge logits, the gradient against central differences of the mean loss, the error naming a bad
 * target and its row, and the tensor op. */
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

enum { N = 4, V = 5, IGN = -100 };
static const int32_t TGT[N] = {3, IGN, 0, 4};

typedef struct {
  double *logits;
} ce_ctx;

static double row_loss(const double *x, int t) {
  double m = -INFINITY, s = 0;
  for (int j = 0; j < V; j++)
    m = fmax(m, x[j]);
  for (int j = 0; j < V; j++)
    s += exp(x[j] - m);
  return m + log(s) - x[t];
}

static double ce_loss(void *p) {
  ce_ctx *c = p;
  double l = 0;
  int cnt = 0;
  for (int n = 0; n < N; n++)
    if (TGT[n] != IGN) l += row_loss(c->logits + n * V, TGT[n]), cnt++;
  return l / cnt;
}

static void test_kernels(void) {
  float logits[N * V], losses[N], loss, d[N * V], d0[N * V];
  tu_fill(logits, N * V, -3, 3);
  ce_ctx c = {tu_dup(logits, N * V)};
  int count = -1;
  CHECK_OK(chai_cross_entropy_forward(&loss, losses, &count, logits, TGT, N, V, IGN));
  CHECK(count == 3);
  CHECK_CLOSE(loss, ce_loss(&c), 1e-6);
  CHECK_CLOSE(losses[0], row_loss(c.logits, 3), 1e-6);
  CHECK(losses[1] == 0);
  CHECK_CLOSE(losses[3], row_loss(c.logits + 3 * V, 4), 1e-6);
  CHECK_OK(chai_cross_entropy_forward(&loss, NULL, NULL, logits, TGT, N, V, IGN));

  tu_fill(d0, N * V, -1, 1);
  memcpy(d, d0, sizeof d);
  chai_cross_entropy_backward(d, logits, TGT, N, V, IGN, 2.5f);
  double g[N * V];
  tu_num_grad(g, c.logits, N * V, ce_loss, &c);
  for (int i = 0; i < N * V; i++)
    g[i] *= 2.5;
  tu_check_grad("cross_entropy backward", d, d0, g, N * V, 1e-6);
  chai_cross_entropy_backward(NULL, logits, TGT, N, V, IGN, 1.0f);

  /* every row ignored: loss 0, count 0, no gradient */
  int32_t all_ign[N] = {IGN, IGN, IGN, IGN};
  CHECK_OK(chai_cross_entropy_forward(&loss, losses, &count, logits, all_ign, N, V, IGN));
  CHECK(loss == 0 && count == 0 && losses[2] == 0);
  memcpy(d, d0, sizeof d);
  chai_cross_entropy_backward(d, logits, all_ign, N, V, IGN, 1.0f);
  CHECK(memcmp(d, d0, sizeof d) == 0);

  /* logits of 1e4 would overflow a naive exp; log-sum-exp keeps the loss exact */
  float big[V] = {1e4f, 1e4f - 1, -1e4f, 0, 1e4f};
  int32_t t1[1] = {1};
  CHECK_OK(chai_cross_entropy_forward(&loss, NULL, NULL, big, t1, 1, V, IGN));
  CHECK_CLOSE(loss, 1 + log(2 + exp(-1)), 1e-5);

  int32_t bad[N] = {0, 1, 9, 0};
  CHECK_ERR(chai_cross_entropy_forward(&loss, NULL, NULL, logits, bad, N, V, IGN), CHAI_ERR_ARG,
            "target 9 in row 2 is outside 0..4");
  bad[2] = -1;
  CHECK_ERR(chai_cross_entropy_forward(&loss, NULL, NULL, logits, bad, N, V, IGN), CHAI_ERR_ARG,
            "target -1 in row 2");
  free(c.logits);
}

static void test_op(void) {
  int64_t sl[2] = {N, V}, st[1] = {N}, sv[1] = {V}, s1[1] = {1}, sbad[1] = {3};
  chai_tensor logits, tg, r1, t1, tb;
  CHECK_OK(chai_tensor_new(&logits, CHAI_F32, 2, sl));
  CHECK_OK(chai_tensor_new(&tg, CHAI_I64, 1, st));
  tu_fill(chai_tensor_data(&logits), N * V, -2, 2);
  for (int n = 0; n < N; n++)
    chai_tensor_set_flat(&tg, n, TGT[n]);
  double loss;
  CHECK_OK(chai_op_cross_entropy(&loss, &logits, &tg, IGN));
  ce_ctx c = {tu_dup(chai_tensor_data(&logits), N * V)};
  CHECK_CLOSE(loss, ce_loss(&c), 1e-6);
  /* a single (V) row */
  CHECK_OK(chai_tensor_new(&r1, CHAI_F32, 1, sv));
  CHECK_OK(chai_tensor_new(&t1, CHAI_I32, 1, s1));
  memcpy(chai_tensor_data(&r1), chai_tensor_data(&logits), V * 4);
  chai_tensor_set_flat(&t1, 0, 3);
  CHECK_OK(chai_op_cross_entropy(&loss, &r1, &t1, IGN));
  CHECK_CLOSE(loss, row_loss(c.logits, 3), 1e-6);
  CHECK_OK(chai_tensor_new(&tb, CHAI_I32, 1, sbad));
  CHECK_ERR(chai_op_cross_entropy(&loss, &logits, &tb, IGN), CHAI_ERR_ARG,
            "targets (3) must be (4) for logits (4,5)");
  chai_tensor_set_flat(&tg, 3, 5);
  CHECK_ERR(chai_op_cross_entropy(&loss, &logits, &tg, IGN), CHAI_ERR_ARG, "target 5 in row 3");
  free(c.logits);
  chai_tensor_release(&logits), chai_tensor_release(&tg), chai_tensor_release(&r1);
  chai_tensor_release(&t1), chai_tensor_release(&tb);
}

/* Row losses are summed in row order: the same bits for 1 and 2 threads. */
static void test_threads(void) {
  enum { NN = 64, VV = 1000 };
  float *x = tu_falloc(NN * VV), l1, l2, *d1 = tu_falloc(NN * VV), *d2 = tu_falloc(NN * VV);
  int32_t t[NN];
  tu_fill(x, NN * VV, -5, 5);
  for (int n = 0; n < NN; n++)
    t[n] = (n * 37) % VV;
  CHECK_OK(chai_threads(1));
  CHECK_OK(chai_cross_entropy_forward(&l1, NULL, NULL, x, t, NN, VV, IGN));
  chai_cross_entropy_backward(d1, x, t, NN, VV, IGN, 1.0f);
  CHECK_OK(chai_threads(2));
  CHECK_OK(chai_cross_entropy_forward(&l2, NULL, NULL, x, t, NN, VV, IGN));
  chai_cross_entropy_backward(d2, x, t, NN, VV, IGN, 1.0f);
  CHECK(l1 == l2 && memcmp(d1, d2, sizeof(float) * NN * VV) == 0);
  free(x), free(d1), free(d2);
}

int main(void) {
  test_kernels();
  test_op();
  test_threads();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
