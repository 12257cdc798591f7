/* The int8 KV cache (chai/kvq.h): storing rows, and attention over the codes. The driver blocks the
 * queries (QB rows at a time); for a block, a score head's scores against the visible keys, the
 * causal limit and key mask as −inf and the softmax go to its slice of an (S, QB, Tk) probability
 * buffer, which each of its value heads then applies to its own V. Threads split the heads (see
 * attention()); every head's result is computed the same way whichever thread runs it, so the
 * output does not depend on the thread count. The arithmetic on the codes is in the kernels
 * (kernels/kvq.h), whose scalar twins are here. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "chai/cpu.h"
#include "chai/kvq.h"
#include "chai/memory.h"
#include "kernels/kernels.h"
#include "kernels/kvq.h"
#include "team.h"

enum { QB = 16 }; /* query rows per block */

/* ---- the scalar twins ---------------------------------------------------------------------- */

/* Round half to even for |x| <= 2^22 (see src/quant/codes.c); x is clamped to ±127 here. */
static inline float rhe(float x) {
  const float magic = 12582912.0f;
  return (x + magic) - magic;
}

void chai_kvq_store_row_ref(int8_t *c, float *s, const float *x, int D) {
  /* amax from the bits: |x| as an unsigned integer orders like the float, and Inf/NaN sort above
   * every finite value, so one max finds both (and the SIMD versions reduce in any order). */
  uint32_t amax_bits = 0;
  for (int d = 0; d < D; d++) {
    uint32_t b;
    memcpy(&b, &x[d], 4);
    b &= 0x7fffffffu;
    amax_bits = b > amax_bits ? b : amax_bits;
  }
  if (amax_bits >= 0x7f800000u) {
    *s = NAN;
    memset(c, 0, (size_t)D);
    return;
  }
  float amax;
  memcpy(&amax, &amax_bits, 4);
  float sc = amax / 127.0f;
  *s = sc;
  if (sc == 0.0f) {
    memset(c, 0, (size_t)D);
    return;
  }
  for (int d = 0; d < D; d++) {
    float t = x[d] / sc;
    t = t < -127.0f ? -127.0f : t > 127.0f ? 127.0f : t;
    c[d] = (int8_t)rhe(t);
  }
}

void chai_kvq_scores_ref(float *sc, int ldsc, const float *q, int q_ts, int bq, const int8_t *k,
                         size_t k_ts, const float *ks, int ks_ts, int n, int D, float scale) {
  for (int i = 0; i < bq; i++)
    for (int j = 0; j < n; j++) {
      const float *qi = q + (size_t)i * q_ts;
      const int8_t *kj = k + (size_t)j * k_ts;
      float acc = 0;
      for (int d = 0; d < D; d++)
        acc += qi[d] * (float)kj[d];
      sc[(size_t)i * ldsc + j] = acc * (ks[(size_t)j * ks_ts] * scale);
    }
}

void chai_kvq_values_ref(float *o, int o_ts, const float *p, int ldp, int bq, const int8_t *v,
                         size_t v_ts, const float *vs, int vs_ts, int n, int D) {
  for (int i = 0; i < bq; i++) {
    float *oi = o + (size_t)i * o_ts;
    memset(oi, 0, (size_t)D * sizeof(float));
    for (int j = 0; j < n; j++) {
      float pj = p[(size_t)i * ldp + j];
      if (pj == 0.0f) continue;
      float w = pj * vs[(size_t)j * vs_ts];
      const int8_t *vj = v + (size_t)j * v_ts;
      for (int d = 0; d < D; d++)
        oi[d] += w * (float)vj[d];
    }
  }
}

/* ---- dispatch ------------------------------------------------------------------------------- */

typedef struct kvq_kernels {
  void (*store_row)(int8_t *c, float *s, const float *x, int D);
  chai_kvq_scores_fn *scores;
  chai_kvq_values_fn *values;
  void (*softmax)(float *out, const float *x, int n);
} kvq_kernels;

static const kvq_kernels ref_kernels = {chai_kvq_store_row_ref, chai_kvq_scores_ref,
                                        chai_kvq_values_ref, chai_softmax_row_ref};

static kvq_kernels simd_kernels(void) {
  switch (chai_simd_level()) {
  case CHAI_SIMD_AVX512:
    return (kvq_kernels){chai_kvq_store_row_avx512, chai_kvq_scores_avx512, chai_kvq_values_avx512,
                         chai_softmax_row_avx512};
  case CHAI_SIMD_AVX2:
    return (kvq_kernels){chai_kvq_store_row_avx2, chai_kvq_scores_avx2, chai_kvq_values_avx2,
                         chai_softmax_row_avx2};
  default: return ref_kernels;
  }
}

