/* The chai.Tensor userdata: it embeds a chai_tensor (one storage reference). __gc, __close and
 * t:free() share one idempotent release; any later use raises "tensor used after free".
 * Constructors (chai.tensor, zeros, ones, full, randn, rand, arange) and the view/element methods
 * live here; ops.c adds the numeric methods and arithmetic metamethods. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bind.h"
#include "chai/rng.h"

#define METHODS_KEY "chai.Tensor.methods"

/* ---- userdata basics ------------------------------------------------------------------------ */

chai_tensor *chai_bind_push_tensor(lua_State *L) {
  chai_tensor *t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, CHAI_TENSOR_MT);
  return t;
}

chai_tensor *chai_bind_test_tensor(lua_State *L, int idx) {
  return luaL_testudata(L, idx, CHAI_TENSOR_MT);
}

chai_tensor *chai_bind_check_tensor(lua_State *L, int idx) {
  chai_tensor *t = luaL_checkudata(L, idx, CHAI_TENSOR_MT);
  if (!t->storage) luaL_error(L, "tensor used after free");
  return t;
}

void chai_bind_add_methods(lua_State *L, const luaL_Reg *methods) {
  lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 1);
}

static int tensor_release(lua_State *L) {
  chai_tensor *t = luaL_checkudata(L, 1, CHAI_TENSOR_MT);
  chai_tensor_release(t);
  return 0;
}

/* ---- building from Lua tables ------------------------------------------------------------- */

static const char *position_str(char *buf, size_t n, const int64_t *pos, int depth) {
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < depth && used < n; i++)
    used += (size_t)snprintf(buf + used, n - used, "[%lld]", (long long)pos[i]);
  return buf;
}

/* Walks the first elements to find the shape of a nested table. */
static int table_shape(lua_State *L, int idx, int64_t *shape, const char *fname) {
  int nd = 0;
  lua_pushvalue(L, idx);
  while (lua_type(L, -1) == LUA_TTABLE) {
    if (nd == CHAI_MAX_DIMS)
      luaL_error(L, "%s: table nested more than %d levels deep (tensors have at most %d dims)",
                 fname, CHAI_MAX_DIMS, CHAI_MAX_DIMS);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    shape[nd++] = n;
    if (n == 0) break;
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return nd;
}

typedef struct fill_state {
  chai_tensor *t;
  uint8_t *data;
  size_t esize;
  int64_t flat;
  int64_t pos[CHAI_MAX_DIMS];
  const char *fname;
} fill_state;

static void fill_from_table(lua_State *L, int vidx, int depth, fill_state *fs) {
  char where[96], pos[64];
  if (depth == fs->t->ndim) {
    int code = chai_bind_store_element(L, vidx, fs->data + fs->flat * fs->esize, fs->t->dtype);
    if (code) {
      snprintf(where, sizeof where, "%s: element %s", fs->fname,
               position_str(pos, sizeof pos, fs->pos, depth));
      chai_bind_element_error(L, vidx, fs->t->dtype, code, where);
    }
    fs->flat++;
    return;
  }
  int64_t want = fs->t->shape[depth];
  if (lua_type(L, vidx) != LUA_TTABLE)
    luaL_error(L, "%s: ragged table: element %s is a %s, but dim %d expects a table of %I",
               fs->fname, position_str(pos, sizeof pos, fs->pos, depth), luaL_typename(L, vidx),
               depth + 1, (lua_Integer)want);
  lua_Integer n = (lua_Integer)lua_rawlen(L, vidx);
  if (n != want)
    luaL_error(L, "%s: ragged table: dim %d has %I elements at %s but %I at the first", fs->fname,
               depth + 1, n, depth ? position_str(pos, sizeof pos, fs->pos, depth) : "[]",
               (lua_Integer)want);
  luaL_checkstack(L, 2, "nested table");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, vidx, i);
    fs->pos[depth] = i;
    fill_from_table(L, lua_gettop(L), depth + 1, fs);
    lua_pop(L, 1);
  }
}

