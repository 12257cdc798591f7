/* chai.core.serve: what `chai serve` (lua/chai/serve*.lua) needs from C: the HTTP server and its
 * streams (engine/include/chai/server.h), child processes and stop signals (chai/proc.h), the web
 * page compiled into the binary (web_assets.c), and a few file-system calls Lua lacks.
 *
 *   srv = serve.open{host=, port=, max_body=, timeout=, max_connections=}
 *   srv:run(timeout_ms, handler)   handler(req) → status, headers, body   (or srv:stream(...))
 *   req = {method=, path=, body=, headers = {authorization=, host=, origin=, ...}, query_token=}
 *   st = srv:stream(status, headers) inside a handler; st:write(s), st:close(), st:closed()
 *   p = serve.spawn(argv, {log=, cwd=, group=true, death_signal="TERM"}); p:poll(),
 * p:signal("TERM")
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bind.h"
#include "chai/proc.h"
#include "chai/server.h"
#include "web_assets.h"

#define SERVER_MT "chai.Server"
#define STREAM_MT "chai.ServerStream"
#define PROC_MT "chai.Proc"

/* The request headers a handler sees (lower-case names). */
static const char *const request_headers[] = {"authorization", "host",   "origin", "content-type",
                                              "last-event-id", "accept", NULL};

typedef struct server_box {
  chai_server *srv;
  lua_State *L;             /* set while run() calls handlers */
  int handler;              /* the handler's stack index in run()'s frame */
  chai_server_request *cur; /* the request being handled */
} server_box;

static server_box *check_server(lua_State *L, int idx) {
  server_box *b = luaL_checkudata(L, idx, SERVER_MT);
  if (!b->srv) luaL_error(L, "server: used after close");
  return b;
}

/* ---- streams ---- */

static chai_server_stream **check_stream(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, STREAM_MT);
}

static int stream_write(lua_State *L) {
  chai_server_stream **st = check_stream(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (!*st || chai_server_stream_write(*st, s, len) != CHAI_OK) {
    lua_pushnil(L);
    lua_pushstring(L, *st ? chai_last_error() : "server: the stream is closed");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int stream_close(lua_State *L) {
  chai_server_stream **st = check_stream(L, 1);
  if (*st) {
    chai_server_stream_end(*st);
    chai_server_stream_release(*st);
    *st = NULL;
  }
  return 0;
}

static int stream_closed(lua_State *L) {
  chai_server_stream **st = check_stream(L, 1);
  lua_pushboolean(L, !*st || chai_server_stream_closed(*st));
  return 1;
}

/* ---- the server ---- */

/* headers table at idx → name, value, ..., NULL in `out` (strings stay anchored by the table). */
static void collect_headers(lua_State *L, int idx, const char **out, int max) {
  int n = 0;
  if (!lua_isnoneornil(L, idx)) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "server: response headers must be strings");
      if (n + 2 >= max) luaL_error(L, "server: too many response headers");
      out[n++] = lua_tostring(L, -2);
      out[n++] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  out[n] = NULL;
}

static int server_stream(lua_State *L) {
  server_box *b = check_server(L, 1);
  int status = (int)luaL_checkinteger(L, 2);
  if (!b->cur) return luaL_error(L, "server: stream() outside a request handler");
  const char *headers[66];
  collect_headers(L, 3, headers, 66);
  chai_server_stream **st = lua_newuserdatauv(L, sizeof *st, 0);
  *st = NULL;
  luaL_setmetatable(L, STREAM_MT);
  if (chai_server_respond_stream(b->cur, status, headers, st) != CHAI_OK) return chai_bind_fail(L);
  return 1;
}

/* Runs protected: builds the request table, calls the handler, answers with what it returned. */
static int handle_request(lua_State *L) {
  server_box *b = lua_touserdata(L, 1); /* 2: the handler */
  chai_server_request *r = b->cur;
  lua_pushvalue(L, 2);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, chai_server_request_method(r));
  lua_setfield(L, -2, "method");
  lua_pushstring(L, chai_server_request_path(r));
  lua_setfield(L, -2, "path");
  size_t len;
  const char *body = chai_server_request_body(r, &len);
  lua_pushlstring(L, body, len);
  lua_setfield(L, -2, "body");
  lua_createtable(L, 0, 6);
  for (int i = 0; request_headers[i]; i++) {
    const char *v = chai_server_request_header(r, request_headers[i]);
    if (v) {
      lua_pushstring(L, v);
      lua_setfield(L, -2, request_headers[i]);
    }
  }
  lua_setfield(L, -2, "headers");
  const char *token = chai_server_request_arg(r, "token");
  if (token) {
    lua_pushstring(L, token);
    lua_setfield(L, -2, "query_token");
  }
  lua_call(L, 1, 3);
  if (lua_isnil(L, -3)) return 0; /* answered with a stream (or not at all: 500) */
  int status = (int)luaL_checkinteger(L, -3);
  const char *headers[66];
  collect_headers(L, lua_gettop(L) - 1, headers, 66);
  const char *text = lua_isnil(L, -1) ? "" : luaL_checklstring(L, -1, &len);
  if (lua_isnil(L, -1)) len = 0;
  if (chai_server_respond(r, status, headers, text, len) != CHAI_OK) return chai_bind_fail(L);
  return 0;
}

static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* The engine's handler: calls the Lua one; an error becomes a 500 and a line on stderr. */
static void on_request(void *ud, chai_server_request *r) {
  server_box *b = ud;
  lua_State *L = b->L;
  int top = lua_gettop(L);
  b->cur = r;
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, handle_request);
  lua_pushlightuserdata(L, b);
  lua_pushvalue(L, b->handler);
  if (lua_pcall(L, 2, 0, top + 1) != LUA_OK) {
    fprintf(stderr, "chai serve: handler error: %s\n", lua_tostring(L, -1));
    static const char body[] = "{\"error\": \"internal error\"}";
    static const char *const headers[] = {"Content-Type", "application/json", NULL};
    chai_server_respond(r, 500, headers, body, sizeof body - 1); /* fails if already answered */
  }
  b->cur = NULL;
  lua_settop(L, top);
}

