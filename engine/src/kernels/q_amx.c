/* int8 and bf16 GEMM on AMX tiles (Sapphire Rapids and later). Only called at the AMX level, which
 * chai/cpu.h grants when the CPU has amx-tile/int8/bf16, the OS saves the tile state and this
 * process holds the tile data permission.
 *
 * All eight tiles are 16 rows × 64 bytes. A packed 16-row block is already a B tile: 16 k-quads
 * (int8) or 16 k-pairs (bf16) of its rows are 16 consecutive 64-byte chunks (stride 64), chunk
 * kq holding row i's four codes at bytes 4i..4i+3, which is the B layout TDPBSUD/TDPBF16PS read
 * (row k of B, column i). The A tile is 16 tokens × 64 bytes of the activations (row stride =
 * the chai_qact stride). A task runs tiles of 2 token tiles × 2 row blocks (C tiles 0-3, A tiles
 * 4-5, B tiles 6-7) with 1 × 1, 1 × 2 and 2 × 1 at its edges, over all of K (Cp is a multiple of
 * a tile's K), then stores C and applies the AVX-512 epilogue.
 *
 * int8: TDPBSUD (A signed activations, B unsigned weights q + 128), so C = Σ a·(q+128) and the
 * compensation is the VNNI kernels' one: the same int32, the same float epilogue, the _ref's bits.
 * bf16: TDPBF16PS adds the even pair product before the odd one and flushes subnormals, so it
 * differs from the _ref (odd first) by rounding: its test has a tolerance.
 *
 * The development machines so far had no AMX: there the tests skip these kernels, and
 * tests/c/test_qmatmul.c runs this file on a software model of the tiles instead (it replaces
 * the tile intrinsics and CHAI_AMX_LOAD_CONFIG). */
#include <string.h>

#include "kernels/q512_common.h"

#ifndef CHAI_AMX_LOAD_CONFIG
#define CHAI_AMX_LOAD_CONFIG(cfg) __asm__ volatile("ldtilecfg %0" ::"m"(cfg))
#endif

#define AMX                                                                                        \
  __attribute__((target("amx-tile,amx-int8,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,fma")))

/* The 64-byte tile configuration (palette 1). */
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tile_config;

/* ldtilecfg with the whole 64 bytes as its operand (GCC's _tile_loadconfig names only 8 of them,
 * so the compiler could drop the stores of the rest). */
AMX static void configure(void) {
  tile_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int i = 0; i < 8; i++) {
    cfg.colsb[i] = 64;
    cfg.rows[i] = 16;
  }
  CHAI_AMX_LOAD_CONFIG(cfg);
}

/* The stored C tiles of a 2 × 2 tile: c[i·2 + j] is token tile i × row block j, 16 × 16 values. */
typedef union {
  int32_t i[4][256];
  float f[4][256];
} c_tiles;

/* Tokens n0 .. n0 + 16·nt − 1 (nt = 1, 2) × row blocks rb .. rb + nb − 1 (nb = 1, 2). The tile
 * numbers in the tile instructions are immediates, so each call site names them. */
AMX static void q8_block(c_tiles *c, const chai_qmat *w, const chai_qact *a, int rb, int nb, int n0,
                         int nt) {
  size_t bb = chai_qmat_block_bytes(w);
  long S = a->stride;
  const uint8_t *B0 = w->data + (size_t)rb * bb, *B1 = B0 + bb;
  const int8_t *A0 = a->q + (size_t)n0 * (size_t)S, *A1 = A0 + 16 * S;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int k = 0; k < w->cols_p; k += 64) {
    _tile_loadd(4, A0 + k, S);
    _tile_loadd(6, B0 + (size_t)k * 16, 64); /* k-quad k/4, 64 bytes each */
    _tile_dpbsud(0, 4, 6);
    if (nb > 1) {
      _tile_loadd(7, B1 + (size_t)k * 16, 64);
      _tile_dpbsud(1, 4, 7);
    }
    if (nt > 1) {
      _tile_loadd(5, A1 + k, S);
      _tile_dpbsud(2, 5, 6);
      if (nb > 1) _tile_dpbsud(3, 5, 7);
    }
  }
  _tile_stored(0, c->i[0], 64);
  _tile_stored(1, c->i[1], 64);
  _tile_stored(2, c->i[2], 64);
  _tile_stored(3, c->i[3], 64);
}

