/* The Hub client's settings: $HF_ENDPOINT, the token (HF_TOKEN, $HF_TOKEN_PATH, $HF_HOME/token),
 * the cache root, HF_HUB_OFFLINE and the timeouts, as huggingface_hub reads them. */
#include <ctype.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "hub_internal.h"

int hub_env_true(const char *name) {
  const char *v = getenv(name);
  if (!v) return 0;
  static const char *yes[] = {"1", "on", "yes", "true"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
    if (strcasecmp(v, yes[i]) == 0) return 1;
  return 0;
}

/* ~ → $HOME (or the password database), as os.path.expanduser does for a leading "~/". */
static chai_status expand_home(const char *in, char *out, size_t cap) {
  if (in[0] != '~' || (in[1] != '/' && in[1] != 0)) return hub_path(out, cap, "%s", in);
  const char *home = getenv("HOME");
  if (!home || !*home) {
    struct passwd *pw = getpwuid(getuid());
    home = pw ? pw->pw_dir : NULL;
  }
  if (!home) return chai_error(CHAI_ERR_IO, "cannot expand '%s': HOME is not set", in);
  return hub_path(out, cap, "%s%s", home, in + 1);
}

/* $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface */
static chai_status hf_home(char *out, size_t cap) {
  const char *v = getenv("HF_HOME");
  if (v && *v) return expand_home(v, out, cap);
  v = getenv("XDG_CACHE_HOME");
  char tmp[CHAI_HUB_PATH_MAX];
  if (v && *v) {
    chai_status st = hub_path(tmp, sizeof tmp, "%s/huggingface", v);
    return st ? st : expand_home(tmp, out, cap);
  }
  return expand_home("~/.cache/huggingface", out, cap);
}

chai_status chai_hub_cache_dir(const chai_hub_opts *opts, char *out, size_t cap) {
  if (!out || cap == 0) return chai_error(CHAI_ERR_ARG, "chai_hub_cache_dir: no output buffer");
  if (opts && opts->cache_dir && *opts->cache_dir) return expand_home(opts->cache_dir, out, cap);
  const char *v = getenv("HF_HUB_CACHE");
  if (v && *v) return expand_home(v, out, cap);
  char home[CHAI_HUB_PATH_MAX];
  chai_status st = hf_home(home, sizeof home);
  return st ? st : hub_path(out, cap, "%s/hub", home);
}

static void trim(char *s) {
  size_t n = strlen(s), a = 0;
  while (n > 0 && isspace((unsigned char)s[n - 1]))
    s[--n] = 0;
  while (s[a] && isspace((unsigned char)s[a]))
    a++;
  memmove(s, s + a, n - a + 1);
}

/* A token goes into a header line: refuse control characters rather than send them. */
static chai_status token_checked(char *tok, size_t cap, const char *src, char *out) {
  trim(tok);
  for (const char *p = tok; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return chai_error(CHAI_ERR_ARG, "the token from %s contains a control character", src);
  if (strlen(tok) >= cap) return chai_error(CHAI_ERR_ARG, "the token from %s is too long", src);
  strcpy(out, tok);
  return CHAI_OK;
}

chai_status chai_hub_token(char *out, size_t cap) {
  if (!out || cap == 0) return chai_error(CHAI_ERR_ARG, "chai_hub_token: no output buffer");
  out[0] = 0;
  char buf[4096];
  const char *v = getenv("HF_TOKEN");
  if (v && *v) {
    if (strlen(v) >= sizeof buf) return chai_error(CHAI_ERR_ARG, "HF_TOKEN is too long");
    strcpy(buf, v);
    trim(buf);
    if (*buf) return token_checked(buf, cap, "HF_TOKEN", out);
  }
  /* huggingface_hub: HF_TOKEN_PATH replaces $HF_HOME/token, it is not tried before it */
  char path[CHAI_HUB_PATH_MAX];
  chai_status st;
  v = getenv("HF_TOKEN_PATH");
  if (v && *v) {
    st = expand_home(v, path, sizeof path);
  } else {
    char home[CHAI_HUB_PATH_MAX];
    st = hf_home(home, sizeof home);
    if (!st) st = hub_path(path, sizeof path, "%s/token", home);
  }
  if (st) return st;
  FILE *f = fopen(path, "r");
  if (!f) return CHAI_OK; /* no token file: anonymous */
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return token_checked(buf, cap, path, out);
}

static long env_ms(const char *name, long dflt) {
  const char *v = getenv(name);
  if (!v || !*v) return dflt;
  char *end;
  double s = strtod(v, &end);
  if (end == v || s <= 0 || s > 1e6) return dflt;
  return (long)(s * 1000 + 0.5);
}

chai_status hub_env_load(hub_env *e, const chai_hub_opts *opts) {
  memset(e, 0, sizeof *e);
  const char *ep =
      opts && opts->endpoint && *opts->endpoint ? opts->endpoint : getenv("HF_ENDPOINT");
  if (!ep || !*ep) ep = "https://huggingface.co";
  if (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)
    return chai_error(CHAI_ERR_ARG, "Hub endpoint '%s' is not an http:// or https:// URL", ep);
  chai_status st = hub_path(e->endpoint, sizeof e->endpoint, "%s", ep);
  if (st) return st;
  size_t n = strlen(e->endpoint);
  while (n > 8 && e->endpoint[n - 1] == '/')
    e->endpoint[--n] = 0;
  if (opts && opts->token) {
    char tmp[sizeof e->token];
    st = hub_path(tmp, sizeof tmp, "%s", opts->token);
    if (!st) st = token_checked(tmp, sizeof e->token, "the token option", e->token);
  } else {
    st = chai_hub_token(e->token, sizeof e->token);
  }
  if (st) return st;
  e->offline = (opts && opts->offline) || hub_env_true("HF_HUB_OFFLINE");
  e->progress = !(opts && opts->quiet) && !hub_env_true("HF_HUB_DISABLE_PROGRESS_BARS") &&
                isatty(STDERR_FILENO);
  e->etag_timeout_ms = env_ms("HF_HUB_ETAG_TIMEOUT", 10000);
  e->download_timeout_ms = env_ms("HF_HUB_DOWNLOAD_TIMEOUT", 10000);
  return CHAI_OK;
}
