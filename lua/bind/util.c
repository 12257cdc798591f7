/* Argument checks shared by every binding file: dtypes, dims, shapes, options, elements. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "bind.h"
#include "chai/half.h"

void chai_bind_register(lua_State *L, int table, const luaL_Reg *fns) {
  for (; fns->name; fns++) {
    lua_pushcfunction(L, fns->func);
    lua_setfield(L, table, fns->name);
  }
}

int chai_bind_fail(lua_State *L) {
  return luaL_error(L, "%s", chai_last_error());
}

void chai_bind_gc_nudge(lua_State *L, size_t bytes) {
  /* Small results are left to the normal pacing; a step sized like the C allocation makes the
   * collector run as if Lua itself had allocated it. */
  if (bytes < 64 * 1024) return;
  size_t kb = bytes / 1024;
  lua_gc(L, LUA_GCSTEP, kb > INT_MAX ? INT_MAX : (int)kb);
}

chai_dtype chai_bind_opt_dtype(lua_State *L, int idx, chai_dtype def) {
  if (lua_isnoneornil(L, idx)) return def;
  const char *name = luaL_checkstring(L, idx);
  chai_dtype dt;
  if (chai_dtype_parse(name, &dt) != CHAI_OK) return (chai_dtype)chai_bind_fail(L);
  return dt;
}

int chai_bind_check_dim(lua_State *L, int idx, int ndim, const char *fname) {
  lua_Integer d = luaL_checkinteger(L, idx);
  if (d >= 1 && d <= ndim) return (int)d - 1;
  if (d <= -1 && d >= -ndim) return (int)(ndim + d);
  return luaL_error(
      L, "%s: dim %I out of range for a %d-dim tensor (dims are 1..%d, or -1 for the last)", fname,
      d, ndim, ndim);
}

int64_t chai_bind_check_pos(lua_State *L, int idx, int64_t n, int dim0, const char *fname) {
  lua_Integer i = luaL_checkinteger(L, idx);
  if (i >= 1 && i <= n) return i - 1;
  if (i <= -1 && i >= -n) return n + i;
  return luaL_error(L, "%s: index %I out of range for dim %d of size %I (indices are 1-based)",
                    fname, i, dim0 + 1, (lua_Integer)n);
}

static int64_t shape_entry(lua_State *L, int vidx, int pos, bool allow_infer, const char *fname) {
  int isint;
  lua_Integer v = lua_tointegerx(L, vidx, &isint);
  if (!isint)
    return luaL_error(L, "%s: shape entry %d is %s, not an integer", fname, pos,
                      lua_type(L, vidx) == LUA_TNUMBER ? lua_tostring(L, vidx)
                                                       : luaL_typename(L, vidx));
  if (v < 0 && !(allow_infer && v == -1))
    return luaL_error(L, "%s: shape entry %d is %I (sizes must be >= 0%s)", fname, pos, v,
                      allow_infer ? ", or -1 once to infer" : "");
  return v;
}

int chai_bind_check_shape(lua_State *L, int idx, int64_t *shape, bool varargs, bool allow_infer,
                          const char *fname) {
  int n;
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_Integer len = luaL_len(L, idx);
    if (len > CHAI_MAX_DIMS)
      return luaL_error(L, "%s: shape has %I dims, at most %d are supported", fname, len,
                        CHAI_MAX_DIMS);
    n = (int)len;
    for (int i = 0; i < n; i++) {
      lua_geti(L, idx, i + 1);
      shape[i] = shape_entry(L, -1, i + 1, allow_infer, fname);
      lua_pop(L, 1);
    }
    if (varargs && lua_gettop(L) > idx)
      return luaL_error(L, "%s: give the shape either as a table or as integers, not both", fname);
    return n;
  }
  if (!varargs || lua_type(L, idx) != LUA_TNUMBER) {
    if (varargs)
      return luaL_error(L, "%s: expected a shape (a table or integers), got %s", fname,
                        luaL_typename(L, idx));
    return luaL_error(L, "%s: expected a shape table like {2, 3}, got %s", fname,
                      lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx)
                                                      : luaL_typename(L, idx));
  }
  n = lua_gettop(L) - idx + 1;
  if (n > CHAI_MAX_DIMS)
    return luaL_error(L, "%s: shape has %d dims, at most %d are supported", fname, n,
                      CHAI_MAX_DIMS);
  for (int i = 0; i < n; i++)
    shape[i] = shape_entry(L, idx + i, i + 1, allow_infer, fname);
  return n;
}

void chai_bind_check_options(lua_State *L, int idx, const char *fname, const char *const *known) {
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "%s: options must be a table, got %s", fname, luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    bool ok = false;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; known[i] && !ok; i++)
        ok = strcmp(lua_tostring(L, -1), known[i]) == 0;
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; known[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, known[i]);
      }
      luaL_pushresult(&b);
      const char *key = luaL_tolstring(L, -2, NULL);
      luaL_error(L, "%s: unknown option '%s' (known: %s)", fname, key, lua_tostring(L, -2));
    }
  }
}

/* Pushes option `key` (nil when idx is none/nil) and returns its type. */
static int get_option(lua_State *L, int idx, const char *key) {
  if (lua_isnoneornil(L, idx)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, idx, key);
}

