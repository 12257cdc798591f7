/* The `chai` command: `chai [-e CODE]... [COMMAND [ARGS...]]`. Commands written in C are the table
 * below; any other name is looked up in the Lua table require("chai.cli").commands, so a new
 * subcommand is one Lua entry. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "chai/chai.h"
#include "chai/mpi.h"
#include "cli.h"

typedef struct command {
  const char *name;
  const char *alias1, *alias2; /* option spellings (-h, --help), or NULL */
  const char *args;
  const char *summary;
  /* argv[cmd] is the command word. L is the command's Lua state. Returns the exit status. */
  int (*run)(lua_State *L, int argc, char **argv, int cmd);
} command;

static const command *find_command(const char *name);
static void usage(FILE *out, lua_State *L);

/* Prints "chai: <message>" and the usage on stderr; returns the bad-usage exit status. */
static int usage_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("chai: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  usage(stderr, L);
  return CHAI_EXIT_USAGE;
}

static int no_more_args(lua_State *L, int argc, char **argv, int cmd) {
  if (cmd + 1 < argc)
    return usage_error(L, "%s: unexpected argument '%s'", argv[cmd], argv[cmd + 1]);
  return CHAI_EXIT_OK;
}

/* ---- the C commands ---- */

static int cmd_script(lua_State *L, int argc, char **argv, int cmd) {
  if (cmd + 1 >= argc) return usage_error(L, "script: missing FILE");
  const char *name = argv[cmd + 1];
  char *path = NULL;
  if (strcmp(name, "-") != 0) { /* "-" runs stdin, as with lua */
    path = chai_cli_find_script(name);
    if (!path) {
      fprintf(stderr, "chai: cannot find script '%s' (looked in the current folder and in %s)\n",
              name, chai_cli_scripts_dir());
      return CHAI_EXIT_ERROR;
    }
  }
  chai_cli_setargs(L, argc, argv, cmd + 1, path);
  int status = chai_cli_dofile(L, path, argc - cmd - 2, argv + cmd + 2);
  free(path);
  return chai_cli_exit_status(status);
}

static int cmd_repl(lua_State *L, int argc, char **argv, int cmd) {
  int rc = no_more_args(L, argc, argv, cmd);
  if (rc == CHAI_EXIT_OK) chai_cli_repl(L);
  return rc;
}

static const char *parallel_name(int p) {
  switch (p) {
  case 0: return "sequential";
  case 1: return "pthreads";
  case 2: return "OpenMP";
  default: return "unknown threading";
  }
}

/* OpenBLAS is loaded here and nowhere else in the command, so other commands start fast. */
static int cmd_version(lua_State *L, int argc, char **argv, int cmd) {
  int rc = no_more_args(L, argc, argv, cmd);
  if (rc != CHAI_EXIT_OK) return rc;
  const chai_cpu_info *cpu = chai_cpu_info_get();
  const char *forced = getenv("CHAI_CPU");
  printf("chai %s (%s)\n", chai_version(), LUA_RELEASE);
  if (chai_blas_init() == CHAI_OK) {
    const chai_blas_info *b = chai_blas_get_info();
    printf("openblas  core %s, chosen by %s, %s\n", b->core ? b->core : "?",
           b->chosen_by ? b->chosen_by : "?", parallel_name(b->parallel));
    printf("library   %s\n", b->library ? b->library : "?");
    if (b->config) printf("config    %s\n", b->config);
  } else {
    printf("openblas  not loaded: %s\n", chai_last_error());
    rc = CHAI_EXIT_ERROR;
  }
  printf("cpu       %s family %d model %d\n", cpu->vendor, cpu->family, cpu->model);
  printf("features  %s\n", chai_cpu_features());
  printf("simd      %s%s%s%s\n", chai_simd_name(chai_simd_level()), forced ? " (CHAI_CPU=" : "",
         forced ? forced : "", forced ? ")" : "");
  printf("kernels   int8 %s, int4 %s, bf16 %s, f16 %s, f32 %s\n", chai_qformat_kernel(CHAI_QF_INT8),
         chai_qformat_kernel(CHAI_QF_INT4), chai_qformat_kernel(CHAI_QF_BF16),
         chai_qformat_kernel(CHAI_QF_F16), chai_qformat_kernel(CHAI_QF_F32));
  printf("threads   %d\n", chai_threads_get());
  printf("lua dir   %s\n", chai_cli_lua_dir());
  printf("scripts   %s\n", chai_cli_scripts_dir());
  printf("module    %s\n", chai_cli_module_dir());
  return rc;
}

