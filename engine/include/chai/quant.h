/* chai — quantized weights: the format-tagged matrix and how to multiply by it.
 *
 * One room owns "a weight and how to multiply by it" (docs/architecture.md): model/, heads/ and the
 * training backward hold a chai_qmat and call chai_qmat_matmul / chai_qmat_gemv_rows; none of them
 * switches on a format itself.
 *
 * Formats (a matrix W is (R,C): R output rows, C inputs; y = W·x):
 *   f32, f16   row-major, as loaded (possibly a view of an mmapped checkpoint).
 *   bf16       packed for bf16 dot products (below); activations are rounded to bf16.
 *   int8       symmetric per output row: w ≈ s[r]·q, q in [-127,127], f32 s[r].
 *   int4       groups of G (32, 64 or 128) along C: w ≈ s[r,g]·(u − z[r,g]), u in [0,15];
 *              symmetric: z = 8 (u − 8 in [-8,7]); with a zero point: z in [0,15] per group.
 *              Scales stored as f16 or f32.
 * int8 and int4 multiply against activations quantized per token to 8 bits (symmetric, s8 codes and
 * one f32 scale a token, chai_qact): integer dot products, int32 accumulation, a float epilogue.
 *
 * ---- Packed layouts (what the kernels read; chosen once, at quantize or load time) ------------
 * Rows are padded to Rp = a multiple of 16, columns to Cp (int8: a multiple of 64; bf16: of 32;
 * int4: of G): one AMX B tile is 64 bytes of k (16 k-quads of int8, 16 k-pairs of bf16), so every
 * kernel runs whole tiles and whole 4-chunk unrolls with no column tail (OPT's widths are multiples
 * of 64 and pay nothing). Padding is zero codes (q = 0, u = z, bf16 +0) with zero scales, so it
 * contributes nothing. Rows come in blocks of 16; block rb holds rows 16·rb .. 16·rb+15 and is
 * contiguous, so a range of whole blocks is one sequential stream (decode) and one block is a
 * VNNI/AMX B-tile column strip (GEMM). C is at most CHAI_QMAT_MAX_COLS for the packed formats, so
 * every int8 dot product fits an int32.
 *   int8: data[(rb·(Cp/4) + kq)·64 + i·4 + j] = (uint8)(q[16·rb+i][4·kq+j] + 128)
 *         (weights are the unsigned operand of vpdpbusd; the activation is the signed one, so
 *         Σ (q+128)·a = Σ q·a + 128·Σ a: the compensation is per token, 128·Σ_k a_k).
 *         scales: f32 [Rp].
 *   int4: data[(rb·(Cp/8) + ko)·64 + i·4 + j] = u[16·rb+i][8·ko+j] | u[16·rb+i][8·ko+4+j] << 4
 *         (the low nibbles of a 64-byte chunk are the k-quad 8·ko..8·ko+3, the high nibbles the
 *         k-quad 8·ko+4..8·ko+7, each laid out as an int8 chunk; u is unsigned, the activation
 *         signed, and Σ_g u·a − z·Σ_g a is the group's dot product).
 *         scales: [(rb·(Cp/G) + g)·16 + i], f32 or f16 (f16_scales); zeros (zero_point only):
 *         u8 in the same order.
 *   bf16: data (u16) [(rb·(Cp/2) + kp)·32 + i·2 + j] = bf16(w[16·rb+i][2·kp+j]).
 *
 * ---- Arithmetic (every SIMD kernel matches its _ref twin bit for bit for int8 and int4) --------
 * For token n with activation codes a (s8, zero beyond C) and scale sx[n]:
 *   int8: dot = Σ_k q[r][k]·a[k] (int32); v = (float)dot * (sx[n] * s[r]).
 *   int4: for g = 0, 1, ... in order: acc = fmaf((float)(Σ_{k in g} u·a − z·Σ_{k in g} a), s[r,g],
 *         acc) (acc starts at 0); v = acc * sx[n].
 *   bf16: acc = 0; for k = 0, 2, 4, ...: acc = fmaf(w[k+1], x[k+1], acc); acc = fmaf(w[k], x[k],
 *         acc) with w, x bf16 widened (the vdpbf16ps order; SIMD may differ from _ref only where a
 *         product or sum is subnormal).
 *   f32/f16: the existing sgemm / converted-block paths.
 * Then the epilogue on v: out = accumulate ? y[n][r] + v : v; out += bias[r] when bias; out = out >
 * 0 ? out : 0 when relu. So a one-token GEMV and any row of a GEMM give the same bits for int8,
 * int4 and (on the same kernel) bf16, for any thread count.
 *
 * ---- Activation quantization (chai_qact) -------------------------------------------------------
 * Per token: amax = max |x_k| (NaNs skipped); sx = amax / 127 and inv = 127 / amax (sx = 0 and
 * all codes 0 when amax < 1e-30, where inv would overflow); a_k = (int8)fminf(fmaxf(nearbyintf(x_k
 * · inv), −127), 127) (round half to even; a NaN becomes −127; a product, not a quotient: one
 * division a token, not one an element); codes are padded with zeros to a multiple of 128;
 * gsum[n][b] = Σ of the codes of the 32-wide block b (int32), so an int4 kernel of group G adds
 * G/32 consecutive block sums; sum[n] = Σ of all of token n's codes (int8's compensation). The bf16
 * copy is chai_f32_to_bf16(x_k), zeros beyond C.
 */
