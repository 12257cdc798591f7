/* Products with quantized matrices (engine/src/quant/qmatmul.c, qdispatch.c, qref.c and the
 * kernels): every kernel this CPU runs against its scalar twin, bit for bit for int8 and int4 (and
 * for bf16 outside AMX, whose tile order differs), as whole GEMM tasks and as one-token GEMV rows;
 * the dispatcher at every SIMD level; a GEMM row equal to the GEMV of that token; the same bits for
 * 1 to 3 threads; every epilogue; N from 1 to 70; results against a double-precision oracle on the
 * dequantized values; all-zero activations; the f32/f16 paths; the input gradient against a dense
 * product; refused arguments. AMX kernels are skipped, with a message, where the CPU has none, and
 * run everywhere on a software model of the tiles (below). */
/* ---- a software model of the AMX tiles, to run kernels/q_amx.c where the CPU has none ----------
 * Eight tiles of 16 rows × 64 bytes, as the kernels configure them; TDPBSUD and TDPBF16PS as
 * Intel's pseudocode defines them (signed A bytes × unsigned B bytes summed into int32; bf16 pairs,
 * the even product added before the odd one, in f32). The file is compiled here with these in place
 * of the tile intrinsics and its kernels renamed, so the library's own copy stays as it is. */
#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static struct {
  uint8_t t[8][16][64];
  bool configured;
  int config_errors, bad_ops;
} tiles;

static void model_config(const void *p) {
  const uint8_t *c = p; /* palette, start_row, 14 reserved, colsb[16] (u16), rows[16] */
  bool ok = c[0] == 1 && c[1] == 0;
  for (int i = 0; i < 16; i++) {
    uint16_t colsb;
    memcpy(&colsb, c + 16 + 2 * i, 2);
    ok &= i < 8 ? colsb == 64 && c[48 + i] == 16 : colsb == 0 && c[48 + i] == 0;
  }
  tiles.configured = ok;
  tiles.config_errors += !ok;
}
static bool model_tile(int i) {
  bool ok = tiles.configured && i >= 0 && i < 8;
  tiles.bad_ops += !ok;
  return ok;
}
static void model_zero(int i) {
  if (model_tile(i)) memset(tiles.t[i], 0, sizeof tiles.t[i]);
}
static void model_load(int i, const void *base, long stride) {
  if (model_tile(i))
    for (int r = 0; r < 16; r++)
      memcpy(tiles.t[i][r], (const uint8_t *)base + r * stride, 64);
}
static void model_store(int i, void *base, long stride) {
  if (model_tile(i))
    for (int r = 0; r < 16; r++)
      memcpy((uint8_t *)base + r * stride, tiles.t[i][r], 64);
}
static void model_dpbsud(int c, int a, int b) {
  if (!model_tile(c) || !model_tile(a) || !model_tile(b)) return;
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 16; n++) {
      int32_t acc;
      memcpy(&acc, &tiles.t[c][m][4 * n], 4);
      for (int k = 0; k < 16; k++)
        for (int j = 0; j < 4; j++)
          acc += (int32_t)(int8_t)tiles.t[a][m][4 * k + j] * (int32_t)tiles.t[b][k][4 * n + j];
      memcpy(&tiles.t[c][m][4 * n], &acc, 4);
    }
}
static float model_bf16(const uint8_t *p) {
  uint32_t u = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 24;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static void model_dpbf16ps(int c, int a, int b) {
  if (!model_tile(c) || !model_tile(a) || !model_tile(b)) return;
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 16; n++) {
      float acc;
      memcpy(&acc, &tiles.t[c][m][4 * n], 4);
      for (int k = 0; k < 16; k++) {
        acc += model_bf16(&tiles.t[a][m][4 * k]) * model_bf16(&tiles.t[b][k][4 * n]);
        acc += model_bf16(&tiles.t[a][m][4 * k + 2]) * model_bf16(&tiles.t[b][k][4 * n + 2]);
      }
      memcpy(&tiles.t[c][m][4 * n], &acc, 4);
    }
}
static void model_release(void) {
  tiles.configured = false;
}
#undef _tile_zero
#undef _tile_loadd
#undef _tile_stored
#undef _tile_dpbsud
#undef _tile_dpbf16ps
#define _tile_zero(i) model_zero(i)
#define _tile_loadd(i, base, stride) model_load(i, base, stride)
#define _tile_stored(i, base, stride) model_store(i, base, stride)
#define _tile_dpbsud(c, a, b) model_dpbsud(c, a, b)
#define _tile_dpbf16ps(c, a, b) model_dpbf16ps(c, a, b)
#define _tile_release() model_release()
#define CHAI_AMX_LOAD_CONFIG(cfg) model_config(&(cfg))
#define chai_q8_gemm_amx model_q8_gemm_amx
#define chai_bf16_gemm_amx model_bf16_gemm_amx
#include "../../engine/src/kernels/q_amx.c"
#undef chai_q8_gemm_amx
#undef chai_bf16_gemm_amx