static const char *opt_string_field(lua_State *L, int idx, const char *key) {
  lua_getfield(L, idx, key);
  const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* anchored by the options table */
  return s;
}

static const char *const open_known[] = {"host", "port", "max_body", "timeout", "max_connections",
                                         NULL};

static int serve_open(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  chai_bind_check_options(L, 1, "serve.open", open_known);
  chai_server_config cfg = {0};
  cfg.host = opt_string_field(L, 1, "host");
  lua_Integer port = chai_bind_opt_integer(L, 1, "port", 0, "serve.open");
  lua_Integer max_body = chai_bind_opt_integer(L, 1, "max_body", 64 * 1024, "serve.open");
  lua_Integer timeout = chai_bind_opt_integer(L, 1, "timeout", 15, "serve.open");
  lua_Integer conns = chai_bind_opt_integer(L, 1, "max_connections", 256, "serve.open");
  if (port < 0 || port > 65535) return luaL_error(L, "serve.open: port %I is not 0..65535", port);
  if (max_body < 1 || timeout < 1 || timeout > 3600 || conns < 1 || conns > 100000)
    return luaL_error(L, "serve.open: max_body, timeout (1..3600) or max_connections out of range");
  cfg.port = (int)port;
  cfg.max_body = (size_t)max_body;
  cfg.timeout_s = (unsigned)timeout;
  cfg.max_connections = (unsigned)conns;
  cfg.handler = on_request;
  server_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, SERVER_MT);
  cfg.ud = b;
  if (chai_server_open(&cfg, &b->srv) != CHAI_OK) return chai_bind_fail(L);
  return 1;
}

static int server_port(lua_State *L) {
  lua_pushinteger(L, chai_server_port(check_server(L, 1)->srv));
  return 1;
}

static int server_run(lua_State *L) {
  server_box *b = check_server(L, 1);
  lua_Integer ms = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (b->L) return luaL_error(L, "server: run() called from a handler");
  lua_settop(L, 3);
  b->L = L;
  b->handler = 3;
  chai_status st = chai_server_run(b->srv, ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms);
  b->L = NULL;
  if (st != CHAI_OK) return chai_bind_fail(L);
  return 0;
}

static int server_stop_accepting(lua_State *L) {
  chai_server_stop_accepting(check_server(L, 1)->srv);
  return 0;
}

static int server_close(lua_State *L) {
  server_box *b = luaL_checkudata(L, 1, SERVER_MT);
  if (b->L) return luaL_error(L, "server: close() called from a handler");
  chai_server_close(b->srv);
  b->srv = NULL;
  return 0;
}

/* ---- processes ---- */

static const struct {
  const char *name;
  int sig;
} signals[] = {{"TERM", SIGTERM}, {"INT", SIGINT}, {"KILL", SIGKILL}, {"HUP", SIGHUP}};

