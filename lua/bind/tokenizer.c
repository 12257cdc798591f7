/* The chai.Tokenizer userdata over chai_tokenizer (engine/include/chai/tokenizer.h).
 * chai.core._tokenizer = {load = fn(dir [, {add_bos=}]), is_dir = fn(path), methods = table}; the
 * user-facing chai.tokenizer (lua/chai/tokenizer.lua) adds the Hub lookup and tok:batch.
 * Token ids are values (not positions): they cross this boundary unchanged. */
#include <string.h>
#include <sys/stat.h>

#include "bind.h"
#include "chai/tokenizer.h"

#define TOKENIZER_MT "chai.Tokenizer"

/* The userdata owns the tokenizer and two scratch buffers, so nothing the core allocates is ever
 * unowned while a Lua call that can raise (building a result table) runs. */
typedef struct tok_ud {
  chai_tokenizer *tok;
  chai_token_ids ids;
  chai_text text;
} tok_ud;

static int tok_release(lua_State *L) {
  tok_ud *u = luaL_checkudata(L, 1, TOKENIZER_MT);
  chai_tokenizer_free(u->tok);
  u->tok = NULL;
  chai_token_ids_free(&u->ids);
  chai_text_free(&u->text);
  return 0;
}

static tok_ud *check_tok(lua_State *L, int idx) {
  tok_ud *u = luaL_checkudata(L, idx, TOKENIZER_MT);
  if (!u->tok) luaL_error(L, "tokenizer used after free");
  return u;
}

/* An add_bos option: nil keeps the tokenizer's default (-1). */
static int opt_add_bos(lua_State *L, int idx, const char *fname) {
  if (lua_isnoneornil(L, idx)) return -1;
  int t = lua_getfield(L, idx, "add_bos");
  int v = -1;
  if (t == LUA_TBOOLEAN)
    v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: option add_bos must be a boolean, got %s", fname, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

/* _tokenizer.load(dir [, {add_bos=}]) -> chai.Tokenizer */
static int tok_load(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  static const char *const known[] = {"add_bos", NULL};
  chai_bind_check_options(L, 2, "chai.tokenizer.load", known);
  int add_bos = opt_add_bos(L, 2, "chai.tokenizer.load");
  tok_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, TOKENIZER_MT);
  if (chai_tokenizer_load(&u->tok, dir) != CHAI_OK) return chai_bind_fail(L);
  if (add_bos >= 0 && chai_tokenizer_set_add_bos(u->tok, add_bos) != CHAI_OK)
    return chai_bind_fail(L);
  chai_bind_gc_nudge(L, 8u << 20); /* vocabulary, merge table and cache: several MB */
  return 1;
}

static int tok_is_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat sb;
  lua_pushboolean(L, stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
  return 1;
}