AMX static void bf16_block(c_tiles *c, const chai_qmat *w, const chai_qact *a, int rb, int nb,
                           int n0, int nt) {
  size_t bb = chai_qmat_block_bytes(w);
  long S = a->stride * 2; /* bytes */
  const uint8_t *B0 = w->data + (size_t)rb * bb, *B1 = B0 + bb;
  const uint8_t *A0 = (const uint8_t *)(a->bf + (size_t)n0 * (size_t)a->stride), *A1 = A0 + 16 * S;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int k = 0; k < w->cols_p; k += 32) { /* 32 bf16 = 64 bytes of a token */
    _tile_loadd(4, A0 + 2 * k, S);
    _tile_loadd(6, B0 + (size_t)k * 32, 64); /* k-pair k/2, 64 bytes each */
    _tile_dpbf16ps(0, 4, 6);
    if (nb > 1) {
      _tile_loadd(7, B1 + (size_t)k * 32, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (nt > 1) {
      _tile_loadd(5, A1 + 2 * k, S);
      _tile_dpbf16ps(2, 5, 6);
      if (nb > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c->f[0], 64);
  _tile_stored(1, c->f[1], 64);
  _tile_stored(2, c->f[2], 64);
  _tile_stored(3, c->f[3], 64);
}

/* The epilogue of the stored tiles: token tile i, row block j, token m is row m of c[2i + j]. */
AMX static void finish(float *y, int N, const chai_qmat *w, const chai_qact *a, const c_tiles *c,
                       int rb, int nb, int n0, int nt, bool int8, const chai_qepilogue *e) {
  int R = w->rows;
  for (int i = 0; i < nt; i++)
    for (int m = 0; m < 16; m++) {
      int n = n0 + 16 * i + m;
      if (n >= N) return;
      int32_t asum = int8 ? a->sum[n] : 0;
      for (int j = 0; j < nb; j++) {
        int r = 16 * (rb + j);
        if (r >= R) break;
        const void *row = int8 ? (const void *)(c->i[2 * i + j] + 16 * m)
                               : (const void *)(c->f[2 * i + j] + 16 * m);
        __m512 v = int8 ? q512_q8_value(_mm512_loadu_si512(row), asum, a->scale[n],
                                        (const float *)w->scales + r)
                        : _mm512_loadu_ps(row);
        q512_store(y + (size_t)n * R, r, q512_rows(r, R), v, e);
      }
    }
}

AMX static void gemm_amx(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0, int rb1,
                         int n0, int n1, const chai_qepilogue *e, bool int8) {
  c_tiles c __attribute__((aligned(64)));
  configure();
  for (int rb = rb0; rb < rb1; rb += 2) {
    int nb = rb1 - rb >= 2 ? 2 : 1;
    for (int n = n0; n < n1 && n < N; n += 32) {
      int nt = n1 - n >= 32 ? 2 : 1;
      if (int8)
        q8_block(&c, w, a, rb, nb, n, nt);
      else
        bf16_block(&c, w, a, rb, nb, n, nt);
      finish(y, N, w, a, &c, rb, nb, n, nt, int8, e);
    }
  }
  _tile_release();
}

void chai_q8_gemm_amx(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0, int rb1,
                      int n0, int n1, const chai_qepilogue *e) {
  gemm_amx(y, N, w, a, rb0, rb1, n0, n1, e, true);
}

void chai_bf16_gemm_amx(float *y, int N, const chai_qmat *w, const chai_qact *a, int rb0, int rb1,
                        int n0, int n1, const chai_qepilogue *e) {
  gemm_amx(y, N, w, a, rb0, rb1, n0, n1, e, false);
}