lua_Number chai_bind_opt_number(lua_State *L, int idx, const char *key, lua_Number def,
                                const char *fname) {
  int t = get_option(L, idx, key);
  lua_Number v = def;
  if (t == LUA_TNUMBER)
    v = lua_tonumber(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: option %s must be a number, got %s", fname, key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

lua_Integer chai_bind_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def,
                                  const char *fname) {
  int t = get_option(L, idx, key), isint = 0;
  lua_Integer v = def;
  if (t == LUA_TNUMBER) {
    v = lua_tointegerx(L, -1, &isint);
    if (!isint)
      luaL_error(L, "%s: option %s must be an integer, got %s", fname, key, lua_tostring(L, -1));
  } else if (t != LUA_TNIL) {
    luaL_error(L, "%s: option %s must be an integer, got %s", fname, key, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return v;
}

bool chai_bind_opt_boolean(lua_State *L, int idx, const char *key, bool def, const char *fname) {
  int t = get_option(L, idx, key);
  bool v = def;
  if (t == LUA_TBOOLEAN)
    v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: option %s must be a boolean, got %s", fname, key, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

int64_t chai_bind_flat_offset(const chai_tensor *t, int64_t flat) {
  int64_t off = 0;
  for (int i = t->ndim - 1; i >= 0; i--) {
    int64_t n = t->shape[i];
    off += (flat % n) * t->stride[i];
    flat /= n;
  }
  return off;
}

void chai_bind_push_element(lua_State *L, const void *p, chai_dtype dt) {
  switch (dt) {
  case CHAI_F32: {
    float v;
    memcpy(&v, p, 4);
    lua_pushnumber(L, v);
    break;
  }
  case CHAI_F16: {
    uint16_t v;
    memcpy(&v, p, 2);
    lua_pushnumber(L, chai_f16_to_f32(v));
    break;
  }
  case CHAI_BF16: {
    uint16_t v;
    memcpy(&v, p, 2);
    lua_pushnumber(L, chai_bf16_to_f32(v));
    break;
  }
  case CHAI_I32: {
    int32_t v;
    memcpy(&v, p, 4);
    lua_pushinteger(L, v);
    break;
  }
  case CHAI_I64: {
    int64_t v;
    memcpy(&v, p, 8);
    lua_pushinteger(L, (lua_Integer)v);
    break;
  }
  case CHAI_I8: lua_pushinteger(L, *(const int8_t *)p); break;
  case CHAI_U8: lua_pushinteger(L, *(const uint8_t *)p); break;
  default: lua_pushnil(L); break;
  }
}

static void int_range(chai_dtype dt, lua_Integer *lo, lua_Integer *hi) {
  switch (dt) {
  case CHAI_I32:
    *lo = INT32_MIN;
    *hi = INT32_MAX;
    break;
  case CHAI_I8:
    *lo = INT8_MIN;
    *hi = INT8_MAX;
    break;
  case CHAI_U8:
    *lo = 0;
    *hi = UINT8_MAX;
    break;
  default:
    *lo = LUA_MININTEGER;
    *hi = LUA_MAXINTEGER;
    break;
  }
}

int chai_bind_store_element(lua_State *L, int vidx, void *p, chai_dtype dt) {
  if (lua_type(L, vidx) != LUA_TNUMBER) return 1;
  if (dt == CHAI_F32 || dt == CHAI_F16 || dt == CHAI_BF16) {
    float f = (float)lua_tonumber(L, vidx);
    if (dt == CHAI_F32)
      memcpy(p, &f, 4);
    else {
      uint16_t h = dt == CHAI_F16 ? chai_f32_to_f16(f) : chai_f32_to_bf16(f);
      memcpy(p, &h, 2);
    }
    return 0;
  }
  lua_Integer v, lo, hi;
  int_range(dt, &lo, &hi);
  if (lua_isinteger(L, vidx)) {
    v = lua_tointeger(L, vidx);
  } else {
    /* Floats truncate toward zero, as t:to() does; NaN and out-of-range values are errors, since
     * the C conversion would be undefined. */
    lua_Number x = lua_tonumber(L, vidx);
    if (!(x > (lua_Number)lo - 1 && x < (lua_Number)hi + 1)) return 2;
    v = (lua_Integer)x;
  }
  if (v < lo || v > hi) return 2;
  switch (dt) {
  case CHAI_I32: {
    int32_t w = (int32_t)v;
    memcpy(p, &w, 4);
    break;
  }
  case CHAI_I64: {
    int64_t w = (int64_t)v;
    memcpy(p, &w, 8);
    break;
  }
  case CHAI_I8: *(int8_t *)p = (int8_t)v; break;
  case CHAI_U8: *(uint8_t *)p = (uint8_t)v; break;
  default: break;
  }
  return 0;
}

int chai_bind_element_error(lua_State *L, int vidx, chai_dtype dt, int code, const char *where) {
  if (code == 2)
    return luaL_error(L, "%s: value %s does not fit in %s", where, lua_tostring(L, vidx),
                      chai_dtype_name(dt));
  if (lua_type(L, vidx) == LUA_TSTRING)
    return luaL_error(L, "%s is a string ('%s'), not a number", where, lua_tostring(L, vidx));
  return luaL_error(L, "%s is a %s, not a number", where, luaL_typename(L, vidx));
}

void chai_bind_store_checked(lua_State *L, int vidx, void *p, chai_dtype dt, const char *where) {
  int code = chai_bind_store_element(L, vidx, p, dt);
  if (code) chai_bind_element_error(L, vidx, dt, code, where);
}