/* Writes s single-quoted for a POSIX shell. */
static void shell_quote(const char *s) {
  putchar('\'');
  for (; *s; s++) {
    if (*s == '\'')
      fputs("'\\''", stdout);
    else
      putchar(*s);
  }
  putchar('\'');
}

static int cmd_env(lua_State *L, int argc, char **argv, int cmd) {
  int rc = no_more_args(L, argc, argv, cmd);
  if (rc != CHAI_EXIT_OK) return rc;
  const char *lua = chai_cli_lua_dir(), *mod = chai_cli_module_dir();
  size_t n = 2 * strlen(lua) + strlen(mod) + 64;
  char *buf = malloc(n);
  if (!buf) return CHAI_EXIT_ERROR;
  snprintf(buf, n, "%s/?.lua;%s/?/init.lua;;", lua, lua);
  fputs("export LUA_PATH=", stdout);
  shell_quote(buf);
  snprintf(buf, n, "%s/?.so;;", mod);
  fputs("\nexport LUA_CPATH=", stdout);
  shell_quote(buf);
  putchar('\n');
  free(buf);
  return CHAI_EXIT_OK;
}

static int cmd_help(lua_State *L, int argc, char **argv, int cmd) {
  int rc = no_more_args(L, argc, argv, cmd);
  if (rc == CHAI_EXIT_OK) usage(stdout, L);
  return rc;
}

static const command commands[] = {
    {"script", NULL, NULL, "FILE [ARGS...]",
     "run a Lua script (FILE: from the current folder, else from scripts/)", cmd_script},
    {"repl", NULL, NULL, "", "interactive Lua with chai loaded (the default on a terminal)",
     cmd_repl},
    {"version", "-v", "--version", "",
     "chai, Lua, OpenBLAS core, CPU features, SIMD level, threads", cmd_version},
    {"env", NULL, NULL, "", "shell lines for a stock lua5.4: eval \"$(chai env)\"", cmd_env},
    {"help", "-h", "--help", "", "this text", cmd_help},
};

static const command *find_command(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    const command *c = &commands[i];
    if (strcmp(name, c->name) == 0 || (c->alias1 && strcmp(name, c->alias1) == 0) ||
        (c->alias2 && strcmp(name, c->alias2) == 0))
      return c;
  }
  return NULL;
}

/* ---- the Lua commands: require("chai.cli").commands[name] = {summary=, args=, run=fn} ---- */

/* Pushes require("chai.cli").commands. Returns 0, or a Lua error status with the message pushed. */
static int push_lua_commands(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "chai.cli");
  int status = chai_cli_docall(L, 1, 1);
  if (status != LUA_OK) return status;
  lua_getfield(L, -1, "commands");
  lua_remove(L, -2);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "chai.cli: 'commands' is not a table");
    return LUA_ERRRUN;
  }
  return LUA_OK;
}

/* Reads field `key` of the entry at index `entry` as a string ("" when absent). The string stays
 * valid while the commands table is on the stack. */
static const char *entry_string(lua_State *L, int entry, const char *key) {
  if (!lua_istable(L, entry)) return "";
  lua_getfield(L, entry, key);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  lua_pop(L, 1); /* the entry table anchors the string */
  return s;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void print_line(FILE *out, const char *name, const char *args, const char *summary) {
  char left[64];
  snprintf(left, sizeof left, "%s%s%s", name, *args ? " " : "", args);
  fprintf(out, "  %-22s %s\n", left, summary);
}

/* Lists the Lua commands sorted by name; silent when chai.cli cannot be loaded. */
static void usage_lua_commands(FILE *out, lua_State *L) {
  int top = lua_gettop(L);
  if (push_lua_commands(L) != LUA_OK) {
    lua_settop(L, top);
    return;
  }
  int t = lua_gettop(L);
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    n += lua_type(L, -2) == LUA_TSTRING && !find_command(lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  const char **names = n ? malloc(n * sizeof *names) : NULL;
  size_t k = 0;
  if (names) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
      if (lua_type(L, -2) == LUA_TSTRING && !find_command(lua_tostring(L, -2)) && k < n)
        names[k++] = lua_tostring(L, -2);
      lua_pop(L, 1);
    }
    qsort(names, k, sizeof *names, compare_names);
  }
  for (size_t i = 0; i < k; i++) {
    lua_getfield(L, t, names[i]);
    print_line(out, names[i], entry_string(L, -1, "args"), entry_string(L, -1, "summary"));
    lua_pop(L, 1);
  }
  free(names);
  lua_settop(L, top);
}

