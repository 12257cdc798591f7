/* chai.core.bench's quantized-kernel helpers for scripts/bench (not part of the user API): the
 * GEMM of a random matrix in a format, a decode pass through opt-shaped matrices, and the ISA
 * peaks. Matrices are made from random codes (the speed of a product does not depend on how the
 * codes were chosen). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bind.h"
#include "chai/chai.h"

/* In chai_qformat order. */
static const char *const FORMATS[] = {"f32", "f16", "bf16", "int8", "int4", NULL};

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* A random (R,C) matrix in format f (int4: symmetric groups of `group`). */
static chai_status random_matrix(chai_qmat *m, chai_qformat f, int R, int C, int group,
                                 chai_rng *rng) {
  size_t n = (size_t)R * (size_t)C;
  float *w = malloc(n * sizeof(float));
  void *codes = malloc(n * 2);
  float *scales = malloc((size_t)R * ((size_t)C / 32 + 1) * sizeof(float));
  chai_status st = CHAI_OK;
  if (!w || !codes || !scales) {
    st = chai_error(CHAI_ERR_NOMEM, "bench: no memory for a (%d,%d) matrix", R, C);
    goto done;
  }
  chai_rng_fill_normal(rng, w, n, 0, 0.05f);
  if (f == CHAI_QF_F32 || f == CHAI_QF_F16) {
    int64_t shape[2] = {R, C};
    chai_tensor t, h;
    st = chai_tensor_new(&t, CHAI_F32, 2, shape);
    if (st) goto done;
    memcpy(chai_tensor_data(&t), w, n * sizeof(float));
    if (f == CHAI_QF_F16) {
      st = chai_tensor_to(&h, &t, CHAI_F16);
      chai_tensor_release(&t);
      if (st) goto done;
      t = h;
    }
    st = chai_qmat_wrap(m, &t);
    chai_tensor_release(&t);
  } else if (f == CHAI_QF_BF16) {
    chai_f32_to_bf16_array(codes, w, n);
    st = chai_qmat_from_bf16(m, codes, R, C);
  } else if (f == CHAI_QF_INT8) {
    int8_t *q = codes;
    for (size_t i = 0; i < n; i++)
      q[i] = (int8_t)(w[i] * 1270 > 127 ? 127 : w[i] * 1270 < -127 ? -127 : w[i] * 1270);
    for (int r = 0; r < R; r++)
      scales[r] = 1.0f / 1270;
    st = chai_qmat_from_int8(m, q, scales, R, C);
  } else {
    uint8_t *u = codes;
    int groups = (C + group - 1) / group;
    for (size_t i = 0; i < n; i++)
      u[i] = (uint8_t)((int)(w[i] * 1000) & 15);
    for (int i = 0; i < R * groups; i++)
      scales[i] = 0.01f;
    st = chai_qmat_from_int4(m, u, scales, NULL, R, C, group, false, false);
  }
done:
  free(w), free(codes), free(scales);
  return st;
}

/* bench.qmatmul(format, M, K, N, reps [, group]) → median, best seconds of y (M,N) = x (M,K) · Wᵀ
 * through chai_qmat_matmul with its workspace prepared outside the timing. */