#ifndef CHAI_QUANT_H
#define CHAI_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"
#include "chai/memory.h"
#include "chai/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum chai_qformat {
  CHAI_QF_F32 = 0,
  CHAI_QF_F16,
  CHAI_QF_BF16,
  CHAI_QF_INT8,
  CHAI_QF_INT4,
  CHAI_QF_COUNT
} chai_qformat;

/* "f32", "f16", "bf16", "int8", "int4". */
const char *chai_qformat_name(chai_qformat f);
/* Parses the names above; CHAI_ERR_ARG naming the string otherwise. */
chai_status chai_qformat_parse(const char *name, chai_qformat *out);

typedef enum chai_qmethod {
  CHAI_QM_RTN = 0, /* scale from the absolute maximum (zero point from min/max) */
  CHAI_QM_MSE      /* clipping ratio per row/group searched to minimise the squared error */
} chai_qmethod;

/* How to quantize one matrix. */
typedef struct chai_qspec {
  chai_qformat format;
  int group;       /* int4: 32, 64 or 128 (default 64 when 0) */
  bool zero_point; /* int4: asymmetric groups */
  bool f16_scales; /* int4: scales stored as f16 */
  chai_qmethod method;
} chai_qspec;

/* ---- 1. codes: choosing the quantized values (engine/src/quant/codes.c) ---------------------- */
/* Row-major, unpacked: what files hold and what the tests compare with NumPy (the fixture script
 * tests/fixtures/quant/make_quant_fixtures.py mirrors every rule below). Arithmetic is IEEE
 * binary32, each operation rounded as written, unless a double is named; rhe(x) rounds half to
 * even. The quantizers refuse with CHAI_ERR_ARG naming `what`: a NaN or Inf in w (naming the first
 * bad element's (row, column)), sizes below 1, a group other than 32, 64 or 128, an unknown
 * method; after an error the outputs are unspecified. Rows are independent, so any R (1 too) and
 * any C (odd, not a multiple of G) work; rows run in parallel with the same bits for any thread
 * count.
 *
 * MSE tries the clipping ratios r_i = (float)(100 − i) / 100.0f for i = 0..50 (1.00, 0.99, ...,
 * 0.50) in that order and keeps the first with the least squared error E = Σ_k ((double)w_k −
 * (double)d_k)², summed in double in element order, d_k being the dequantized float (the inverse
 * maps below). r_0 = 1 is the RTN choice, so MSE's E is never above RTN's.
 *
 * A scale of 0 (an all-zero row or group, or one whose scale underflows) gives the zero codes
 * (q = 0; u = z below), which dequantize to 0. */

