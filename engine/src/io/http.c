/* HTTP for the Hub client (libcurl): settings from the environment, the token, a HEAD for file
 * metadata, a resumable GET into a partial file with a progress bar, and chai_http_fetch/get for
 * JSON APIs. */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chai/chai.h"
#include "hub_internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void) {
  curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static chai_status curl_ready(void) {
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_result != CURLE_OK)
    return chai_error(CHAI_ERR_NETWORK, "libcurl failed to initialise: %s",
                      curl_easy_strerror(curl_init_result));
  return CHAI_OK;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- environment and token */

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

/* ---------------------------------------------------------------- response headers */

typedef struct resp {
  char commit[64], xetag[160], etag[160], error_code[64], error_message[256], range[128];
  char location[HUB_URL_MAX];
  long long xsize, clen;
} resp;

static void resp_reset(resp *r) {
  memset(r, 0, sizeof *r);
  r->xsize = r->clen = -1;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(dst, v, n);
  dst[n] = 0;
}

/* Keeps the headers of the latest response only: a followed redirect starts a new set. */
static size_t on_header(char *buf, size_t size, size_t nitems, void *ud) {
  resp *r = ud;
  size_t len = size * nitems;
  if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
    resp_reset(r);
    return len;
  }
  const char *colon = memchr(buf, ':', len);
  if (!colon) return len;
  size_t name_len = (size_t)(colon - buf);
  const char *v = colon + 1, *end = buf + len;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
    end--;
  size_t vn = (size_t)(end - v);
#define IS(name) (name_len == sizeof(name) - 1 && strncasecmp(buf, name, name_len) == 0)
  if (IS("X-Repo-Commit"))
    copy_value(r->commit, sizeof r->commit, v, vn);
  else if (IS("X-Linked-Etag"))
    copy_value(r->xetag, sizeof r->xetag, v, vn);
  else if (IS("ETag"))
    copy_value(r->etag, sizeof r->etag, v, vn);
  else if (IS("Location"))
    copy_value(r->location, sizeof r->location, v, vn);
  else if (IS("X-Error-Code"))
    copy_value(r->error_code, sizeof r->error_code, v, vn);
  else if (IS("X-Error-Message"))
    copy_value(r->error_message, sizeof r->error_message, v, vn);
  else if (IS("Content-Range"))
    copy_value(r->range, sizeof r->range, v, vn);
  else if (IS("X-Linked-Size") || IS("Content-Length")) {
    char num[32];
    copy_value(num, sizeof num, v, vn);
    char *e;
    long long x = strtoll(num, &e, 10);
    if (e != num && x >= 0) *(IS("X-Linked-Size") ? &r->xsize : &r->clen) = x;
  }
#undef IS
  return len;
}

/* W/"abc" → abc */
static void normalise_etag(char *dst, size_t cap, const char *src) {
  if (strncmp(src, "W/", 2) == 0) src += 2;
  size_t n = strlen(src);
  if (n >= 2 && src[0] == '"' && src[n - 1] == '"') src++, n -= 2;
  copy_value(dst, cap, src, n);
}

/* ---------------------------------------------------------------- curl handles */

static CURL *new_handle(const hub_env *e, const char *url, struct curl_slist **hdrs,
                        const char *token, resp *r) {
  CURL *c = curl_easy_init();
  if (!c) return NULL;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "chai/" CHAI_VERSION_STRING " (Hub client; libcurl)");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, e->download_timeout_ms);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (token && *token) {
    char line[1100];
    snprintf(line, sizeof line, "Authorization: Bearer %s", token);
    *hdrs = curl_slist_append(*hdrs, line);
  }
  return c;
}

/* ---------------------------------------------------------------- errors */

