/* Clustered attention over packed representatives against ops' chai_attention_forward (dense, and
 * with its score_head map on full-width q/k), across prefill/decode shapes, padding, threads; and
 * CHAI's online membership. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/src/team.h"
#include "chai/chai.h"
#include "chai/heads.h"
#include "check.h"

/* chai_heads_attention_forward as the body of a held team (a decode step's). */
typedef struct {
  float *out;
  const float *q, *k, *v;
  const chai_heads_attention_args *a;
} heads_call;
static chai_status heads_body(void *ctx) {
  heads_call *c = ctx;
  return chai_heads_attention_forward(c->out, c->q, c->k, c->v, c->a);
}

static float *randn(size_t n, uint64_t seed) {
  float *x = malloc(n * sizeof(float));
  chai_rng r;
  chai_rng_init(&r, seed);
  chai_rng_fill_normal(&r, x, n, 0, 1);
  return x;
}

/* One comparison: B rows, Tq queries after Tk−Tq cached keys, H heads in clusters `score` (head →
 * representative). */
static void compare(int B, int Tq, int Tk, int H, int D, const int *score, bool mask, double tol) {
  int hd = H * D;
  float *q = randn((size_t)B * Tq * hd, 1), *k = randn((size_t)B * Tk * hd, 2);
  float *v = randn((size_t)B * Tk * hd, 3);
  float *km = NULL;
  if (mask) {
    km = malloc(sizeof(float) * B * Tk);
    for (int i = 0; i < B * Tk; i++)
      km[i] = (i % 5 == 1) ? 0.0f : 1.0f; /* a few padded keys */
  }
  float *want = calloc((size_t)B * Tq * hd, sizeof(float)),
        *got = calloc((size_t)B * Tq * hd, sizeof(float));
  chai_attention_args oa = {.B = B,
                            .Tq = Tq,
                            .Tk = Tk,
                            .H = H,
                            .D = D,
                            .q_ts = hd,
                            .k_ts = hd,
                            .v_ts = hd,
                            .scale = 0.125f,
                            .causal = true,
                            .key_mask = km,
                            .score_head = score};
  CHECK_OK(chai_attention_forward(want, NULL, q, k, v, &oa));
  /* Pack the representatives' q and k (slot order = order of first appearance). */
  int slot[64], rep[64], K = 0;
  for (int h = 0; h < H; h++) {
    int r = score ? score[h] : h;
    int s = -1;
    for (int j = 0; j < K; j++)
      if (rep[j] == r) s = j;
    if (s < 0) {
      rep[K] = r;
      s = K++;
    }
    slot[h] = s;
  }
  int kd = K * D;
  float *qp = malloc(sizeof(float) * B * Tq * kd), *kp = malloc(sizeof(float) * B * Tk * kd);
  for (int t = 0; t < B * Tq; t++)
    for (int s = 0; s < K; s++)
      memcpy(qp + (size_t)t * kd + s * D, q + (size_t)t * hd + rep[s] * D, sizeof(float) * D);
  for (int t = 0; t < B * Tk; t++)
    for (int s = 0; s < K; s++)
      memcpy(kp + (size_t)t * kd + s * D, k + (size_t)t * hd + rep[s] * D, sizeof(float) * D);
  chai_heads_attention_args a = {.B = B,
                                 .Tq = Tq,
                                 .Tk = Tk,
                                 .H = H,
                                 .K = K,
                                 .D = D,
                                 .q_ts = kd,
                                 .k_ts = kd,
                                 .v_ts = hd,
                                 .scale = 0.125f,
                                 .causal = true,
                                 .key_mask = km,
                                 .slot = slot};
  CHECK_OK(chai_heads_attention_forward(got, qp, kp, v, &a));
  CHECK(chai_test_max_abs_diff_f(got, want, (size_t)B * Tq * hd) <= tol);
  /* Same bits with one and two threads. */
  float *got1 = calloc((size_t)B * Tq * hd, sizeof(float));
  omp_set_num_threads(1);
  CHECK_OK(chai_heads_attention_forward(got1, qp, kp, v, &a));
  omp_set_num_threads(2);
  CHECK(memcmp(got1, got, sizeof(float) * B * Tq * hd) == 0);
  /* and in a held team */
  heads_call call = {got1, qp, kp, v, &a};
  CHECK_OK(chai_team_hold(heads_body, &call));
  CHECK(memcmp(got1, got, sizeof(float) * B * Tq * hd) == 0);
  free(q), free(k), free(v), free(km), free(want), free(got), free(got1), free(qp), free(kp);
}