static int signal_number(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
    if (!strcmp(name, signals[i].name)) return signals[i].sig;
  return luaL_error(L, "unknown signal '%s' (TERM, INT, KILL, HUP)", name);
}

static chai_proc **check_proc(lua_State *L, int idx) {
  chai_proc **p = luaL_checkudata(L, idx, PROC_MT);
  if (!*p) luaL_error(L, "proc: used after free");
  return p;
}

static const char *const spawn_known[] = {"log", "cwd", "group", "death_signal", NULL};

static int serve_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  chai_bind_check_options(L, 2, "serve.spawn", spawn_known);
  lua_Integer n = luaL_len(L, 1);
  if (n < 1 || n > 1000) return luaL_error(L, "serve.spawn: argv must have 1..1000 strings");
  const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "serve.spawn: argv[%I] is not a string", i);
    argv[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1); /* anchored by the argv table */
  }
  argv[n] = NULL;
  chai_proc_opts o = {0};
  if (!lua_isnoneornil(L, 2)) {
    o.log_path = opt_string_field(L, 2, "log");
    o.cwd = opt_string_field(L, 2, "cwd");
    o.new_group = chai_bind_opt_boolean(L, 2, "group", false, "serve.spawn");
    lua_getfield(L, 2, "death_signal");
    if (!lua_isnil(L, -1)) o.parent_death_signal = signal_number(L, -1);
    lua_pop(L, 1);
  }
  chai_proc **p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = NULL;
  luaL_setmetatable(L, PROC_MT);
  if (chai_proc_spawn(argv[0], (char *const *)argv, &o, p) != CHAI_OK) return chai_bind_fail(L);
  return 1;
}

static void push_exit(lua_State *L, const chai_proc_exit *how) {
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, how->exited);
  lua_setfield(L, -2, "exited");
  lua_pushinteger(L, how->code);
  lua_setfield(L, -2, "code");
  lua_pushinteger(L, how->signal);
  lua_setfield(L, -2, "signal");
}

/* p:poll() → nil while running, else {exited=, code=, signal=}. */
static int proc_poll(lua_State *L) {
  chai_proc_exit how;
  if (!chai_proc_poll(*check_proc(L, 1), &how)) return 0;
  push_exit(L, &how);
  return 1;
}

/* p:wait(timeout_ms) → like poll, after waiting up to timeout_ms for the end. */
static int proc_wait(lua_State *L) {
  chai_proc **p = check_proc(L, 1);
  lua_Integer ms = luaL_checkinteger(L, 2);
  chai_proc_exit how;
  if (!chai_proc_wait(*p, ms > INT32_MAX ? INT32_MAX : (int)ms, &how)) return 0;
  push_exit(L, &how);
  return 1;
}

static int proc_signal(lua_State *L) {
  chai_proc **p = check_proc(L, 1);
  if (chai_proc_signal(*p, signal_number(L, 2)) != CHAI_OK) {
    lua_pushnil(L);
    lua_pushstring(L, chai_last_error());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_pid(lua_State *L) {
  lua_pushinteger(L, chai_proc_pid(*check_proc(L, 1)));
  return 1;
}

static int proc_gc(lua_State *L) {
  chai_proc **p = luaL_checkudata(L, 1, PROC_MT);
  chai_proc_free(*p);
  *p = NULL;
  return 0;
}

/* serve.alive(pid, needle) → whether pid runs with `needle` in its command line. */
static int serve_alive(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  const char *needle = luaL_optstring(L, 2, NULL);
  lua_pushboolean(L, pid > 0 && pid < INT32_MAX && chai_proc_alive((int)pid, needle));
  return 1;
}

/* ---- stop signals, time, files ---- */

static int serve_stop_signals(lua_State *L) {
  if (chai_stop_signals_install() != CHAI_OK) return chai_bind_fail(L);
  return 0;
}

/* serve.stop_requested() → the count of SIGTERM/SIGINT received and the last one's name. */
static int serve_stop_requested(lua_State *L) {
  int n = chai_stop_signal_count();
  lua_pushinteger(L, n);
  int sig = chai_stop_signal_last();
  lua_pushstring(L, sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "");
  return 2;
}

/* serve.now() → seconds since the epoch, with a fraction. */
static int serve_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
  return 1;
}

static int serve_sleep(lua_State *L) {
  lua_Number s = luaL_checknumber(L, 1);
  if (s > 0) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL); /* a signal ends it early, as a stop should */
  }
  return 0;
}

static int fail_errno(lua_State *L, const char *what, const char *path) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s '%s': %s", what, path, strerror(errno));
  return 2;
}

