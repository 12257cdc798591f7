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

#endif