#include "../../engine/src/quant/qkernels.h"
#include "chai/chai.h"
#include "check.h"
#include "ops_testutil.h"

typedef struct {
  chai_qformat f;
  int group;
  bool zp, f16;
} fmt;

static const fmt FORMATS[] = {
    {CHAI_QF_INT8, 0, false, false}, {CHAI_QF_INT4, 32, false, false},
    {CHAI_QF_INT4, 64, true, false}, {CHAI_QF_INT4, 128, false, true},
    {CHAI_QF_INT4, 32, true, true},  {CHAI_QF_BF16, 0, false, false},
};
enum { NFORMATS = sizeof FORMATS / sizeof FORMATS[0] };

static const int SIZES[][2] = {{1, 1}, {7, 33}, {16, 64}, {33, 100}, {50, 200}, {64, 768}};
enum { NSIZES = sizeof SIZES / sizeof SIZES[0] };
static const int TOKENS[] = {1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 48, 63, 70};
enum { NTOKENS = sizeof TOKENS / sizeof TOKENS[0] };

/* 64-byte aligned memory (aligned_alloc wants a multiple of the alignment). */
static void *amalloc(size_t n) {
  return aligned_alloc(64, (n + 63) / 64 * 64);
}

static int rnd(int lo, int hi) {
  return lo + (int)tu_uniform(0, (float)(hi - lo + 1) - 0.001f);
}

/* A matrix of format f from codes made here (symmetric per-row int8 from random weights, random
 * int4 codes, scales and zero points, bf16-rounded weights, or a view of an f32/f16 tensor). */
static void make_matrix(chai_qmat *m, const fmt *f, int R, int C) {
  size_t n = (size_t)R * C;
  float *w = tu_falloc(n);
  tu_fill(w, n, -1, 1);
  if (f->f == CHAI_QF_INT8) {
    int8_t *q = malloc(n);
    float *s = tu_falloc((size_t)R);
    for (int r = 0; r < R; r++) {
      float amax = 0;
      for (int k = 0; k < C; k++)
        amax = fmaxf(amax, fabsf(w[(size_t)r * C + k]));
      s[r] = amax / 127;
      for (int k = 0; k < C; k++)
        q[(size_t)r * C + k] = (int8_t)lrintf(w[(size_t)r * C + k] / s[r]);
    }
    CHECK_OK(chai_qmat_from_int8(m, q, s, R, C));
    free(q), free(s);
  } else if (f->f == CHAI_QF_INT4) {
    int groups = (C + f->group - 1) / f->group;
    uint8_t *u = malloc(n), *z = malloc((size_t)R * groups);
    float *s = tu_falloc((size_t)R * groups);
    for (size_t i = 0; i < n; i++)
      u[i] = (uint8_t)rnd(0, 15);
    for (int i = 0; i < R * groups; i++) {
      z[i] = f->zp ? (uint8_t)rnd(0, 15) : 8;
      s[i] = chai_f16_to_f32(chai_f32_to_f16(tu_uniform(-0.15f, 0.15f)));
    }
    CHECK_OK(chai_qmat_from_int4(m, u, s, z, R, C, f->group, f->zp, f->f16));
    free(u), free(z), free(s);
  } else if (f->f == CHAI_QF_BF16) {
    uint16_t *h = malloc(n * 2);
    chai_f32_to_bf16_array_ref(h, w, n);
    CHECK_OK(chai_qmat_from_bf16(m, h, R, C));
    free(h);
  } else {
    int64_t shape[2] = {R, C};
    chai_tensor t, t2;
    CHECK_OK(chai_tensor_new(&t, CHAI_F32, 2, shape));
    memcpy(chai_tensor_data(&t), w, n * 4);
    if (f->f == CHAI_QF_F16) {
      CHECK_OK(chai_tensor_to(&t2, &t, CHAI_F16));
      chai_tensor_release(&t);
      t = t2;
    }
    CHECK_OK(chai_qmat_wrap(m, &t));
    chai_tensor_release(&t);
  }
  free(w);
}

/* Token activations with some structure: an all-zero token and a large one among ordinary ones. */
static float *make_x(int N, int C) {
  float *x = tu_falloc((size_t)N * C);
  tu_fill(x, (size_t)N * C, -2, 2);
  if (N > 2)
    for (int k = 0; k < C; k++)
      x[(size_t)C + k] = 0, x[(size_t)2 * C + k] *= 40;
  return x;
}

