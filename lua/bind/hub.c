/* chai.core._hub: the Hub client and the HTTP GET (engine/include/chai/hub.h) for lua/chai/hub.lua,
 * which is the user-facing chai.hub. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bind.h"
#include "chai/chai.h"

/* The string option `key` of the options table at idx, pushed (and left) on the stack so the
 * pointer stays valid; NULL when absent. Raises naming the key for a non-string. */
static const char *opt_string(lua_State *L, int idx, const char *key, const char *fname) {
  if (lua_isnoneornil(L, idx)) return NULL;
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TNIL) return NULL;
  if (t != LUA_TSTRING)
    luaL_error(L, "%s: option '%s' must be a string, got %s", fname, key, luaL_typename(L, -1));
  return lua_tostring(L, -1);
}

/* Fills o from the options table at idx; the strings stay on the stack until the caller returns. */
static void check_hub_opts(lua_State *L, int idx, const char *fname, chai_hub_opts *o,
                           const char *const *known) {
  chai_bind_check_options(L, idx, fname, known);
  memset(o, 0, sizeof *o);
  for (int i = 0; known[i]; i++) {
    const char *k = known[i];
    if (!strcmp(k, "revision"))
      o->revision = opt_string(L, idx, k, fname);
    else if (!strcmp(k, "repo_type"))
      o->repo_type = opt_string(L, idx, k, fname);
    else if (!strcmp(k, "cache_dir"))
      o->cache_dir = opt_string(L, idx, k, fname);
    else if (!strcmp(k, "endpoint"))
      o->endpoint = opt_string(L, idx, k, fname);
    else if (!strcmp(k, "token"))
      o->token = opt_string(L, idx, k, fname);
    else if (!strcmp(k, "offline"))
      o->offline = chai_bind_opt_boolean(L, idx, k, false, fname);
    else if (!strcmp(k, "quiet"))
      o->quiet = chai_bind_opt_boolean(L, idx, k, false, fname);
  }
}

static const char *const fetch_keys[] = {"revision", "repo_type", "cache_dir", "endpoint", "token",
                                         "offline",  "quiet",     "optional",  NULL};

/* fetch(repo, filename [, opts]) → path, {commit=, etag=, size=, cached=}. With opts.optional, a
 * file that does not exist (404, or a cached .no_exist when offline) gives nil, message instead
 * of an error. */
static int l_fetch(lua_State *L) {
  const char *repo = luaL_checkstring(L, 1);
  const char *filename = luaL_checkstring(L, 2);
  chai_hub_opts o;
  check_hub_opts(L, 3, "chai.hub.download", &o, fetch_keys);
  bool optional = chai_bind_opt_boolean(L, 3, "optional", false, "chai.hub.download");
  chai_hub_file *f = lua_newuserdatauv(L, sizeof *f, 0); /* 4 KB: Lua owns it */
  if (chai_hub_fetch(repo, filename, &o, f) != CHAI_OK) {
    if (optional && f->missing == CHAI_HUB_MISSING_FILE) {
      lua_pushnil(L);
      lua_pushstring(L, chai_last_error());
      return 2;
    }
    return chai_bind_fail(L);
  }
  lua_pushstring(L, f->path);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, f->commit);
  lua_setfield(L, -2, "commit");
  lua_pushstring(L, f->etag);
  lua_setfield(L, -2, "etag");
  lua_pushinteger(L, (lua_Integer)f->size);
  lua_setfield(L, -2, "size");
  lua_pushboolean(L, f->cached);
  lua_setfield(L, -2, "cached");
  return 2;
}

static const char *const dir_keys[] = {"revision", "repo_type", "cache_dir", NULL};

/* snapshot_dir(repo [, opts]) → the cached snapshot folder of opts.revision (no network). */
static int l_snapshot_dir(lua_State *L) {
  const char *repo = luaL_checkstring(L, 1);
  chai_hub_opts o;
  check_hub_opts(L, 2, "chai.hub.snapshot_dir", &o, dir_keys);
  char *dir = lua_newuserdatauv(L, CHAI_HUB_PATH_MAX, 0);
  if (chai_hub_snapshot_dir(repo, &o, dir, CHAI_HUB_PATH_MAX) != CHAI_OK) return chai_bind_fail(L);
  lua_pushstring(L, dir);
  return 1;
}