/* Pushes a new tensor of dtype dt built from the table or number at idx. */
static chai_tensor *push_from_lua(lua_State *L, int idx, chai_dtype dt, const char *fname) {
  idx = lua_absindex(L, idx);
  int64_t shape[CHAI_MAX_DIMS];
  int nd = 0;
  if (lua_type(L, idx) == LUA_TTABLE)
    nd = table_shape(L, idx, shape, fname);
  else if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: expected a table of numbers or a number, got %s", fname,
               luaL_typename(L, idx));
  chai_tensor *t = chai_bind_push_tensor(L);
  if (chai_tensor_new(t, dt, nd, shape) != CHAI_OK) chai_bind_fail(L);
  fill_state fs = {t, chai_tensor_data(t), chai_dtype_size(dt), 0, {0}, fname};
  fill_from_table(L, idx, 0, &fs);
  chai_bind_gc_nudge(L, chai_tensor_nbytes(t));
  return t;
}

chai_tensor *chai_bind_check_tensor_named(lua_State *L, int idx, chai_dtype dt, const char *what) {
  idx = lua_absindex(L, idx);
  int type = lua_type(L, idx);
  char label[64];
  if (!what) {
    snprintf(label, sizeof label, "argument #%d", idx);
    what = label;
  }
  if (type != LUA_TTABLE && type != LUA_TNUMBER) {
    if (what == label) return chai_bind_check_tensor(L, idx);
    if (!chai_bind_test_tensor(L, idx))
      luaL_error(L, "%s: expected a chai.Tensor or a table, got %s", what, luaL_typename(L, idx));
    return chai_bind_check_tensor(L, idx);
  }
  chai_tensor *t = push_from_lua(L, idx, dt, what);
  lua_replace(L, idx);
  return t;
}

chai_tensor *chai_bind_check_tensor_like(lua_State *L, int idx, chai_dtype dt) {
  return chai_bind_check_tensor_named(L, idx, dt, NULL);
}

/* ---- constructors --------------------------------------------------------------------------- */

/* chai.tensor(data [, dtype]): data is a nested table, a number (0-d) or a tensor (copied). */
static int l_tensor(lua_State *L) {
  chai_dtype dt = chai_bind_opt_dtype(L, 2, CHAI_F32);
  chai_tensor *src = chai_bind_test_tensor(L, 1);
  if (src) {
    src = chai_bind_check_tensor(L, 1);
    chai_tensor *t = chai_bind_push_tensor(L);
    if (chai_tensor_to(t, src, dt) != CHAI_OK) return chai_bind_fail(L);
    chai_bind_gc_nudge(L, chai_tensor_nbytes(t));
    return 1;
  }
  push_from_lua(L, 1, dt, "chai.tensor");
  return 1;
}

/* A shape argument: a table {2,3} or a single integer n for (n). */
static int shape_arg(lua_State *L, int idx, int64_t *shape, const char *fname) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    return chai_bind_check_shape(L, idx, shape, false, false, fname);
  int isint;
  lua_Integer n = lua_tointegerx(L, idx, &isint);
  if (!isint || n < 0)
    return luaL_error(L, "%s: size must be an integer >= 0, got %s", fname, lua_tostring(L, idx));
  shape[0] = n;
  return 1;
}

static chai_tensor *push_new(lua_State *L, chai_dtype dt, int nd, const int64_t *shape) {
  chai_tensor *t = chai_bind_push_tensor(L);
  if (chai_tensor_new(t, dt, nd, shape) != CHAI_OK) chai_bind_fail(L);
  chai_bind_gc_nudge(L, chai_tensor_nbytes(t));
  return t;
}

