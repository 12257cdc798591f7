/* The read-eval-print loop, as lua.c's: each line is tried as `return <line>;` first so expressions
 * print their values, then as a statement; an incomplete chunk (the syntax error ends in "<eof>")
 * asks for more lines. On a terminal it reads with GNU readline (callback interface, so Ctrl-C at
 * the prompt abandons the line instead of killing chai) and keeps a history file; from a pipe it
 * reads plain lines and prints no prompts. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include <lauxlib.h>

#include "chai/chai.h"
#include "cli.h"

#define PROMPT "> "
#define PROMPT2 ">> "
#define EOFMARK "<eof>"
#define HISTORY_LINES 1000

enum { READ_OK, READ_EOF, READ_INTERRUPTED };

/* Set by Ctrl-C while no chunk runs (the handler of chunks is run.c's); cleared by the readers. */
static volatile sig_atomic_t prompt_interrupted;

static void prompt_action(int sig) {
  (void)sig;
  prompt_interrupted = 1;
}

/* No SA_RESTART: a blocked read or select returns EINTR, so the reader sees the flag at once. */
static void prompt_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = prompt_action;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* ---- reading lines ---- */

static int tty;            /* stdin is a terminal: readline, prompts, history */
static char *history_path; /* NULL: no history file */
static char *rl_line;      /* the line rl_on_line received */
static int rl_finished;

static void rl_on_line(char *line) {
  rl_line = line;
  rl_finished = 1;
  rl_callback_handler_remove();
}

/* SIGINT stays blocked except inside pselect, so a Ctrl-C cannot slip in between the flag check and
 * the wait. */
static int read_tty(const char *prompt, char **out) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, &old);
  int result = READ_EOF;
  rl_line = NULL;
  rl_finished = 0;
  rl_callback_handler_install(prompt, rl_on_line);
  for (;;) {
    if (prompt_interrupted) {
      prompt_interrupted = 0;
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_cleanup_after_signal();
      rl_callback_handler_remove();
      fputc('\n', stdout);
      fflush(stdout);
      result = READ_INTERRUPTED;
      break;
    }
    int fd = fileno(rl_instream ? rl_instream : stdin);
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    if (pselect(fd + 1, &fds, NULL, NULL, NULL, &old) < 0) {
      if (errno == EINTR) continue;
      rl_callback_handler_remove();
      break;
    }
    rl_callback_read_char();
    if (rl_finished) {
      result = rl_line ? READ_OK : READ_EOF;
      *out = rl_line;
      break;
    }
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  return result;
}

static int read_pipe(char **out) {
  char *buf = NULL;
  size_t cap = 0;
  if (prompt_interrupted) prompt_interrupted = 0;
  ssize_t n = getline(&buf, &cap, stdin);
  if (n < 0) {
    free(buf);
    if (errno == EINTR && prompt_interrupted) {
      prompt_interrupted = 0;
      clearerr(stdin);
      return READ_INTERRUPTED;
    }
    return READ_EOF;
  }
  if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  if (n > 0 && buf[n - 1] == '\r') buf[--n] = '\0';
  *out = buf;
  return READ_OK;
}

/* Reads one line and pushes it. Returns READ_OK, READ_EOF or READ_INTERRUPTED (nothing pushed). */
static int pushline(lua_State *L, int firstline) {
  char *line = NULL;
  errno = 0;
  int r = tty ? read_tty(firstline ? PROMPT : PROMPT2, &line) : read_pipe(&line);
  if (r == READ_OK) {
    lua_pushstring(L, line);
    free(line);
  }
  return r;
}

static void saveline(const char *line) {
  if (tty && line[0]) add_history(line);
}

/* ---- loading a chunk ---- */

/* Tries `return <line>;`: on success the line is replaced by the compiled function. */
static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2); /* the "return ..." string */
    saveline(line);
  } else {
    lua_pop(L, 2); /* the error and the "return ..." string */
  }
  return status;
}

