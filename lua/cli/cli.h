/* chai — the `chai` command (internal to lua/cli): shared between main.c, run.c, repl.c, paths.c.
 * Shaped like Lua's own lua.c: one Lua state, a message handler that adds a traceback, and Ctrl-C
 * turned into a Lua hook plus chai_interrupt() so both Lua and C loops stop. */
#ifndef CHAI_CLI_H
#define CHAI_CLI_H

#include <lua.h>

/* Exit statuses of the command. */
enum { CHAI_EXIT_OK = 0, CHAI_EXIT_ERROR = 1, CHAI_EXIT_USAGE = 2 };

/* ---- paths.c: where the Lua files, the scripts and the C module live ---- */

/* The resolved folders, each without a trailing slash. Found once (first call) in this order:
 * $CHAI_HOME/<x>, <exe dir>/../share/chai/<x> (an install), the compile-time CHAI_<X>_DIR. A
 * candidate counts only if it exists (the Lua folder: if it holds chai/init.lua); when none does,
 * the compile-time folder is returned anyway. The module folder holds chai/core.so: <exe dir>/lua
 * (a build tree), <exe dir>/../lib/lua/5.4 (an install), then CHAI_MODULE_DIR. Returned strings
 * live until exit. */
const char *chai_cli_lua_dir(void);
const char *chai_cli_scripts_dir(void);
const char *chai_cli_module_dir(void);

/* Finds a script: `name` itself when it is a readable file (absolute, or relative to the current
 * folder), else <scripts dir>/name for a relative name. Returns a new malloc'd path the caller
 * frees, or NULL when neither exists. */
char *chai_cli_find_script(const char *name);

/* ---- run.c: the Lua state and running chunks ---- */

/* The program name used to prefix error messages ("chai"); NULL inside the REPL (as in lua.c). */
extern const char *chai_cli_progname;

/* A new Lua state with the standard libraries, "chai.core" preloaded (statically linked) and
 * package.path starting with the chai Lua folder. Returns NULL when out of memory (message
 * printed). */
lua_State *chai_cli_newstate(void);

/* Sets the global `arg` as lua.c does: arg[0] = argv[script], arg[1..] the words after it, negative
 * indices the words before it. When `script_path` is not NULL it replaces arg[0]. */
void chai_cli_setargs(lua_State *L, int argc, char **argv, int script, const char *script_path);

/* Calls the function below `narg` arguments on the stack in protected mode with a traceback
 * handler, with Ctrl-C armed (Lua hook + chai_interrupt) for the duration. Returns a Lua status; on
 * error the message (with traceback) is on the stack. */
int chai_cli_docall(lua_State *L, int narg, int nres);

/* Prints the error message on top of the stack (prefixed with the program name) and pops it when
 * `status` is not LUA_OK. A failure raised by chai.cli.fail prints its message alone, on one line
 * without a traceback. Returns `status`. */
int chai_cli_report(lua_State *L, int status);

/* The exit status for a Lua status after chai_cli_report: CHAI_EXIT_OK for LUA_OK, the status of
 * the failure just reported (chai.cli.fail), else CHAI_EXIT_ERROR. */
int chai_cli_exit_status(int status);

/* Loads and runs a chunk of code, reporting errors. Returns a Lua status. */
int chai_cli_dostring(lua_State *L, const char *code, const char *chunkname);
/* Loads the file at `path` (NULL = stdin) and calls it with the `nargs` strings `args` as its
 * `...`, reporting errors. Returns a Lua status. */
int chai_cli_dofile(lua_State *L, const char *path, int nargs, char **args);

/* Prints a message on stderr as "<progname>: msg" (just "msg" when progname is NULL). */
void chai_cli_message(const char *progname, const char *msg);

/* ---- repl.c ---- */

/* The interactive loop: readline with history when stdin is a terminal, plain lines (no prompts)
 * otherwise. Returns when stdin ends. */
void chai_cli_repl(lua_State *L);

#endif