/* Fills a contiguous tensor with the Lua number at vidx (checked against the dtype). */
static void fill_value(lua_State *L, chai_tensor *t, int vidx, const char *fname) {
  uint8_t one[8];
  char where[64];
  snprintf(where, sizeof where, "%s: fill value", fname);
  chai_bind_store_checked(L, vidx, one, t->dtype, where);
  size_t es = chai_dtype_size(t->dtype);
  uint8_t *d = chai_tensor_data(t);
  int64_t n = chai_tensor_numel(t);
  for (int64_t i = 0; i < n; i++)
    memcpy(d + i * (int64_t)es, one, es);
}

static int l_zeros(lua_State *L) {
  int64_t shape[CHAI_MAX_DIMS];
  int nd = shape_arg(L, 1, shape, "chai.zeros");
  chai_dtype dt = chai_bind_opt_dtype(L, 2, CHAI_F32);
  push_new(L, dt, nd, shape);
  return 1;
}

static int l_ones(lua_State *L) {
  int64_t shape[CHAI_MAX_DIMS];
  int nd = shape_arg(L, 1, shape, "chai.ones");
  chai_dtype dt = chai_bind_opt_dtype(L, 2, CHAI_F32);
  lua_pushinteger(L, 1);
  int one = lua_gettop(L);
  chai_tensor *t = push_new(L, dt, nd, shape);
  fill_value(L, t, one, "chai.ones");
  return 1;
}

static int l_full(lua_State *L) {
  int64_t shape[CHAI_MAX_DIMS];
  int nd = shape_arg(L, 1, shape, "chai.full");
  luaL_checknumber(L, 2);
  chai_dtype dt = chai_bind_opt_dtype(L, 3, CHAI_F32);
  uint8_t probe[8]; /* check the value before allocating */
  chai_bind_store_checked(L, 2, probe, dt, "chai.full: fill value");
  chai_tensor *t = push_new(L, dt, nd, shape);
  fill_value(L, t, 2, "chai.full");
  return 1;
}

/* randn/rand: draw f32 from the global generator or a local one seeded by seed=, then convert. */
static int random_fill(lua_State *L, bool normal) {
  static const char *const known_n[] = {"seed", "mean", "std", "dtype", NULL};
  static const char *const known_u[] = {"seed", "low", "high", "dtype", NULL};
  const char *fname = normal ? "chai.randn" : "chai.rand";
  int64_t shape[CHAI_MAX_DIMS];
  int nd = shape_arg(L, 1, shape, fname);
  chai_bind_check_options(L, 2, fname, normal ? known_n : known_u);
  chai_rng local, *rng = chai_rng_global();
  if (!lua_isnoneornil(L, 2)) {
    lua_getfield(L, 2, "seed");
    if (!lua_isnil(L, -1)) {
      int isint;
      lua_Integer seed = lua_tointegerx(L, -1, &isint);
      if (!isint || seed < 0)
        luaL_error(L, "%s: seed must be an integer >= 0, got %s", fname,
                   luaL_tolstring(L, -1, NULL));
      chai_rng_init(&local, (uint64_t)seed);
      rng = &local;
    }
    lua_pop(L, 1);
  }
  float a = (float)chai_bind_opt_number(L, 2, normal ? "mean" : "low", 0, fname);
  float b = (float)chai_bind_opt_number(L, 2, normal ? "std" : "high", 1, fname);
  if (normal && !(b >= 0)) luaL_error(L, "%s: std must be >= 0, got %f", fname, (lua_Number)b);
  if (!normal && !(b > a))
    luaL_error(L, "%s: high (%f) must be greater than low (%f)", fname, (lua_Number)b,
               (lua_Number)a);
  chai_dtype dt = CHAI_F32;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_getfield(L, 2, "dtype") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: option dtype must be a string, got %s", fname, luaL_typename(L, -1));
      dt = chai_bind_opt_dtype(L, lua_gettop(L), CHAI_F32);
    }
    lua_pop(L, 1);
  }
  chai_tensor *t = push_new(L, CHAI_F32, nd, shape);
  size_t n = (size_t)chai_tensor_numel(t);
  if (normal)
    chai_rng_fill_normal(rng, chai_tensor_data(t), n, a, b);
  else
    chai_rng_fill_uniform(rng, chai_tensor_data(t), n, a, b);
  if (dt != CHAI_F32) {
    chai_tensor *c = chai_bind_push_tensor(L);
    if (chai_tensor_to(c, t, dt) != CHAI_OK) return chai_bind_fail(L);
  }
  return 1;
}

