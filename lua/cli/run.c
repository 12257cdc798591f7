/* The Lua state of the command and running chunks in it, as lua.c does: a message handler that adds
 * a traceback, and Ctrl-C (SIGINT) while a chunk runs turned into a Lua hook that raises
 * "interrupted" plus chai_interrupt() so the engine's long C loops stop at their next check. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bind.h"
#include "chai/error.h"
#include "chai/mpi.h"
#include "cli.h"

const char *chai_cli_progname = "chai";

void chai_cli_message(const char *progname, const char *msg) {
  if (progname && chai_mpi_size() > 1) /* which rank said it */
    fprintf(stderr, "%s (rank %d of %d): ", progname, chai_mpi_rank() + 1, chai_mpi_size());
  else if (progname)
    fprintf(stderr, "%s: ", progname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Whether the value at `idx` is a failure raised by chai.cli.fail (lua/chai/cli.lua): a table
 * whose metatable's __name is "chai.cli.Failure", holding `message` and `status`. */
static int is_failure(lua_State *L, int idx) {
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  lua_pushliteral(L, "__name");
  int named =
      lua_rawget(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "chai.cli.Failure") == 0;
  lua_pop(L, 2);
  return named;
}

/* The exit status of the last error reported: a failure's own status, else CHAI_EXIT_ERROR. */
static int reported_exit = CHAI_EXIT_ERROR;

int chai_cli_report(lua_State *L, int status) {
  if (status != LUA_OK) {
    reported_exit = CHAI_EXIT_ERROR;
    if (is_failure(L, -1)) {
      /* The user's mistake: the message as it is (it names its program), one line. */
      lua_getfield(L, -1, "message");
      const char *msg = lua_tostring(L, -1);
      chai_cli_message(NULL, msg ? msg : "(a failure without a message)");
      lua_pop(L, 1);
      int isint;
      lua_getfield(L, -1, "status");
      lua_Integer code = lua_tointegerx(L, -1, &isint);
      if (isint && code >= 1 && code <= 125) reported_exit = (int)code;
      lua_pop(L, 1);
    } else {
      const char *msg = lua_tostring(L, -1);
      if (!msg) msg = "(error object is not a string)";
      chai_cli_message(chai_cli_progname, msg);
    }
    lua_pop(L, 1);
  }
  return status;
}

int chai_cli_exit_status(int status) {
  return status == LUA_OK ? CHAI_EXIT_OK : reported_exit;
}

/* ---- Ctrl-C while a chunk runs ---- */

static lua_State *volatile running_L; /* the state a chunk runs in, for the signal handler */
static volatile sig_atomic_t chunk_interrupted;

/* The hook the handler installs: raises the error at the next Lua instruction, call or return. */
static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted");
}

static void set_sigint(void (*handler)(int), struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, old);
}

/* Only async-signal-safe work: lua_sethook is designed to be called from a handler (lua.c does).
 * The default action is restored first so a second Ctrl-C kills a program stuck where nothing
 * polls. */
static void laction(int sig) {
  (void)sig;
  set_sigint(SIG_DFL, NULL);
  chunk_interrupted = 1;
  chai_interrupt();
  if (running_L)
    lua_sethook(running_L, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT | LUA_MASKLINE, 1);
}

/* The error value becomes its message plus a traceback; non-string values use __tostring. A
 * failure (chai.cli.fail) stays as it is, without a traceback, for chai_cli_report. */
static int msghandler(lua_State *L) {
  if (is_failure(L, 1)) return 1;
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int chai_cli_docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg; /* the function's index */
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  chai_interrupt_clear();
  chunk_interrupted = 0;
  running_L = L;
  struct sigaction before; /* restored after: the REPL's prompt handler stays between chunks */
  set_sigint(laction, &before);
  int status = lua_pcall(L, narg, nres, base);
  sigaction(SIGINT, &before, NULL);
  running_L = NULL;
  /* When a C loop stopped on chai_interrupted() and raised, the hook never ran: remove it so it
   * cannot fire in the next chunk. */
  if (chunk_interrupted) lua_sethook(L, NULL, 0, 0);
  lua_remove(L, base);
  return status;
}

int chai_cli_dostring(lua_State *L, const char *code, const char *chunkname) {
  int status = luaL_loadbuffer(L, code, strlen(code), chunkname);
  if (status == LUA_OK) status = chai_cli_docall(L, 0, 0);
  return chai_cli_report(L, status);
}

int chai_cli_dofile(lua_State *L, const char *path, int nargs, char **args) {
  int status = luaL_loadfile(L, path);
  if (status == LUA_OK) {
    luaL_checkstack(L, nargs + 3, "too many arguments to script");
    for (int i = 0; i < nargs; i++)
      lua_pushstring(L, args[i]);
    status = chai_cli_docall(L, nargs, 0);
  }
  return chai_cli_report(L, status);
}

void chai_cli_setargs(lua_State *L, int argc, char **argv, int script, const char *script_path) {
  lua_createtable(L, argc - script - 1 > 0 ? argc - script - 1 : 0, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, i == script && script_path ? script_path : argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* ---- the state ---- */

/* Runs protected, so an allocation failure while opening libraries is an error, not a panic. */
static int setup(lua_State *L) {
  luaL_openlibs(L);
  /* chai.core is linked in: preload it so `require "chai"` needs no .so next to the binary. */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_chai_core);
  lua_setfield(L, -2, "chai.core");
  lua_pop(L, 1);
  /* package.path = <lua dir>/?.lua;<lua dir>/?/init.lua;<the default or $LUA_PATH> */
  lua_getglobal(L, "package");
  const char *dir = chai_cli_lua_dir();
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  lua_gc(L, LUA_GCGEN, 0, 0);
  return 0;
}

lua_State *chai_cli_newstate(void) {
  lua_State *L = luaL_newstate();
  if (!L) {
    chai_cli_message(chai_cli_progname, "cannot create the Lua state: not enough memory");
    return NULL;
  }
  lua_pushcfunction(L, setup);
  if (chai_cli_report(L, lua_pcall(L, 0, 0, 0)) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}
