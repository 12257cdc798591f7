/* Where the command finds its Lua files, bundled scripts and C module, so one binary works from a
 * build tree, from an install (<prefix>/bin/chai + <prefix>/share/chai) and under $CHAI_HOME. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#ifndef CHAI_LUA_DIR
#error "CHAI_LUA_DIR must be defined by lua/CMakeLists.txt"
#endif

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

/* The folder holding the running executable (symlinks resolved), or "" when /proc is missing. */
static const char *exe_dir(void) {
  static char dir[PATH_MAX];
  static int done;
  if (!done) {
    done = 1;
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) n = 0;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash)
      *slash = '\0';
    else
      dir[0] = '\0';
  }
  return dir;
}

/* A malloc'd "a/b" (or NULL when `a` is NULL or empty). */
static char *join(const char *a, const char *b) {
  if (!a || !*a) return NULL;
  size_t n = strlen(a) + strlen(b) + 2;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s/%s", a, b);
  return s;
}

/* The first candidate for which `exists` holds on candidate/<probe> (probe "" = the folder itself),
 * canonicalised; `fallback` when none does. Owned by the caller of resolve (kept until exit). */
static const char *resolve(char *const cand[], int n, const char *probe,
                           int (*exists)(const char *), const char *fallback) {
  const char *found = NULL;
  for (int i = 0; i < n && !found; i++) {
    if (!cand[i]) continue;
    char *p = *probe ? join(cand[i], probe) : strdup(cand[i]);
    if (p && exists(p)) found = realpath(cand[i], NULL);
    free(p);
  }
  for (int i = 0; i < n; i++)
    free(cand[i]);
  return found ? found : fallback;
}

/* $CHAI_HOME/<sub>, <exe dir>/../share/chai/<sub>, then `fallback`; a candidate must hold `probe`.
 */
static const char *resolve_share(const char *sub, const char *probe, int (*exists)(const char *),
                                 const char *fallback) {
  char rel[64];
  snprintf(rel, sizeof rel, "../share/chai/%s", sub);
  char *cand[2] = {join(getenv("CHAI_HOME"), sub), join(exe_dir(), rel)};
  return resolve(cand, 2, probe, exists, fallback);
}

/* A Lua folder counts only when it holds the chai module, so a stray lua/ folder is skipped. */
const char *chai_cli_lua_dir(void) {
  static const char *dir;
  if (!dir) dir = resolve_share("lua", "chai/init.lua", is_file, CHAI_LUA_DIR);
  return dir;
}

const char *chai_cli_scripts_dir(void) {
  static const char *dir;
  if (!dir) dir = resolve_share("scripts", "", is_dir, CHAI_SCRIPTS_DIR);
  return dir;
}

const char *chai_cli_module_dir(void) {
  static const char *dir;
  if (!dir) {
    char *cand[2] = {join(exe_dir(), "lua"), join(exe_dir(), "../lib/lua/5.4")};
    dir = resolve(cand, 2, "chai/core.so", is_file, CHAI_MODULE_DIR);
  }
  return dir;
}

char *chai_cli_find_script(const char *name) {
  if (is_file(name)) return strdup(name);
  if (name[0] == '/') return NULL;
  char *p = join(chai_cli_scripts_dir(), name);
  if (p && is_file(p)) return p;
  free(p);
  return NULL;
}