static int l_randn(lua_State *L) {
  return random_fill(L, true);
}
static int l_rand(lua_State *L) {
  return random_fill(L, false);
}

/* chai.arange(n [, dtype]): the values 0, 1, ..., n-1 (values, not positions). */
static int l_arange(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 0) return luaL_error(L, "chai.arange: n must be >= 0, got %I", n);
  chai_dtype dt = chai_bind_opt_dtype(L, 2, CHAI_F32);
  int64_t shape[1] = {n};
  lua_pushinteger(L, n > 0 ? n - 1 : 0); /* the largest value must fit the dtype */
  uint8_t probe[8];
  chai_bind_store_checked(L, -1, probe, dt, "chai.arange: value");
  lua_pop(L, 1);
  chai_tensor *t = push_new(L, dt, 1, shape);
  for (int64_t i = 0; i < n; i++)
    chai_tensor_set_flat(t, i, (double)i);
  return 1;
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, chai_bind_test_tensor(L, 1) != NULL);
  return 1;
}

/* ---- inspection ----------------------------------------------------------------------------- */

static int m_shape(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_dtype(lua_State *L) {
  lua_pushstring(L, chai_dtype_name(chai_bind_check_tensor(L, 1)->dtype));
  return 1;
}

static int m_ndim(lua_State *L) {
  lua_pushinteger(L, chai_bind_check_tensor(L, 1)->ndim);
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushinteger(L, chai_tensor_numel(chai_bind_check_tensor(L, 1)));
  return 1;
}

static int m_nbytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)chai_tensor_nbytes(chai_bind_check_tensor(L, 1)));
  return 1;
}

static int m_is_contiguous(lua_State *L) {
  lua_pushboolean(L, chai_tensor_is_contiguous(chai_bind_check_tensor(L, 1)));
  return 1;
}

static int m_is_alive(lua_State *L) {
  chai_tensor *t = luaL_checkudata(L, 1, CHAI_TENSOR_MT);
  lua_pushboolean(L, t->storage != NULL);
  return 1;
}

static void push_table_rec(lua_State *L, const chai_tensor *t, int depth, int64_t off) {
  if (depth == t->ndim) {
    chai_bind_push_element(L, (const uint8_t *)chai_tensor_data(t) + off, t->dtype);
    return;
  }
  luaL_checkstack(L, 3, "totable");
  lua_createtable(L, (int)t->shape[depth], 0);
  for (int64_t i = 0; i < t->shape[depth]; i++) {
    push_table_rec(L, t, depth + 1, off + i * t->stride[depth]);
    lua_rawseti(L, -2, i + 1);
  }
}

static int m_totable(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  push_table_rec(L, t, 0, 0);
  return 1;
}

static int m_item(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int64_t n = chai_tensor_numel(t);
  if (n != 1)
    return luaL_error(L, "t:item: the tensor has %I elements, expected exactly 1", (lua_Integer)n);
  chai_bind_push_element(L, chai_tensor_data(t), t->dtype);
  return 1;
}

static int m_tostring(lua_State *L) {
  chai_tensor *t = luaL_checkudata(L, 1, CHAI_TENSOR_MT);
  if (!t->storage)
    lua_pushliteral(L, "chai.Tensor (freed)");
  else
    chai_bind_push_tostring(L, t);
  return 1;
}

static int m_len(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  if (t->ndim == 0) return luaL_error(L, "#t: a 0-d tensor has no length");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}

/* ---- copies and dtype ----------------------------------------------------------------------- */

