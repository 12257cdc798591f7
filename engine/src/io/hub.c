/* chai_hub_fetch: one file of a Hub repo into the shared cache, the way huggingface_hub's
 * hf_hub_download does it (metadata HEAD, blob by etag under a lock, refs, relative symlink). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub_internal.h"

/* Percent-encodes everything outside RFC 3986's unreserved set and `safe`. */
static chai_status url_quote(char *out, size_t cap, const char *s, const char *safe) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
               strchr("-._~", *p) || (*p && strchr(safe, *p));
    if (n + (keep ? 1 : 3) >= cap) return chai_error(CHAI_ERR_ARG, "URL too long for '%.60s'", s);
    if (keep) {
      out[n++] = (char)*p;
    } else {
      out[n++] = '%';
      out[n++] = hex[*p >> 4];
      out[n++] = hex[*p & 15];
    }
  }
  out[n] = 0;
  return CHAI_OK;
}

static chai_status resolve_url(const hub_env *e, const hub_repo *r, const char *revision,
                               const char *filename, char *out, size_t cap) {
  char rev[800], file[3100];
  chai_status st = url_quote(rev, sizeof rev, revision, ""); /* refs/pr/1 -> refs%2Fpr%2F1 */
  if (st || (st = url_quote(file, sizeof file, filename, "/"))) return st;
  return hub_path(out, cap, "%s/%s%s/resolve/%s/%s", e->endpoint, r->url_prefix, r->id, rev, file);
}

/* The snapshot entry of the cached revision, if any: fills out and sets *found. */
static void from_cache(const hub_repo *r, const char *filename, chai_hub_file *out, int *found) {
  *found = 0;
  char commit[41];
  int exists = 0;
  if (hub_ref_resolve(r, commit) != CHAI_OK ||
      hub_snapshot_path(r, commit, filename, out->path, sizeof out->path, &exists) != CHAI_OK ||
      !exists)
    return;
  strcpy(out->commit, commit);
  struct stat sb;
  if (stat(out->path, &sb) == 0) out->size = (long long)sb.st_size;
  char target[CHAI_HUB_PATH_MAX];
  ssize_t k = readlink(out->path, target, sizeof target - 1);
  out->etag[0] = 0;
  if (k > 0) {
    target[k] = 0;
    const char *base = strrchr(target, '/');
    base = base ? base + 1 : target;
    if (hub_is_safe_etag(base)) snprintf(out->etag, sizeof out->etag, "%.128s", base);
  }
  out->cached = 1;
  *found = 1;
}

static chai_status offline_fetch(const hub_repo *r, const char *filename, chai_hub_file *out) {
  char commit[41];
  if (hub_ref_resolve(r, commit) != CHAI_OK)
    return chai_error(CHAI_ERR_IO,
                      "offline mode (HF_HUB_OFFLINE): %s repo '%s' at revision '%s' is not in the "
                      "cache %s, so '%s' cannot be found; fetch it once online",
                      r->type, r->id, r->revision, r->cache, filename);
  int found;
  from_cache(r, filename, out, &found);
  if (found) return CHAI_OK;
  if (hub_is_marked_missing(r, commit, filename)) {
    out->missing = CHAI_HUB_MISSING_FILE;
    return chai_error(CHAI_ERR_IO,
                      "offline mode (HF_HUB_OFFLINE): '%s' does not exist in %s repo '%s' at "
                      "revision '%s' (commit %s; the Hub answered 404 earlier)",
                      filename, r->type, r->id, r->revision, commit);
  }
  return chai_error(CHAI_ERR_IO,
                    "offline mode (HF_HUB_OFFLINE): '%s' of %s repo '%s' at revision '%s' "
                    "(commit %s) is not in the cache %s; fetch it once online",
                    filename, r->type, r->id, r->revision, commit, r->cache);
}

/* The metadata HEAD, following relative redirects only (a renamed repo); an absolute Location is
 * the CDN and ends the walk, its headers are the metadata. */
static chai_status head(const hub_env *e, const char *url, hub_head *h) {
  char cur[HUB_URL_MAX];
  chai_status st = hub_path(cur, sizeof cur, "%s", url);
  for (int hops = 0; !st; hops++) {
    if ((st = hub_http_head(e, cur, h))) return st;
    if (h->status < 300 || h->status >= 400 || h->location[0] != '/') return CHAI_OK;
    if (hops == 5) return chai_error(CHAI_ERR_NETWORK, "too many redirects from %s", url);
    const char *host_end = strstr(e->endpoint, "://");
    host_end = host_end ? strchr(host_end + 3, '/') : NULL;
    int origin = host_end ? (int)(host_end - e->endpoint) : (int)strlen(e->endpoint);
    st = hub_path(cur, sizeof cur, "%.*s%s", origin, e->endpoint, h->location);
  }
  return st;
}

