/* Multi-head scaled dot-product attention with optional clustered score heads (see ops.h).
 * Work is split into tasks (b, r) over batches and representative heads r: a task computes r's
 * masked scores once, turns them into probabilities, and applies them to the V of every head whose
 * score_head is r. The mask depends only on (b, query, key), so all heads of a cluster share the
 * probabilities. Each task writes only its own heads' outputs and gradients, so results do not
 * depend on the number of threads. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "chai/blas.h"
#include "chai/memory.h"
#include "chai/ops.h"
#include "kernels/kernels.h"

static chai_status check_args(const chai_attention_args *a) {
  if (a->B < 0 || a->Tq < 0 || a->Tk < 0 || a->H < 1 || a->D < 1)
    return chai_error(CHAI_ERR_ARG, "attention: bad sizes B=%d Tq=%d Tk=%d H=%d D=%d", a->B, a->Tq,
                      a->Tk, a->H, a->D);
  int hd = a->H * a->D;
  if (a->q_ts < hd || a->k_ts < hd || a->v_ts < hd)
    return chai_error(CHAI_ERR_ARG, "attention: token strides q=%d k=%d v=%d are below H*D=%d",
                      a->q_ts, a->k_ts, a->v_ts, hd);
  if (a->score_head) {
    for (int h = 0; h < a->H; h++) {
      int r = a->score_head[h];
      if (r < 0 || r >= a->H)
        return chai_error(CHAI_ERR_ARG, "attention: score_head[%d] = %d is outside 0..%d", h, r,
                          a->H - 1);
      if (a->score_head[r] != r)
        return chai_error(CHAI_ERR_ARG,
                          "attention: score_head[%d] = %d but head %d is not a representative "
                          "(score_head[%d] = %d)",
                          h, r, r, r, a->score_head[r]);
    }
  }
  return CHAI_OK;
}

static inline int rep_of(const chai_attention_args *a, int h) {
  return a->score_head ? a->score_head[h] : h;
}

/* Number of keys query i may see, before the key mask: keys 0..Tk−Tq+i when causal. */
static inline int key_limit(const chai_attention_args *a, int i) {
  if (!a->causal) return a->Tk;
  int lim = a->Tk - a->Tq + i + 1;
  return lim < 0 ? 0 : lim > a->Tk ? a->Tk : lim;
}

static inline float dot(const float *x, const float *y, int n) {
  float s = 0;
  for (int d = 0; d < n; d++)
    s += x[d] * y[d];
  return s;
}

/* Query rows per block: a block's scores (BQ, Tk) come from one GEMM and its outputs from one GEMM
 * per head, which keeps the scratch small (BQ·Tk floats per thread) and, under the causal mask,
 * skips all keys past the block's last visible one. */
enum { BQ = 64 };

/* Rows i0..i0+bq−1 of task (b, r): s (bq, Tk; row stride Tk) becomes the softmax of r's masked
 * scores. Returns the number of keys any of these rows can see (the columns after it are 0). */