/* The open folder of listdir lives in a userdata, so a memory error while listing closes it. */
static int dir_gc(lua_State *L) {
  DIR **d = lua_touserdata(L, 1);
  if (*d) closedir(*d);
  *d = NULL;
  return 0;
}

/* serve.listdir(path) → the names in a folder (without . and ..), or nil, message. */
static int serve_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR **d = lua_newuserdatauv(L, sizeof *d, 0);
  *d = NULL;
  if (luaL_newmetatable(L, "chai.serve.dir")) {
    lua_pushcfunction(L, dir_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  *d = opendir(path);
  if (!*d) return fail_errno(L, "cannot list", path);
  lua_newtable(L);
  lua_Integer n = 0;
  struct dirent *e;
  while ((e = readdir(*d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(*d);
  *d = NULL;
  return 1;
}

/* serve.mkdir(path) → true (also when it exists as a folder), or nil, message. */
static int serve_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (mkdir(path, 0755) != 0 && !(errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
    return fail_errno(L, "cannot create folder", path);
  lua_pushboolean(L, 1);
  return 1;
}

/* serve.realpath(path) → the absolute, resolved path of something that exists, or nil, message. */
static int serve_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  if (!realpath(path, buf)) return fail_errno(L, "cannot resolve", path);
  lua_pushstring(L, buf);
  return 1;
}

/* serve.stat(path) → {type="file"|"dir"|"other", size=, mtime=}, or nil. */
static int serve_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec * 1e-9);
  lua_setfield(L, -2, "mtime");
  return 1;
}

/* serve.random_hex(nbytes) → 2*nbytes hex digits from the kernel's generator. */
static int serve_random_hex(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1 || n > 64) return luaL_error(L, "serve.random_hex: %I bytes is not 1..64", n);
  unsigned char b[64];
  size_t k = (size_t)n & 63 ? (size_t)n & 63 : 64;
  if (getrandom(b, k, 0) != (ssize_t)k) return luaL_error(L, "getrandom failed");
  char hex[129];
  for (size_t i = 0; i < k; i++)
    snprintf(hex + 2 * i, 3, "%02x", b[i]);
  lua_pushlstring(L, hex, 2 * k);
  return 1;
}

static int serve_pid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

/* serve.asset(name) → the bytes and the content type of a file of the web page, or nil. */
static int serve_asset(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const chai_web_asset *a = chai_web_asset_find(name);
  if (!a) return 0;
  lua_pushlstring(L, a->data, (size_t)(a->end - a->data));
  lua_pushstring(L, a->mime);
  return 2;
}

static int serve_assets(lua_State *L) {
  lua_newtable(L);
  for (int i = 0; chai_web_assets[i].name; i++) {
    lua_pushstring(L, chai_web_assets[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static void new_metatable(lua_State *L, const char *name, const luaL_Reg *methods,
                          lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}

void chai_bind_open_serve(lua_State *L, int table) {
  static const luaL_Reg server_methods[] = {
      {"port", server_port},     {"run", server_run},
      {"stream", server_stream}, {"stop_accepting", server_stop_accepting},
      {"close", server_close},   {NULL, NULL}};
  static const luaL_Reg stream_methods[] = {
      {"write", stream_write}, {"close", stream_close}, {"closed", stream_closed}, {NULL, NULL}};
  static const luaL_Reg proc_methods[] = {{"poll", proc_poll},     {"wait", proc_wait},
                                          {"signal", proc_signal}, {"pid", proc_pid},
                                          {"free", proc_gc},       {NULL, NULL}};
  new_metatable(L, SERVER_MT, server_methods, server_close);
  new_metatable(L, STREAM_MT, stream_methods, stream_close);
  new_metatable(L, PROC_MT, proc_methods, proc_gc);
  static const luaL_Reg fns[] = {{"open", serve_open},
                                 {"spawn", serve_spawn},
                                 {"alive", serve_alive},
                                 {"stop_signals", serve_stop_signals},
                                 {"stop_requested", serve_stop_requested},
                                 {"now", serve_now},
                                 {"sleep", serve_sleep},
                                 {"listdir", serve_listdir},
                                 {"mkdir", serve_mkdir},
                                 {"stat", serve_stat},
                                 {"realpath", serve_realpath},
                                 {"random_hex", serve_random_hex},
                                 {"pid", serve_pid},
                                 {"asset", serve_asset},
                                 {"assets", serve_assets},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setfield(L, table, "serve");
}
