/* Durable writes for result files (chai/file.h): a record appended whole or not at all, and files
 * replaced through a temporary and rename(), each fsynced before the call returns. */
#include "chai/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chai/memory.h"

/* Bytes the testing hook still lets through; negative = no limit. */
static atomic_long write_budget = -1;

void chai_file_fail_after(long bytes) {
  atomic_store(&write_budget, bytes < 0 ? -1 : bytes);
}

/* write(2) under the testing hook: a call that reaches the limit writes what fits, the next fails
 * with ENOSPC. */
static ssize_t write_some(int fd, const char *buf, size_t n) {
  long budget = atomic_load(&write_budget);
  if (budget >= 0) {
    if (budget == 0) {
      errno = ENOSPC;
      return -1;
    }
    if ((size_t)budget < n) n = (size_t)budget;
  }
  ssize_t w = write(fd, buf, n);
  if (w > 0 && budget >= 0) atomic_fetch_sub(&write_budget, (long)w);
  return w;
}

/* Writes all `len` bytes; 0, or -1 with errno set. */
static int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t w = write_some(fd, p, len);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (w == 0) {
      errno = EIO;
      return -1;
    }
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

chai_status chai_file_append(const char *path, const void *data, size_t len) {
  if (!path || (!data && len)) return chai_error(CHAI_ERR_ARG, "chai_file_append: NULL argument");
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    return chai_error(CHAI_ERR_IO, "cannot open %s for appending: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return chai_error(CHAI_ERR_IO, "cannot read the length of %s: %s", path, strerror(e));
  }
  if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
    int e = errno;
    /* Cut back what this call wrote, so the file ends where it ended before the call. */
    int cut = ftruncate(fd, st.st_size);
    int cut_errno = errno;
    close(fd);
    if (cut != 0)
      return chai_error(CHAI_ERR_IO,
                        "cannot append to %s: %s; cutting the partial record back to %lld bytes "
                        "failed too: %s",
                        path, strerror(e), (long long)st.st_size, strerror(cut_errno));
    return chai_error(CHAI_ERR_IO, "cannot append to %s: %s (the file keeps its %lld bytes)", path,
                      strerror(e), (long long)st.st_size);
  }
  if (close(fd) != 0) return chai_error(CHAI_ERR_IO, "cannot close %s: %s", path, strerror(errno));
  return CHAI_OK;
}

/* fsync of the folder holding `path`, so a rename in it is durable. Folders that cannot be synced
 * (some file systems refuse with EINVAL) are not an error. */
static void sync_folder(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 0;
  char dir[4096];
  if (n == 0) {
    snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
  } else {
    if (n >= sizeof dir) return;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

chai_status chai_file_replace(const char *path, const void *data, size_t len) {
  if (!path || (!data && len)) return chai_error(CHAI_ERR_ARG, "chai_file_replace: NULL argument");
  size_t n = strlen(path) + 5;
  char *tmp = chai_alloc(n, "temporary file name");
  if (!tmp) return CHAI_ERR_NOMEM;
  snprintf(tmp, n, "%s.tmp", path);
  chai_status st = CHAI_OK;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    st = chai_error(CHAI_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
  } else if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    st = chai_error(CHAI_ERR_IO, "cannot write %s: %s (%s is unchanged)", tmp, strerror(e), path);
  } else if (close(fd) != 0) {
    int e = errno;
    unlink(tmp);
    st = chai_error(CHAI_ERR_IO, "cannot write %s: %s (%s is unchanged)", tmp, strerror(e), path);
  } else if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    st = chai_error(CHAI_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(e));
  } else {
    sync_folder(path);
  }
  chai_free(tmp, n);
  return st;
}
