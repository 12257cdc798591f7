/* Clustered attention over packed representative queries and keys (see chai/heads.h), and CHAI's
 * online membership from the first prompt tokens. The kernel mirrors chai_attention_forward
 * (src/ops/attention.c): tasks (b, slot), a block of query rows scored by one GEMM, then one GEMM
 * per member head against its own V. What differs is addressing: a slot's q and k sit at slot·D in
 * a K-wide row, so the K cache can hold representatives only. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "chai/blas.h"
#include "chai/heads.h"
#include "chai/memory.h"
#include "kernels/kernels.h"
#include "team.h"

enum { BQ = 64 }; /* query rows per block, as in ops */

static chai_status check_args(const chai_heads_attention_args *a) {
  if (a->B < 0 || a->Tq < 0 || a->Tk < 0 || a->H < 1 || a->D < 1 || a->K < 1 || a->K > a->H)
    return chai_error(CHAI_ERR_ARG,
                      "clustered attention: bad sizes B=%d Tq=%d Tk=%d H=%d K=%d D=%d", a->B, a->Tq,
                      a->Tk, a->H, a->K, a->D);
  if (a->q_ts < a->K * a->D || a->k_ts < a->K * a->D || a->v_ts < a->H * a->D)
    return chai_error(CHAI_ERR_ARG,
                      "clustered attention: token strides q=%d k=%d v=%d are below K*D=%d / H*D=%d",
                      a->q_ts, a->k_ts, a->v_ts, a->K * a->D, a->H * a->D);
  if (!a->slot) return chai_error(CHAI_ERR_ARG, "clustered attention: no slot map");
  for (int h = 0; h < a->H; h++)
    if (a->slot[h] < 0 || a->slot[h] >= a->K)
      return chai_error(CHAI_ERR_ARG, "clustered attention: slot[%d] = %d is outside 0..%d", h,
                        a->slot[h], a->K - 1);
  for (int s = 0; s < a->K; s++) {
    int used = 0;
    for (int h = 0; h < a->H && !used; h++)
      used = a->slot[h] == s;
    if (!used) return chai_error(CHAI_ERR_ARG, "clustered attention: slot %d has no head", s);
  }
  return CHAI_OK;
}

static inline int key_limit(const chai_heads_attention_args *a, int i) {
  if (!a->causal) return a->Tk;
  int lim = a->Tk - a->Tq + i + 1;
  return lim < 0 ? 0 : lim > a->Tk ? a->Tk : lim;
}

/* s (bq,Tk) = softmax of slot `sl`'s masked scores for query rows i0..i0+bq−1 of batch row b;
 * returns how many keys any of these rows can see. */
static int score_block(float *s, const float *q, const float *k, const chai_heads_attention_args *a,
                       int b, int sl, int i0, int bq) {
  int Tk = a->Tk, hi = key_limit(a, i0 + bq - 1);
  const float *qb = q + ((size_t)b * a->Tq + i0) * a->q_ts + (size_t)sl * a->D;
  const float *kb = k + (size_t)b * Tk * a->k_ts + (size_t)sl * a->D;
  const float *mask = a->key_mask ? a->key_mask + (size_t)b * Tk : NULL;
  if (hi > 0)
    chai_sgemm(false, true, bq, hi, a->D, a->scale, qb, a->q_ts, kb, a->k_ts, 0.0f, s, Tk);
  for (int ii = 0; ii < bq; ii++) {
    float *row = s + (size_t)ii * Tk;
    int lim = key_limit(a, i0 + ii);
    for (int j = lim; j < Tk; j++)
      row[j] = -INFINITY;
    if (mask)
      for (int j = 0; j < lim; j++)
        if (mask[j] == 0.0f) row[j] = -INFINITY;
    chai_softmax_row(row, row, Tk);
  }
  return hi;
}

/* Task t = (row b, slot sl): the slot's scores over every block of queries, then each value head
 * it serves; s is the thread's scratch (BQ rows of Tk). */
