/* chai.core.json: JSON through cJSON. decode(text [, {strict=true}]) → Lua value (null →
 * json.null; strict: an object with a repeated key, anything but white space after the value,
 * or \u0000 in a string is an error); encode(value
 * [, {indent=true}]) → text. Tables with keys 1..n only are arrays; an empty table is an object
 * unless it carries the json.array metatable. */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "bind.h"

#define JSON_NULL_KEY "chai.json.null"
#define JSON_ARRAY_MT "chai.json.array"
#define JSON_MAX_DEPTH 200

static void push_null(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, JSON_NULL_KEY);
}

static void push_json(lua_State *L, const cJSON *item, int depth, int unique) {
  if (depth > JSON_MAX_DEPTH) luaL_error(L, "json: nesting deeper than %d", JSON_MAX_DEPTH);
  luaL_checkstack(L, 4, "json: nesting too deep");
  if (cJSON_IsNull(item)) {
    push_null(L);
  } else if (cJSON_IsBool(item)) {
    lua_pushboolean(L, cJSON_IsTrue(item));
  } else if (cJSON_IsNumber(item)) {
    double v = item->valuedouble;
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
      lua_pushinteger(L, (lua_Integer)v);
    else
      lua_pushnumber(L, v);
  } else if (cJSON_IsString(item)) {
    lua_pushstring(L, item->valuestring);
  } else if (cJSON_IsArray(item)) {
    lua_createtable(L, cJSON_GetArraySize(item), 0);
    luaL_setmetatable(L, JSON_ARRAY_MT);
    lua_Integer i = 1;
    for (const cJSON *c = item->child; c; c = c->next) {
      push_json(L, c, depth + 1, unique);
      lua_rawseti(L, -2, i++);
    }
  } else {
    lua_newtable(L);
    for (const cJSON *c = item->child; c; c = c->next) {
      const char *key = c->string ? c->string : "";
      if (unique && lua_getfield(L, -1, key) != LUA_TNIL)
        luaL_error(L, "json: key '%s' appears twice in an object", key);
      if (unique) lua_pop(L, 1);
      push_json(L, c, depth + 1, unique);
      lua_setfield(L, -2, key);
    }
  }
}

/* The cJSON tree lives in a userdata-owned box so a Lua error during conversion cannot leak it. */
typedef struct json_box {
  cJSON *root;
} json_box;

static int box_gc(lua_State *L) {
  json_box *b = lua_touserdata(L, 1);
  if (b->root) cJSON_Delete(b->root);
  b->root = NULL;
  return 0;
}

static json_box *new_box(lua_State *L) {
  json_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->root = NULL;
  if (luaL_newmetatable(L, "chai.json.box")) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

/* Whether the text holds the escape \u0000 (any case of the hex digits). */
static int has_nul_escape(const char *s, size_t n) {
  for (size_t i = 0; i + 6 <= n; i++)
    if (s[i] == '\\' && s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' &&
        s[i + 5] == '0')
      return 1;
  return 0;
}

static int json_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  int strict = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "strict");
    strict = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  /* \u0000 would end the string early in C (cJSON stores NUL-terminated strings): refused. */
  if (strict && (has_nul_escape(text, len) || memchr(text, 0, len)))
    return luaL_error(L, "json: a NUL character (\\u0000) is not allowed");
  json_box *b = new_box(L);
  const char *end = NULL;
  b->root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (b->root && strict) { /* nothing but white space may follow the value */
    while (end < text + len && strchr(" \t\r\n", *end) && *end)
      end++;
    if (end != text + len) {
      cJSON_Delete(b->root);
      b->root = NULL;
    }
  }
  if (!b->root) {
    size_t at = end && end >= text ? (size_t)(end - text) : 0;
    char near[24] = "<end>";
    if (at < len) {
      size_t n = len - at < 20 ? len - at : 20;
      memcpy(near, text + at, n);
      near[n] = 0;
    }
    return luaL_error(L, "json: malformed JSON at byte %d near '%s'", (int)at + 1, near);
  }
  push_json(L, b->root, 0, strict);
  return 1;
}