static int bench_qmatmul(lua_State *L) {
  int f = luaL_checkoption(L, 1, NULL, FORMATS);
  lua_Integer M = luaL_checkinteger(L, 2), K = luaL_checkinteger(L, 3), N = luaL_checkinteger(L, 4);
  lua_Integer reps = luaL_checkinteger(L, 5), group = luaL_optinteger(L, 6, 64);
  luaL_argcheck(L, M >= 1 && M <= 65536, 2, "M must be 1..65536");
  luaL_argcheck(L, K >= 1 && K <= 65536, 3, "K must be 1..65536");
  luaL_argcheck(L, N >= 1 && N <= 65536, 4, "N must be 1..65536");
  luaL_argcheck(L, reps >= 1 && reps <= 1000, 5, "reps must be 1..1000");
  if (chai_blas_init() != CHAI_OK) return luaL_error(L, "%s", chai_last_error());
  chai_rng rng;
  chai_rng_init(&rng, 7);
  chai_qmat w;
  chai_qmat_init(&w);
  chai_status st = random_matrix(&w, (chai_qformat)f, (int)N, (int)K, (int)group, &rng);
  size_t xb = (size_t)M * (size_t)K * sizeof(float), yb = (size_t)M * (size_t)N * sizeof(float);
  size_t wb = chai_qmat_matmul_work_bytes(&w, (int)M);
  float *x = chai_alloc(xb, "bench x"), *y = chai_alloc(yb, "bench y");
  void *work = wb ? chai_alloc(wb, "bench workspace") : NULL;
  double *times = malloc(sizeof(double) * (size_t)reps);
  if (!st && (!x || !y || (wb && !work) || !times))
    st = chai_error(CHAI_ERR_NOMEM, "bench: no memory for a %lldx%lldx%lld product", (long long)M,
                    (long long)K, (long long)N);
  if (!st) {
    chai_rng_fill_normal(&rng, x, (size_t)M * (size_t)K, 0, 1);
    st = chai_qmat_matmul(y, x, &w, (int)M, NULL, work); /* warm-up */
    for (lua_Integer i = 0; !st && i < reps; i++) {
      double t = now_seconds();
      st = chai_qmat_matmul(y, x, &w, (int)M, NULL, work);
      times[i] = now_seconds() - t;
    }
  }
  chai_free(x, xb), chai_free(y, yb), chai_free(work, wb);
  chai_qmat_release(&w);
  if (st) {
    free(times);
    return luaL_error(L, "%s", chai_last_error());
  }
  qsort(times, (size_t)reps, sizeof(double), cmp_double);
  lua_pushnumber(L, times[reps / 2]);
  lua_pushnumber(L, times[0]);
  free(times);
  return 2;
}

/* One decode pass: for every layer, one token through Q, K, V (one input, one parallel region
 * over their row blocks end to end), the output projection, fc1 and fc2; each thread takes a
 * contiguous run of row blocks, whole blocks only (the packed formats' unit). */
typedef struct {
  chai_qmat *w;
  float *y;
} decode_task;

static void decode_region(const decode_task *t, int n, const float *x, const chai_qact *xa) {
  int blocks = 0;
  for (int i = 0; i < n; i++)
    blocks += (t[i].w->rows + 15) / 16;
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int b0 = (int)((long)blocks * id / nt), b1 = (int)((long)blocks * (id + 1) / nt), base = 0;
    for (int i = 0; i < n; i++) {
      int nb = (t[i].w->rows + 15) / 16, lo = b0 > base ? b0 - base : 0;
      int hi = b1 - base < nb ? b1 - base : nb;
      if (lo < hi) {
        int r1 = 16 * hi < t[i].w->rows ? 16 * hi : t[i].w->rows;
        chai_qmat_gemv_rows(t[i].y, t[i].w, x, xa, 16 * lo, r1, NULL);
      }
      base += nb;
    }
  }
}

/* bench.qdecode(format, layers, hidden, ffn, reps [, group]) → median seconds of one pass, the
 * bytes of its matrices (payload and scales). */
