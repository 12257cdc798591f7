/* HTTP for the Hub client (libcurl): one-time initialisation, new handles with the token and
 * timeouts, the response headers the Hub sends, the metadata HEAD, and HTTP error messages. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chai/chai.h"
#include "hub_internal.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void) {
  curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

chai_status hub_curl_ready(void) {
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_result != CURLE_OK)
    return chai_error(CHAI_ERR_NETWORK, "libcurl failed to initialise: %s",
                      curl_easy_strerror(curl_init_result));
  return CHAI_OK;
}

double hub_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- response headers */

void hub_resp_reset(hub_resp *r) {
  memset(r, 0, sizeof *r);
  r->xsize = r->clen = -1;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(dst, v, n);
  dst[n] = 0;
}

/* Keeps the headers of the latest response only: a followed redirect starts a new set. */
size_t hub_on_header(char *buf, size_t size, size_t nitems, void *ud) {
  hub_resp *r = ud;
  size_t len = size * nitems;
  if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
    hub_resp_reset(r);
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

CURL *hub_curl_new(const hub_env *e, const char *url, struct curl_slist **hdrs, const char *token,
                   hub_resp *r) {
  CURL *c = curl_easy_init();
  if (!c) return NULL;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "chai/" CHAI_VERSION_STRING " (Hub client; libcurl)");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, e->download_timeout_ms);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, hub_on_header);
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
  chai_status st = hub_curl_ready();
  if (st) return st;
  memset(h, 0, sizeof *h);
  h->size = -1;
  hub_resp r;
  hub_resp_reset(&r);
  struct curl_slist *hdrs = NULL;
  CURL *c = hub_curl_new(e, url, &hdrs, e->token, &r);
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