/* to_json returns NULL and sets encode_error when a value cannot be encoded; json_encode raises. */
static const char *encode_error;
static cJSON *to_json(lua_State *L, int idx, int depth);

static int is_array(lua_State *L, int idx, lua_Integer *n) {
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
      lua_pop(L, 1);
      return 0;
    }
    lua_Integer k = lua_tointeger(L, -1);
    if (k > max) max = k;
    count++;
  }
  *n = max;
  if (count == 0) {
    if (!lua_getmetatable(L, idx)) return 0;
    luaL_getmetatable(L, JSON_ARRAY_MT);
    int arr = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return arr;
  }
  return count == max;
}

static cJSON *table_to_json(lua_State *L, int idx, int depth) {
  lua_Integer n;
  if (is_array(L, idx, &n)) {
    cJSON *arr = cJSON_CreateArray();
    for (lua_Integer i = 1; i <= n && arr; i++) {
      lua_rawgeti(L, idx, i);
      cJSON *c = to_json(L, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
      if (!c) {
        cJSON_Delete(arr);
        return NULL;
      }
      cJSON_AddItemToArray(arr, c);
    }
    return arr;
  }
  cJSON *obj = cJSON_CreateObject();
  lua_pushnil(L);
  while (obj && lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING && lua_type(L, -2) != LUA_TNUMBER) {
      lua_pop(L, 2);
      cJSON_Delete(obj);
      encode_error = "a table key is neither a string nor a number";
      return NULL;
    }
    lua_pushvalue(L, -2);
    const char *key = lua_tostring(L, -1); /* on the copy: lua_next needs the original key */
    cJSON *c = to_json(L, lua_gettop(L) - 1, depth + 1);
    if (!c) {
      lua_pop(L, 3);
      cJSON_Delete(obj);
      return NULL;
    }
    cJSON_AddItemToObject(obj, key, c);
    lua_pop(L, 2);
  }
  return obj;
}

static cJSON *to_json(lua_State *L, int idx, int depth) {
  if (depth > JSON_MAX_DEPTH) {
    encode_error = "nesting too deep (a cycle?)";
    return NULL;
  }
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return cJSON_CreateNull();
  case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
  case LUA_TNUMBER: {
    double v = lua_tonumber(L, idx);
    if (!isfinite(v)) {
      encode_error = "cannot encode NaN or infinity";
      return NULL;
    }
    return cJSON_CreateNumber(v);
  }
  case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
  case LUA_TTABLE: {
    luaL_checkstack(L, 6, "json: nesting too deep");
    cJSON *c = table_to_json(L, idx, depth);
    if (!c && !encode_error) encode_error = "bad table key (only strings and integers)";
    return c;
  }
  case LUA_TLIGHTUSERDATA:
    push_null(L);
    if (lua_rawequal(L, -1, idx)) {
      lua_pop(L, 1);
      return cJSON_CreateNull();
    }
    lua_pop(L, 1);
    /* fallthrough */
  default: encode_error = "cannot encode a value of this type"; return NULL;
  }
}

static int json_encode(lua_State *L) {
  luaL_checkany(L, 1);
  int indent = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "indent");
    indent = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 1);
  json_box *b = new_box(L);
  encode_error = NULL;
  b->root = to_json(L, 1, 0);
  if (!b->root) return luaL_error(L, "json: %s", encode_error ? encode_error : "cannot encode");
  char *text = indent ? cJSON_Print(b->root) : cJSON_PrintUnformatted(b->root);
  if (!text) return luaL_error(L, "json: out of memory");
  lua_pushstring(L, text);
  cJSON_free(text);
  return 1;
}

void chai_bind_open_json(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"decode", json_decode}, {"encode", json_encode}, {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  static char null_sentinel;
  lua_pushlightuserdata(L, &null_sentinel);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, JSON_NULL_KEY);
  lua_setfield(L, -2, "null");
  luaL_newmetatable(L, JSON_ARRAY_MT);
  lua_setfield(L, -2, "array_mt");
  lua_setfield(L, table, "json");
}
