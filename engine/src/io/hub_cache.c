/* The huggingface_hub cache layout on disk (huggingface/hub-docs local-cache.md):
 *   <cache>/{models|datasets|spaces}--{org}--{name}/{blobs,refs,snapshots,.no_exist}
 *   <cache>/.locks/{repo folder}/{etag}.lock
 * Names are checked before they become paths, so nothing a repo id, revision, filename or server
 * header says can reach outside the repo's folder. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hub_internal.h"

chai_status hub_path(char *out, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, cap, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= cap)
    return chai_error(CHAI_ERR_ARG, "path too long (%d bytes, at most %zu): '%.80s...'", n, cap - 1,
                      out);
  return CHAI_OK;
}

chai_status hub_mkdirs(const char *dir) {
  char p[CHAI_HUB_PATH_MAX];
  chai_status st = hub_path(p, sizeof p, "%s", dir);
  if (st) return st;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == 0) {
      char c = *s;
      *s = 0;
      if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return chai_error(CHAI_ERR_IO, "cannot create the folder '%s': %s", p, strerror(errno));
      *s = c;
      if (!c) break;
    }
  }
  struct stat sb;
  if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return chai_error(CHAI_ERR_IO, "'%s' is not a folder", p);
  return CHAI_OK;
}

/* mkdir -p of the folder that will hold `path` */
static chai_status mkdirs_parent(const char *path) {
  char d[CHAI_HUB_PATH_MAX];
  chai_status st = hub_path(d, sizeof d, "%s", path);
  if (st) return st;
  char *slash = strrchr(d, '/');
  if (!slash || slash == d) return CHAI_OK;
  *slash = 0;
  return hub_mkdirs(d);
}

int hub_is_commit(const char *s) {
  if (strlen(s) != 40) return 0;
  for (int i = 0; i < 40; i++)
    if (!isxdigit((unsigned char)s[i])) return 0;
  return 1;
}

static int name_char(char c) {
  return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

int hub_is_safe_etag(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 128 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!name_char(s[i])) return 0;
  return 1;
}

/* The Hub's rule for repo ids: [org/]name of [A-Za-z0-9_.-], 1..96 characters a part, no "--" or
 * ".." and no '-'/'.' at either end of a part. */
static chai_status check_repo_id(const char *id) {
  if (!id || !*id) return chai_error(CHAI_ERR_ARG, "empty repo id (expected \"org/name\")");
  const char *slash = strchr(id, '/');
  if (slash && strchr(slash + 1, '/'))
    return chai_error(CHAI_ERR_ARG, "repo id '%s' has more than one '/' (expected \"org/name\")",
                      id);
  const char *parts[2] = {id, slash ? slash + 1 : NULL};
  size_t lens[2] = {slash ? (size_t)(slash - id) : strlen(id), slash ? strlen(slash + 1) : 0};
  for (int k = 0; k < (slash ? 2 : 1); k++) {
    const char *p = parts[k];
    size_t n = lens[k];
    if (n == 0 || n > 96)
      return chai_error(CHAI_ERR_ARG, "repo id '%s': each part must have 1 to 96 characters", id);
    for (size_t i = 0; i < n; i++) {
      if (!name_char(p[i]))
        return chai_error(CHAI_ERR_ARG,
                          "repo id '%s' has the character '%c' (allowed: letters, digits, - _ .)",
                          id, p[i]);
      if (i + 1 < n && ((p[i] == '-' && p[i + 1] == '-') || (p[i] == '.' && p[i + 1] == '.')))
        return chai_error(CHAI_ERR_ARG, "repo id '%s' may not contain '--' or '..'", id);
    }
    if (p[0] == '-' || p[0] == '.' || p[n - 1] == '-' || p[n - 1] == '.')
      return chai_error(CHAI_ERR_ARG, "repo id '%s' may not start or end a part with '-' or '.'",
                        id);
  }
  return CHAI_OK;
}

/* A relative path of non-empty components, none "." or "..", no control characters or '\\'. */
static chai_status check_rel_path(const char *what, const char *s, size_t max) {
  if (!s || !*s) return chai_error(CHAI_ERR_ARG, "empty %s", what);
  size_t n = strlen(s);
  if (n > max) return chai_error(CHAI_ERR_ARG, "%s '%.60s...' is too long", what, s);
  if (s[0] == '/') return chai_error(CHAI_ERR_ARG, "%s '%s' must be relative", what, s);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || s[i] == '\\')
      return chai_error(CHAI_ERR_ARG, "%s '%s' has a control character or '\\'", what, s);
  for (const char *p = s; *p;) {
    size_t k = strcspn(p, "/");
    if (k == 0 || (k == 1 && p[0] == '.') || (k == 2 && p[0] == '.' && p[1] == '.'))
      return chai_error(CHAI_ERR_ARG, "%s '%s' has an empty, '.' or '..' component", what, s);
    p += k;
    if (*p == '/') p++;
    if (*p == 0 && p[-1] == '/') return chai_error(CHAI_ERR_ARG, "%s '%s' ends with '/'", what, s);
  }
  return CHAI_OK;
}