static int score_block(float *s, const float *q, const float *k, const chai_attention_args *a,
                       int b, int r, int i0, int bq) {
  int Tk = a->Tk, hi = key_limit(a, i0 + bq - 1);
  const float *qb = q + ((size_t)b * a->Tq + i0) * a->q_ts + (size_t)r * a->D;
  const float *kb = k + (size_t)b * Tk * a->k_ts + (size_t)r * a->D;
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

chai_status chai_attention_forward(float *out, float *probs, const float *q, const float *k,
                                   const float *v, const chai_attention_args *a) {
  chai_status st = check_args(a);
  if (st) return st;
  if ((st = chai_blas_init())) return st;
  int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D, hd = H * D;
  int nthreads = omp_get_max_threads();
  size_t rows = Tq < BQ ? (Tq > 0 ? Tq : 1) : BQ, per_thread = rows * (Tk > 0 ? Tk : 1);
  size_t scratch_bytes = probs ? 0 : (size_t)nthreads * per_thread * sizeof(float);
  float *scratch = NULL;
  if (scratch_bytes && !(scratch = chai_alloc(scratch_bytes, "attention scores")))
    return CHAI_ERR_NOMEM;
  long ntask = (long)B * H;
  /* A decode step of a small model is ~100 µs of work: below ~1M multiply-adds a thread team costs
   * more than it saves (and much more on a loaded machine). */
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1 && ntask * Tq * Tk * D >= (1L << 20))
  for (long t = 0; t < ntask; t++) {
    int b = (int)(t / H), r = (int)(t % H);
    if (rep_of(a, r) != r) continue;
    for (int i0 = 0; i0 < Tq; i0 += BQ) {
      int bq = Tq - i0 < BQ ? Tq - i0 : BQ;
      float *s = probs ? probs + (((size_t)b * H + r) * Tq + i0) * Tk
                       : scratch + (size_t)omp_get_thread_num() * per_thread;
      int hi = score_block(s, q, k, a, b, r, i0, bq);
      for (int h = 0; h < H; h++) {
        if (rep_of(a, h) != r) continue;
        if (probs && h != r)
          memcpy(probs + (((size_t)b * H + h) * Tq + i0) * Tk, s, (size_t)bq * Tk * sizeof(float));
        /* out rows (bq, D) with row stride H·D = P (bq, hi) · V_h (hi, D); hi = 0 gives zeros */
        chai_sgemm(false, false, bq, D, hi, 1.0f, s, Tk,
                   v + (size_t)b * Tk * a->v_ts + (size_t)h * D, a->v_ts, 0.0f,
                   out + ((size_t)b * Tq + i0) * hd + (size_t)h * D, hd);
      }
    }
  }
  if (scratch) chai_free(scratch, scratch_bytes);
  return CHAI_OK;
}

/* The gradients, for member h of task (b, r), query i, with P = probs[b,h,i,:], g = dout[b,i,h,:]:
 *   dv[b,j,h] += P_j·g;  dP_j = g·v[b,j,h];  dS_j = P_j·(dP_j − Σ P·dP)
 *   dq[b,i,r] += scale·Σ_j dS_j·k[b,j,r];  dk[b,j,r] += scale·dS_j·q[b,i,r]
 * where dS sums over the members of the cluster. */

/* Row by row with vector dot/axpy and no scratch memory (dP_j is recomputed in the second pass):
 * the path when the block scratch cannot be allocated or BLAS is not available. */
static void backward_task_rows(float *dq, float *dk, float *dv, const float *dout,
                               const float *probs, const float *q, const float *k, const float *v,
                               const chai_attention_args *a, int b, int r) {
  int Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
  const float *kb = k + (size_t)b * Tk * a->k_ts + (size_t)r * D;
  for (int h = 0; h < H; h++) {
    if (rep_of(a, h) != r) continue;
    const float *vb = v + (size_t)b * Tk * a->v_ts + (size_t)h * D;
    for (int i = 0; i < Tq; i++) {
      const float *P = probs + (((size_t)b * H + h) * Tq + i) * Tk;
      const float *g = dout + (((size_t)b * Tq + i) * H + h) * D;
      if (dv) {
        float *dvb = dv + (size_t)b * Tk * a->v_ts + (size_t)h * D;
        for (int j = 0; j < Tk; j++)
          if (P[j] != 0.0f) chai_axpy(dvb + (size_t)j * a->v_ts, P[j], g, (size_t)D);
      }
      if (!dq && !dk) continue;
      double s = 0;
      for (int j = 0; j < Tk; j++)
        if (P[j] != 0.0f) s += (double)P[j] * dot(g, vb + (size_t)j * a->v_ts, D);
      const float *qi = q + ((size_t)b * Tq + i) * a->q_ts + (size_t)r * D;
      float *dqi = dq ? dq + ((size_t)b * Tq + i) * a->q_ts + (size_t)r * D : NULL;
      for (int j = 0; j < Tk; j++) {
        if (P[j] == 0.0f) continue;
        float ds = a->scale * P[j] * (dot(g, vb + (size_t)j * a->v_ts, D) - (float)s);
        if (dqi) chai_axpy(dqi, ds, kb + (size_t)j * a->k_ts, (size_t)D);
        if (dk) chai_axpy(dk + ((size_t)b * Tk + j) * a->k_ts + (size_t)r * D, ds, qi, (size_t)D);
      }
    }
  }
}