/* q (R,C), scale (R): symmetric per row. amax = max_k |w_k|, s = (r·amax) / 127 (RTN: r = 1),
 * q = rhe(clamp(w/s, −127, 127)). RTN puts every element within s/2 of s·q (up to float rounding,
 * for s in float's normal range, amax >= 1.5e-36). */
chai_status chai_quant_int8_codes(int8_t *q, float *scale, const float *w, int R, int C,
                                  chai_qmethod method, const char *what);
/* u (R,C) one code per byte in [0,15]; scale and zero (R, ceil(C/G)) row-major; the last group of
 * a row may be short (C not a multiple of G). `zero` may be NULL when !zero_point (it is all 8).
 * Symmetric (ggml's Q4_0 rule): m = the group's element of largest magnitude (the first on ties),
 *   s = (r·m) / −8 (so m maps to −8 exactly when r = 1; s may be negative), z = 8,
 *   u = rhe(clamp(w/s, −8, 7)) + 8. Under RTN an element of the sign opposite to m and magnitude
 *   above 7.5·|s| clamps to 7 (error up to |s|, as in Q4_0); every other one is within |s|/2.
 * With zero_point: lo = min(0, min w), hi = max(0, max w) (the group extended to include 0),
 *   lo_r = r·lo, hi_r = r·hi, s = (float)(((double)hi_r − (double)lo_r) / 15.0) (in double, so
 *   values near ±3.4e38 do not overflow), z = clamp(rhe(−lo_r/s), 0, 15),
 *   u = clamp(rhe(clamp(w/s, −64, 64)) + z, 0, 15). Under RTN every element is within s/2. The
 *   grid s·(0 − z) .. s·(15 − z) may pass the group's range by s/2, so a group whose RTN grid
 *   would reach beyond float (values near ±3.4e38) is refused with CHAI_ERR_ARG naming `what`, the
 *   row and the group (symmetric int4 handles it: its grid ends at m).
 * A zero scale: z = 8 symmetric, 0 with a zero point, and u = z.
 * f16_scales: each candidate's s is rounded to f16 (nearest even) before z and u are chosen, so the
 * codes match the stored scale (`scale` holds the rounded values, as floats). A group whose RTN
 * scale rounds beyond f16 (|s| >= 65520: |m| >= 524160 symmetric, hi − lo >= 982800 with a zero
 * point) is refused with CHAI_ERR_ARG naming `what`, the row and the group (use f32 scales). Below
 * f16's normal range (|s| < 2^-14 = 6.1e-5) the scale keeps fewer bits and the bounds above
 * loosen; at |s| <= 2^-25 (3.0e-8) it rounds to 0 (zero codes). */
chai_status chai_quant_int4_codes(uint8_t *u, float *scale, uint8_t *zero, const float *w, int R,
                                  int C, int group, bool zero_point, bool f16_scales,
                                  chai_qmethod method, const char *what);
/* The inverse maps (scalar): w (R,C). int8: w = s·(float)q. int4: w = s·(float)(u − z), with
 * zero == NULL meaning z = 8 (symmetric); any group >= 1. */
void chai_dequant_int8_codes(float *w, const int8_t *q, const float *scale, int R, int C);
void chai_dequant_int4_codes(float *w, const uint8_t *u, const float *scale, const uint8_t *zero,
                             int R, int C, int group);

/* ---- 2. the matrix (engine/src/quant/qmat.c) ------------------------------------------------- */

/* The widest C a packed matrix takes: 127·127·C < 2^31. */
#define CHAI_QMAT_MAX_COLS 131072

typedef struct chai_qmat {
  chai_qformat format;
  int rows, cols;     /* R, C */
  int rows_p, cols_p; /* padded (packed formats); R, C for f32/f16 */
  int group;          /* int4 */
  bool zero_point;    /* int4 */
  bool f16_scales;    /* int4 */
  /* f32/f16: a row-major (R,C) view (holds a reference to the weights' storage). */
  chai_tensor t;
  /* packed formats: one storage holding data, scales and zeros. */
  chai_storage *storage;
  uint8_t *data;
  void *scales;
  uint8_t *zeros;
} chai_qmat;