chai_status hub_check_filename(const char *filename) {
  return check_rel_path("filename", filename, 1000);
}

static chai_status repo_kind(const char *type, const char **folder, const char **url) {
  if (!type || !*type || strcmp(type, "model") == 0)
    *folder = "models", *url = "";
  else if (strcmp(type, "dataset") == 0)
    *folder = "datasets", *url = "datasets/";
  else if (strcmp(type, "space") == 0)
    *folder = "spaces", *url = "spaces/";
  else
    return chai_error(CHAI_ERR_ARG, "repo_type '%s' is not \"model\", \"dataset\" or \"space\"",
                      type);
  return CHAI_OK;
}

chai_status chai_hub_repo_folder(const char *repo, const char *repo_type, char *out, size_t cap) {
  const char *folder = NULL, *url = NULL;
  chai_status st = repo_kind(repo_type, &folder, &url);
  if (st || (st = check_repo_id(repo))) return st;
  const char *slash = strchr(repo, '/');
  if (!slash) return hub_path(out, cap, "%s--%s", folder, repo);
  return hub_path(out, cap, "%s--%.*s--%s", folder, (int)(slash - repo), repo, slash + 1);
}

chai_status hub_repo_init(hub_repo *r, const char *repo, const chai_hub_opts *opts) {
  memset(r, 0, sizeof *r);
  const char *folder = NULL, *url = NULL;
  chai_status st = repo_kind(opts ? opts->repo_type : NULL, &folder, &url);
  if (st || (st = chai_hub_repo_folder(repo, opts ? opts->repo_type : NULL, r->folder_name,
                                       sizeof r->folder_name)))
    return st;
  strcpy(r->id, repo); /* checked: at most 96+1+96 characters */
  r->type = folder[0] == 'm' ? "model" : folder[0] == 'd' ? "dataset" : "space";
  r->url_prefix = url;
  const char *rev = opts && opts->revision && *opts->revision ? opts->revision : "main";
  if ((st = check_rel_path("revision", rev, 200))) return st;
  strcpy(r->revision, rev);
  if ((st = chai_hub_cache_dir(opts, r->cache, sizeof r->cache))) return st;
  return hub_path(r->folder, sizeof r->folder, "%s/%s", r->cache, r->folder_name);
}

chai_status hub_ref_resolve(const hub_repo *r, char commit[41]) {
  if (hub_is_commit(r->revision)) {
    strcpy(commit, r->revision);
    return CHAI_OK;
  }
  char p[CHAI_HUB_PATH_MAX];
  chai_status st = hub_path(p, sizeof p, "%s/refs/%s", r->folder, r->revision);
  if (st) return st;
  FILE *f = fopen(p, "r");
  if (!f)
    return chai_error(CHAI_ERR_IO, "%s repo '%s' has no cached revision '%s' (no %s)", r->type,
                      r->id, r->revision, p);
  char buf[64] = "";
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  buf[strcspn(buf, " \t\r\n")] = 0;
  if (!hub_is_commit(buf))
    return chai_error(CHAI_ERR_FORMAT, "'%s' does not hold a 40-hex commit", p);
  strcpy(commit, buf);
  return CHAI_OK;
}