static int run_lua_command(lua_State *L, int argc, char **argv, int cmd) {
  int status = push_lua_commands(L);
  if (status != LUA_OK) {
    chai_cli_report(L, status);
    return CHAI_EXIT_ERROR;
  }
  lua_getfield(L, -1, argv[cmd]);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 2);
    return usage_error(L, "unknown command '%s'", argv[cmd]);
  }
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "run");
    lua_remove(L, -2);
  }
  if (!lua_isfunction(L, -1)) {
    fprintf(stderr, "chai: chai.cli.commands.%s has no run function\n", argv[cmd]);
    lua_pop(L, 2);
    return CHAI_EXIT_ERROR;
  }
  chai_cli_setargs(L, argc, argv, cmd, NULL);
  lua_createtable(L, argc - cmd - 1, 0);
  for (int i = cmd + 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - cmd);
  }
  status = chai_cli_docall(L, 1, 1);
  if (status != LUA_OK) return chai_cli_exit_status(chai_cli_report(L, status));
  /* nil/true/no value: success; false: failure; an integer: that exit status. */
  int rc = CHAI_EXIT_OK;
  if (lua_isboolean(L, -1) && !lua_toboolean(L, -1))
    rc = CHAI_EXIT_ERROR;
  else if (lua_isinteger(L, -1))
    rc = (int)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return rc;
}

/* ---- usage ---- */

static void usage(FILE *out, lua_State *L) {
  fputs("usage: chai [-e CODE]... [COMMAND [ARGS...]]\n\ncommands:\n", out);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    print_line(out, commands[i].name, commands[i].args, commands[i].summary);
  lua_State *tmp = L ? NULL : chai_cli_newstate();
  if (L || tmp) usage_lua_commands(out, L ? L : tmp);
  if (tmp) lua_close(tmp);
  fputs("\noptions:\n", out);
  print_line(out, "-e CODE", "", "run CODE first (repeatable, in order); alone, chai exits after");
  print_line(out, "-h, --help", "", "same as help");
  print_line(out, "-v, --version", "", "same as version");
  static const char *const notes[] = {
      "",
      "With no arguments chai starts the REPL when stdin is a terminal; otherwise it prints this",
      "text on stderr and exits with status 2.",
      "Exit status: 0 success; 1 an error in Lua code (traceback on stderr), a script not found,",
      "or Ctrl-C; 2 bad usage. A mistake on the command line of a command or bundled script is one",
      "line on stderr, without a traceback.",
      "Environment: CHAI_HOME (its lua/ and scripts/ folders come first), CHAI_HISTORY (the REPL",
      "history file, default ~/.chai_history; empty for none).",
  };
  for (size_t i = 0; i < sizeof notes / sizeof notes[0]; i++)
    fprintf(out, "%s\n", notes[i]);
}

/* ---- main ---- */

int main(int argc, char **argv) {
  int i = 1, has_e = 0;
  /* Options come before the command; the command's own arguments are never parsed here. */
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (strcmp(argv[i], "-e") == 0) {
      if (++i >= argc) return usage_error(NULL, "'-e' needs CODE");
      has_e = 1;
      continue;
    }
    if (find_command(argv[i])) break; /* -h, --version, ... */
    return usage_error(NULL, "unknown option '%s'", argv[i]);
  }
  int cmd = i;
  const command *c = cmd < argc ? find_command(argv[cmd]) : NULL;
  if (cmd >= argc && !has_e) {
    if (!isatty(STDIN_FILENO)) return usage_error(NULL, "no command given");
    c = find_command("repl");
  }

  lua_State *L = chai_cli_newstate();
  if (!L) return CHAI_EXIT_ERROR;
  chai_cli_setargs(L, argc, argv, 0, NULL);
  int rc = CHAI_EXIT_OK;
  for (int k = 1; k < cmd && rc == CHAI_EXIT_OK; k++) {
    if (strcmp(argv[k], "-e") == 0) {
      rc = chai_cli_exit_status(chai_cli_dostring(L, argv[k + 1], "=(command line)"));
      k++;
    }
  }
  if (rc == CHAI_EXIT_OK) {
    if (c)
      rc = c->run(L, argc, argv, cmd);
    else if (cmd < argc)
      rc = run_lua_command(L, argc, argv, cmd);
  }
  /* An error on one rank of several would leave the others waiting in their next collective (and
   * MPI_Finalize waits for every rank): end them all. Its message is on stderr already. */
  if (rc != CHAI_EXIT_OK && chai_mpi_size() > 1)
    chai_mpi_abort("this rank failed (the error above); ending every rank", rc);
  lua_close(L); /* ends MPI when the script started it */
  return rc;
}