/* Blocks of BQ query rows, each product a GEMM; ds and dp are (BQ, Tk) scratch. */
static void backward_task_blocks(float *dq, float *dk, float *dv, const float *dout,
                                 const float *probs, const float *q, const float *k, const float *v,
                                 const chai_attention_args *a, int b, int r, float *ds, float *dp) {
  int Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D, hd = H * D;
  bool need_ds = dq || dk;
  for (int i0 = 0; i0 < Tq; i0 += BQ) {
    int bq = Tq - i0 < BQ ? Tq - i0 : BQ, hi = key_limit(a, i0 + bq - 1);
    if (hi == 0) continue; /* no query of the block sees a key: every gradient is 0 */
    bool first = true;
    for (int h = 0; h < H; h++) {
      if (rep_of(a, h) != r) continue;
      const float *P = probs + (((size_t)b * H + h) * Tq + i0) * Tk;
      const float *g = dout + ((size_t)b * Tq + i0) * hd + (size_t)h * D;
      const float *vh = v + (size_t)b * Tk * a->v_ts + (size_t)h * D;
      if (dv) /* dv_h[0:hi] (hi, D) += Pᵀ (hi, bq) · g (bq, D) */
        chai_sgemm(true, false, hi, D, bq, 1.0f, P, Tk, g, hd, 1.0f,
                   dv + (size_t)b * Tk * a->v_ts + (size_t)h * D, a->v_ts);
      if (!need_ds) continue;
      /* dp (bq, hi) = g (bq, D) · v_h[0:hi]ᵀ */
      chai_sgemm(false, true, bq, hi, D, 1.0f, g, hd, vh, a->v_ts, 0.0f, dp, Tk);
      for (int ii = 0; ii < bq; ii++) {
        const float *pr = P + (size_t)ii * Tk, *dpr = dp + (size_t)ii * Tk;
        float *dsr = ds + (size_t)ii * Tk;
        double s = 0;
        for (int j = 0; j < hi; j++)
          s += (double)pr[j] * dpr[j];
        float fs = (float)s;
        if (first)
          for (int j = 0; j < hi; j++)
            dsr[j] = pr[j] * (dpr[j] - fs);
        else
          for (int j = 0; j < hi; j++)
            dsr[j] += pr[j] * (dpr[j] - fs);
      }
      first = false;
    }
    if (!need_ds) continue;
    if (dq) /* dq_r rows (bq, D) += scale · ds (bq, hi) · k_r[0:hi] (hi, D) */
      chai_sgemm(false, false, bq, D, hi, a->scale, ds, Tk,
                 k + (size_t)b * Tk * a->k_ts + (size_t)r * D, a->k_ts, 1.0f,
                 dq + ((size_t)b * Tq + i0) * a->q_ts + (size_t)r * D, a->q_ts);
    if (dk) /* dk_r[0:hi] (hi, D) += scale · dsᵀ (hi, bq) · q_r rows (bq, D) */
      chai_sgemm(true, false, hi, D, bq, a->scale, ds, Tk,
                 q + ((size_t)b * Tq + i0) * a->q_ts + (size_t)r * D, a->q_ts, 1.0f,
                 dk + (size_t)b * Tk * a->k_ts + (size_t)r * D, a->k_ts);
  }
}

void chai_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                             const float *q, const float *k, const float *v,
                             const chai_attention_args *a) {
  if (check_args(a) != CHAI_OK || (!dq && !dk && !dv)) return;
  int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
  int nthreads = omp_get_max_threads();
  size_t rows = Tq < BQ ? (Tq > 0 ? Tq : 1) : BQ, per_thread = 2 * rows * (Tk > 0 ? Tk : 1);
  size_t scratch_bytes = (size_t)nthreads * per_thread * sizeof(float);
  float *scratch = NULL;
  if (chai_blas_init() == CHAI_OK)
    scratch = chai_alloc(scratch_bytes, "attention backward scratch");
  long ntask = (long)B * H;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1 && ntask * Tq * Tk * D >= (1L << 18))
  for (long t = 0; t < ntask; t++) {
    int b = (int)(t / H), r = (int)(t % H);
    if (rep_of(a, r) != r) continue;
    if (scratch) {
      float *ds = scratch + (size_t)omp_get_thread_num() * per_thread;
      backward_task_blocks(dq, dk, dv, dout, probs, q, k, v, a, b, r, ds, ds + per_thread / 2);
    } else {
      backward_task_rows(dq, dk, dv, dout, probs, q, k, v, a, b, r);
    }
  }
  if (scratch) chai_free(scratch, scratch_bytes);
}
