/* chai.core.mpi (chai/mpi.h); lua/chai/mpi.lua builds chai.mpi on it. Ranks are 1-based here.
 *   available() launched() → bool, size   init()   initialized()   rank()   size()   barrier()
 *   allreduce(t, "sum"|"mean") → t        broadcast(t, root) → t (tensors, in place)
 *   broadcast_string(s|nil, root) → root's s      gather_string(s, root) → {s₁, …} on root, nil
 *   sum({numbers}) → {sums in rank order, the same bits on every rank}
 *   allgather_string(s) → {s₁, …} on every rank (all the same length)
 *   abort(message[, code])   reducer([bucket_bytes]) → chai.mpi.Reducer
 * A chai.mpi.Reducer: r:add(t) (f32 contiguous; t must stay alive and unchanged until finish),
 * r:finish(), r:stats() → {floats=, buckets=, sent_bytes=, wait_seconds=}, r:free().
 *
 * MPI starts when the module opens in a process a launcher started (chai_mpi_launched; not when
 * CHAI_MPI_AUTO=0, e.g. for a child process that a rank starts and that inherits the launcher's
 * environment) and ends when the Lua state closes. Under MPI, os.exit(true/0) ends MPI first and
 * os.exit(failure) ends every rank (chai_mpi_abort), so neither leaves the other ranks waiting. */
#include <stdlib.h>
#include <string.h>

#include "bind.h"
#include "chai/mpi.h"

#define REDUCER_MT "chai.mpi.Reducer"
#define SENTINEL_KEY "chai.mpi.sentinel"

typedef struct reducer_ud {
  chai_mpi_reducer *r;
} reducer_ud;

/* A 1-based root → 0-based. The range is checked by the core after the ranks agree on it, so a
 * bad root raises on every rank instead of leaving the others waiting. */
static int root_arg(lua_State *L, int idx) {
  lua_Integer root = luaL_optinteger(L, idx, 1);
  if (root < INT32_MIN + 1 || root > INT32_MAX) root = 0;
  return (int)root - 1;
}

/* ---- the life of MPI in a Lua state -------------------------------------------------------- */

static int sentinel_gc(lua_State *L) {
  (void)L;
  chai_mpi_finalize();
  return 0;
}

/* os.exit under MPI: success ends MPI (as closing the state would), failure ends every rank. */
static int mpi_os_exit(lua_State *L) {
  int code;
  if (lua_isboolean(L, 1))
    code = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    code = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  if (chai_mpi_initialized() && chai_mpi_size() > 1 && code != EXIT_SUCCESS) {
    char msg[64];
    snprintf(msg, sizeof msg, "os.exit(%d): ending every rank", code);
    chai_mpi_abort(msg, code);
  }
  if (lua_toboolean(L, 2)) lua_close(L);
  chai_mpi_finalize();
  exit(code);
}

/* After a start: the sentinel whose __gc ends MPI when the state closes, and os.exit's wrapper. */
static void after_start(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
  bool have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have) return;
  lua_newuserdatauv(L, 1, 0);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
  lua_getglobal(L, "os");
  if (lua_istable(L, -1)) {
    lua_pushcfunction(L, mpi_os_exit);
    lua_setfield(L, -2, "exit");
  }
  lua_pop(L, 1);
}

static int l_init(lua_State *L) {
  if (chai_mpi_init()) return chai_bind_fail(L);
  after_start(L);
  return 0;
}

static int l_available(lua_State *L) {
  lua_pushboolean(L, chai_mpi_available());
  return 1;
}

static int l_launched(lua_State *L) {
  int n = 0;
  lua_pushboolean(L, chai_mpi_launched(&n));
  lua_pushinteger(L, n);
  return 2;
}

static int l_initialized(lua_State *L) {
  lua_pushboolean(L, chai_mpi_initialized());
  return 1;
}

static int l_rank(lua_State *L) {
  lua_pushinteger(L, chai_mpi_rank() + 1);
  return 1;
}

static int l_size(lua_State *L) {
  lua_pushinteger(L, chai_mpi_size());
  return 1;
}

static int l_abort(lua_State *L) {
  const char *msg = luaL_checkstring(L, 1);
  lua_Integer code = luaL_optinteger(L, 2, 1);
  chai_mpi_abort(msg, code < 1 || code > 255 ? 1 : (int)code);
}