/* y[i] = the value at position offset + i of a fixed pattern (what accumulate adds to). */
static void prefill_at(float *y, size_t offset, size_t n) {
  for (size_t i = 0; i < n; i++)
    y[i] = (float)((offset + i) % 13) * 0.25f - 1.5f;
}

static void prefill(float *y, size_t n) {
  prefill_at(y, 0, n);
}

static bool same_bits(const float *a, const float *b, size_t n) {
  return memcmp(a, b, n * sizeof(float)) == 0;
}

/* |a − b| within tol·(1 + |b|) everywhere. */
static bool close_rel(const float *a, const float *b, size_t n, double tol) {
  for (size_t i = 0; i < n; i++)
    if (!(fabs((double)a[i] - b[i]) <= tol * (1 + fabs((double)b[i])))) {
      fprintf(stderr, "  element %zu: %.9g vs %.9g\n", i, a[i], b[i]);
      return false;
    }
  return true;
}

/* Float sums in another order (AMX-bf16 adds each pair's products the other way round from the
 * _ref, and the tile's k order is its own): |a − b| within tol·(1 + |b|) + 1e-6·Σ_k |x_nk·w_rk|,
 * the size of the terms that were summed (a large token's terms cancel to a small output). */
static bool close_sums(const float *a, const float *b, const chai_qmat *m, const float *x, int N,
                       double tol) {
  int R = m->rows, C = m->cols;
  float *w = tu_falloc((size_t)R * C);
  chai_qmat_dequant_rows(m, w, 0, R);
  bool ok = true;
  for (int n = 0; n < N && ok; n++)
    for (int r = 0; r < R && ok; r++) {
      double S = 0;
      for (int k = 0; k < C; k++)
        S += fabs((double)x[(size_t)n * C + k] * w[(size_t)r * C + k]);
      size_t i = (size_t)n * R + r;
      if (!(fabs((double)a[i] - b[i]) <= tol * (1 + fabs((double)b[i])) + 1e-6 * S)) {
        fprintf(stderr, "  token %d row %d: %.9g vs %.9g (terms %.3g)\n", n, r, a[i], b[i], S);
        ok = false;
      }
    }
  free(w);
  return ok;
}

/* Activations for the kernels as the GEMM driver lays them: N tokens, zero padding up to Np. */
static void *quantize_padded(chai_qact *a, const float *x, int N, int Np, int C, bool bf16) {
  void *mem = amalloc(chai_qact_bytes(Np, C, bf16));
  chai_qact_layout(a, mem, Np, C, bf16);
  chai_qact_rows_ref(a, x, 0, N);
  chai_qact_zero_rows(a, N, Np);
  return mem;
}

static chai_qgemm_fn ref_gemm(chai_qformat f) {
  return f == CHAI_QF_INT8   ? chai_q8_gemm_ref
         : f == CHAI_QF_INT4 ? chai_q4_gemm_ref
                             : chai_bf16_gemm_ref;
}

/* ---- every kernel against the scalar twin ---------------------------------------------------- */

