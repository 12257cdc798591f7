/* Inference attention through GEMMs: the same contract as chai_attention_forward (chai/ops.h) with
 * probs == NULL, but the scores and the weighted values of each (batch row, score head, block of
 * queries) are two small sgemm calls instead of per-key dot products, and the causal mask limits
 * the keys each block multiplies. Tasks run in parallel under OpenMP; OpenBLAS runs single-threaded
 * inside them. Clustered heads (score_head) share one score computation, as in ops. */
#include <math.h>
#include <omp.h>

#include "chai/blas.h"
#include "chai/ops.h"
#include "kernels/kernels.h"
#include "model/opt_model.h"
#include "team.h"

size_t opt_attention_scratch_floats(int Tk, int threads) {
  return (size_t)threads * OPT_ATTN_QBLOCK * (size_t)(Tk > 0 ? Tk : 1);
}

/* One query per row (decoding). Each thread takes a fixed share of the score heads (and the
 * value heads they score) and reads the cache row by row, its heads' runs of each row together
 * (kernels/kernels.h). A head's result is computed the same way whatever the share, so the output
 * does not depend on the thread count. */
static void decode_heads(float *out, const float *q, const float *k, const float *v,
                         const chai_attention_args *a, int b, int s0, int s1, float *S, int *idx) {
  int Tk = a->Tk, H = a->H, D = a->D;
  /* score heads: the representatives (every head without clustering) among the share [s0, s1) */
  int *reps = idx, *vals = idx + H, *prow = idx + 2 * H, nr = 0, nv = 0;
  for (int h = s0; h < s1; h++)
    if (!a->score_head || a->score_head[h] == h) reps[nr++] = h;
  if (nr == 0) return;
  const float *qb = q + (size_t)b * a->q_ts, *kb = k + (size_t)b * Tk * a->k_ts;
  chai_attn_scores(S, Tk, qb, kb, (size_t)a->k_ts, reps, nr, Tk, D, a->scale);
  const float *mask = a->key_mask ? a->key_mask + (size_t)b * Tk : NULL;
  for (int i = 0; i < nr; i++) {
    float *row = S + (size_t)i * Tk;
    if (mask)
      for (int j = 0; j < Tk; j++)
        if (mask[j] == 0.0f) row[j] = -INFINITY;
    chai_softmax_row(row, row, Tk); /* all -inf: zeros */
  }
  /* value heads: every head whose representative is one of reps, in ascending order */
  for (int h = 0; h < H; h++) {
    int r = a->score_head ? a->score_head[h] : h;
    for (int i = 0; i < nr; i++)
      if (reps[i] == r) {
        vals[nv] = h, prow[nv++] = i;
        break;
      }
  }
  chai_attn_values(out + (size_t)b * H * D, S, Tk, prow, vals, nv, v + (size_t)b * Tk * a->v_ts,
                   (size_t)a->v_ts, Tk, D);
}

typedef struct {
  float *out;
  const float *q, *k, *v;
  const chai_attention_args *a;
  float *scratch;
} decode_job;

/* Thread t of n: a fixed share of the heads of every row, in its own rows of scratch. */
static void decode_part(void *ctx, int t, int n) {
  decode_job *j = ctx;
  int H = j->a->H;
  if (n > H) n = H;
  if (t >= n) return;
  float *S = j->scratch + (size_t)t * OPT_ATTN_QBLOCK * j->a->Tk;
  int idx[3 * OPT_ATTN_QBLOCK];
  for (int b = 0; b < j->a->B; b++)
    decode_heads(j->out, j->q, j->k, j->v, j->a, b, H * t / n, H * (t + 1) / n, S, idx);
}

static void decode_rows(float *out, const float *q, const float *k, const float *v,
                        const chai_attention_args *a, float *scratch) {
  int B = a->B, Tk = a->Tk, H = a->H;
  /* As the int8 cache's attention (src/ops/attention_q8.c): an OpenMP team pays for itself from
   * ~2^19 multiply-adds, a decode step of opt-125m from ~340 cached tokens (below that, a second
   * thread did not shorten a step here: Zen 5, 33-96 cached tokens, 17 µs a layer either way). A
   * decode step's held team hands over for much less (team.h). */
  bool par = chai_team_worth((double)B * H * Tk * a->D * 2, (double)(1 << 19));
  /* scratch: OPT_ATTN_QBLOCK (>= H, see opt_attention_scratch_floats) rows of Tk per thread */
  if (!par) { /* outside any OpenMP region: see chai_layernorm_forward */
    int idx[3 * OPT_ATTN_QBLOCK];
    for (int b = 0; b < B; b++)
      decode_heads(out, q, k, v, a, b, 0, H, scratch, idx);
    return;
  }
  decode_job job = {out, q, k, v, a, scratch};
  chai_team_run(decode_part, &job, omp_get_max_threads());
}