static chai_status http_failure(const hub_env *e, const hub_repo *r, const char *filename,
                                const char *url, const hub_head *h, chai_hub_file *out) {
  char what[1400];
  snprintf(what, sizeof what, "'%s' of %s repo '%s' at revision '%s'", filename, r->type, r->id,
           r->revision);
  const char *code = h->error_code;
  int repo_missing = strcmp(code, "RepoNotFound") == 0 || strcmp(code, "RepositoryNotFound") == 0;
  if (repo_missing && h->status == 401) {
    /* the Hub answers 401 both for a private repo without a valid token and for no repo at all
     * (to anonymous callers), so this says nothing certain about existence */
    return hub_http_status_error(401, url, what, *e->token != 0, "repository not found");
  }
  if (h->status == 404 && repo_missing) {
    out->missing = CHAI_HUB_MISSING_REPO;
    return chai_error(CHAI_ERR_NETWORK, "%s repo '%s' not found at %s (HTTP 404, %s)%s", r->type,
                      r->id, e->endpoint, url, *e->token ? "" : "; if it is private, set HF_TOKEN");
  }
  if (h->status == 404 && strcmp(code, "RevisionNotFound") == 0) {
    out->missing = CHAI_HUB_MISSING_REVISION;
    return chai_error(CHAI_ERR_NETWORK, "revision '%s' not found in %s repo '%s' (HTTP 404, %s)",
                      r->revision, r->type, r->id, url);
  }
  if (h->status == 404) {
    if (hub_is_commit(h->commit)) {
      /* the file is missing from an existing commit: remember it, as huggingface_hub does */
      chai_status st = hub_mark_missing(r, h->commit, filename);
      if (!st) st = hub_ref_write(r, h->commit);
      if (st) return st;
    }
    /* EntryNotFound, or a plain 404 from a server that sends no error code */
    out->missing = CHAI_HUB_MISSING_FILE;
    return chai_error(CHAI_ERR_NETWORK,
                      "file '%s' not found in %s repo '%s' at revision '%s' (HTTP 404, %s)",
                      filename, r->type, r->id, r->revision, url);
  }
  return hub_http_status_error(h->status, url, what, *e->token != 0, h->error_message);
}

/* Downloads blobs/<etag> under its lock; *cached says whether another process had already. */
static chai_status fetch_blob(const hub_env *e, const hub_repo *r, const char *url,
                              const char *filename, const hub_head *h, int quiet, int *cached) {
  char blob[CHAI_HUB_PATH_MAX], part[CHAI_HUB_PATH_MAX];
  chai_status st = hub_path(blob, sizeof blob, "%s/blobs/%s", r->folder, h->etag);
  if (st || (st = hub_path(part, sizeof part, "%s.incomplete", blob))) return st;
  struct stat sb;
  *cached = 1;
  if (stat(blob, &sb) == 0 && S_ISREG(sb.st_mode)) return CHAI_OK;
  char dir[CHAI_HUB_PATH_MAX];
  if ((st = hub_path(dir, sizeof dir, "%s/blobs", r->folder)) || (st = hub_mkdirs(dir))) return st;
  int lock = -1;
  if ((st = hub_lock(r, h->etag, quiet, &lock))) return st;
  if (stat(blob, &sb) == 0 && S_ISREG(sb.st_mode)) { /* the lock holder before us got it */
    hub_unlock(lock);
    return CHAI_OK;
  }
  *cached = 0;
  /* an LFS etag is the sha256 of the bytes: check it (git blob ids are sha1 of a header + bytes) */
  int lfs = strlen(h->etag) == 64;
  for (int i = 0; lfs && i < 64; i++)
    lfs = strchr("0123456789abcdefABCDEF", h->etag[i]) != NULL;
  char sha[65], label[1200];
  snprintf(label, sizeof label, "%s/%s", r->id, filename);
  long long bytes = 0;
  st = hub_http_download(e, url, part, h->size, label, lfs ? sha : NULL, &bytes);
  if (!st && lfs && strcasecmp(sha, h->etag) != 0) {
    unlink(part);
    st = chai_error(CHAI_ERR_FORMAT,
                    "checksum mismatch for '%s' of %s repo '%s': the Hub's etag says sha256 %s, "
                    "the %lld downloaded bytes have sha256 %s; the download was deleted",
                    filename, r->type, r->id, h->etag, bytes, sha);
  }
  if (!st && rename(part, blob) != 0)
    st = chai_error(CHAI_ERR_IO, "cannot move '%s' to '%s': %s", part, blob, strerror(errno));
  hub_unlock(lock);
  return st;
}