/* ---- collectives --------------------------------------------------------------------------- */

static int l_barrier(lua_State *L) {
  if (chai_mpi_barrier()) return chai_bind_fail(L);
  return 0;
}

static int l_allreduce(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  chai_mpi_op op;
  if (chai_mpi_op_parse(luaL_optstring(L, 2, "sum"), &op)) return chai_bind_fail(L);
  if (chai_mpi_allreduce(t, op)) return chai_bind_fail(L);
  lua_settop(L, 1);
  return 1;
}

static int l_broadcast(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int root = root_arg(L, 2);
  if (chai_mpi_broadcast(t, root)) return chai_bind_fail(L);
  lua_settop(L, 1);
  return 1;
}

/* root's string (others pass anything) → every rank */
static int l_broadcast_string(lua_State *L) {
  int root = root_arg(L, 2);
  bool is_root = chai_mpi_rank() == root;
  size_t n = 0;
  const char *s = is_root ? luaL_checklstring(L, 1, &n) : NULL;
  uint64_t len = n;
  if (chai_mpi_broadcast_bytes(&len, sizeof len, root)) return chai_bind_fail(L);
  if (is_root) {
    if (chai_mpi_broadcast_bytes((void *)s, n, root)) return chai_bind_fail(L);
    lua_pushvalue(L, 1);
    return 1;
  }
  char *buf = lua_newuserdatauv(L, len ? (size_t)len : 1, 0); /* Lua owns it */
  if (chai_mpi_broadcast_bytes(buf, (size_t)len, root)) return chai_bind_fail(L);
  lua_pushlstring(L, buf, (size_t)len);
  return 1;
}

static int l_gather_string(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int root = root_arg(L, 2);
  int size = chai_mpi_size();
  bool is_root = chai_mpi_rank() == root;
  size_t *lens = lua_newuserdatauv(L, (size_t)size * sizeof(size_t), 0);
  if (chai_mpi_gather_lengths(n, root, lens)) return chai_bind_fail(L);
  size_t total = 0;
  for (int r = 0; is_root && r < size; r++)
    total += lens[r];
  char *out = is_root ? lua_newuserdatauv(L, total ? total : 1, 0) : NULL;
  if (chai_mpi_gather_bytes(s, n, root, out, lens)) return chai_bind_fail(L);
  if (!is_root) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, size, 0);
  size_t off = 0;
  for (int r = 0; r < size; r++) {
    lua_pushlstring(L, out + off, lens[r]);
    lua_rawseti(L, -2, r + 1);
    off += lens[r];
  }
  return 1;
}

static int l_allgather_string(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int size = chai_mpi_size();
  char *out = lua_newuserdatauv(L, (size_t)size * n + 1, 0);
  if (chai_mpi_allgather_bytes(s, n, out)) return chai_bind_fail(L);
  lua_createtable(L, size, 0);
  for (int r = 0; r < size; r++) {
    lua_pushlstring(L, out + (size_t)r * n, n);
    lua_rawseti(L, -2, r + 1);
  }
  return 1;
}

/* {x₁, …} → {Σ over ranks of x₁, …}: doubles gathered from every rank and added in rank order
 * on each, so all ranks get the same bits. */
