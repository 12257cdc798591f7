/* Multi-head scaled dot-product attention with optional clustered score heads (see ops.h).
 * Work is split into tasks (b, r) over batches and representative heads r: a task computes r's
 * masked scores once, turns them into probabilities, and applies them to the V of every head whose
 * score_head is r. The mask depends only on (b, query, key), so all heads of a cluster share the
 * probabilities. Each task writes only its own heads' outputs and gradients, so results do not
 * depend on the number of threads. */
#include <math.h>
#include <omp.h>
#include <string.h>

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

/* One query row of task (b, r): p (Tk) = softmax of r's masked scores. */
static void score_row(float *p, const float *q, const float *k, const chai_attention_args *a, int b,
                      int r, int i) {
  const float *qi = q + ((size_t)b * a->Tq + i) * a->q_ts + (size_t)r * a->D;
  const float *kb = k + (size_t)b * a->Tk * a->k_ts + (size_t)r * a->D;
  const float *mask = a->key_mask ? a->key_mask + (size_t)b * a->Tk : NULL;
  int lim = key_limit(a, i);
  for (int j = 0; j < a->Tk; j++)
    p[j] = j < lim && (!mask || mask[j] != 0.0f)
               ? a->scale * dot(qi, kb + (size_t)j * a->k_ts, a->D)
               : -INFINITY;
  chai_softmax_row(p, p, a->Tk);
}

chai_status chai_attention_forward(float *out, float *probs, const float *q, const float *k,
                                   const float *v, const chai_attention_args *a) {
  chai_status st = check_args(a);
  if (st) return st;
  int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
  int nthreads = omp_get_max_threads();
  size_t scratch_bytes = (size_t)nthreads * (Tk > 0 ? Tk : 1) * sizeof(float);
  float *scratch = chai_alloc(scratch_bytes, "attention scratch");
  if (!scratch) return CHAI_ERR_NOMEM;
  long ntask = (long)B * H;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1 && (long)Tq * Tk * D > 4096)
  for (long t = 0; t < ntask; t++) {
    int b = (int)(t / H), r = (int)(t % H);
    if (rep_of(a, r) != r) continue;
    float *row = scratch + (size_t)omp_get_thread_num() * (Tk > 0 ? Tk : 1);
    for (int i = 0; i < Tq; i++) {
      float *p = probs ? probs + (((size_t)b * H + r) * Tq + i) * Tk : row;
      score_row(p, q, k, a, b, r, i);
      for (int h = 0; h < H; h++) {
        if (rep_of(a, h) != r) continue;
        if (probs && h != r) memcpy(probs + (((size_t)b * H + h) * Tq + i) * Tk, p, (size_t)Tk * 4);
        float *o = out + (((size_t)b * Tq + i) * H + h) * D;
        memset(o, 0, (size_t)D * sizeof(float));
        const float *vb = v + (size_t)b * Tk * a->v_ts + (size_t)h * D;
        for (int j = 0; j < Tk; j++)
          if (p[j] != 0.0f) chai_axpy(o, p[j], vb + (size_t)j * a->v_ts, (size_t)D);
      }
    }
  }
  chai_free(scratch, scratch_bytes);
  return CHAI_OK;
}

/* For member h of task (b, r), query i, with P = probs[b,h,i,:] and g = dout[b,i,h,:]:
 *   dv[b,j,h] += P_j·g;  dP_j = g·v[b,j,h];  dS_j = P_j·(dP_j − Σ P·dP)
 *   dq[b,i,r] += scale·Σ_j dS_j·k[b,j,r];  dk[b,j,r] += scale·dS_j·q[b,i,r].
 * dP_j is recomputed in the second pass instead of stored, so no scratch memory is needed. */
void chai_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                             const float *q, const float *k, const float *v,
                             const chai_attention_args *a) {
  if (check_args(a) != CHAI_OK || (!dq && !dk && !dv)) return;
  int B = a->B, Tq = a->Tq, Tk = a->Tk, H = a->H, D = a->D;
  long ntask = (long)B * H;
#pragma omp parallel for schedule(dynamic, 1) if (ntask > 1 && (long)Tq * Tk * D > 4096)
  for (long t = 0; t < ntask; t++) {
    int b = (int)(t / H), r = (int)(t % H);
    if (rep_of(a, r) != r) continue;
    const float *vb_all = v + (size_t)b * Tk * a->v_ts;
    const float *kb = k + (size_t)b * Tk * a->k_ts + (size_t)r * D;
    for (int h = 0; h < H; h++) {
      if (rep_of(a, h) != r) continue;
      const float *vb = vb_all + (size_t)h * D;
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
}