static const char *const cache_keys[] = {"cache_dir", NULL};

/* cache_dir([opts]) → the cache root. */
static int l_cache_dir(lua_State *L) {
  chai_hub_opts o;
  check_hub_opts(L, 1, "chai.hub.cache_dir", &o, cache_keys);
  char *dir = lua_newuserdatauv(L, CHAI_HUB_PATH_MAX, 0);
  if (chai_hub_cache_dir(&o, dir, CHAI_HUB_PATH_MAX) != CHAI_OK) return chai_bind_fail(L);
  lua_pushstring(L, dir);
  return 1;
}

/* repo_folder(repo [, repo_type]) → "models--org--name". */
static int l_repo_folder(lua_State *L) {
  const char *repo = luaL_checkstring(L, 1);
  const char *type = luaL_optstring(L, 2, NULL);
  char out[320];
  if (chai_hub_repo_folder(repo, type, out, sizeof out) != CHAI_OK) return chai_bind_fail(L);
  lua_pushstring(L, out);
  return 1;
}

/* The headers argument at idx (nil, a list of "Name: value" lines, or a {Name = value} map) as a
 * NULL-terminated array in a userdata; the strings are anchored in a table kept on the stack. */
static const char *const *check_headers(lua_State *L, int idx, const char *fname) {
  if (lua_isnoneornil(L, idx)) return NULL;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_newtable(L); /* anchor */
  int anchor = lua_gettop(L);
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TNUMBER && lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
    } else if (lua_type(L, -2) == LUA_TSTRING &&
               (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)) {
      lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
    } else {
      luaL_error(L,
                 "%s: headers must be \"Name: value\" strings or Name = value pairs, got %s = %s",
                 fname, luaL_typename(L, -2), luaL_typename(L, -1));
    }
    lua_rawseti(L, anchor, ++n);
    lua_pop(L, 1);
  }
  const char **arr = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, anchor, i + 1);
    arr[i] = lua_tostring(L, -1); /* anchored: stays valid */
    lua_pop(L, 1);
  }
  arr[n] = NULL;
  return arr;
}

/* Pushes a malloc'ed body as a Lua string without leaking it if the push raises. */
typedef struct body_arg {
  const char *p;
  size_t n;
} body_arg;

static int push_body_protected(lua_State *L) {
  body_arg *b = lua_touserdata(L, 1);
  lua_pushlstring(L, b->p, b->n);
  return 1;
}

static void push_body(lua_State *L, char *body, size_t len) {
  body_arg b = {body, len};
  lua_pushcfunction(L, push_body_protected);
  lua_pushlightuserdata(L, &b);
  int st = lua_pcall(L, 1, 1, 0);
  free(body);
  if (st != LUA_OK) lua_error(L);
}

/* http_fetch(url [, headers]) → body, status (any HTTP status; raises only without a reply). */
static int l_http_fetch(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  const char *const *h = check_headers(L, 2, "chai.hub.http_fetch");
  char *body;
  size_t len;
  long status;
  if (chai_http_fetch(url, h, &body, &len, &status) != CHAI_OK) return chai_bind_fail(L);
  push_body(L, body, len);
  lua_pushinteger(L, status);
  return 2;
}

/* http_get(url [, headers]) → body; raises on a non-2xx status too. */
static int l_http_get(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  const char *const *h = check_headers(L, 2, "chai.hub.http_get");
  char *body;
  size_t len;
  if (chai_http_get(url, h, &body, &len) != CHAI_OK) return chai_bind_fail(L);
  push_body(L, body, len);
  return 1;
}

/* is_dir(path) → true when path names a folder (following symlinks). */
static int l_is_dir(lua_State *L) {
  struct stat sb;
  lua_pushboolean(L, stat(luaL_checkstring(L, 1), &sb) == 0 && S_ISDIR(sb.st_mode));
  return 1;
}

void chai_bind_open_hub(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"fetch", l_fetch},           {"snapshot_dir", l_snapshot_dir},
                                 {"cache_dir", l_cache_dir},   {"repo_folder", l_repo_folder},
                                 {"http_fetch", l_http_fetch}, {"http_get", l_http_get},
                                 {"is_dir", l_is_dir},         {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setfield(L, table, "_hub");
}
