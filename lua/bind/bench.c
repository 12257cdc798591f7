/* chai.core.bench: timing helpers for scripts/bench (not part of the user API). */
#include <stdlib.h>
#include <time.h>

#include "bind.h"
#include "chai/chai.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* bench.now() → monotonic wall-clock seconds. */
static int bench_now(lua_State *L) {
  lua_pushnumber(L, now_seconds());
  return 1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* bench.sgemm_raw(n, reps) → median GFLOP/s of raw cblas_sgemm on n×n×n, buffers prepared
 * outside the timing. */
static int bench_sgemm_raw(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1), reps = luaL_optinteger(L, 2, 5);
  luaL_argcheck(L, n >= 1 && n <= 16384, 1, "n must be 1..16384");
  luaL_argcheck(L, reps >= 1 && reps <= 1000, 2, "reps must be 1..1000");
  if (chai_blas_init() != CHAI_OK) return luaL_error(L, "%s", chai_last_error());
  size_t bytes = sizeof(float) * (size_t)n * (size_t)n;
  float *a = chai_alloc(bytes, "bench a"), *b = chai_alloc(bytes, "bench b"),
        *c = chai_alloc(bytes, "bench c");
  double *times = malloc(sizeof(double) * (size_t)reps);
  if (!a || !b || !c || !times) {
    chai_free(a, bytes), chai_free(b, bytes), chai_free(c, bytes), free(times);
    return luaL_error(L, "out of memory for a %d-sized GEMM benchmark", (int)n);
  }
  chai_rng r;
  chai_rng_init(&r, 1);
  chai_rng_fill_normal(&r, a, (size_t)n * n, 0, 1);
  chai_rng_fill_normal(&r, b, (size_t)n * n, 0, 1);
  int N = (int)n;
  chai_cblas_sgemm_raw(false, false, N, N, N, 1, a, N, b, N, 0, c, N); /* warm-up */
  for (lua_Integer i = 0; i < reps; i++) {
    double t = now_seconds();
    chai_cblas_sgemm_raw(false, false, N, N, N, 1, a, N, b, N, 0, c, N);
    times[i] = now_seconds() - t;
  }
  qsort(times, (size_t)reps, sizeof(double), cmp_double);
  double median = times[reps / 2];
  chai_free(a, bytes), chai_free(b, bytes), chai_free(c, bytes), free(times);
  lua_pushnumber(L, 2.0 * (double)n * (double)n * (double)n / median / 1e9);
  return 1;
}

void chai_bind_open_bench(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"now", bench_now}, {"sgemm_raw", bench_sgemm_raw}, {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  chai_bind_bench_quant(L, lua_gettop(L));
  lua_setfield(L, table, "bench");
}