chai_status hub_http_status_error(long status, const char *url, const char *what, int had_token,
                                  const char *detail) {
  const char *sep = detail && *detail ? ": " : "";
  if (!detail) detail = "";
  if (status == 401)
    return chai_error(CHAI_ERR_NETWORK, "HTTP 401 Unauthorized for %s (%s)%s%s. %s", what, url, sep,
                      detail,
                      had_token ? "The token was not accepted, or it has no access to this repo "
                                  "(check HF_TOKEN or $HF_HOME/token)"
                                : "The repo may be private or gated, or not exist; set HF_TOKEN "
                                  "to an access token (or write it to $HF_HOME/token)");
  if (status == 403)
    return chai_error(CHAI_ERR_NETWORK, "HTTP 403 Forbidden for %s (%s)%s%s. %s", what, url, sep,
                      detail,
                      had_token ? "The token in HF_TOKEN has no access (for a gated repo, accept "
                                  "its terms on the Hub first)"
                                : "Access needs a token: set HF_TOKEN (gated repos also need "
                                  "their terms accepted on the Hub)");
  if (status == 404)
    return chai_error(CHAI_ERR_NETWORK, "HTTP 404 Not Found: %s (%s)%s%s", what, url, sep, detail);
  if (status == 429)
    return chai_error(CHAI_ERR_NETWORK,
                      "HTTP 429 Too Many Requests for %s (%s)%s%s; wait and retry", what, url, sep,
                      detail);
  return chai_error(CHAI_ERR_NETWORK, "HTTP %ld for %s (%s)%s%s", status, what, url, sep, detail);
}

/* ---------------------------------------------------------------- HEAD */

chai_status hub_http_head(const hub_env *e, const char *url, hub_head *h) {
  chai_status st = curl_ready();
  if (st) return st;
  memset(h, 0, sizeof *h);
  h->size = -1;
  resp r;
  resp_reset(&r);
  struct curl_slist *hdrs = NULL;
  CURL *c = new_handle(e, url, &hdrs, e->token, &r);
  if (!c) return chai_error(CHAI_ERR_NOMEM, "curl_easy_init failed");
  /* identity: the ETag and Content-Length must describe the raw bytes, not a gzip of them */
  hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, e->etag_timeout_ms);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode res = curl_easy_perform(c);
  if (res == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &h->status);
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  if (res != CURLE_OK)
    return chai_error(CHAI_ERR_NETWORK, "cannot reach %s: %s", url,
                      *errbuf ? errbuf : curl_easy_strerror(res));
  copy_value(h->commit, sizeof h->commit, r.commit, strlen(r.commit));
  normalise_etag(h->etag, sizeof h->etag, *r.xetag ? r.xetag : r.etag);
  h->size = r.xsize >= 0 ? r.xsize : r.clen;
  copy_value(h->location, sizeof h->location, r.location, strlen(r.location));
  copy_value(h->error_code, sizeof h->error_code, r.error_code, strlen(r.error_code));
  copy_value(h->error_message, sizeof h->error_message, r.error_message, strlen(r.error_message));
  return CHAI_OK;
}

/* ---------------------------------------------------------------- progress bar */

static void human(char *out, size_t cap, double b) {
  static const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4)
    b /= 1000, u++;
  if (u == 0)
    snprintf(out, cap, "%.0f %s", b, unit[u]);
  else
    snprintf(out, cap, "%.1f %s", b, unit[u]);
}