static void kernels_vs_ref(const fmt *f, int R, int C, int N, const chai_qepilogue *e) {
  chai_qmat m;
  make_matrix(&m, f, R, C);
  float *x = make_x(N, C), *bias = tu_falloc((size_t)R);
  tu_fill(bias, (size_t)R, -1, 1);
  chai_qepilogue ep = *e;
  if (ep.bias) ep.bias = bias;
  int Np = (N + 15) / 16 * 16, nrb = m.rows_p / 16;
  bool bf16 = f->f == CHAI_QF_BF16;
  chai_qact a;
  void *mem = quantize_padded(&a, x, N, Np, C, bf16);
  size_t ny = (size_t)N * R;
  float *want = tu_falloc(ny), *got = tu_falloc(ny);
  prefill(want, ny);
  ref_gemm(f->f)(want, N, &m, &a, 0, nrb, 0, Np, &ep);
  int nk;
  const chai_qkernel *ks = chai_qkernels(f->f, &nk);
  for (int i = 0; i < nk; i++) {
    const chai_qkernel *k = &ks[i];
    if (!chai_qkernel_runs_here(k)) continue; /* reported once, in main */
    bool exact = !(bf16 && k->level == CHAI_SIMD_AMX);
    /* as four tasks, split at a row block and a 16-token boundary */
    prefill(got, ny);
    int rs = nrb / 2, ns = Np / 32 * 16;
    k->gemm(got, N, &m, &a, 0, rs, 0, ns, &ep);
    k->gemm(got, N, &m, &a, rs, nrb, 0, ns, &ep);
    k->gemm(got, N, &m, &a, 0, rs, ns, Np, &ep);
    k->gemm(got, N, &m, &a, rs, nrb, ns, Np, &ep);
    bool ok = exact ? same_bits(got, want, ny) : close_sums(got, want, &m, x, N, 1e-5);
    if (!ok)
      fprintf(stderr, "gemm %s fmt %d g%d R=%d C=%d N=%d bias=%d acc=%d relu=%d\n", k->name, f->f,
              f->group, R, C, N, ep.bias != NULL, ep.accumulate, ep.relu);
    CHECK(ok);
    if (!k->gemv) continue;
    /* one token at a time (its own one-token chai_qact), rows in two calls */
    prefill(got, ny);
    for (int n = 0; n < N; n++) {
      chai_qact a1;
      void *m1 = amalloc(chai_qact_bytes(1, C, bf16));
      chai_qact_quantize_ref(&a1, m1, x + (size_t)n * C, 1, C, bf16);
      int split = R > 16 ? 16 : R;
      k->gemv(got + (size_t)n * R, &m, &a1, 0, split, &ep);
      k->gemv(got + (size_t)n * R, &m, &a1, split, R, &ep);
      free(m1);
    }
    ok = exact ? same_bits(got, want, ny) : close_sums(got, want, &m, x, N, 1e-5);
    if (!ok) fprintf(stderr, "gemv %s fmt %d R=%d C=%d N=%d\n", k->name, f->f, R, C, N);
    CHECK(ok);
  }
  /* the AMX kernels on the tile model, on every CPU, split in the same four tasks */
  chai_qgemm_fn model = f->f == CHAI_QF_INT8 ? model_q8_gemm_amx
                        : bf16               ? model_bf16_gemm_amx
                                             : NULL;
  if (model) {
    prefill(got, ny);
    int rs = nrb / 2, ns = Np / 32 * 16;
    model(got, N, &m, &a, 0, rs, 0, ns, &ep);
    model(got, N, &m, &a, rs, nrb, 0, ns, &ep);
    model(got, N, &m, &a, 0, rs, ns, Np, &ep);
    model(got, N, &m, &a, rs, nrb, ns, Np, &ep);
    bool ok = bf16 ? close_sums(got, want, &m, x, N, 1e-5) : same_bits(got, want, ny);
    if (!ok)
      fprintf(stderr, "modelled AMX gemm fmt %d R=%d C=%d N=%d bias=%d acc=%d relu=%d\n", f->f, R,
              C, N, ep.bias != NULL, ep.accumulate, ep.relu);
    CHECK(ok);
    CHECK(tiles.config_errors == 0 && tiles.bad_ops == 0 && !tiles.configured);
  }
  free(mem), free(x), free(bias), free(want), free(got);
  chai_qmat_release(&m);
}

/* ---- the dispatcher: levels, threads, GEMM row == GEMV --------------------------------------- */

static void dispatch_case(const fmt *f, int R, int C, int N) {
  chai_qmat m;
  make_matrix(&m, f, R, C);
  float *x = make_x(N, C), *bias = tu_falloc((size_t)R);
  tu_fill(bias, (size_t)R, -1, 1);
  chai_qepilogue e = {.bias = bias, .accumulate = true, .relu = true};
  size_t ny = (size_t)N * R;
  float *want = tu_falloc(ny), *got = tu_falloc(ny), *row = tu_falloc((size_t)R);
  prefill(want, ny);
  CHECK_OK(chai_qmat_matmul_ref(want, x, &m, N, &e, NULL));
  bool packed = f->f >= CHAI_QF_BF16;
  for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AMX; lvl++) {
    if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
    bool exact = packed && !(f->f == CHAI_QF_BF16 && lvl == CHAI_SIMD_AMX);
    float *first = NULL;
    for (int threads = 1; threads <= 3; threads++) {
      chai_threads(threads);
      prefill(got, ny);
      void *work = amalloc(chai_qmat_matmul_work_bytes(&m, N) + 64);
      CHECK_OK(chai_qmat_matmul(got, x, &m, N, &e, work));
      free(work);
      bool ok = exact ? same_bits(got, want, ny) : close_sums(got, want, &m, x, N, 2e-5);
      if (!ok)
        fprintf(stderr, "matmul level %d threads %d fmt %d R=%d C=%d N=%d\n", lvl, threads, f->f, R,
                C, N);
      CHECK(ok);
      if (!first) {
        first = tu_falloc(ny);
        memcpy(first, got, ny * 4);
      } else {
        CHECK(same_bits(first, got, ny)); /* any thread count: the same bits */
      }
    }
    chai_threads(2);
    /* each token through the decode entry gives its GEMM row */
    if (packed) {
      for (int n = 0; n < N; n++) {
        chai_qact a1;
        void *m1 = amalloc(chai_qact_bytes(1, C, true));
        chai_qact_quantize(&a1, m1, x + (size_t)n * C, 1, C, f->f == CHAI_QF_BF16);
        prefill_at(row, (size_t)n * R, (size_t)R); /* what the GEMM accumulated on */
        chai_qmat_gemv_rows(row, &m, NULL, &a1, 0, R, &e);
        CHECK(exact ? same_bits(row, first + (size_t)n * R, (size_t)R)
                    : close_sums(row, first + (size_t)n * R, &m, x + (size_t)n * C, 1, 2e-5));
        free(m1);
      }
    }
    free(first);
  }
  chai_simd_force(chai_simd_best());
  free(x), free(bias), free(want), free(got), free(row);
  chai_qmat_release(&m);
}

