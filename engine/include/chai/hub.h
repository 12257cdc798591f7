/* chai — the Hugging Face Hub client: downloads into the huggingface_hub cache layout (so Python
 * tools and chai share files), and a small HTTP GET for JSON APIs such as the datasets-server.
 *
 * Environment (the names huggingface_hub uses; an explicit chai_hub_opts field wins over each):
 *   HF_ENDPOINT        base URL, default https://huggingface.co
 *   HF_TOKEN           access token; else the file $HF_TOKEN_PATH; else $HF_HOME/token
 *   HF_HOME            default $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
 *   HF_HUB_CACHE       cache root, default $HF_HOME/hub
 *   HF_HUB_OFFLINE     1/true/yes/on: never touch the network, answer from the cache only
 *   HF_HUB_ETAG_TIMEOUT     seconds for the metadata request (default 10)
 *   HF_HUB_DOWNLOAD_TIMEOUT seconds to connect, and the longest stall allowed mid-transfer (10)
 *   HF_HUB_DISABLE_PROGRESS_BARS  1: no progress bar (it is drawn only when stderr is a terminal)
 *
 * Cache layout under the root (see docs/hub.md):
 *   {models|datasets|spaces}--{org}--{name}/blobs/{etag}      the bytes (sha256 for LFS files)
 *                                         /refs/{revision}    the commit a branch/tag pointed at
 *                                         /snapshots/{commit}/{path} -> ../../blobs/{etag}
 *                                         /.no_exist/{commit}/{path}  empty: a 404 seen online
 *   .locks/{repo folder}/{etag}.lock     flock()ed while a blob is written (as filelock does)
 *
 * Thread safety: the functions may run on several threads at once; two processes (or threads) that
 * download the same blob serialise on its lock file and the second one reuses the first's blob. */
#ifndef CHAI_HUB_H
#define CHAI_HUB_H

#include <stddef.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHAI_HUB_PATH_MAX 4096

/* Per-call options; a zeroed struct (or a NULL pointer) means "as the environment says". */
typedef struct chai_hub_opts {
  const char *repo_type; /* "model" (NULL), "dataset" or "space" */
  const char *revision;  /* branch, tag, "refs/pr/N" or a 40-hex commit; NULL: "main" */
  const char *endpoint;  /* NULL: $HF_ENDPOINT, else https://huggingface.co */
  const char *cache_dir; /* NULL: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub */
  const char *token;     /* NULL: looked up as described above; "": send no token */
  int offline;           /* 1: cache only; 0: $HF_HUB_OFFLINE decides */
  int quiet;             /* 1: no progress bar even when stderr is a terminal */
} chai_hub_opts;

/* What chai_hub_fetch found. */
typedef struct chai_hub_file {
  char path[CHAI_HUB_PATH_MAX]; /* <cache>/<repo folder>/snapshots/<commit>/<filename> */
  char commit[41];              /* the commit the revision resolved to */
  char etag[129];               /* the blob id; "" when answered offline from the snapshot */
  long long size;               /* bytes of the file */
  int cached;                   /* 1: nothing was downloaded */
  int missing; /* after a failure, what the Hub said does not exist (chai_hub_missing); lets
                  callers skip optional files (CHAI_HUB_MISSING_FILE) */
} chai_hub_file;

/* chai_hub_file.missing */
enum chai_hub_missing {
  CHAI_HUB_FOUND = 0,            /* no such answer (success, or another failure) */
  CHAI_HUB_MISSING_FILE = 1,     /* 404 for the file at an existing commit, or a .no_exist marker */
  CHAI_HUB_MISSING_REVISION = 2, /* the branch, tag or commit does not exist */
  CHAI_HUB_MISSING_REPO = 3,     /* the repo does not exist (or is private and no token was sent) */
};