static void clock_text(char *out, size_t cap, double s) {
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

void hub_progress_format(char *buf, size_t cap, const char *label, long long done, long long total,
                         double rate, int finished) {
  char d[32], t[32], r[32], eta[32] = "";
  const char *base = strrchr(label, '/');
  base = base ? base + 1 : label;
  human(d, sizeof d, (double)done);
  human(r, sizeof r, rate);
  if (total > 0) {
    human(t, sizeof t, (double)total);
    double pct = 100.0 * (double)done / (double)total;
    if (finished)
      snprintf(eta, sizeof eta, "done");
    else if (rate > 0) {
      char c[24];
      clock_text(c, sizeof c, (double)(total - done) / rate);
      snprintf(eta, sizeof eta, "ETA %s", c);
    } else
      snprintf(eta, sizeof eta, "ETA --:--");
    snprintf(buf, cap, "%-24.24s %3.0f%% %9s / %-9s %9s/s  %s", base, pct > 100 ? 100 : pct, d, t,
             r, eta);
  } else {
    snprintf(buf, cap, "%-24.24s %9s  %9s/s%s", base, d, r, finished ? "  done" : "");
  }
}

/* ---------------------------------------------------------------- resumable GET */

typedef struct dl {
  int fd;
  long long have;   /* bytes in the partial file */
  long long expect; /* announced size or -1 */
  int hashing;
  chai_sha256 sha;
  CURL *c;
  resp *r;
  int started;
  long code;
  chai_status failed; /* our callback aborted the transfer with this status; message set */
  char body[1024];    /* the start of an error reply */
  size_t body_len;
  long long got; /* bytes received in this call, over all attempts */
  /* progress */
  int progress, drawn;
  const char *label;
  double t0, last_draw;
  /* stall detection: libcurl's low-speed check averages over seconds, so after a burst it takes
   * far longer than the timeout to notice silence; we time the gap since the last byte instead */
  double last_data;
  long stall_ms;
  int stalled;
  int bad_range; /* a 206 that does not start where the file ends */
} dl;

static void draw(dl *d, int finished) {
  double t = now_seconds();
  if (!finished && t - d->last_draw < 0.1) return;
  d->last_draw = t;
  double rate = t > d->t0 ? (double)d->got / (t - d->t0) : 0;
  char line[200];
  hub_progress_format(line, sizeof line, d->label, d->have, d->expect, rate, finished);
  fprintf(stderr, "\r%s", line);
  if (finished) fputc('\n', stderr);
  fflush(stderr);
  d->drawn = 1;
}

static chai_status restart(dl *d) {
  if (ftruncate(d->fd, 0) != 0 || lseek(d->fd, 0, SEEK_SET) != 0)
    return chai_error(CHAI_ERR_IO, "cannot truncate the partial download: %s", strerror(errno));
  d->have = 0;
  chai_sha256_init(&d->sha);
  return CHAI_OK;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  dl *d = ud;
  size_t n = size * nmemb;
  if (!d->started) {
    d->started = 1;
    curl_easy_getinfo(d->c, CURLINFO_RESPONSE_CODE, &d->code);
    if (d->code == 206) {
      long long a = -1;
      if (sscanf(d->r->range, "bytes %lld-", &a) != 1 || a != d->have) {
        d->bad_range = 1; /* not the continuation we asked for: the caller starts over */
        snprintf(d->body, sizeof d->body, "%.200s", d->r->range);
        return 0;
      }
    } else if (d->code == 200 && d->have > 0) {
      /* the server ignored Range: start over */
      if ((d->failed = restart(d))) return 0;
    }
  }
  if (d->code != 200 && d->code != 206) {
    size_t take = n < sizeof d->body - 1 - d->body_len ? n : sizeof d->body - 1 - d->body_len;
    memcpy(d->body + d->body_len, ptr, take);
    d->body_len += take;
    d->body[d->body_len] = 0;
    return n;
  }
  for (size_t off = 0; off < n;) {
    ssize_t w = write(d->fd, ptr + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      d->failed = chai_error(CHAI_ERR_IO, "cannot write the download: %s", strerror(errno));
      return 0;
    }
    off += (size_t)w;
  }
  if (d->hashing) chai_sha256_update(&d->sha, ptr, n);
  d->last_data = now_seconds();
  d->have += (long long)n;
  d->got += (long long)n;
  return n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  dl *d = ud;
  if (chai_interrupted()) return 1;
  if ((now_seconds() - d->last_data) * 1000 > d->stall_ms) {
    d->stalled = 1;
    return 1;
  }
  if (d->progress && d->started && (d->code == 200 || d->code == 206)) draw(d, 0);
  return 0;
}

/* Hashes the first d->have bytes already in the file. */
static chai_status hash_prefix(dl *d) {
  unsigned char buf[1 << 16];
  long long off = 0;
  while (off < d->have) {
    size_t want = d->have - off < (long long)sizeof buf ? (size_t)(d->have - off) : sizeof buf;
    ssize_t n = pread(d->fd, buf, want, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return chai_error(CHAI_ERR_IO, "cannot read the partial download: %s",
                        n < 0 ? strerror(errno) : "short file");
    chai_sha256_update(&d->sha, buf, (size_t)n);
    off += n;
  }
  return CHAI_OK;
}

/* One GET from d->have on. Returns the curl result; d->code is the final status. */
static CURLcode transfer(const hub_env *e, const char *url, dl *d, char *errbuf) {
  resp r;
  resp_reset(&r);
  struct curl_slist *hdrs = NULL;
  CURL *c = new_handle(e, url, &hdrs, e->token, &r);
  if (!c) return CURLE_OUT_OF_MEMORY;
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  /* follows the 302 to the CDN; libcurl drops the Authorization header set here when the redirect
   * goes to another host or port (CURLOPT_UNRESTRICTED_AUTH stays off) */
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  char range[48];
  if (d->have > 0) {
    snprintf(range, sizeof range, "%lld-", d->have);
    curl_easy_setopt(c, CURLOPT_RANGE, range);
  }
  d->c = c;
  d->r = &r;
  d->started = 0;
  d->code = 0;
  d->stalled = 0;
  d->bad_range = 0;
  d->stall_ms = e->download_timeout_ms;
  d->last_data = now_seconds();
  d->body_len = 0;
  d->body[0] = 0;
  errbuf[0] = 0;
  CURLcode res = curl_easy_perform(c);
  if (!d->started) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &d->code);
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  d->c = NULL;
  d->r = NULL;
  return res;
}

chai_status hub_http_download(const hub_env *e, const char *url, const char *part, long long expect,
                              const char *label, char *sha_hex, long long *bytes) {
  chai_status st = curl_ready();
  if (st) return st;
  dl d;
  memset(&d, 0, sizeof d);
  d.fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (d.fd < 0) return chai_error(CHAI_ERR_IO, "cannot open '%s': %s", part, strerror(errno));
  struct stat sb;
  if (fstat(d.fd, &sb) != 0) {
    st = chai_error(CHAI_ERR_IO, "cannot stat '%s': %s", part, strerror(errno));
    goto done;
  }
  d.have = sb.st_size;
  d.expect = expect;
  d.hashing = sha_hex != NULL;
  d.progress = e->progress;
  d.label = label;
  d.t0 = now_seconds();
  chai_sha256_init(&d.sha);
  if (expect >= 0 && d.have > expect && (st = restart(&d))) goto done;
  if (lseek(d.fd, 0, SEEK_END) < 0) {
    st = chai_error(CHAI_ERR_IO, "cannot seek '%s': %s", part, strerror(errno));
    goto done;
  }
  if (d.hashing && (st = hash_prefix(&d))) goto done;

  int restarted = 0;
  for (int attempt = 0;; attempt++) {
    if (expect >= 0 && d.have == expect) break; /* an earlier run got every byte */
    long long before = d.got;
    char errbuf[CURL_ERROR_SIZE];
    d.failed = CHAI_OK;
    CURLcode res = transfer(e, url, &d, errbuf);
    if (d.failed) {
      st = d.failed;
      goto done;
    }
    if (d.bad_range && !restarted) {
      restarted = 1;
      if ((st = restart(&d))) goto done;
      continue;
    }
    if (d.bad_range) {
      st = chai_error(CHAI_ERR_NETWORK,
                      "%s: the server does not resume where asked (Content-Range '%s' for byte "
                      "%lld)",
                      url, d.body, d.have);
      goto done;
    }
    if (res == CURLE_ABORTED_BY_CALLBACK && d.stalled) {
      res = CURLE_OPERATION_TIMEDOUT;
      snprintf(errbuf, sizeof errbuf, "no data for %.1f s (HF_HUB_DOWNLOAD_TIMEOUT)",
               e->download_timeout_ms / 1000.0);
    } else if (res == CURLE_ABORTED_BY_CALLBACK && chai_interrupted()) {
      st = chai_error(CHAI_ERR_INTERRUPTED,
                      "download of %s interrupted after %lld bytes; '%s' is kept and the next "
                      "download resumes from it",
                      label, d.have, part);
      goto done;
    }
    if (res == CURLE_OUT_OF_MEMORY) {
      st = chai_error(CHAI_ERR_NOMEM, "out of memory setting up a download");
      goto done;
    }
    if (res != CURLE_OK) {
      /* a cut or stalled transfer: resume at once while it keeps making progress */
      if (d.got > before && attempt < 4) {
        struct timespec ts = {0, 20000000L << attempt};
        nanosleep(&ts, NULL);
        continue;
      }
      char have[32], want[32] = "?";
      snprintf(have, sizeof have, "%lld", d.have);
      if (expect >= 0) snprintf(want, sizeof want, "%lld", expect);
      st = chai_error(CHAI_ERR_NETWORK,
                      "downloading %s from %s failed after %s of %s bytes: %s; the partial file "
                      "'%s' is kept and the next download resumes from it",
                      label, url, have, want, *errbuf ? errbuf : curl_easy_strerror(res), part);
      goto done;
    }
    if (d.code == 416 && d.have > 0 && !restarted) {
      /* our partial file is not a prefix the server can continue: start over */
      restarted = 1;
      if ((st = restart(&d))) goto done;
      continue;
    }
    if (d.code != 200 && d.code != 206) {
      st = hub_http_status_error(d.code, url, label, *e->token != 0, d.body);
      goto done;
    }
    if (d.code == 200 && !d.started && d.have > 0 && (st = restart(&d))) goto done;
    break;
  }
  if (expect >= 0 && d.have != expect) {
    unlink(part);
    st = chai_error(CHAI_ERR_FORMAT,
                    "size mismatch for %s: the Hub announced %lld bytes, the download has %lld; "
                    "the download was deleted",
                    label, expect, d.have);
    goto done;
  }
  if (d.progress) draw(&d, 1);
  if (d.hashing) chai_sha256_final_hex(&d.sha, sha_hex);
  if (bytes) *bytes = d.have;
  st = CHAI_OK;
done:
  if (st && d.drawn) fputc('\n', stderr);
  if (fsync(d.fd) != 0 && st == CHAI_OK)
    st = chai_error(CHAI_ERR_IO, "cannot flush '%s': %s", part, strerror(errno));
  close(d.fd);
  return st;
}

/* ---------------------------------------------------------------- chai_http_fetch / get */

typedef struct buf {
  char *p;
  size_t n, cap;
  int too_big;
  double last_data;
  long stall_ms;
  int stalled;
} buf;

#define HTTP_BODY_MAX ((size_t)1 << 30)

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
  buf *b = ud;
  size_t n = size * nmemb;
  b->last_data = now_seconds();
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1)
      cap *= 2;
    if (cap > HTTP_BODY_MAX) {
      b->too_big = 1;
      return 0;
    }
    char *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->n, ptr, n);
  b->n += n;
  b->p[b->n] = 0;
  return n;
}