/* ---- against a double-precision oracle ------------------------------------------------------- */

/* y against Σ_k w_deq·a_deq in double, where a_deq is what the kernel multiplies (codes · sx, or
 * the bf16-rounded x): only float rounding may differ. And against the exact x, within the
 * activation quantization's own bound (half a step per element, or bf16's relative 2^-8). */
static void oracle_case(const fmt *f, int R, int C, int N) {
  chai_qmat m;
  make_matrix(&m, f, R, C);
  float *x = make_x(N, C), *wd = tu_falloc((size_t)R * C), *y = tu_falloc((size_t)N * R);
  chai_qmat_dequant_rows(&m, wd, 0, R);
  CHECK_OK(chai_qmat_matmul(y, x, &m, N, NULL, NULL));
  chai_qact a;
  void *mem = amalloc(chai_qact_bytes(N, C, true));
  chai_qact_quantize_ref(&a, mem, x, N, C, true);
  double worst_tight = 0, worst_loose = 0;
  for (int n = 0; n < N; n++)
    for (int r = 0; r < R; r++) {
      double s = 0, sabs = 0, exact = 0, bound = 0;
      for (int k = 0; k < C; k++) {
        double w = wd[(size_t)r * C + k], xv = x[(size_t)n * C + k], ad;
        if (f->f == CHAI_QF_BF16) {
          ad = chai_bf16_to_f32(a.bf[(size_t)n * a.stride + k]);
          bound += fabs(w * xv) * (1.0 / 256);
        } else if (f->f == CHAI_QF_INT8 || f->f == CHAI_QF_INT4) {
          ad = (double)a.q[(size_t)n * a.stride + k] * a.scale[n];
          bound += fabs(w) * a.scale[n] * 0.5;
        } else {
          ad = xv;
        }
        s += w * ad, sabs += fabs(w * ad), exact += w * xv;
      }
      double got = y[(size_t)n * R + r];
      double tight = fabs(got - s) / (1e-30 + sabs),
             loose = fabs(got - exact) - bound - 2e-6 * sabs;
      worst_tight = fmax(worst_tight, sabs > 0 ? tight : fabs(got));
      worst_loose = fmax(worst_loose, loose / (1 + fabs(exact)));
    }
  if (worst_tight > 2e-6 || worst_loose > 2e-6)
    fprintf(stderr, "oracle fmt %d R=%d C=%d N=%d: %.3g %.3g\n", f->f, R, C, N, worst_tight,
            worst_loose);
  CHECK(worst_tight <= 2e-6 && worst_loose <= 2e-6);
  free(x), free(wd), free(y), free(mem);
  chai_qmat_release(&m);
}

/* All-zero activations: every product is exactly 0, so y is the epilogue of 0. */
static void zero_case(const fmt *f) {
  int R = 37, C = 70, N = 5;
  chai_qmat m;
  make_matrix(&m, f, R, C);
  float *x = tu_falloc((size_t)N * C), *bias = tu_falloc((size_t)R), *y = tu_falloc((size_t)N * R);
  tu_fill(bias, (size_t)R, -1, 1);
  chai_qepilogue e = {.bias = bias, .relu = true};
  CHECK_OK(chai_qmat_matmul(y, x, &m, N, &e, NULL));
  int bad = 0;
  for (int n = 0; n < N; n++)
    for (int r = 0; r < R; r++)
      bad += y[(size_t)n * R + r] != (bias[r] > 0 ? bias[r] : 0.0f);
  CHECK(bad == 0);
  free(x), free(bias), free(y);
  chai_qmat_release(&m);
}