/* A syntax error at the end of the input means "more lines needed"; the message is popped. */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    size_t lmark = sizeof(EOFMARK) - 1;
    if (lmsg >= lmark && strcmp(msg + lmsg - lmark, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Compiles the lines read so far (stack index 1), reading continuation lines while incomplete. */
static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!incomplete(L, status)) {
      saveline(line);
      return status;
    }
    int r = pushline(L, 0);
    if (r == READ_INTERRUPTED) return -2;
    if (r == READ_EOF) {
      /* Compile again only to leave the "<eof>" error for the report. */
      saveline(line);
      return luaL_loadbuffer(L, line, len, "=stdin");
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Reads and compiles one chunk. Returns a Lua status with the function (or the error) on the stack,
 * -1 at the end of input, or -2 when Ctrl-C abandoned the chunk (stack empty). */
static int loadline(lua_State *L) {
  lua_settop(L, 0);
  int r = pushline(L, 1);
  if (r == READ_EOF) return -1;
  if (r == READ_INTERRUPTED) return -2;
  int status = addreturn(L);
  if (status != LUA_OK) status = multiline(L);
  if (status == -2) {
    lua_settop(L, 0);
    return -2;
  }
  lua_remove(L, 1); /* the line */
  return status;
}

/* Pushes require("chai.cli").repl_print, or the global print when that module cannot load. */
static int push_printer(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "chai.cli");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
    lua_getfield(L, -1, "repl_print");
    lua_remove(L, -2);
    if (lua_isfunction(L, -1)) return 1;
  }
  lua_pop(L, 1);
  lua_getglobal(L, "print");
  return 1;
}

/* Prints the chunk's results, tab-separated: tables shown shallowly ({2, 2}, {live = 8}), other
 * values with tostring. */
static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  push_printer(L);
  lua_insert(L, 1);
  chai_cli_report(L, chai_cli_docall(L, n, 0));
}

/* ---- the loop ---- */

static void history_open(void) {
  const char *env = getenv("CHAI_HISTORY");
  const char *home = getenv("HOME");
  if (env) {
    if (*env) history_path = strdup(env);
  } else if (home && *home) {
    size_t n = strlen(home) + sizeof "/.chai_history";
    history_path = malloc(n);
    if (history_path) snprintf(history_path, n, "%s/.chai_history", home);
  }
  using_history();
  stifle_history(HISTORY_LINES);
  if (history_path) read_history(history_path); /* a missing or unreadable file is not an error */
}

static void history_close(void) {
  if (history_path) {
    write_history(history_path); /* failures ignored: history is a convenience */
    free(history_path);
    history_path = NULL;
  }
  clear_history();
}

/* `chai = require "chai"` for the session; a failure is reported and the REPL goes on. */
static void load_chai(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "chai");
  int status = chai_cli_docall(L, 1, 1);
  if (status == LUA_OK)
    lua_setglobal(L, "chai");
  else
    chai_cli_report(L, status);
}

void chai_cli_repl(lua_State *L) {
  tty = isatty(STDIN_FILENO);
  const char *oldprogname = chai_cli_progname;
  chai_cli_progname = NULL; /* no "chai:" prefix on errors typed at the prompt */
  if (tty) {
    rl_readline_name = "chai";
    rl_catch_signals = 0; /* our handler, so Ctrl-C abandons the line instead of killing chai */
    history_open();
    printf("chai %s (%s)  chai = require \"chai\"; Ctrl-C stops a chunk, Ctrl-D exits\n",
           chai_version(), LUA_RELEASE);
    fflush(stdout);
  }
  prompt_signals();
  load_chai(L);
  int status;
  while ((status = loadline(L)) != -1) {
    if (status == -2) continue; /* Ctrl-C at the prompt: a fresh prompt */
    if (status == LUA_OK) status = chai_cli_docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      print_results(L);
    else
      chai_cli_report(L, status);
  }
  lua_settop(L, 0);
  if (tty) {
    fputc('\n', stdout);
    history_close();
  }
  fflush(stdout);
  signal(SIGINT, SIG_DFL);
  chai_cli_progname = oldprogname;
}