chai_status opt_attention_forward(float *out, const float *q, const float *k, const float *v,
                                  const chai_attention_args *a, float *scratch,
                                  size_t scratch_floats) {
  int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
  if (B < 1 || Tq < 1 || Tk < Tq || H < 1 || D < 1 || a->q_ts < H * D || a->k_ts < H * D ||
      a->v_ts < H * D)
    return chai_error(CHAI_ERR_ARG, "attention: bad sizes B=%d Tq=%d Tk=%d H=%d D=%d", B, Tq, Tk, H,
                      D);
  if (a->score_head)
    for (int h = 0; h < H; h++) {
      int r = a->score_head[h];
      if (r < 0 || r >= H || a->score_head[r] != r)
        return chai_error(CHAI_ERR_ARG,
                          "attention: score_head[%d] = %d is not a representative head", h, r);
    }
  int nblk = (Tq + OPT_ATTN_QBLOCK - 1) / OPT_ATTN_QBLOCK;
  long ntask = (long)B * H * nblk;
  int threads = omp_get_max_threads();
  if (scratch_floats < opt_attention_scratch_floats(Tk, threads))
    return chai_error(CHAI_ERR_STATE, "attention: scratch too small for %d keys x %d threads", Tk,
                      threads);
  if (Tq == 1 && H <= OPT_ATTN_QBLOCK) {
    decode_rows(out, q, k, v, a, scratch);
    return CHAI_OK;
  }
  int off = Tk - Tq; /* query i sits at key position off + i */
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1 && (long)Tq * Tk * D > 8192)
  for (long t = 0; t < ntask; t++) {
    int blk = (int)(t % nblk), r = (int)((t / nblk) % H), b = (int)(t / ((long)nblk * H));
    if (a->score_head && a->score_head[r] != r) continue;
    int i0 = blk * OPT_ATTN_QBLOCK, nq = Tq - i0 < OPT_ATTN_QBLOCK ? Tq - i0 : OPT_ATTN_QBLOCK;
    /* Keys any query of the block may see. */
    int kmax = a->causal ? off + i0 + nq : Tk;
    float *S = scratch + (size_t)omp_get_thread_num() * OPT_ATTN_QBLOCK * Tk;
    const float *qb = q + ((size_t)b * Tq + i0) * a->q_ts + (size_t)r * D;
    const float *kb = k + (size_t)b * Tk * a->k_ts + (size_t)r * D;
    /* S (nq, kmax) = scale · Q_r Kᵀ_r */
    chai_sgemm(false, true, nq, kmax, D, a->scale, qb, a->q_ts, kb, a->k_ts, 0.0f, S, kmax);
    const float *mask = a->key_mask ? a->key_mask + (size_t)b * Tk : NULL;
    for (int i = 0; i < nq; i++) {
      float *row = S + (size_t)i * kmax;
      int lim = a->causal ? off + i0 + i + 1 : Tk;
      for (int j = lim; j < kmax; j++)
        row[j] = -INFINITY;
      if (mask)
        for (int j = 0; j < lim; j++)
          if (mask[j] == 0.0f) row[j] = -INFINITY;
      chai_softmax_row(row, row, kmax); /* -inf entries give 0; an all -inf row, zeros */
    }
    /* O_h (nq, D) = P V_h for every head h scored by r */
    for (int h = 0; h < H; h++) {
      if ((a->score_head ? a->score_head[h] : h) != r) continue;
      const float *vb = v + (size_t)b * Tk * a->v_ts + (size_t)h * D;
      float *ob = out + ((size_t)b * Tq + i0) * H * D + (size_t)h * D;
      chai_sgemm(false, false, nq, D, kmax, 1.0f, S, kmax, vb, a->v_ts, 0.0f, ob, H * D);
    }
  }
  return CHAI_OK;
}