/* Writes `data` to `path` through a temporary file and rename(), so readers never see half. */
static chai_status write_atomic(const char *path, const char *data) {
  char tmp[CHAI_HUB_PATH_MAX];
  chai_status st = hub_path(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
  if (st || (st = mkdirs_parent(path))) return st;
  FILE *f = fopen(tmp, "w");
  if (!f) return chai_error(CHAI_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
  int bad = fputs(data, f) < 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    int err = errno;
    unlink(tmp);
    return chai_error(CHAI_ERR_IO, "cannot write '%s': %s", path, strerror(err));
  }
  return CHAI_OK;
}

chai_status hub_ref_write(const hub_repo *r, const char *commit) {
  if (hub_is_commit(r->revision)) return CHAI_OK;
  char p[CHAI_HUB_PATH_MAX], cur[41];
  chai_status st = hub_path(p, sizeof p, "%s/refs/%s", r->folder, r->revision);
  if (st) return st;
  if (hub_ref_resolve(r, cur) == CHAI_OK && strcmp(cur, commit) == 0) return CHAI_OK;
  return write_atomic(p, commit); /* no newline, as huggingface_hub writes it */
}

chai_status hub_snapshot_path(const hub_repo *r, const char *commit, const char *filename,
                              char *out, size_t cap, int *exists) {
  chai_status st = hub_path(out, cap, "%s/snapshots/%s/%s", r->folder, commit, filename);
  if (st) return st;
  struct stat sb;
  if (exists) *exists = stat(out, &sb) == 0 && S_ISREG(sb.st_mode);
  return CHAI_OK;
}

chai_status hub_snapshot_link(const hub_repo *r, const char *commit, const char *filename,
                              const char *etag) {
  char link[CHAI_HUB_PATH_MAX], tmp[CHAI_HUB_PATH_MAX], target[CHAI_HUB_PATH_MAX];
  chai_status st = hub_snapshot_path(r, commit, filename, link, sizeof link, NULL);
  if (st || (st = mkdirs_parent(link))) return st;
  /* from snapshots/<commit>/<a/b/file> back up to the repo folder: 2 levels + one per '/' */
  size_t n = 0;
  int ups = 2;
  for (const char *p = filename; *p; p++)
    ups += *p == '/';
  for (int i = 0; i < ups; i++) {
    if (n + 3 >= sizeof target)
      return chai_error(CHAI_ERR_ARG, "filename '%s' is too deep", filename);
    memcpy(target + n, "../", 3);
    n += 3;
  }
  target[n] = 0;
  if ((st = hub_path(target + n, sizeof target - n, "blobs/%s", etag))) return st;
  char cur[CHAI_HUB_PATH_MAX];
  ssize_t k = readlink(link, cur, sizeof cur - 1);
  if (k >= 0) {
    cur[k] = 0;
    if (strcmp(cur, target) == 0) return CHAI_OK;
  }
  static _Atomic long counter;
  if ((st = hub_path(tmp, sizeof tmp, "%s.%ld.%ld.tmplink", link, (long)getpid(), ++counter)))
    return st;
  unlink(tmp);
  if (symlink(target, tmp) != 0)
    return chai_error(CHAI_ERR_IO, "cannot create the symlink '%s' -> '%s': %s", tmp, target,
                      strerror(errno));
  if (rename(tmp, link) != 0) {
    int err = errno;
    unlink(tmp);
    return chai_error(CHAI_ERR_IO, "cannot place the symlink '%s': %s", link, strerror(err));
  }
  return CHAI_OK;
}

chai_status hub_mark_missing(const hub_repo *r, const char *commit, const char *filename) {
  char p[CHAI_HUB_PATH_MAX];
  chai_status st = hub_path(p, sizeof p, "%s/.no_exist/%s/%s", r->folder, commit, filename);
  if (st || (st = mkdirs_parent(p))) return st;
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return chai_error(CHAI_ERR_IO, "cannot create '%s': %s", p, strerror(errno));
  close(fd);
  return CHAI_OK;
}

int hub_is_marked_missing(const hub_repo *r, const char *commit, const char *filename) {
  char p[CHAI_HUB_PATH_MAX];
  struct stat sb;
  return hub_path(p, sizeof p, "%s/.no_exist/%s/%s", r->folder, commit, filename) == CHAI_OK &&
         stat(p, &sb) == 0;
}

chai_status hub_lock(const hub_repo *r, const char *etag, int quiet, int *fd_out) {
  char p[CHAI_HUB_PATH_MAX];
  chai_status st = hub_path(p, sizeof p, "%s/.locks/%s/%s.lock", r->cache, r->folder_name, etag);
  if (st || (st = mkdirs_parent(p))) return st;
  int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return chai_error(CHAI_ERR_IO, "cannot open the lock '%s': %s", p, strerror(errno));
  /* poll rather than block, so Ctrl-C (chai_interrupt) still gets through */
  for (long waited_ms = 0;; waited_ms += 50) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int err = errno;
      close(fd);
      return chai_error(CHAI_ERR_IO, "cannot lock '%s': %s", p, strerror(err));
    }
    if (chai_interrupted()) {
      close(fd);
      return chai_error(CHAI_ERR_INTERRUPTED, "interrupted while waiting for the lock '%s'", p);
    }
    if (waited_ms == 2000 && !quiet && isatty(STDERR_FILENO))
      fprintf(stderr, "waiting for another process to finish downloading into %s/blobs/%s\n",
              r->folder, etag);
    struct timespec ts = {0, 50000000L};
    nanosleep(&ts, NULL);
  }
  *fd_out = fd;
  return CHAI_OK;
}

void hub_unlock(int fd) {
  if (fd < 0) return;
  flock(fd, LOCK_UN);
  close(fd);
}

chai_status chai_hub_snapshot_dir(const char *repo, const chai_hub_opts *opts, char *dir_out,
                                  size_t cap) {
  if (!dir_out || cap == 0) return chai_error(CHAI_ERR_ARG, "chai_hub_snapshot_dir: no buffer");
  hub_repo r;
  char commit[41];
  chai_status st = hub_repo_init(&r, repo, opts);
  if (st || (st = hub_ref_resolve(&r, commit))) return st;
  char dir[CHAI_HUB_PATH_MAX];
  if ((st = hub_path(dir, sizeof dir, "%s/snapshots/%s", r.folder, commit))) return st;
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return chai_error(CHAI_ERR_IO, "%s repo '%s' revision '%s': no snapshot folder %s in the cache",
                      r.type, r.id, r.revision, dir);
  return hub_path(dir_out, cap, "%s", dir);
}