/* ---- the input gradient ---------------------------------------------------------------------- */

static void backward_case(const fmt *f, int R, int C, int N) {
  chai_qmat m;
  make_matrix(&m, f, R, C);
  float *dy = tu_falloc((size_t)N * R), *dx = tu_falloc((size_t)N * C),
        *wd = tu_falloc((size_t)R * C);
  tu_fill(dy, (size_t)N * R, -1, 1);
  chai_qmat_dequant_rows(&m, wd, 0, R);
  for (int acc = 0; acc < 2; acc++) {
    prefill(dx, (size_t)N * C);
    CHECK_OK(chai_qmat_matmul_backward_input(dx, dy, &m, N, acc));
    double worst = 0;
    for (int n = 0; n < N; n++)
      for (int k = 0; k < C; k++) {
        double s = 0, sabs = 0;
        for (int r = 0; r < R; r++) {
          double p = (double)dy[(size_t)n * R + r] * wd[(size_t)r * C + k];
          s += p, sabs += fabs(p);
        }
        size_t i = (size_t)n * C + k;
        if (acc) s += (double)(i % 13) * 0.25 - 1.5, sabs += 1.5;
        worst = fmax(worst, fabs(dx[i] - s) / (1 + sabs));
      }
    CHECK(worst < 1e-5);
  }
  free(dy), free(dx), free(wd);
  chai_qmat_release(&m);
}

/* ---- f32 / f16 ---------------------------------------------------------------------------------
 */

static void dense_case(chai_qformat f, int R, int C, int N) {
  fmt d = {f, 0, false, false};
  chai_qmat m;
  make_matrix(&m, &d, R, C);
  float *x = make_x(N, C), *bias = tu_falloc((size_t)R);
  tu_fill(bias, (size_t)R, -1, 1);
  size_t ny = (size_t)N * R;
  float *want = tu_falloc(ny), *got = tu_falloc(ny);
  for (int ep = 0; ep < 8; ep++) {
    chai_qepilogue e = {.bias = ep & 1 ? bias : NULL, .accumulate = ep & 2, .relu = ep & 4};
    prefill(want, ny), prefill(got, ny);
    CHECK_OK(chai_qmat_matmul_ref(want, x, &m, N, &e, NULL));
    CHECK_OK(chai_qmat_matmul(got, x, &m, N, &e, NULL));
    CHECK(close_rel(got, want, ny, 1e-6 * C)); /* float sums in different orders */
    /* decode rows: the moved row-major kernels */
    for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AVX512; lvl++) {
      if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
      prefill(got, ny);
      for (int n = 0; n < N; n++)
        chai_qmat_gemv_rows(got + (size_t)n * R, &m, x + (size_t)n * C, NULL, 3 < R ? 3 : 0, R, &e);
      prefill(want, ny);
      for (int n = 0; n < N; n++)
        chai_qmat_gemv_rows_ref(want + (size_t)n * R, &m, x + (size_t)n * C, NULL, 3 < R ? 3 : 0, R,
                                &e);
      CHECK(close_rel(got, want, ny, 1e-6 * C));
    }
    chai_simd_force(chai_simd_best());
  }
  free(x), free(bias), free(want), free(got);
  chai_qmat_release(&m);
}

/* ---- batches of products over one input ------------------------------------------------------ */

/* Products of mixed formats over one x as a batch give, at every level and 1-3 threads, the bits
 * of one chai_qmat_matmul call each (and the _ref batch those of chai_qmat_matmul_ref), with the
 * workspace the batch asks for. */
