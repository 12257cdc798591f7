/* chai.version, chai.cpu(), chai.threads(n), chai.seed(n), chai.memory(). */
#include "bind.h"
#include "chai/chai.h"

/* chai.cpu() → {simd=, features=, vendor=, family=, model=, kernels=, blas_core=, blas_library=,
 * blas_chosen_by=, blas_parallel=, threads=}; kernels names the product kernel of each weight
 * format ({int8 = "avx512-vnni", ...}); the blas_* fields are nil (and blas_error says why) when
 * OpenBLAS could not be loaded. */
static int l_cpu(lua_State *L) {
  const chai_cpu_info *c = chai_cpu_info_get();
  lua_createtable(L, 0, 12);
  lua_pushstring(L, chai_simd_name(chai_simd_level()));
  lua_setfield(L, -2, "simd");
  lua_pushstring(L, chai_cpu_features());
  lua_setfield(L, -2, "features");
  lua_pushstring(L, c->vendor);
  lua_setfield(L, -2, "vendor");
  lua_pushinteger(L, c->family);
  lua_setfield(L, -2, "family");
  lua_pushinteger(L, c->model);
  lua_setfield(L, -2, "model");
  static const char *const formats[CHAI_QF_COUNT] = {"f32", "f16", "bf16", "int8", "int4"};
  lua_createtable(L, 0, CHAI_QF_COUNT);
  for (int f = 0; f < CHAI_QF_COUNT; f++) {
    lua_pushstring(L, chai_qformat_kernel((chai_qformat)f));
    lua_setfield(L, -2, formats[f]);
  }
  lua_setfield(L, -2, "kernels");
  if (chai_blas_init() == CHAI_OK) {
    const chai_blas_info *b = chai_blas_get_info();
    static const char *const parallel[] = {"sequential", "pthreads", "openmp"};
    lua_pushstring(L, b->core);
    lua_setfield(L, -2, "blas_core");
    lua_pushstring(L, b->library);
    lua_setfield(L, -2, "blas_library");
    lua_pushstring(L, b->chosen_by);
    lua_setfield(L, -2, "blas_chosen_by");
    lua_pushstring(L, b->parallel >= 0 && b->parallel <= 2 ? parallel[b->parallel] : "unknown");
    lua_setfield(L, -2, "blas_parallel");
  } else {
    lua_pushstring(L, chai_last_error());
    lua_setfield(L, -2, "blas_error");
  }
  lua_pushinteger(L, chai_threads_get());
  lua_setfield(L, -2, "threads");
  return 1;
}

/* chai.threads([n]): sets OpenMP and OpenBLAS threads to n when given; returns the count in use. */
static int l_threads(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 1024) return luaL_error(L, "chai.threads: n must be 1..1024, got %I", n);
    if (chai_threads((int)n) != CHAI_OK) return chai_bind_fail(L);
  }
  lua_pushinteger(L, chai_threads_get());
  return 1;
}

/* chai.seed(n): reseeds the global generator (what randn/rand use without seed=). */
static int l_seed(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 0) return luaL_error(L, "chai.seed: seed must be >= 0, got %I", n);
  chai_rng_init(chai_rng_global(), (uint64_t)n);
  return 0;
}

/* chai.memory() → {live=, peak=}: bytes held by chai's allocator now, and the high-water mark. */
static int l_memory(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)chai_memory_live());
  lua_setfield(L, -2, "live");
  lua_pushinteger(L, (lua_Integer)chai_memory_peak());
  lua_setfield(L, -2, "peak");
  return 1;
}

void chai_bind_open_sys(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"cpu", l_cpu},
                                 {"threads", l_threads},
                                 {"seed", l_seed},
                                 {"memory", l_memory},

                                 {NULL, NULL}};
  chai_bind_register(L, table, fns);
  lua_pushstring(L, chai_version());
  lua_setfield(L, table, "version");
}