static int l_sum(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer k = luaL_len(L, 1);
  if (k < 1 || k > 4096) return luaL_error(L, "chai.mpi.sum: expects 1..4096 numbers, got %I", k);
  int size = chai_mpi_size();
  double *mine = lua_newuserdatauv(L, (size_t)k * sizeof(double), 0);
  double *all = lua_newuserdatauv(L, (size_t)k * (size_t)size * sizeof(double), 0);
  for (lua_Integer i = 1; i <= k; i++) {
    lua_rawgeti(L, 1, i);
    int ok;
    mine[i - 1] = lua_tonumberx(L, -1, &ok);
    if (!ok) return luaL_error(L, "chai.mpi.sum: entry %I is not a number", i);
    lua_pop(L, 1);
  }
  if (chai_mpi_allgather_bytes(mine, (size_t)k * sizeof(double), all)) return chai_bind_fail(L);
  lua_createtable(L, (int)k, 0);
  for (lua_Integer i = 0; i < k; i++) {
    double acc = all[i];
    for (int r = 1; r < size; r++)
      acc += all[(size_t)r * (size_t)k + (size_t)i];
    lua_pushnumber(L, acc);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---- the reducer --------------------------------------------------------------------------- */

chai_mpi_reducer *chai_bind_check_reducer(lua_State *L, int idx) {
  reducer_ud *u = luaL_checkudata(L, idx, REDUCER_MT);
  if (!u->r) luaL_error(L, "chai.mpi reducer used after free");
  return u->r;
}

static int l_reducer(lua_State *L) {
  lua_Integer bytes = luaL_optinteger(L, 1, 8 << 20);
  if (bytes < 4096 || bytes > ((lua_Integer)1 << 32))
    return luaL_error(L, "chai.mpi.reducer: bucket size %I bytes is outside 4 KiB..4 GiB", bytes);
  reducer_ud *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->r = NULL;
  luaL_setmetatable(L, REDUCER_MT);
  if (chai_mpi_reducer_new(&u->r, (size_t)bytes)) return chai_bind_fail(L);
  /* the added tensors, kept alive until finish */
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int r_add(lua_State *L) {
  chai_mpi_reducer *r = chai_bind_check_reducer(L, 1);
  chai_tensor *t = chai_bind_check_tensor(L, 2);
  if (t->dtype != CHAI_F32 || !chai_tensor_is_contiguous(t))
    return luaL_error(L, "reducer:add: needs a contiguous f32 tensor, got %s %s",
                      chai_dtype_name(t->dtype),
                      chai_tensor_is_contiguous(t) ? "(contiguous)" : "(a strided view)");
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
  lua_pop(L, 1);
  chai_mpi_reducer_add(r, chai_tensor_data(t), (size_t)chai_tensor_numel(t));
  return 0;
}

static int r_finish(lua_State *L) {
  chai_mpi_reducer *r = chai_bind_check_reducer(L, 1);
  chai_status st = chai_mpi_reducer_finish(r);
  lua_newtable(L);
  lua_setiuservalue(L, 1, 1);
  if (st) return chai_bind_fail(L);
  return 0;
}

static int r_stats(lua_State *L) {
  chai_mpi_reducer_stats s;
  chai_mpi_reducer_get_stats(chai_bind_check_reducer(L, 1), &s);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)s.floats);
  lua_setfield(L, -2, "floats");
  lua_pushinteger(L, (lua_Integer)s.buckets);
  lua_setfield(L, -2, "buckets");
  lua_pushinteger(L, (lua_Integer)s.sent_bytes);
  lua_setfield(L, -2, "sent_bytes");
  lua_pushnumber(L, s.wait_seconds);
  lua_setfield(L, -2, "wait_seconds");
  return 1;
}

static int r_free(lua_State *L) {
  reducer_ud *u = luaL_checkudata(L, 1, REDUCER_MT);
  chai_mpi_reducer_free(u->r);
  u->r = NULL;
  return 0;
}

void chai_bind_open_mpi(lua_State *L, int table) {
  static const luaL_Reg methods[] = {{"add", r_add},   {"finish", r_finish}, {"stats", r_stats},
                                     {"free", r_free}, {"__gc", r_free},     {"__close", r_free},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, REDUCER_MT)) {
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"available", l_available},
                                 {"launched", l_launched},
                                 {"init", l_init},
                                 {"initialized", l_initialized},
                                 {"rank", l_rank},
                                 {"size", l_size},
                                 {"abort", l_abort},
                                 {"barrier", l_barrier},
                                 {"allreduce", l_allreduce},
                                 {"broadcast", l_broadcast},
                                 {"broadcast_string", l_broadcast_string},
                                 {"gather_string", l_gather_string},
                                 {"allgather_string", l_allgather_string},
                                 {"sum", l_sum},
                                 {"reducer", l_reducer},
                                 {NULL, NULL}};
  lua_createtable(L, 0, 16);
  chai_bind_register(L, lua_gettop(L), fns);
  lua_setfield(L, table, "mpi");
  /* Under a launcher, MPI starts with the module (chai_mpi_init reports nothing to fail on here
   * when built without MPI: the script then runs as one process and chai.mpi says why). */
  const char *autostart = getenv("CHAI_MPI_AUTO");
  if (chai_mpi_available() && chai_mpi_launched(NULL) &&
      !(autostart && strcmp(autostart, "0") == 0)) {
    if (chai_mpi_init()) luaL_error(L, "%s", chai_last_error());
    after_start(L);
  }
}
