/* Internal: the vectorised twins of the scalar kernels in src/ops. Each function here does exactly
 * what its _ref twin (named in the comment) does, up to float rounding; the dispatchers in src/ops
 * pick one with chai_simd_level(). Only call an _avx2 function when the level is >= AVX2 (AVX2+FMA)
 * and an _avx512 one when it is AVX512 (F+BW+DQ+VL). */
#ifndef CHAI_KERNELS_H
#define CHAI_KERNELS_H

#include <stddef.h>

/* chai_add_forward_ref, chai_mul_forward_ref, chai_scale_forward_ref, chai_axpy_ref,
 * chai_relu_forward_ref: n floats, any alignment, out may alias an input. */
void chai_add_forward_avx2(float *out, const float *a, const float *b, size_t n);
void chai_mul_forward_avx2(float *out, const float *a, const float *b, size_t n);
void chai_scale_forward_avx2(float *out, const float *a, float s, size_t n);
void chai_axpy_avx2(float *y, float a, const float *x, size_t n);
void chai_relu_forward_avx2(float *out, const float *inp, size_t n);
void chai_add_forward_avx512(float *out, const float *a, const float *b, size_t n);
void chai_mul_forward_avx512(float *out, const float *a, const float *b, size_t n);
void chai_scale_forward_avx512(float *out, const float *a, float s, size_t n);
void chai_axpy_avx512(float *y, float a, const float *x, size_t n);
void chai_relu_forward_avx512(float *out, const float *inp, size_t n);

/* One row of chai_layernorm_forward_ref: x (C) -> out (C); w, b (C) or NULL; *mean, *rstd always
 * written. Sums run in float lanes, so results differ from the ref by rounding only. */
void chai_layernorm_row_avx2(float *out, float *mean, float *rstd, const float *x, const float *w,
                             const float *b, int C, float eps);
void chai_layernorm_row_avx512(float *out, float *mean, float *rstd, const float *x, const float *w,
                               const float *b, int C, float eps);

/* Softmax of one row of n floats (chai_softmax_row_ref in src/ops/softmax.c): max-subtracted, a row
 * whose max is -inf becomes zeros. exp is a vectorised Cephes-style polynomial (see chai_exp_*). */
void chai_softmax_row_ref(float *out, const float *x, int n);
void chai_softmax_row_avx2(float *out, const float *x, int n);
void chai_softmax_row_avx512(float *out, const float *x, int n);
/* Dispatching version of the row softmax, for the attention and cross-entropy code. */
void chai_softmax_row(float *out, const float *x, int n);

/* out[i] = exp(in[i]) with the vector exp the softmax uses; its twin is expf. Within 2 ulp of expf
 * for -87.33 <= x <= 88.7 (test_simd checks 3e-7 relative); below -87.33 the AVX2 version returns 0
 * (expf gives a subnormal, < 1.2e-38) and the AVX-512 version follows expf into subnormals. */
void chai_exp_avx2(float *out, const float *in, size_t n);
void chai_exp_avx512(float *out, const float *in, size_t n);

/* One query row against n cached f32 rows, for a list of heads at once (decode attention; twins in
 * src/ops/attention_rows.c). Row j of the cache holds every head's D values from j·ts on; the
 * heads (ascending) are read together, so each row is met once, as one run of memory.
 *  scores: sc[i·ldsc + j] = (Σ_d q[h·D + d] · k[j·k_ts + h·D + d]) · scale, h = heads[i]; the ref
 *          sums d in order.
 *  values: o[h·D + d] = Σ_{j < n, p_i[j] != 0} p_i[j] · v[j·v_ts + h·D + d], h = heads[i],
 *          p_i = p + prow[i]·ldp (o's rows of those heads overwritten; a row whose p_i is 0 is not
 *          read for head i); the ref sums j in order. */
void chai_attn_scores_ref(float *sc, int ldsc, const float *q, const float *k, size_t k_ts,
                          const int *heads, int nh, int n, int D, float scale);
void chai_attn_scores_avx2(float *sc, int ldsc, const float *q, const float *k, size_t k_ts,
                           const int *heads, int nh, int n, int D, float scale);
void chai_attn_scores_avx512(float *sc, int ldsc, const float *q, const float *k, size_t k_ts,
                             const int *heads, int nh, int n, int D, float scale);
void chai_attn_values_ref(float *o, const float *p, int ldp, const int *prow, const int *heads,
                          int nh, const float *v, size_t v_ts, int n, int D);
void chai_attn_values_avx2(float *o, const float *p, int ldp, const int *prow, const int *heads,
                           int nh, const float *v, size_t v_ts, int n, int D);
void chai_attn_values_avx512(float *o, const float *p, int ldp, const int *prow, const int *heads,
                             int nh, const float *v, size_t v_ts, int n, int D);
/* Dispatching versions. */
void chai_attn_scores(float *sc, int ldsc, const float *q, const float *k, size_t k_ts,
                      const int *heads, int nh, int n, int D, float scale);
void chai_attn_values(float *o, const float *p, int ldp, const int *prow, const int *heads, int nh,
                      const float *v, size_t v_ts, int n, int D);

/* Row reductions for softmax-like ops (twins in src/ops/rowexp.c):
 *  max: the largest of n floats (-inf for n = 0; NaNs are skipped).
 *  sumexp: Σ exp(x[i] − m), each term in float, summed in double (lanes, then across lanes).
 *  expaxpy: y[i] += a·exp(x[i] − m). */
float chai_max_ref(const float *x, size_t n);
float chai_max_avx2(const float *x, size_t n);
float chai_max_avx512(const float *x, size_t n);
double chai_sumexp_ref(const float *x, float m, size_t n);
double chai_sumexp_avx2(const float *x, float m, size_t n);
double chai_sumexp_avx512(const float *x, float m, size_t n);
void chai_expaxpy_ref(float *y, float a, const float *x, float m, size_t n);
void chai_expaxpy_avx2(float *y, float a, const float *x, float m, size_t n);
void chai_expaxpy_avx512(float *y, float a, const float *x, float m, size_t n);
/* Dispatching versions. */
float chai_max(const float *x, size_t n);
double chai_sumexp(const float *x, float m, size_t n);
void chai_expaxpy(float *y, float a, const float *x, float m, size_t n);
/* The index of the first occurrence of the largest non-NaN value of x (n >= 1), as torch.argmax
 * for NaN-free rows; 0 when every value is NaN. chai_max finds the value, a scan its place. */
size_t chai_argmax(const float *x, size_t n);

#endif