/* Makes `filename` of `repo` ("org/name", or a legacy "name") at opts->revision available in the
 * cache and fills `out`. Online: a HEAD on
 * {endpoint}/[datasets/|spaces/]{repo}/resolve/{rev}/{file} (redirects not followed; X-Repo-Commit,
 * X-Linked-Etag|ETag, X-Linked-Size|Content-Length), then unless the blob is cached a GET that
 * follows redirects (the token is not sent to another host), written to blobs/{etag}.incomplete,
 * resumed with a Range request when that file exists, checked against the etag when the etag is a
 * sha256 (LFS), renamed into place under the blob's lock; then refs/{rev} and the relative snapshot
 * symlink. If the Hub cannot be reached at all, a snapshot already in the cache for that revision
 * is used. Offline: resolves the revision from refs/ (or uses a 40-hex commit) and returns the
 * snapshot entry. Fails with CHAI_ERR_ARG (a bad repo id, filename, repo_type or revision, naming
 * it), CHAI_ERR_NETWORK (no connection: curl's message; HTTP 401/403: mentions HF_TOKEN; 404: names
 * the repo, revision and file, and sets out->missing), CHAI_ERR_IO (offline and not cached: names
 * what is missing, out->missing set when a .no_exist marker says so; or a cache write failed),
 * CHAI_ERR_FORMAT (checksum or size mismatch: names both values, the bad bytes are deleted; or a
 * reply without Hub headers), CHAI_ERR_INTERRUPTED (chai_interrupt() during a transfer). A cut or
 * interrupted transfer leaves blobs/{etag}.incomplete for the next call to resume. */
chai_status chai_hub_fetch(const char *repo, const char *filename, const chai_hub_opts *opts,
                           chai_hub_file *out);

/* chai_hub_fetch with only the environment's settings: writes the snapshot path (NUL-terminated)
 * into path_out[path_cap]. repo_type and revision may be NULL ("model", "main"). Same failures,
 * plus CHAI_ERR_ARG when the path does not fit. */
chai_status chai_hub_download(const char *repo, const char *repo_type, const char *revision,
                              const char *filename, char *path_out, size_t path_cap);

/* The snapshot folder <cache>/<repo folder>/snapshots/<commit> of opts->revision, resolved from
 * the cache only (refs/<revision>, or the revision itself when it is a 40-hex commit); it exists
 * once a file of that revision was fetched. No network. CHAI_ERR_IO naming the repo and revision
 * when the cache does not know the revision; CHAI_ERR_ARG on bad names or a too small buffer. */
chai_status chai_hub_snapshot_dir(const char *repo, const chai_hub_opts *opts, char *dir_out,
                                  size_t cap);

/* The cache root (opts->cache_dir or the environment's), without creating it. */
chai_status chai_hub_cache_dir(const chai_hub_opts *opts, char *out, size_t cap);

/* The repo's folder name in the cache: "models--org--name" (repo_type NULL or "model"),
 * "datasets--org--name", "spaces--org--name". CHAI_ERR_ARG for a bad id or type. */
chai_status chai_hub_repo_folder(const char *repo, const char *repo_type, char *out, size_t cap);

/* The token from the environment (HF_TOKEN, the file $HF_TOKEN_PATH, $HF_HOME/token), surrounding
 * whitespace removed; "" when there is none. CHAI_ERR_ARG when it does not fit. */
chai_status chai_hub_token(char *out, size_t cap);

/* GET `url` following redirects. `headers` is NULL or a NULL-terminated list of "Name: value"
 * lines. "Authorization: Bearer <token>" is added (unless `headers` has an Authorization line) when
 * a token is set and the URL's host is huggingface.co, hf.co, one of their subdomains, or the
 * host:port of $HF_ENDPOINT. On success *body is a malloc'ed, NUL-terminated buffer of *len bytes
 * (len may be NULL) that the caller frees with free(); *status is the final HTTP status.
 * Fails only when no HTTP reply arrived: CHAI_ERR_NETWORK with curl's message (or, with
 * HF_HUB_OFFLINE set, naming the URL it refused to fetch); *body is NULL then. */
chai_status chai_http_fetch(const char *url, const char *const *headers, char **body, size_t *len,
                            long *status);

/* chai_http_fetch that also fails (CHAI_ERR_NETWORK, *body NULL) on a non-2xx status; the message
 * names the status, the URL and the start of the reply's body ("error" field for JSON); 401/403
 * mention HF_TOKEN. */
chai_status chai_http_get(const char *url, const char *const *headers, char **body, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