void chai_kvq_store(int8_t *codes, float *scales, const float *x, int heads, int D) {
  kvq_kernels kk = simd_kernels();
  for (int h = 0; h < heads; h++)
    kk.store_row(codes + (size_t)h * D, scales + h, x + (size_t)h * D, D);
}

void chai_kvq_store_ref(int8_t *codes, float *scales, const float *x, int heads, int D) {
  for (int h = 0; h < heads; h++)
    chai_kvq_store_row_ref(codes + (size_t)h * D, scales + h, x + (size_t)h * D, D);
}

/* ---- attention ------------------------------------------------------------------------------ */

static chai_status check_args(const float *out, const float *q, const int8_t *k, const float *ks,
                              const int8_t *v, const float *vs, const chai_kvq_attention_args *a) {
  if (!a) return chai_error(CHAI_ERR_ARG, "int8 KV attention: no arguments");
  if (a->Tq < 0 || a->Tk < 0 || a->S < 1 || a->H < 1 || a->D < 1)
    return chai_error(CHAI_ERR_ARG, "int8 KV attention: bad sizes Tq=%d Tk=%d S=%d H=%d D=%d",
                      a->Tq, a->Tk, a->S, a->H, a->D);
  if ((int64_t)a->q_ts < (int64_t)a->S * a->D)
    return chai_error(CHAI_ERR_ARG, "int8 KV attention: query stride %d is below S*D = %d", a->q_ts,
                      a->S * a->D);
  if (a->Tq > 0 && (!out || !q || (a->Tk > 0 && (!k || !ks || !v || !vs))))
    return chai_error(CHAI_ERR_ARG, "int8 KV attention: NULL buffer");
  if (!a->slot) {
    if (a->S != a->H)
      return chai_error(CHAI_ERR_ARG,
                        "int8 KV attention: no slot map, but %d score heads for %d value heads",
                        a->S, a->H);
    return CHAI_OK;
  }
  for (int h = 0; h < a->H; h++)
    if (a->slot[h] < 0 || a->slot[h] >= a->S)
      return chai_error(CHAI_ERR_ARG, "int8 KV attention: slot[%d] = %d is outside 0..%d", h,
                        a->slot[h], a->S - 1);
  for (int s = 0; s < a->S; s++) {
    bool used = false;
    for (int h = 0; h < a->H && !used; h++)
      used = a->slot[h] == s;
    if (!used)
      return chai_error(CHAI_ERR_ARG, "int8 KV attention: score head %d has no value head", s);
  }
  return CHAI_OK;
}

static inline int block_rows(const chai_kvq_attention_args *a) {
  return a->Tq < QB ? (a->Tq > 0 ? a->Tq : 1) : QB;
}

size_t chai_kvq_attention_work_bytes(const chai_kvq_attention_args *a) {
  return (size_t)block_rows(a) * (size_t)(a->S > 0 ? a->S : 1) * (size_t)(a->Tk > 0 ? a->Tk : 1) *
         sizeof(float);
}

/* Keys query i may see before the key mask. */
static inline int key_limit(const chai_kvq_attention_args *a, int i) {
  if (!a->causal) return a->Tk;
  int lim = a->Tk - a->Tq + i + 1;
  return lim < 0 ? 0 : lim > a->Tk ? a->Tk : lim;
}

/* One call's state, shared by its threads. */
typedef struct kvq_run {
  float *out, *P;
  const float *q, *ks, *vs;
  const int8_t *k, *v;
  const chai_kvq_attention_args *a;
  const kvq_kernels *kk;
  int rows;
  float scale;
} kvq_run;

/* Score head s, query rows i0..i0+bq−1 (seeing at most hi keys): its probabilities into P's
 * slice s, (bq, Tk) with row stride Tk. */
static void score_rows(const kvq_run *r, int s, int i0, int bq, int hi) {
  const chai_kvq_attention_args *a = r->a;
  int S = a->S, D = a->D, Tk = a->Tk;
  float *sc = r->P + (size_t)s * r->rows * Tk;
  if (hi > 0)
    r->kk->scores(sc, Tk, r->q + (size_t)i0 * a->q_ts + (size_t)s * D, a->q_ts, bq,
                  r->k + (size_t)s * D, (size_t)S * D, r->ks + s, S, hi, D, r->scale);
  for (int ii = 0; ii < bq; ii++) {
    float *row = sc + (size_t)ii * Tk;
    int lim = key_limit(a, i0 + ii);
    for (int j = lim; j < hi; j++)
      row[j] = -INFINITY;
    if (a->key_mask)
      for (int j = 0; j < lim; j++)
        if (a->key_mask[j] == 0.0f) row[j] = -INFINITY;
    r->kk->softmax(row, row, hi); /* all −inf (or hi = 0): zeros */
  }
}