static void batch_case(const fmt *const *fs, int count, int C, int N) {
  enum { MAXP = 6 };
  chai_qmat m[MAXP];
  chai_qmat_product p[MAXP];
  float *want[MAXP], *bias[MAXP];
  size_t ny[MAXP];
  float *x = make_x(N, C);
  for (int j = 0; j < count; j++) {
    int R = 16 + 37 * j % 90;
    make_matrix(&m[j], fs[j], R, C);
    ny[j] = (size_t)N * R;
    bias[j] = tu_falloc((size_t)R);
    tu_fill(bias[j], (size_t)R, -1, 1);
    want[j] = tu_falloc(ny[j]);
    p[j] = (chai_qmat_product){
        .y = tu_falloc(ny[j]),
        .w = &m[j],
        .e = {.bias = j % 2 ? NULL : bias[j], .accumulate = j % 3 == 1, .relu = j % 4 == 2}};
  }
  for (int lvl = CHAI_SIMD_REF; lvl <= CHAI_SIMD_AMX; lvl++) {
    if ((int)chai_simd_force((chai_simd)lvl) != lvl) continue;
    for (int threads = 1; threads <= 3; threads++) {
      chai_threads(threads);
      size_t bytes = chai_qmat_matmul_batch_work_bytes(p, count, N);
      void *work = amalloc(bytes + 64);
      for (int j = 0; j < count; j++) {
        prefill(want[j], ny[j]), prefill(p[j].y, ny[j]);
        CHECK(chai_qmat_matmul_work_bytes(&m[j], N) <= bytes);
        CHECK_OK(chai_qmat_matmul(want[j], x, &m[j], N, &p[j].e, NULL));
      }
      CHECK_OK(chai_qmat_matmul_batch(p, count, x, N, work));
      for (int j = 0; j < count; j++) {
        bool ok = same_bits(p[j].y, want[j], ny[j]);
        if (!ok)
          fprintf(stderr, "batch level %d threads %d product %d fmt %d C=%d N=%d\n", lvl, threads,
                  j, m[j].format, C, N);
        CHECK(ok);
      }
      free(work);
    }
  }
  chai_threads(2);
  chai_simd_force(chai_simd_best());
  for (int j = 0; j < count; j++) {
    prefill(want[j], ny[j]), prefill(p[j].y, ny[j]);
    CHECK_OK(chai_qmat_matmul_ref(want[j], x, &m[j], N, &p[j].e, NULL));
  }
  CHECK_OK(chai_qmat_matmul_batch_ref(p, count, x, N, NULL));
  for (int j = 0; j < count; j++) {
    CHECK(same_bits(p[j].y, want[j], ny[j]));
    free(p[j].y), free(want[j]), free(bias[j]);
    chai_qmat_release(&m[j]);
  }
  free(x);
}

static void batches(void) {
  const fmt f32 = {CHAI_QF_F32, 0, false, false}, f16 = {CHAI_QF_F16, 0, false, false};
  const fmt *three8[] = {&FORMATS[0], &FORMATS[0], &FORMATS[0]};
  const fmt *mixed[] = {&FORMATS[0], &FORMATS[5], &FORMATS[1], &f32, &FORMATS[3], &f16};
  const fmt *dense[] = {&f32, &f16};
  for (int t = 0; t < NTOKENS; t += 3) {
    batch_case(three8, 3, 64, TOKENS[t]);
    batch_case(mixed, 6, 100, TOKENS[t]);
  }
  batch_case(three8, 3, 768, 130); /* opt-125m's width, many tasks */
  batch_case(dense, 2, 33, 5);
  batch_case(mixed + 3, 1, 70, 9);

  /* bad batches name the product */
  chai_qmat a, b, released;
  make_matrix(&a, &FORMATS[0], 20, 30);
  make_matrix(&b, &FORMATS[0], 20, 31);
  chai_qmat_init(&released);
  float x[62], y[40], y2[40];
  tu_fill(x, 62, -1, 1);
  chai_qmat_product p[2] = {{.y = y, .w = &a}, {.y = y2, .w = &b}};
  CHECK_ERR(chai_qmat_matmul_batch(p, 2, x, 2, NULL), CHAI_ERR_ARG,
            "product 2 has 31 columns, product 1 has 30");
  p[1].w = NULL;
  CHECK_ERR(chai_qmat_matmul_batch(p, 2, x, 2, NULL), CHAI_ERR_ARG, "product 2 has no matrix");
  p[1].w = &released;
  CHECK_ERR(chai_qmat_matmul_batch(p, 2, x, 2, NULL), CHAI_ERR_ARG, "released");
  CHECK_ERR(chai_qmat_matmul_batch(p, 0, x, 2, NULL), CHAI_ERR_ARG, "0 products");
  p[1].w = &a;
  p[1].y = NULL;
  CHECK_ERR(chai_qmat_matmul_batch(p, 2, x, 2, NULL), CHAI_ERR_ARG, "NULL");
  chai_qmat_release(&a), chai_qmat_release(&b);
}

/* ---- names, errors --------------------------------------------------------------------------- */