static int m_to(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  luaL_checkstring(L, 2);
  chai_dtype dt = chai_bind_opt_dtype(L, 2, CHAI_F32);
  chai_tensor *out = chai_bind_push_tensor(L);
  if (chai_tensor_to(out, t, dt) != CHAI_OK) return chai_bind_fail(L);
  chai_bind_gc_nudge(L, chai_tensor_nbytes(out));
  return 1;
}

static int m_clone(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  chai_tensor *out = chai_bind_push_tensor(L);
  if (chai_tensor_clone(out, t) != CHAI_OK) return chai_bind_fail(L);
  chai_bind_gc_nudge(L, chai_tensor_nbytes(out));
  return 1;
}

static int m_contiguous(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  chai_tensor *out = chai_bind_push_tensor(L);
  if (chai_tensor_contiguous(out, t) != CHAI_OK) return chai_bind_fail(L);
  if (out->storage != t->storage) chai_bind_gc_nudge(L, chai_tensor_nbytes(out));
  return 1;
}

/* ---- views ---------------------------------------------------------------------------------- */

static int view_or_reshape(lua_State *L, bool reshape) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int64_t shape[CHAI_MAX_DIMS];
  int nd = lua_gettop(L) == 1
               ? 0
               : chai_bind_check_shape(L, 2, shape, true, true, reshape ? "t:reshape" : "t:view");
  chai_tensor *out = chai_bind_push_tensor(L);
  chai_status st =
      reshape ? chai_tensor_reshape(out, t, nd, shape) : chai_tensor_view(out, t, nd, shape);
  if (st != CHAI_OK) return chai_bind_fail(L);
  if (out->storage != t->storage) chai_bind_gc_nudge(L, chai_tensor_nbytes(out));
  return 1;
}

static int m_view(lua_State *L) {
  return view_or_reshape(L, false);
}
static int m_reshape(lua_State *L) {
  return view_or_reshape(L, true);
}

static int m_transpose(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int a = chai_bind_check_dim(L, 2, t->ndim, "t:transpose");
  int b = chai_bind_check_dim(L, 3, t->ndim, "t:transpose");
  chai_tensor *out = chai_bind_push_tensor(L);
  if (chai_tensor_transpose(out, t, a, b) != CHAI_OK) return chai_bind_fail(L);
  return 1;
}

/* t:permute{3, 1, 2} or t:permute(3, 1, 2): output dim i is input dim perm[i] (1-based). */
static int m_permute(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int perm[CHAI_MAX_DIMS];
  bool table = lua_type(L, 2) == LUA_TTABLE;
  int n = table ? (int)luaL_len(L, 2) : lua_gettop(L) - 1;
  if (n != t->ndim) return luaL_error(L, "t:permute: got %d dims for a %d-dim tensor", n, t->ndim);
  for (int i = 0; i < n; i++) {
    if (table)
      lua_geti(L, 2, i + 1);
    else
      lua_pushvalue(L, i + 2);
    perm[i] = chai_bind_check_dim(L, -1, t->ndim, "t:permute");
    lua_pop(L, 1);
    for (int j = 0; j < i; j++)
      if (perm[j] == perm[i]) return luaL_error(L, "t:permute: dim %d appears twice", perm[i] + 1);
  }
  chai_tensor *out = chai_bind_push_tensor(L);
  if (chai_tensor_permute(out, t, perm) != CHAI_OK) return chai_bind_fail(L);
  return 1;
}

/* t:slice(dim, start [, stop [, step]]): positions start..stop INCLUSIVE, 1-based; negative
 * positions count from the end (-1 is the last); stop defaults to the end. stop = start - 1 gives
 * an empty slice. A view: it shares storage with t. */
