/* Internal to the quant room: the packed layouts as addressing helpers, the activation buffer's
 * parts, and the kernel table that the dispatchers (qgemv.c, qmatmul.c) and the tests walk. The
 * layouts and the arithmetic every kernel follows are fixed in chai/quant.h. */
#ifndef CHAI_QKERNELS_H
#define CHAI_QKERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/cpu.h"
#include "chai/half.h"
#include "chai/quant.h"

/* ---- layouts --------------------------------------------------------------------------------- */

/* Bytes of one 16-row block of the packed data: int8 16·Cp, int4 8·Cp, bf16 32·Cp. */
static inline size_t chai_qmat_block_bytes(const chai_qmat *w) {
  switch (w->format) {
  case CHAI_QF_INT8: return (size_t)w->cols_p * 16;
  case CHAI_QF_INT4: return (size_t)w->cols_p * 8;
  case CHAI_QF_BF16: return (size_t)w->cols_p * 32;
  default: return 0;
  }
}

/* int4: scale number idx of the packed order ((rb·(Cp/G) + g)·16 + i) as f32 (f16 widens
 * exactly). */
static inline float chai_q4_scale(const chai_qmat *w, size_t idx) {
  return w->f16_scales ? chai_f16_to_f32(((const uint16_t *)w->scales)[idx])
                       : ((const float *)w->scales)[idx];
}

/* ---- activations ----------------------------------------------------------------------------- */

/* Lays the chai_qact parts over mem for N tokens (no values written). */
void chai_qact_layout(chai_qact *a, void *mem, int N, int C, bool bf16);
/* Fills tokens n0..n1-1 from x (the whole (N,C) matrix); the scalar twin and the dispatched one. */
void chai_qact_rows_ref(chai_qact *a, const float *x, int n0, int n1);
void chai_qact_rows(chai_qact *a, const float *x, int n0, int n1);
/* Tokens n0..n1-1 all zero: codes, scale, block sums and the bf16 copy (the padding tokens of a
 * GEMM's workspace). */
void chai_qact_zero_rows(chai_qact *a, int n0, int n1);
/* Below this maximum a token counts as all zero (127 / amax would overflow). */
#define CHAI_QACT_TINY 1e-30f

/* SIMD twins of chai_qact_rows_ref. */
void chai_qact_rows_avx512(chai_qact *a, const float *x, int n0, int n1);
void chai_qact_rows_avx2(chai_qact *a, const float *x, int n0, int n1);

/* ---- kernels --------------------------------------------------------------------------------- */

/* The contract of chai_qmat_gemv_rows for a packed format: one token (row 0 of xa), rows r0..r1-1,
 * r0 a multiple of 16; a block's rows at or beyond r1 are computed but not stored. */
typedef void (*chai_qgemv_fn)(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,
                              const chai_qepilogue *e);
/* One GEMM task: y (N,R) rows of tokens n0..n1-1 and columns of row blocks rb0..rb1-1. a holds
 * at least n1 tokens; n0 and n1 are multiples of 16 (tokens at or beyond N are zero padding:
 * computed, never stored). */
typedef void (*chai_qgemm_fn)(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,
                              int rb1, int n0, int n1, const chai_qepilogue *e);

typedef struct chai_qkernel {
  const char *name;      /* what chai_qformat_kernel reports: "avx512-vnni", ... */
  chai_simd level;       /* the lowest chai_simd_level() that may pick it */
  bool (*cpu_has)(void); /* the instructions it needs beyond `level` */
  chai_qgemv_fn gemv;    /* NULL: a GEMM-only kernel (AMX) */
  chai_qgemm_fn gemm;
} chai_qkernel;

/* Every kernel of a packed format (int8, int4, bf16), best first, the scalar one last; *count set.
 */
const chai_qkernel *chai_qkernels(chai_qformat f, int *count);
/* Whether this CPU can run k at all (its level and features, whatever level is forced). */
bool chai_qkernel_runs_here(const chai_qkernel *k);
/* The kernel in use at the current level: the first that runs here at or below the level (with a
 * gemv when `gemv`). */
const chai_qkernel *chai_qkernel_pick(chai_qformat f, bool gemv);

/* The kernels, by format and ISA. Each gemv/gemm pair follows the chai_qgemv_fn / chai_qgemm_fn
 * contract and gives the bits of its _ref pair (bf16: up to subnormals, see chai/quant.h). */
#define CHAI_QKERNEL_PAIR(fmt, isa)                                                                \
  void chai_##fmt##_gemv_##isa(float *y, const chai_qmat *w, const chai_qact *xa, int r0, int r1,  \
                               const chai_qepilogue *e);                                           \
  void chai_##fmt##_gemm_##isa(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0,   \
                               int rb1, int n0, int n1, const chai_qepilogue *e);
CHAI_QKERNEL_PAIR(q8, ref)
CHAI_QKERNEL_PAIR(q8, avx512vnni) /* vpdpbusd zmm */
CHAI_QKERNEL_PAIR(q8, avxvnni)    /* vpdpbusd ymm (VEX) */
CHAI_QKERNEL_PAIR(q8, avx2)       /* vpdpbusd emulated exactly with two vpmaddwd */
CHAI_QKERNEL_PAIR(q4, ref)
CHAI_QKERNEL_PAIR(q4, avx512vnni)
CHAI_QKERNEL_PAIR(q4, avxvnni)
CHAI_QKERNEL_PAIR(q4, avx2)
CHAI_QKERNEL_PAIR(bf16, ref)
CHAI_QKERNEL_PAIR(bf16, avx512bf16) /* vdpbf16ps */
CHAI_QKERNEL_PAIR(bf16, avx512)     /* two FMAs per pair, the _ref's order */
CHAI_QKERNEL_PAIR(bf16, avx2)
/* AMX tiles: GEMM only (decode runs the AVX-512 kernels). */
void chai_q8_gemm_amx(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0, int rb1,
                      int n0, int n1, const chai_qepilogue *e);
void chai_bf16_gemm_amx(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0, int rb1,
                        int n0, int n1, const chai_qepilogue *e);

/* ---- row-major f32/f16/bf16 rows (the decode kernels moved from model/opt_gemv.c) -------------
 */

/* y rows r0..r1-1 = epilogue(W (R,C) row-major · x (C)), W f32, f16 or bf16: one thread, one
 * fixed-order dot product per row (the same bits wherever W lives and whichever rows a call
 * covers). */
void chai_rows_gemv(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0, int r1,
                    const chai_qepilogue *e);
void chai_rows_gemv_ref(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                        int r1, const chai_qepilogue *e);
void chai_rows_gemv_avx2(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                         int r1, const chai_qepilogue *e);
void chai_rows_gemv_avx512(float *y, const void *W, chai_dtype dt, const float *x, int C, int r0,
                           int r1, const chai_qepilogue *e);

#endif