/* "scheme://host[:port]" of a URL into out (lowercase host), "" if it has none. */
static void url_origin(const char *url, char *out, size_t cap) {
  out[0] = 0;
  const char *p = strstr(url, "://");
  if (!p) return;
  p += 3;
  const char *at = NULL, *q = p;
  for (; *q && *q != '/' && *q != '?' && *q != '#'; q++)
    if (*q == '@') at = q;
  if (at) {
    /* keep the scheme, drop user:password@ */
    size_t sl = (size_t)(strstr(url, "://") - url) + 3;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%.*s%.*s", (int)sl, url, (int)(q - at - 1), at + 1);
    snprintf(out, cap, "%s", tmp);
  } else {
    snprintf(out, cap, "%.*s", (int)(q - url), url);
  }
  for (char *c = out; *c; c++)
    *c = (char)tolower((unsigned char)*c);
}

static int host_is_hf(const char *origin) {
  if (strncmp(origin, "https://", 8) != 0) return 0;
  const char *h = origin + 8;
  static const char *dom[] = {"huggingface.co", "hf.co"};
  for (int i = 0; i < 2; i++) {
    size_t hl = strlen(h), dn = strlen(dom[i]);
    if (hl == dn && strcmp(h, dom[i]) == 0) return 1;
    if (hl > dn && strcmp(h + hl - dn, dom[i]) == 0 && h[hl - dn - 1] == '.') return 1;
  }
  return 0;
}