/* tok:encode(text [, {add_bos=}]) -> {ids...} */
static int tok_encode(lua_State *L) {
  tok_ud *u = check_tok(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  static const char *const known[] = {"add_bos", NULL};
  chai_bind_check_options(L, 3, "tok:encode", known);
  int add_bos = opt_add_bos(L, 3, "tok:encode");
  chai_token_ids_clear(&u->ids);
  if (chai_tokenizer_encode(u->tok, text, len, add_bos, &u->ids) != CHAI_OK)
    return chai_bind_fail(L);
  size_t n = u->ids.len;
  lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, u->ids.data[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* One id of a decode argument, checked to fit int32 (the core then checks the vocabulary). */
static int32_t id_value(lua_State *L, int vidx, size_t pos) {
  int isint;
  lua_Integer v = lua_tointegerx(L, vidx, &isint);
  if (!isint)
    luaL_error(L, "tok:decode: ids[%d] is %s, not an integer", (int)pos + 1,
               lua_type(L, vidx) == LUA_TNUMBER ? lua_tostring(L, vidx) : luaL_typename(L, vidx));
  if (v < INT32_MIN || v > INT32_MAX)
    luaL_error(L, "tok:decode: ids[%d] = %I is out of range", (int)pos + 1, v);
  return (int32_t)v;
}

/* tok:decode(ids [, {skip_special=}]) -> string. ids: a table of integers or a 1-dim integer
 * tensor. */
static int tok_decode(lua_State *L) {
  tok_ud *u = check_tok(L, 1);
  chai_tensor *t = chai_bind_test_tensor(L, 2);
  if (!t) luaL_checktype(L, 2, LUA_TTABLE);
  static const char *const known[] = {"skip_special", NULL};
  chai_bind_check_options(L, 3, "tok:decode", known);
  bool skip = chai_bind_opt_boolean(L, 3, "skip_special", false, "tok:decode");
  size_t n;
  if (t) {
    if (!t->storage) return luaL_error(L, "tensor used after free");
    if (t->ndim != 1 || (t->dtype != CHAI_I32 && t->dtype != CHAI_I64))
      return luaL_error(L, "tok:decode: expected a 1-dim i32 or i64 tensor of ids, got %d dims %s",
                        t->ndim, chai_dtype_name(t->dtype));
    n = (size_t)t->shape[0];
  } else {
    n = (size_t)luaL_len(L, 2);
  }
  chai_token_ids_clear(&u->ids);
  if (chai_token_ids_reserve(&u->ids, n) != CHAI_OK) return chai_bind_fail(L);
  for (size_t i = 0; i < n; i++) {
    if (t) {
      double v = chai_tensor_get_flat(t, (int64_t)i);
      if (v < INT32_MIN || v > INT32_MAX)
        return luaL_error(L, "tok:decode: ids[%d] = %.0f is out of range", (int)i + 1, v);
      u->ids.data[i] = (int32_t)v;
    } else {
      lua_geti(L, 2, (lua_Integer)i + 1);
      u->ids.data[i] = id_value(L, -1, i);
      lua_pop(L, 1);
    }
  }
  u->ids.len = n;
  u->text.len = 0;
  if (chai_tokenizer_decode(u->tok, u->ids.data, n, skip, &u->text) != CHAI_OK)
    return chai_bind_fail(L);
  lua_pushlstring(L, u->text.data, u->text.len);
  return 1;
}

/* tok:token_to_id(s) -> id or nil; s is the vocabulary form ("Ġthe"). */
static int tok_token_to_id(lua_State *L) {
  tok_ud *u = check_tok(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int32_t id = chai_tokenizer_token_id(u->tok, s, len);
  if (id < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, id);
  return 1;
}

/* tok:id_to_token(id) -> the vocabulary string, or nil when there is none. */
static int tok_id_to_token(lua_State *L) {
  tok_ud *u = check_tok(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  size_t len;
  const char *s =
      id < INT32_MIN || id > INT32_MAX ? NULL : chai_tokenizer_token(u->tok, (int32_t)id, &len);
  if (s)
    lua_pushlstring(L, s, len);
  else
    lua_pushnil(L);
  return 1;
}

/* tok:is_special(id) -> boolean */
static int tok_is_special(lua_State *L) {
  tok_ud *u = check_tok(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  lua_pushboolean(L, id >= 0 && id <= INT32_MAX && chai_tokenizer_is_special(u->tok, (int32_t)id));
  return 1;
}

static void push_id_or_nil(lua_State *L, int32_t id) {
  if (id < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, id);
}

/* Methods first (upvalue 1), then the read-only fields vocab_size, bos_id, eos_id, pad_id, unk_id
 * (nil when the tokenizer has no such token) and add_bos. */
static int tok_index(lua_State *L) {
  tok_ud *u = luaL_checkudata(L, 1, TOKENIZER_MT);
  if (lua_getfield(L, lua_upvalueindex(1), luaL_checkstring(L, 2)) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  const char *k = lua_tostring(L, 2);
  if (!u->tok) return luaL_error(L, "tokenizer used after free (reading '%s')", k);
  if (strcmp(k, "vocab_size") == 0)
    lua_pushinteger(L, chai_tokenizer_vocab_size(u->tok));
  else if (strcmp(k, "bos_id") == 0)
    push_id_or_nil(L, chai_tokenizer_bos_id(u->tok));
  else if (strcmp(k, "eos_id") == 0)
    push_id_or_nil(L, chai_tokenizer_eos_id(u->tok));
  else if (strcmp(k, "pad_id") == 0)
    push_id_or_nil(L, chai_tokenizer_pad_id(u->tok));
  else if (strcmp(k, "unk_id") == 0)
    push_id_or_nil(L, chai_tokenizer_unk_id(u->tok));
  else if (strcmp(k, "add_bos") == 0)
    lua_pushboolean(L, chai_tokenizer_add_bos(u->tok));
  else
    lua_pushnil(L);
  return 1;
}

static int tok_tostring(lua_State *L) {
  tok_ud *u = luaL_checkudata(L, 1, TOKENIZER_MT);
  if (!u->tok)
    lua_pushliteral(L, "chai.Tokenizer (freed)");
  else
    lua_pushfstring(L, "chai.Tokenizer (vocab %d, bos %d, pad %d, add_bos %s)",
                    (int)chai_tokenizer_vocab_size(u->tok), (int)chai_tokenizer_bos_id(u->tok),
                    (int)chai_tokenizer_pad_id(u->tok),
                    chai_tokenizer_add_bos(u->tok) ? "true" : "false");
  return 1;
}

void chai_bind_open_tokenizer(lua_State *L, int table) {
  static const luaL_Reg methods[] = {{"encode", tok_encode},
                                     {"decode", tok_decode},
                                     {"token_to_id", tok_token_to_id},
                                     {"id_to_token", tok_id_to_token},
                                     {"is_special", tok_is_special},
                                     {"free", tok_release},
                                     {NULL, NULL}};
  lua_newtable(L); /* _tokenizer */
  int sub = lua_gettop(L);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  int mt_methods = lua_gettop(L);
  luaL_newmetatable(L, TOKENIZER_MT);
  lua_pushvalue(L, mt_methods);
  lua_pushcclosure(L, tok_index, 1);
  lua_setfield(L, -2, "__index");
  static const luaL_Reg meta[] = {
      {"__gc", tok_release}, {"__close", tok_release}, {"__tostring", tok_tostring}, {NULL, NULL}};
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1); /* metatable */
  lua_setfield(L, sub, "methods");
  static const luaL_Reg fns[] = {{"load", tok_load}, {"is_dir", tok_is_dir}, {NULL, NULL}};
  chai_bind_register(L, sub, fns);
  lua_setfield(L, table, "_tokenizer");
}