/* Value head h of score head s over the same rows: out rows i0.. (row stride H·D). */
static void value_rows(const kvq_run *r, int h, int s, int i0, int bq, int hi) {
  const chai_kvq_attention_args *a = r->a;
  int H = a->H, D = a->D, Tk = a->Tk;
  size_t hd = (size_t)H * D;
  if (hi == 0) { /* no key visible (the cache may be empty and its pointers NULL): zeros */
    for (int ii = 0; ii < bq; ii++)
      memset(r->out + (size_t)(i0 + ii) * hd + (size_t)h * D, 0, (size_t)D * sizeof(float));
    return;
  }
  r->kk->values(r->out + (size_t)i0 * hd + (size_t)h * D, (int)hd, r->P + (size_t)s * r->rows * Tk,
                Tk, bq, r->v + (size_t)h * D, hd, r->vs + h, H, hi, D);
}

/* One block of queries (decode): a score or value head per item, shared by the threads as they
 * come free (a decode step holds a team: team.h). */
typedef struct {
  const kvq_run *r;
  int Tq, hi;
} decode_job;

static void score_item(void *ctx, long s, int t) {
  const decode_job *j = ctx;
  (void)t;
  score_rows(j->r, (int)s, 0, j->Tq, j->hi);
}

static void value_item(void *ctx, long h, int t) {
  const decode_job *j = ctx;
  const int *slot = j->r->a->slot;
  (void)t;
  value_rows(j->r, (int)h, slot ? slot[h] : (int)h, 0, j->Tq, j->hi);
}

static chai_status attention(float *out, const float *q, const int8_t *k, const float *ks,
                             const int8_t *v, const float *vs, const chai_kvq_attention_args *a,
                             void *work, const kvq_kernels *kk) {
  chai_status st = check_args(out, q, k, ks, v, vs, a);
  if (st || a->Tq == 0) return st;
  int Tq = a->Tq, S = a->S, H = a->H, D = a->D;
  size_t work_bytes = chai_kvq_attention_work_bytes(a);
  float *P = work;
  if (!P && !(P = chai_alloc(work_bytes, "int8 KV attention probabilities"))) return CHAI_ERR_NOMEM;
  kvq_run r = {out, P, q, ks, vs, k, v, a, kk, block_rows(a), 1.0f / sqrtf((float)D)};
  int hi_all = key_limit(a, Tq - 1);
  /* An OpenMP team pays for itself above ~2^19 code-times-query multiply-adds (~50 µs of work): a
   * decode step of opt-125m goes parallel from ~340 cached tokens; in a decode step's held team
   * (team.h) from ~20. */
  bool par = chai_team_worth((double)Tq * hi_all * (S + H) * D, (double)(1 << 19));
  if (Tq <= QB && !par) { /* a short decode step, outside any OpenMP region (see norm.c) */
    for (int s = 0; s < S; s++)
      score_rows(&r, s, 0, Tq, hi_all);
    for (int h = 0; h < H; h++)
      value_rows(&r, h, a->slot ? a->slot[h] : h, 0, Tq, hi_all);
  } else if (Tq <= QB) {
    /* One block (decode): the score heads, then the value heads, split over the threads
     * separately, so a clustered layer's few score heads do not leave its value heads to one
     * thread. */
    decode_job job = {&r, Tq, hi_all};
    chai_team_for(S, score_item, &job, omp_get_max_threads());
    chai_team_for(H, value_item, &job, omp_get_max_threads());
  } else {
    /* Many blocks (prefill): a task is a score head with its value heads over every block, so
     * threads never wait for each other between blocks. */
#pragma omp parallel for schedule(dynamic, 1) if (par)
    for (int s = 0; s < S; s++)
      for (int i0 = 0; i0 < Tq; i0 += QB) {
        int bq = Tq - i0 < QB ? Tq - i0 : QB, hi = key_limit(a, i0 + bq - 1);
        score_rows(&r, s, i0, bq, hi);
        for (int h = 0; h < H; h++)
          if ((a->slot ? a->slot[h] : h) == s) value_rows(&r, h, s, i0, bq, hi);
      }
  }
  if (!work) chai_free(P, work_bytes);
  return CHAI_OK;
}

chai_status chai_kvq_attention(float *out, const float *q, const int8_t *k, const float *ks,
                               const int8_t *v, const float *vs, const chai_kvq_attention_args *a,
                               void *work) {
  kvq_kernels kk = simd_kernels();
  return attention(out, q, k, ks, v, vs, a, work, &kk);
}

chai_status chai_kvq_attention_ref(float *out, const float *q, const int8_t *k, const float *ks,
                                   const int8_t *v, const float *vs,
                                   const chai_kvq_attention_args *a, void *work) {
  return attention(out, q, k, ks, v, vs, a, work, &ref_kernels);
}