static int m_slice(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int d = chai_bind_check_dim(L, 2, t->ndim, "t:slice");
  int64_t n = t->shape[d];
  lua_Integer start = luaL_checkinteger(L, 3);
  lua_Integer stop = luaL_optinteger(L, 4, -1);
  lua_Integer step = luaL_optinteger(L, 5, 1);
  if (step < 1) return luaL_error(L, "t:slice: step must be >= 1, got %I", step);
  int64_t s0 = start > 0 ? start - 1 : n + start; /* 0-based first */
  int64_t e0 = stop >= 0 ? stop : n + stop + 1;   /* 0-based one past the last */
  if (start == 0 || s0 < 0 || s0 > n)
    return luaL_error(L, "t:slice: start %I out of range for dim %d of size %I (1-based)", start,
                      d + 1, (lua_Integer)n);
  if (e0 < s0 || e0 > n)
    return luaL_error(L,
                      "t:slice: stop %I out of range for dim %d of size %I with start %I "
                      "(1-based, inclusive)",
                      stop, d + 1, (lua_Integer)n, start);
  chai_tensor *out = chai_bind_push_tensor(L);
  if (chai_tensor_slice(out, t, d, s0, e0, step) != CHAI_OK) return chai_bind_fail(L);
  return 1;
}

/* A view of t with dim d fixed at 0-based position i (the dim is removed). */
static void push_select(lua_State *L, const chai_tensor *t, int d, int64_t i) {
  chai_tensor v = *t;
  v.offset = t->offset + (size_t)(i * t->stride[d]);
  for (int k = d; k < t->ndim - 1; k++) {
    v.shape[k] = t->shape[k + 1];
    v.stride[k] = t->stride[k + 1];
  }
  v.ndim = t->ndim - 1;
  chai_tensor *out = chai_bind_push_tensor(L);
  chai_tensor_ref(out, &v);
}

static int m_select(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int d = chai_bind_check_dim(L, 2, t->ndim, "t:select");
  int64_t i = chai_bind_check_pos(L, 3, t->shape[d], d, "t:select");
  push_select(L, t, d, i);
  return 1;
}

/* ---- element access ------------------------------------------------------------------------- */

/* Byte offset of the element whose 1-based indices are at stack idx.. (ndim of them). */
static int64_t index_offset(lua_State *L, const chai_tensor *t, int idx, const char *fname) {
  int64_t off = 0;
  for (int i = 0; i < t->ndim; i++)
    off += chai_bind_check_pos(L, idx + i, t->shape[i], i, fname) * t->stride[i];
  return off;
}

static int m_get(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int n = lua_gettop(L) - 1;
  if (n != t->ndim)
    return luaL_error(L, "t:get: expected %d indices for a %d-dim tensor, got %d", t->ndim, t->ndim,
                      n);
  int64_t off = index_offset(L, t, 2, "t:get");
  chai_bind_push_element(L, (uint8_t *)chai_tensor_data(t) + off, t->dtype);
  return 1;
}

static int m_set(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  int n = lua_gettop(L) - 2;
  if (n != t->ndim)
    return luaL_error(L,
                      "t:set: expected %d indices and a value for a %d-dim tensor, got %d "
                      "arguments",
                      t->ndim, t->ndim, n + 1);
  int64_t off = index_offset(L, t, 2, "t:set");
  chai_bind_store_checked(L, lua_gettop(L), (uint8_t *)chai_tensor_data(t) + off, t->dtype,
                          "t:set: value");
  lua_settop(L, 1);
  return 1;
}

/* Copies the value at vidx (a number, a tensor or a nested table) into the view dst. */
static void assign(lua_State *L, chai_tensor *dst, int vidx, const char *fname) {
  if (lua_type(L, vidx) == LUA_TNUMBER) {
    uint8_t one[8];
    char where[64];
    snprintf(where, sizeof where, "%s: value", fname);
    chai_bind_store_checked(L, vidx, one, dst->dtype, where);
    size_t es = chai_dtype_size(dst->dtype);
    uint8_t *base = chai_tensor_data(dst);
    int64_t n = chai_tensor_numel(dst);
    for (int64_t i = 0; i < n; i++)
      memcpy(base + chai_bind_flat_offset(dst, i), one, es);
    return;
  }
  chai_tensor *src = chai_bind_check_tensor_like(L, vidx, dst->dtype);
  if (chai_tensor_copy(dst, src) != CHAI_OK) chai_bind_fail(L);
}

