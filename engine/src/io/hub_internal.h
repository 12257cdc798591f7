/* Shared between the Hub client's files: hub.c (the fetch procedure), hub_cache.c (the cache layout
 * on disk), hub_env.c (environment and token), http.c (libcurl handles, headers, HEAD, errors),
 * hub_download.c (the resumable blob GET and progress bar) and http_get.c. Not a public API. */
#ifndef CHAI_HUB_INTERNAL_H
#define CHAI_HUB_INTERNAL_H

#include <curl/curl.h>
#include <stdio.h>

#include "chai/hub.h"
#include "chai/sha256.h"

#define HUB_URL_MAX 8192

/* ---- settings from opts + environment (hub_env.c) ---- */
typedef struct hub_env {
  char endpoint[1024];      /* no trailing '/' */
  char token[1024];         /* "" when none */
  int offline;              /* cache only */
  int progress;             /* draw a progress bar (stderr is a terminal, not disabled) */
  long etag_timeout_ms;     /* the whole metadata request */
  long download_timeout_ms; /* connect, and the longest stall mid-transfer */
} hub_env;

chai_status hub_env_load(hub_env *e, const chai_hub_opts *opts);
/* 1 when the string means "true" the way huggingface_hub reads flags (1, ON, YES, TRUE). */
int hub_env_true(const char *name);

/* ---- a repo inside the cache (hub_cache.c) ---- */
typedef struct hub_repo {
  char id[256];                   /* org/name */
  const char *type;               /* "model" | "dataset" | "space" */
  const char *url_prefix;         /* "" | "datasets/" | "spaces/" */
  char revision[256];             /* as given; "main" by default */
  char cache[CHAI_HUB_PATH_MAX];  /* the cache root */
  char folder_name[300];          /* models--org--name */
  char folder[CHAI_HUB_PATH_MAX]; /* cache/folder_name */
} hub_repo;

chai_status hub_repo_init(hub_repo *r, const char *repo, const chai_hub_opts *opts);
chai_status hub_check_filename(const char *filename);
int hub_is_commit(const char *s);
/* etag: one path component of [0-9A-Za-z._-], not "." or ".." */
int hub_is_safe_etag(const char *s);
/* snprintf that fails with CHAI_ERR_ARG instead of truncating */
chai_status hub_path(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
chai_status hub_mkdirs(const char *dir);
/* The commit of `revision`: itself if 40 hex, else refs/<revision>. CHAI_ERR_IO when unknown. */
chai_status hub_ref_resolve(const hub_repo *r, char commit[41]);
chai_status hub_ref_write(const hub_repo *r, const char *commit);
/* snapshots/<commit>/<filename> into out; exists: 1 when it resolves to an existing file. */
chai_status hub_snapshot_path(const hub_repo *r, const char *commit, const char *filename,
                              char *out, size_t cap, int *exists);
/* Points snapshots/<commit>/<filename> at ../../blobs/<etag> (one more ../ per '/' in filename),
 * replacing whatever was there atomically. */
chai_status hub_snapshot_link(const hub_repo *r, const char *commit, const char *filename,
                              const char *etag);
chai_status hub_mark_missing(const hub_repo *r, const char *commit, const char *filename);
int hub_is_marked_missing(const hub_repo *r, const char *commit, const char *filename);
/* Takes the blob's flock (waiting for another holder; interruptible); *fd receives the lock. */
chai_status hub_lock(const hub_repo *r, const char *etag, int quiet, int *fd);
void hub_unlock(int fd);

/* ---- HTTP (http.c) ---- */
/* curl_global_init once per process; CHAI_ERR_NETWORK if it failed. */
chai_status hub_curl_ready(void);
/* monotonic seconds */
double hub_now(void);

/* The headers of the latest response (a followed redirect starts a new set). */
typedef struct hub_resp {
  char commit[64], xetag[160], etag[160], error_code[64], error_message[256], range[128];
  char location[HUB_URL_MAX];
  long long xsize, clen; /* -1 when absent */
} hub_resp;
void hub_resp_reset(hub_resp *r);
size_t hub_on_header(char *buf, size_t size, size_t nitems, void *ud);

/* A handle for `url` with chai's user agent, http(s) only, the connect timeout, headers collected
 * into *r and, when token is non-empty, "Authorization: Bearer" appended to *hdrs (which the caller
 * sets as CURLOPT_HTTPHEADER and frees). NULL when curl cannot allocate. */
CURL *hub_curl_new(const hub_env *e, const char *url, struct curl_slist **hdrs, const char *token,
                   hub_resp *r);

typedef struct hub_head {
  long status;
  char commit[64];
  char etag[160]; /* X-Linked-Etag, else ETag; W/ and quotes stripped */
  long long size; /* X-Linked-Size, else Content-Length; -1 unknown */
  char location[HUB_URL_MAX];
  char error_code[64]; /* X-Error-Code */
  char error_message[256];
} hub_head;

/* HEAD without following redirects. CHAI_ERR_NETWORK with curl's message when no reply came. */
chai_status hub_http_head(const hub_env *e, const char *url, hub_head *h);

/* "401 Unauthorized"-style message for an HTTP failure; `what` names the request's object. */
chai_status hub_http_status_error(long status, const char *url, const char *what, int had_token,
                                  const char *detail);

/* ---- the blob download (hub_download.c) ---- */
/* GET `url` (following redirects) into the file `part`, resuming from its current length with a
 * Range request, restarting from 0 when the server ignores the range. Retries transport failures
 * that made progress. When `sha_hex` is non-NULL it receives the sha256 of the whole file.
 * `expect` is the size announced by the metadata (-1 unknown); a finished file of another size is
 * CHAI_ERR_FORMAT and is deleted. On transport failure or interrupt `part` stays for a resume. */
chai_status hub_http_download(const hub_env *e, const char *url, const char *part, long long expect,
                              const char *label, char *sha_hex, long long *bytes);

/* The progress line (no "\r"), e.g. "model.bin  42% 105.4 MB / 251.0 MB  12.3 MB/s  ETA 0:12". */
void hub_progress_format(char *buf, size_t cap, const char *label, long long done, long long total,
                         double rate, int finished);

#endif