static void names_and_errors(void) {
  chai_simd_force(CHAI_SIMD_REF);
  CHECK(strcmp(chai_qformat_kernel(CHAI_QF_INT8), "ref") == 0);
  CHECK(strcmp(chai_qformat_kernel(CHAI_QF_BF16), "ref") == 0);
  CHECK(strcmp(chai_qformat_kernel(CHAI_QF_F32), "openblas") == 0);
  const chai_cpu_info *ci = chai_cpu_info_get();
  if (chai_simd_force(CHAI_SIMD_AVX2) == CHAI_SIMD_AVX2)
    CHECK(strcmp(chai_qformat_kernel(CHAI_QF_INT4), ci->avx_vnni ? "avx-vnni" : "avx2") == 0);
  if (chai_simd_force(CHAI_SIMD_AVX512) == CHAI_SIMD_AVX512) {
    CHECK(strcmp(chai_qformat_kernel(CHAI_QF_INT8), ci->avx512_vnni ? "avx512-vnni"
                                                    : ci->avx_vnni  ? "avx-vnni"
                                                                    : "avx2") == 0);
    CHECK(strcmp(chai_qformat_kernel(CHAI_QF_BF16), ci->avx512_bf16 ? "avx512-bf16" : "avx512") ==
          0);
  }
  chai_simd_force(chai_simd_best());
  printf("kernels here: int8 %s, int4 %s, bf16 %s\n", chai_qformat_kernel(CHAI_QF_INT8),
         chai_qformat_kernel(CHAI_QF_INT4), chai_qformat_kernel(CHAI_QF_BF16));

  fmt f8 = {CHAI_QF_INT8, 0, false, false};
  chai_qmat m, released;
  make_matrix(&m, &f8, 20, 30);
  chai_qmat_init(&released);
  float x[60], y[40];
  tu_fill(x, 60, -1, 1);
  CHECK_ERR(chai_qmat_matmul(y, x, &m, -1, NULL, NULL), CHAI_ERR_ARG, "-1 tokens");
  CHECK_ERR(chai_qmat_matmul(y, x, &released, 2, NULL, NULL), CHAI_ERR_ARG, "released");
  CHECK_ERR(chai_qmat_matmul_backward_input(x, y, &released, 2, false), CHAI_ERR_ARG, "released");
  CHECK_OK(chai_qmat_matmul(y, x, &m, 0, NULL, NULL)); /* no tokens: nothing to do */
  chai_alloc_fail_after(1);
  CHECK_ERR(chai_qmat_matmul(y, x, &m, 2, NULL, NULL), CHAI_ERR_NOMEM, "workspace");
  chai_alloc_fail_after(0);
  CHECK(chai_qmat_matmul_work_bytes(&m, 2) == chai_qact_bytes(16, 30, false));
  chai_qmat_release(&m);
}

int main(void) {
  tu_seed(5);
  chai_threads(2);
  int nk;
  for (int f = CHAI_QF_BF16; f <= CHAI_QF_INT4; f++) {
    const chai_qkernel *ks = chai_qkernels((chai_qformat)f, &nk);
    for (int i = 0; i < nk; i++)
      if (!chai_qkernel_runs_here(&ks[i]))
        printf("not run here: kernel %s (this CPU or OS does not have it)\n", ks[i].name);
  }
  for (int fi = 0; fi < NFORMATS; fi++)
    for (int s = 0; s < NSIZES; s++) {
      int R = SIZES[s][0], C = SIZES[s][1];
      for (int t = 0; t < NTOKENS; t += (R * C > 10000 ? 4 : 1)) {
        int ep = (s + t) % 8;
        chai_qepilogue e = {
            .bias = ep & 1 ? (const float *)1 : NULL, .accumulate = ep & 2, .relu = ep & 4};
        kernels_vs_ref(&FORMATS[fi], R, C, TOKENS[t], &e);
      }
      for (int ep = 0; ep < 8; ep++) { /* every epilogue on one size */
        chai_qepilogue e = {
            .bias = ep & 1 ? (const float *)1 : NULL, .accumulate = ep & 2, .relu = ep & 4};
        if (s == 3) kernels_vs_ref(&FORMATS[fi], R, C, 17, &e);
      }
      if (s >= 1) dispatch_case(&FORMATS[fi], R, C, TOKENS[(s * 3) % NTOKENS]);
      oracle_case(&FORMATS[fi], R, C, s + 2);
      if (s == 4) backward_case(&FORMATS[fi], R, C, 9);
    }
  for (int fi = 0; fi < NFORMATS; fi++)
    zero_case(&FORMATS[fi]);
  dispatch_case(&FORMATS[0], 600, 700, 40); /* many tasks across threads */
  for (int f = CHAI_QF_F32; f <= CHAI_QF_F16; f++) {
    dense_case((chai_qformat)f, 33, 70, 5);
    dense_case((chai_qformat)f, 600, 600, 3); /* f16: two widened blocks */
    fmt d = {(chai_qformat)f, 0, false, false};
    oracle_case(&d, 40, 90, 4);
    backward_case(&d, 50, 60, 7);
  }
  batches();
  names_and_errors();
  return chai_test_finish();
}
