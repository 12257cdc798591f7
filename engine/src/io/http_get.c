/* chai_http_fetch / chai_http_get: a GET for JSON APIs (the datasets-server /rows client), with
 * the Hub token sent only to Hugging Face hosts and $HF_ENDPOINT. */
#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chai/chai.h"
#include "hub_internal.h"

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
  b->last_data = hub_now();
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
  if ((hub_now() - b->last_data) * 1000 > b->stall_ms) b->stalled = 1;
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
  if ((st = hub_curl_ready())) return st;
  int has_auth = 0;
  for (const char *const *h = headers; h && *h; h++)
    if (strncasecmp(*h, "Authorization:", 14) == 0) has_auth = 1;
  hub_resp r;
  hub_resp_reset(&r);
  struct curl_slist *hdrs = NULL;
  int send_token = !has_auth && *e.token && token_allowed(&e, url);
  *sent_token = send_token || has_auth;
  CURL *c = hub_curl_new(&e, url, &hdrs, send_token ? e.token : NULL, &r);
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
  b.last_data = hub_now();
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