/* t[i]: a number on a 1-D tensor, a view of row i otherwise; t.name: a method. */
static int m_index(lua_State *L) {
  chai_tensor *t = luaL_checkudata(L, 1, CHAI_TENSOR_MT);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    if (!t->storage) return luaL_error(L, "tensor used after free");
    if (t->ndim == 0) return luaL_error(L, "t[i]: a 0-d tensor cannot be indexed (use t:item())");
    int64_t i = chai_bind_check_pos(L, 2, t->shape[0], 0, "t[i]");
    if (t->ndim == 1)
      chai_bind_push_element(L, (uint8_t *)chai_tensor_data(t) + i * t->stride[0], t->dtype);
    else
      push_select(L, t, 0, i);
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* t[i] = v: sets element i of a 1-D tensor, or fills/copies row i of an N-D one. */
static int m_newindex(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  if (lua_type(L, 2) != LUA_TNUMBER)
    return luaL_error(L, "t[k] = v: a chai.Tensor has no field '%s' to set",
                      luaL_tolstring(L, 2, NULL));
  if (t->ndim == 0) return luaL_error(L, "t[i] = v: a 0-d tensor cannot be indexed");
  int64_t i = chai_bind_check_pos(L, 2, t->shape[0], 0, "t[i] = v");
  push_select(L, t, 0, i);
  chai_tensor *row = lua_touserdata(L, -1);
  assign(L, row, 3, "t[i] = v");
  chai_tensor_release(row);
  return 0;
}

/* t:fill(v) sets every element (of the view) to v; returns t. */
static int m_fill(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  luaL_checkany(L, 2);
  assign(L, t, 2, "t:fill");
  lua_settop(L, 1);
  return 1;
}

/* t:copy(src) copies src (same shape, any dtype) into t's elements; returns t. */
static int m_copy(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  luaL_checkany(L, 2);
  assign(L, t, 2, "t:copy");
  lua_settop(L, 1);
  return 1;
}

/* ---- registration --------------------------------------------------------------------------- */

static const luaL_Reg methods[] = {{"shape", m_shape},
                                   {"dtype", m_dtype},
                                   {"ndim", m_ndim},
                                   {"numel", m_numel},
                                   {"nbytes", m_nbytes},
                                   {"is_contiguous", m_is_contiguous},
                                   {"is_alive", m_is_alive},
                                   {"totable", m_totable},
                                   {"item", m_item},
                                   {"to", m_to},
                                   {"clone", m_clone},
                                   {"contiguous", m_contiguous},
                                   {"view", m_view},
                                   {"reshape", m_reshape},
                                   {"transpose", m_transpose},
                                   {"permute", m_permute},
                                   {"slice", m_slice},
                                   {"select", m_select},
                                   {"get", m_get},
                                   {"set", m_set},
                                   {"fill", m_fill},
                                   {"copy", m_copy},
                                   {"free", tensor_release},
                                   {NULL, NULL}};

static const luaL_Reg functions[] = {
    {"tensor", l_tensor}, {"zeros", l_zeros},         {"ones", l_ones},
    {"full", l_full},     {"randn", l_randn},         {"rand", l_rand},
    {"arange", l_arange}, {"is_tensor", l_is_tensor}, {NULL, NULL}};

void chai_bind_open_tensor(lua_State *L, int table) {
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
  lua_setfield(L, table, "tensor_methods"); /* for pure-Lua methods added by lua/chai */

  luaL_newmetatable(L, CHAI_TENSOR_MT);
  lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
  lua_pushcclosure(L, m_index, 1);
  lua_setfield(L, -2, "__index");
  static const luaL_Reg meta[] = {{"__gc", tensor_release},   {"__close", tensor_release},
                                  {"__tostring", m_tostring}, {"__len", m_len},
                                  {"__newindex", m_newindex}, {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
  chai_bind_register(L, table, functions);
}