static int bench_qdecode(lua_State *L) {
  int f = luaL_checkoption(L, 1, NULL, FORMATS);
  lua_Integer layers = luaL_checkinteger(L, 2), H = luaL_checkinteger(L, 3);
  lua_Integer F = luaL_checkinteger(L, 4), reps = luaL_checkinteger(L, 5);
  lua_Integer group = luaL_optinteger(L, 6, 64);
  luaL_argcheck(L, layers >= 1 && layers <= 256, 2, "layers must be 1..256");
  luaL_argcheck(L, H >= 16 && H <= 16384, 3, "hidden must be 16..16384");
  luaL_argcheck(L, F >= 16 && F <= 65536, 4, "ffn must be 16..65536");
  luaL_argcheck(L, reps >= 1 && reps <= 1000, 5, "reps must be 1..1000");
  int nm = (int)layers * 6;
  chai_qmat *ws = calloc((size_t)nm, sizeof(chai_qmat));
  float *x = chai_alloc((size_t)F * sizeof(float), "bench token");
  float *y = chai_alloc((size_t)4 * (size_t)F * sizeof(float), "bench outputs");
  size_t ab = chai_qact_bytes(1, (int)F, true);
  void *amem = chai_alloc(ab, "bench token codes");
  double *times = malloc(sizeof(double) * (size_t)reps);
  chai_status st = ws && x && y && amem && times
                       ? CHAI_OK
                       : chai_error(CHAI_ERR_NOMEM, "bench: no memory for the decode matrices");
  chai_rng rng;
  chai_rng_init(&rng, 3);
  size_t bytes = 0;
  for (int i = 0; i < nm && !st; i++) {
    int kind = i % 6, R = kind == 4 ? (int)F : (int)H, C = kind == 5 ? (int)F : (int)H;
    st = random_matrix(&ws[i], (chai_qformat)f, R, C, (int)group, &rng);
    bytes += st ? 0 : chai_qmat_bytes(&ws[i]);
  }
  for (lua_Integer r = -1; r < reps && !st; r++) { /* r = -1: warm-up */
    chai_rng_fill_normal(&rng, x, (size_t)F, 0, 1);
    double t = now_seconds();
    for (int l = 0; l < (int)layers; l++) {
      chai_qmat *m = ws + 6 * l;
      chai_qact a;
      chai_qact_quantize(&a, amem, x, 1, (int)H, f == CHAI_QF_BF16);
      decode_task qkv[3] = {{&m[0], y}, {&m[1], y + F}, {&m[2], y + 2 * F}};
      decode_region(qkv, 3, x, &a);
      decode_task out = {&m[3], y};
      decode_region(&out, 1, x, &a);
      decode_task fc1 = {&m[4], y};
      decode_region(&fc1, 1, x, &a);
      chai_qact_quantize(&a, amem, x, 1, (int)F, f == CHAI_QF_BF16);
      decode_task fc2 = {&m[5], y + F};
      decode_region(&fc2, 1, x, &a);
    }
    if (r >= 0) times[r] = now_seconds() - t;
  }
  for (int i = 0; ws && i < nm; i++)
    chai_qmat_release(&ws[i]);
  free(ws);
  chai_free(x, (size_t)F * sizeof(float)), chai_free(y, (size_t)4 * (size_t)F * sizeof(float));
  chai_free(amem, ab);
  if (st) {
    free(times);
    return luaL_error(L, "%s", chai_last_error());
  }
  qsort(times, (size_t)reps, sizeof(double), cmp_double);
  lua_pushnumber(L, times[reps / 2]);
  lua_pushinteger(L, (lua_Integer)bytes);
  free(times);
  return 2;
}

/* bench.peak(kind [, seconds]) → GOPS of independent chains of that instruction on every thread
 * (chai_quant_peak), or nil and the reason when the CPU lacks it. */
static int bench_peak(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  double seconds = luaL_optnumber(L, 2, 0.3);
  double gops;
  chai_status st = chai_quant_peak(kind, seconds, &gops);
  if (st == CHAI_ERR_UNSUPPORTED) {
    lua_pushnil(L);
    lua_pushstring(L, chai_last_error());
    return 2;
  }
  if (st) return luaL_error(L, "%s", chai_last_error());
  lua_pushnumber(L, gops);
  return 1;
}

void chai_bind_bench_quant(lua_State *L, int table) {
  static const luaL_Reg fns[] = {
      {"qmatmul", bench_qmatmul}, {"qdecode", bench_qdecode}, {"peak", bench_peak}, {NULL, NULL}};
  lua_pushvalue(L, table);
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
}