int main(void) {
  int ident[6] = {0, 1, 2, 3, 4, 5};
  int clus[6] = {0, 1, 0, 3, 1, 0}; /* clusters {0,2,5}, {1,4}, {3} */
  int one[6] = {0, 0, 0, 0, 0, 0};
  /* Every head its own cluster equals dense attention. */
  compare(2, 9, 9, 6, 16, NULL, false, 1e-6);
  compare(2, 9, 9, 6, 16, ident, true, 1e-6);
  /* Clusters equal ops' score_head computation: prefill, long prefill (several blocks), decode. */
  compare(2, 9, 9, 6, 16, clus, true, 1e-6);
  compare(1, 150, 150, 6, 8, clus, false, 1e-6);
  compare(3, 1, 40, 6, 16, clus, true, 1e-6);
  compare(1, 4, 70, 6, 16, one, true, 1e-6);
  /* a decode step long enough for the thread team (2^20 multiply-adds) */
  compare(1, 1, 6000, 6, 64, clus, true, 1e-5);

  /* Refusals. */
  float x[64] = {0};
  int bad[2] = {0, 2};
  chai_heads_attention_args a = {.B = 1,
                                 .Tq = 1,
                                 .Tk = 1,
                                 .H = 2,
                                 .K = 2,
                                 .D = 4,
                                 .q_ts = 8,
                                 .k_ts = 8,
                                 .v_ts = 8,
                                 .scale = 1,
                                 .causal = true,
                                 .slot = bad};
  CHECK_ERR(chai_heads_attention_forward(x, x, x, x, &a), CHAI_ERR_ARG,
            "slot[1] = 2 is outside 0..1");
  int unused[2] = {0, 0};
  a.slot = unused;
  CHECK_ERR(chai_heads_attention_forward(x, x, x, x, &a), CHAI_ERR_ARG, "slot 1 has no head");
  a.k_ts = 4;
  CHECK_ERR(chai_heads_attention_forward(x, x, x, x, &a), CHAI_ERR_ARG, "token strides");

  /* Online membership: heads 0, 2 and 3 see the same pattern, 1 and 4 another (their q and k are
   * copies); k = 2 puts them together, representatives 0 and 1. */
  int n = 5, H = 5, D = 8;
  float *q = randn((size_t)n * H * D, 7), *k = randn((size_t)n * H * D, 8);
  for (int t = 0; t < n; t++) {
    memcpy(q + (t * H + 2) * D, q + (t * H + 0) * D, sizeof(float) * D);
    memcpy(k + (t * H + 2) * D, k + (t * H + 0) * D, sizeof(float) * D);
    memcpy(q + (t * H + 3) * D, q + (t * H + 0) * D, sizeof(float) * D);
    memcpy(k + (t * H + 3) * D, k + (t * H + 0) * D, sizeof(float) * D);
    memcpy(q + (t * H + 4) * D, q + (t * H + 1) * D, sizeof(float) * D);
    memcpy(k + (t * H + 4) * D, k + (t * H + 1) * D, sizeof(float) * D);
  }
  int labels[5];
  CHECK_OK(chai_heads_online_labels(labels, q, k, n, H, D, H * D, H * D, 0.35f, 2));
  CHECK(labels[0] == 0 && labels[1] == 1 && labels[2] == 0 && labels[3] == 0 && labels[4] == 1);
  CHECK_OK(chai_heads_online_labels(labels, q, k, n, H, D, H * D, H * D, 0.35f, 5));
  CHECK(labels[0] == 0 && labels[4] == 4);
  CHECK_ERR(chai_heads_online_labels(labels, q, k, n, H, D, H * D, H * D, 0.35f, 6), CHAI_ERR_ARG,
            "k = 6 outside 1..5");
  free(q), free(k);
  return chai_test_finish();
}