/* A released matrix: format f32, no storage; chai_qmat_release on it is a no-op. */
void chai_qmat_init(chai_qmat *m);
/* Drops the references; idempotent. */
void chai_qmat_release(chai_qmat *m);
/* A view of a row-major f32 or f16 tensor (R,C) (adds a reference). */
chai_status chai_qmat_wrap(chai_qmat *out, const chai_tensor *t);
/* Quantizes a row-major f32 matrix into spec's format (f32: a copy; f16/bf16: rounded). */
chai_status chai_qmat_quantize(chai_qmat *out, const float *w, int R, int C, const chai_qspec *spec,
                               const char *what);
/* Packs codes made by chai_quant_*_codes (or read from a file) into a new matrix. */
chai_status chai_qmat_from_int8(chai_qmat *out, const int8_t *q, const float *scale, int R, int C);
chai_status chai_qmat_from_int4(chai_qmat *out, const uint8_t *u, const float *scale,
                                const uint8_t *zero, int R, int C, int group, bool zero_point,
                                bool f16_scales);
chai_status chai_qmat_from_bf16(chai_qmat *out, const uint16_t *w, int R, int C);
/* Back to row-major codes (for saving): the exact inverses of the from_ functions. */
void chai_qmat_to_int8(const chai_qmat *m, int8_t *q, float *scale);
void chai_qmat_to_int4(const chai_qmat *m, uint8_t *u, float *scale, uint8_t *zero);
void chai_qmat_to_bf16(const chai_qmat *m, uint16_t *w);
/* Rows r0..r1-1 dequantized to f32 (r1-r0, C): embedding lookups, the backward through a frozen
 * quantized matrix, tests. */
void chai_qmat_dequant_rows(const chai_qmat *m, float *out, int r0, int r1);
/* A new matrix (n, C) of src's rows rows[0..n-1], same format and codes (qmat_rows.c).
 * CHAI_ERR_ARG naming a row out of range. */
chai_status chai_qmat_gather_rows(chai_qmat *out, const chai_qmat *src, const int *rows, int n);
/* A deep copy: a new storage (or tensor) with the same bytes. */
chai_status chai_qmat_copy(chai_qmat *out, const chai_qmat *src);
/* Bytes the matrix holds: payload plus scales and zeros (the f32/f16 view's tensor bytes). */
size_t chai_qmat_bytes(const chai_qmat *m);

/* ---- 3. activations and products (engine/src/quant/qmatmul.c + kernels) --------------------- */

/* N tokens' activations quantized per token (see the header comment). Caller-owned buffers. */
typedef struct chai_qact {
  int N, C, stride; /* stride = C rounded up to 128 */
  int8_t *q;        /* (N, stride) */
  float *scale;     /* (N) */
  int32_t *gsum;    /* (N, stride/32) */
  int32_t *sum;     /* (N) */
  uint16_t *bf;     /* (N, stride) bf16 activations (only for bf16 weights), else NULL */
} chai_qact;
/* Bytes a chai_qact of N tokens of C needs (bf16: with the bf16 copy). */
size_t chai_qact_bytes(int N, int C, bool bf16);
/* Lays a chai_qact over `mem` (chai_qact_bytes(N, C, bf16) bytes, 64-aligned) and fills it from
 * x (N,C) row-major. */
void chai_qact_quantize(chai_qact *a, void *mem, const float *x, int N, int C, bool bf16);
void chai_qact_quantize_ref(chai_qact *a, void *mem, const float *x, int N, int C, bool bf16);

typedef struct chai_qepilogue {
  const float *bias; /* (R) or NULL */
  bool accumulate;   /* add to y */
  bool relu;
} chai_qepilogue;

/* Rows r0..r1-1 of y = W·x for one token (decode): r0 a multiple of 16 (any r0 for f32/f16), r1 a
 * multiple of 16 or R. x is the f32 token (f32, f16 formats), xa its chai_qact (int8, int4: codes;
 * bf16: the bf16 copy). One thread; the SIMD kernel and its scalar twin. */