chai_status chai_hub_fetch(const char *repo, const char *filename, const chai_hub_opts *opts,
                           chai_hub_file *out) {
  if (!out) return chai_error(CHAI_ERR_ARG, "chai_hub_fetch: no output struct");
  memset(out, 0, sizeof *out);
  out->size = -1;
  hub_repo r;
  hub_env e;
  chai_status st = hub_repo_init(&r, repo, opts);
  if (st || (st = hub_check_filename(filename)) || (st = hub_env_load(&e, opts))) return st;
  if (e.offline) return offline_fetch(&r, filename, out);

  char url[HUB_URL_MAX];
  if ((st = resolve_url(&e, &r, r.revision, filename, url, sizeof url))) return st;
  hub_head h;
  st = head(&e, url, &h);
  if (st || h.status >= 500) {
    /* the Hub is unreachable or failing: a cached copy of this revision will do */
    int found;
    char why[1100];
    if (st)
      snprintf(why, sizeof why, "%.1000s", chai_last_error());
    else
      snprintf(why, sizeof why, "HTTP %ld from %.1000s", h.status, url);
    from_cache(&r, filename, out, &found);
    if (found) return CHAI_OK;
    return chai_error(CHAI_ERR_NETWORK,
                      "cannot get '%s' of %s repo '%s' at revision '%s': %s; it is not in the "
                      "cache %s either",
                      filename, r.type, r.id, r.revision, why, r.cache);
  }
  if (h.status >= 400) return http_failure(&e, &r, filename, url, &h, out);
  if (h.status < 200 || h.status >= 400)
    return chai_error(CHAI_ERR_NETWORK, "unexpected HTTP %ld for %s", h.status, url);
  if (!hub_is_commit(h.commit) || !hub_is_safe_etag(h.etag))
    return chai_error(CHAI_ERR_FORMAT,
                      "%s answered without a usable X-Repo-Commit ('%s') or ETag ('%s'); is "
                      "HF_ENDPOINT (%s) a Hugging Face Hub?",
                      url, h.commit, h.etag, e.endpoint);
  if ((st = hub_ref_write(&r, h.commit))) return st;
  strcpy(out->commit, h.commit);
  snprintf(out->etag, sizeof out->etag, "%.128s", h.etag);
  int exists;
  if ((st = hub_snapshot_path(&r, h.commit, filename, out->path, sizeof out->path, &exists)))
    return st;
  char target[CHAI_HUB_PATH_MAX];
  ssize_t k = readlink(out->path, target, sizeof target - 1);
  target[k > 0 ? k : 0] = 0;
  const char *base = strrchr(target, '/');
  /* a snapshot entry of this commit is immutable: trust it if it points at this etag, or if it
   * is a real file (HF_HUB_DISABLE_SYMLINKS caches) */
  if (exists && (k < 0 || (base && strcmp(base + 1, h.etag) == 0))) {
    struct stat sb;
    if (stat(out->path, &sb) == 0) out->size = (long long)sb.st_size;
    out->cached = 1;
    return CHAI_OK;
  }
  char get_url[HUB_URL_MAX];
  if ((st = resolve_url(&e, &r, h.commit, filename, get_url, sizeof get_url))) return st;
  int cached;
  if ((st = fetch_blob(&e, &r, get_url, filename, &h, opts && opts->quiet, &cached)) ||
      (st = hub_snapshot_link(&r, h.commit, filename, h.etag)))
    return st;
  struct stat sb;
  if (stat(out->path, &sb) != 0)
    return chai_error(CHAI_ERR_IO, "'%s' does not resolve after the download: %s", out->path,
                      strerror(errno));
  out->size = (long long)sb.st_size;
  out->cached = cached;
  return CHAI_OK;
}

chai_status chai_hub_download(const char *repo, const char *repo_type, const char *revision,
                              const char *filename, char *path_out, size_t path_cap) {
  if (!path_out || path_cap == 0) return chai_error(CHAI_ERR_ARG, "chai_hub_download: no buffer");
  path_out[0] = 0;
  chai_hub_opts o = {.repo_type = repo_type, .revision = revision};
  chai_hub_file *f = malloc(sizeof *f);
  if (!f) return chai_error(CHAI_ERR_NOMEM, "out of memory");
  chai_status st = chai_hub_fetch(repo, filename, &o, f);
  if (!st) st = hub_path(path_out, path_cap, "%s", f->path);
  free(f);
  return st;
}