static int token_allowed(const hub_env *e, const char *url) {
  char a[512], b[512];
  url_origin(url, a, sizeof a);
  url_origin(e->endpoint, b, sizeof b);
  return *a && (strcmp(a, b) == 0 || host_is_hf(a));
}

static int on_body_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow) {
  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  buf *b = ud;
  if ((now_seconds() - b->last_data) * 1000 > b->stall_ms) b->stalled = 1;
  return chai_interrupted() || b->stalled;
}

static chai_status http_fetch(const char *url, const char *const *headers, char **body, size_t *len,
                              long *status, int *sent_token) {
  if (body) *body = NULL;
  if (len) *len = 0;
  if (status) *status = 0;
  if (!url || !body) return chai_error(CHAI_ERR_ARG, "chai_http_fetch: url and body are required");
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
    return chai_error(CHAI_ERR_ARG, "'%s' is not an http:// or https:// URL", url);
  hub_env e;
  chai_status st = hub_env_load(&e, NULL);
  if (st) return st;
  if (e.offline)
    return chai_error(CHAI_ERR_NETWORK, "offline mode (HF_HUB_OFFLINE is set): not fetching %s",
                      url);
  if ((st = curl_ready())) return st;
  int has_auth = 0;
  for (const char *const *h = headers; h && *h; h++)
    if (strncasecmp(*h, "Authorization:", 14) == 0) has_auth = 1;
  resp r;
  resp_reset(&r);
  struct curl_slist *hdrs = NULL;
  int send_token = !has_auth && *e.token && token_allowed(&e, url);
  *sent_token = send_token || has_auth;
  CURL *c = new_handle(&e, url, &hdrs, send_token ? e.token : NULL, &r);
  if (!c) return chai_error(CHAI_ERR_NOMEM, "curl_easy_init failed");
  for (const char *const *h = headers; h && *h; h++) {
    if (strpbrk(*h, "\r\n")) {
      curl_easy_cleanup(c);
      curl_slist_free_all(hdrs);
      return chai_error(CHAI_ERR_ARG, "HTTP header '%.60s' contains a line break", *h);
    }
    hdrs = curl_slist_append(hdrs, *h);
  }
  buf b = {0};
  b.last_data = now_seconds();
  b.stall_ms = e.download_timeout_ms;
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* JSON compresses well: take gzip */
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_body_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &b);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode res = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  if (res != CURLE_OK) {
    free(b.p);
    if (res == CURLE_ABORTED_BY_CALLBACK && b.stalled)
      return chai_error(CHAI_ERR_NETWORK,
                        "GET %s failed: no data for %.1f s "
                        "(HF_HUB_DOWNLOAD_TIMEOUT)",
                        url, e.download_timeout_ms / 1000.0);
    if (res == CURLE_ABORTED_BY_CALLBACK && chai_interrupted())
      return chai_error(CHAI_ERR_INTERRUPTED, "GET %s interrupted", url);
    if (b.too_big)
      return chai_error(CHAI_ERR_NETWORK, "GET %s: the reply is larger than %zu bytes", url,
                        HTTP_BODY_MAX);
    return chai_error(CHAI_ERR_NETWORK, "GET %s failed: %s", url,
                      *errbuf ? errbuf : curl_easy_strerror(res));
  }
  if (!b.p) {
    b.p = malloc(1);
    if (!b.p) return chai_error(CHAI_ERR_NOMEM, "out of memory for an empty reply");
    b.p[0] = 0;
  }
  *body = b.p;
  if (len) *len = b.n;
  if (status) *status = code;
  return CHAI_OK;
}