static void slot_task(float *out, const float *q, const float *k, const float *v,
                      const chai_heads_attention_args *a, long t, float *s) {
  int Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D, K = a->K, hd = H * D;
  int b = (int)(t / K), sl = (int)(t % K);
  for (int i0 = 0; i0 < Tq; i0 += BQ) {
    int bq = Tq - i0 < BQ ? Tq - i0 : BQ;
    int hi = score_block(s, q, k, a, b, sl, i0, bq);
    for (int h = 0; h < H; h++) {
      if (a->slot[h] != sl) continue;
      /* out rows (bq, D), row stride H·D = P (bq, hi) · V_h (hi, D); hi = 0 gives zeros */
      chai_sgemm(false, false, bq, D, hi, 1.0f, s, Tk, v + (size_t)b * Tk * a->v_ts + (size_t)h * D,
                 a->v_ts, 0.0f, out + ((size_t)b * Tq + i0) * hd + (size_t)h * D, hd);
    }
  }
}

/* The slot tasks, shared by the threads as they come free (a decode step holds a team: team.h). */
typedef struct {
  float *out;
  const float *q, *k, *v;
  const chai_heads_attention_args *a;
  float *scratch;
  size_t per_thread;
} slots_job;

static void slot_item(void *ctx, long i, int t) {
  slots_job *j = ctx;
  slot_task(j->out, j->q, j->k, j->v, j->a, i, j->scratch + (size_t)t * j->per_thread);
}

chai_status chai_heads_attention_forward(float *out, const float *q, const float *k, const float *v,
                                         const chai_heads_attention_args *a) {
  chai_status st = check_args(a);
  if (st) return st;
  if ((st = chai_blas_init())) return st;
  int B = a->B, Tq = a->Tq, Tk = a->Tk, D = a->D, K = a->K;
  int nthreads = omp_get_max_threads();
  size_t rows = Tq < BQ ? (Tq > 0 ? Tq : 1) : BQ, per_thread = rows * (Tk > 0 ? Tk : 1);
  size_t scratch_bytes = (size_t)nthreads * per_thread * sizeof(float);
  float *scratch = chai_alloc(scratch_bytes, "clustered attention scores");
  if (!scratch) return CHAI_ERR_NOMEM;
  long ntask = (long)B * K;
  /* a short decode step runs outside any OpenMP region (a false if clause still costs a team of
   * one, ~1.4 µs here) */
  if (ntask > 1 && ntask * Tq * Tk * D >= (1L << 20)) {
    slots_job job = {out, q, k, v, a, scratch, per_thread};
    chai_team_for(ntask, slot_item, &job, nthreads);
  } else {
    for (long t = 0; t < ntask; t++)
      slot_task(out, q, k, v, a, t, scratch);
  }
  chai_free(scratch, scratch_bytes);
  return CHAI_OK;
}

chai_status chai_heads_online_labels(int *labels, const float *q, const float *k, int n, int H,
                                     int D, int q_ts, int k_ts, float scale, int n_clusters) {
  if (!labels || !q || !k) return chai_error(CHAI_ERR_ARG, "online membership: NULL argument");
  if (n < 1 || H < 1 || D < 1 || q_ts < H * D || k_ts < H * D)
    return chai_error(CHAI_ERR_ARG, "online membership: bad sizes n=%d H=%d D=%d", n, H, D);
  if (n_clusters < 1 || n_clusters > H)
    return chai_error(CHAI_ERR_ARG, "online membership: k = %d outside 1..%d", n_clusters, H);
  size_t nf = (size_t)n * n;
  size_t fbytes = (size_t)H * nf * sizeof(float), dbytes = (size_t)H * H * sizeof(double);
  float *feat = chai_alloc(fbytes, "online membership features");
  double *dist = feat ? chai_alloc(dbytes, "online membership distances") : NULL;
  if (!dist) {
    chai_free(feat, fbytes);
    return CHAI_ERR_NOMEM;
  }
  for (int h = 0; h < H; h++) {
    float *f = feat + (size_t)h * nf;
    for (int i = 0; i < n; i++) {
      float *row = f + (size_t)i * n;
      for (int j = 0; j < n; j++) {
        const float *qi = q + (size_t)i * q_ts + (size_t)h * D,
                    *kj = k + (size_t)j * k_ts + (size_t)h * D;
        float sdot = 0;
        for (int d = 0; d < D; d++)
          sdot += qi[d] * kj[d];
        row[j] = sdot * scale;
      }
      chai_softmax_row_ref(row, row, n); /* no causal mask, as the paper's code */
    }
  }
  chai_status st = chai_cosine_distance(dist, feat, H, (int)nf);
  if (!st) st = chai_agglomerative_average(labels, dist, H, n_clusters);
  chai_free(dist, dbytes);
  chai_free(feat, fbytes);
  return st;
}