void chai_qmat_gemv_rows(float *y, const chai_qmat *w, const float *x, const chai_qact *xa, int r0,
                         int r1, const chai_qepilogue *e);
void chai_qmat_gemv_rows_ref(float *y, const chai_qmat *w, const float *x, const chai_qact *xa,
                             int r0, int r1, const chai_qepilogue *e);

/* y (N,R) = epilogue(x (N,C) · Wᵀ) for any N (OpenMP inside). `work` is scratch of at least
 * chai_qmat_matmul_work_bytes(w, N) bytes (64-aligned), or NULL to allocate (CHAI_ERR_NOMEM). */
size_t chai_qmat_matmul_work_bytes(const chai_qmat *w, int N);
chai_status chai_qmat_matmul(float *y, const float *x, const chai_qmat *w, int N,
                             const chai_qepilogue *e, void *work);
chai_status chai_qmat_matmul_ref(float *y, const float *x, const chai_qmat *w, int N,
                                 const chai_qepilogue *e, void *work);

/* Several products of one input: p[j].y (N, p[j].w->rows) = epilogue p[j].e of x (N,C) · p[j].wᵀ,
 * every matrix C columns wide, formats mixed freely. The bits of count chai_qmat_matmul calls;
 * the packed ones share one quantization of x and one parallel region (a layer's Q, K and V
 * projections). The outputs overlap neither x nor one another. `work`:
 * chai_qmat_matmul_batch_work_bytes(p, count, N) bytes, or NULL to allocate. CHAI_ERR_ARG naming
 * the product whose matrix is missing, released or of another width. */
typedef struct chai_qmat_product {
  float *y;
  const chai_qmat *w;
  chai_qepilogue e;
} chai_qmat_product;
size_t chai_qmat_matmul_batch_work_bytes(const chai_qmat_product *p, int count, int N);
chai_status chai_qmat_matmul_batch(const chai_qmat_product *p, int count, const float *x, int N,
                                   void *work);
chai_status chai_qmat_matmul_batch_ref(const chai_qmat_product *p, int count, const float *x, int N,
                                       void *work);

/* y (N,R) = epilogue(x (N,C) · deq(W)ᵀ) in f32: the matrix's dequantized values times unrounded
 * activations (no per-token codes), in blocks of rows with sgemm. The training forward through a
 * frozen quantized matrix, whose gradient chai_qmat_matmul_backward_input then is exactly. `work`:
 * chai_qmat_dequant_work_bytes(w) bytes, or NULL to allocate (CHAI_ERR_NOMEM). */
size_t chai_qmat_dequant_work_bytes(const chai_qmat *w);
chai_status chai_qmat_matmul_dequant(float *y, const float *x, const chai_qmat *w, int N,
                                     const chai_qepilogue *e, void *work);
/* dx (N,C) (+)= dy (N,R) · W (R,C): the input gradient through a frozen matrix of any format (its
 * dequantized values), for training the layers around it. */
chai_status chai_qmat_matmul_backward_input(float *dx, const float *dy, const chai_qmat *w, int N,
                                            bool accumulate);

/* The measured peak of an instruction the kernels use: independent chains of `kind` on every
 * OpenMP thread for about `seconds`; *gops = operations per second of all threads / 1e9, counting
 * a multiply-add as 2 ("vpdpbusd": 64 u8×s8 products an instruction, "vpdpbusd-ymm" (AVX-VNNI):
 * 32, "vdpbf16ps": 32 bf16 products, "vfmadd231ps": 16, "vfmadd231ps-ymm": 8). CHAI_ERR_ARG for an
 * unknown kind, CHAI_ERR_UNSUPPORTED when this CPU lacks the instruction. */
chai_status chai_quant_peak(const char *kind, double seconds, double *gops);

/* The kernel each format uses on this CPU now ("avx512-vnni", "avx-vnni", "amx-int8",
 * "avx512-bf16", "amx-bf16", "avx2", "ref", ...), after CHAI_CPU. */
const char *chai_qformat_kernel(chai_qformat f);

#ifdef __cplusplus
}
#endif
#endif