chai_status chai_http_fetch(const char *url, const char *const *headers, char **body, size_t *len,
                            long *status) {
  int sent_token;
  return http_fetch(url, headers, body, len, status, &sent_token);
}

/* The "error" field of a JSON error reply, else its first line (up to 200 bytes). */
static void error_detail(const char *body, char *out, size_t cap) {
  out[0] = 0;
  if (!body) return;
  const char *p = strstr(body, "\"error\"");
  if (p && (p = strchr(p + 7, ':')) && (p = strchr(p, '"'))) {
    const char *q = ++p;
    while (*q && *q != '"')
      q += (*q == '\\' && q[1]) ? 2 : 1;
    snprintf(out, cap, "%.*s", (int)(q - p > 200 ? 200 : q - p), p);
    return;
  }
  size_t n = strcspn(body, "\r\n");
  snprintf(out, cap, "%.*s", (int)(n > 200 ? 200 : n), body);
}

chai_status chai_http_get(const char *url, const char *const *headers, char **body, size_t *len) {
  long code;
  int sent_token = 0;
  chai_status st = http_fetch(url, headers, body, len, &code, &sent_token);
  if (st) return st;
  if (code >= 200 && code < 300) return CHAI_OK;
  char detail[256];
  error_detail(*body, detail, sizeof detail);
  free(*body);
  *body = NULL;
  if (len) *len = 0;
  return hub_http_status_error(code, url, "GET", sent_token, detail);
}
