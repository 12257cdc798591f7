/* The safetensors writer. Data is laid out by descending element size (as the safetensors Python
 * package does), which with an 8-byte-padded header keeps every tensor aligned for its dtype while
 * leaving no gaps, which strict readers refuse. The file appears under its name only when complete:
 * it is written to a temporary file in the same folder, synced, then renamed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/ckpt_internal.h"

static const char *const st_names[CHAI_DTYPE_COUNT] = {
    [CHAI_F32] = "F32", [CHAI_F16] = "F16", [CHAI_BF16] = "BF16", [CHAI_I32] = "I32",
    [CHAI_I64] = "I64", [CHAI_I8] = "I8",   [CHAI_U8] = "U8",
};

/* A growing text buffer; `failed` latches out-of-memory. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  bool failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->failed = true;
      return;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) {
  sb_put(b, s, strlen(s));
}

static void sb_fmt(sbuf *b, const char *fmt, unsigned long long v) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, fmt, v);
  sb_put(b, tmp, (size_t)n);
}

/* A JSON string literal. */
static void sb_json(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      char esc[2] = {'\\', (char)*p};
      sb_put(b, esc, 2);
    } else if (*p < 0x20) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      sb_put(b, esc, 6);
    } else {
      sb_put(b, (const char *)p, 1);
    }
  }
  sb_put(b, "\"", 1);
}

static int name_cmp(const void *a, const void *b, void *ctx) {
  const char *const *names = ctx;
  return strcmp(names[*(const int *)a], names[*(const int *)b]);
}

static chai_status check_args(int n, const char *const *names, const chai_tensor *tensors,
                              const char *const *metadata, const char *path) {
  if (!path) return chai_error(CHAI_ERR_ARG, "chai_safetensors_save: path is NULL");
  if (n < 0 || (n > 0 && (!names || !tensors)))
    return chai_error(CHAI_ERR_ARG, "chai_safetensors_save: bad tensor list (n = %d)", n);
  for (int i = 0; i < n; i++) {
    if (!names[i] || !*names[i])
      return chai_error(CHAI_ERR_ARG, "saving %s: tensor %d has an empty name", path, i + 1);
    if (strcmp(names[i], "__metadata__") == 0)
      return chai_error(CHAI_ERR_ARG, "saving %s: \"__metadata__\" is reserved", path);
    if (!chai_tensor_alive(&tensors[i]))
      return chai_error(CHAI_ERR_ARG, "saving %s: tensor '%.200s' is released", path, names[i]);
    if ((unsigned)tensors[i].dtype >= CHAI_DTYPE_COUNT)
      return chai_error(CHAI_ERR_ARG, "saving %s: tensor '%.200s' has a bad dtype", path, names[i]);
  }
  for (const char *const *m = metadata; m && *m; m += 2)
    if (!m[1])
      return chai_error(CHAI_ERR_ARG, "saving %s: metadata key '%.200s' has no value", path, *m);
  return CHAI_OK;
}

static chai_status write_all(FILE *f, const void *p, size_t n, const char *path) {
  if (n && fwrite(p, 1, n, f) != n)
    return chai_error(CHAI_ERR_IO, "writing %s: %s", path, strerror(errno));
  return CHAI_OK;
}

static chai_status write_body(FILE *f, const char *path, int n, const char *const *names,
                              const chai_tensor *tensors, const char *const *metadata,
                              const int *layout) {
  /* Offsets follow the layout order; the header lists tensors in the caller's order. */
  uint64_t *begin = n ? malloc((size_t)n * sizeof *begin) : NULL;
  if (n && !begin) return chai_error(CHAI_ERR_NOMEM, "saving %s: out of memory", path);
  uint64_t at = 0;
  for (int k = 0; k < n; k++) {
    begin[layout[k]] = at;
    at += chai_tensor_nbytes(&tensors[layout[k]]);
  }
  sbuf h = {0};
  sb_put(&h, "{", 1);
  if (metadata && metadata[0]) {
    sb_str(&h, "\"__metadata__\":{");
    for (const char *const *m = metadata; *m; m += 2) {
      if (m != metadata) sb_put(&h, ",", 1);
      sb_json(&h, m[0]);
      sb_put(&h, ":", 1);
      sb_json(&h, m[1]);
    }
    sb_put(&h, "}", 1);
  }
  for (int i = 0; i < n; i++) {
    const chai_tensor *t = &tensors[i];
    if (i || (metadata && metadata[0])) sb_put(&h, ",", 1);
    sb_json(&h, names[i]);
    sb_str(&h, ":{\"dtype\":\"");
    sb_str(&h, st_names[t->dtype]);
    sb_str(&h, "\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++)
      sb_fmt(&h, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
    sb_fmt(&h, "],\"data_offsets\":[%llu,", begin[i]);
    sb_fmt(&h, "%llu]}", begin[i] + chai_tensor_nbytes(t));
  }
  sb_put(&h, "}", 1);
  while (!h.failed && h.n % 8)
    sb_put(&h, " ", 1);
  free(begin);
  if (h.failed) {
    free(h.p);
    return chai_error(CHAI_ERR_NOMEM, "saving %s: out of memory", path);
  }
  uint8_t len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
  chai_status st = write_all(f, len, 8, path);
  if (!st) st = write_all(f, h.p, h.n, path);
  free(h.p);
  for (int k = 0; k < n && !st; k++) {
    const chai_tensor *t = &tensors[layout[k]];
    chai_tensor c;
    if ((st = chai_tensor_contiguous(&c, t))) break;
    st = write_all(f, chai_tensor_data(&c), chai_tensor_nbytes(&c), path);
    chai_tensor_release(&c);
  }
  return st;
}

chai_status chai_safetensors_save(const char *path, int n, const char *const *names,
                                  const chai_tensor *tensors, const char *const *metadata) {
  chai_status st = check_args(n, names, tensors, metadata, path);
  if (st) return st;
  int *order = n ? malloc((size_t)n * 2 * sizeof *order) : NULL;
  if (n && !order) return chai_error(CHAI_ERR_NOMEM, "saving %s: out of memory", path);
  int *layout = order + n;
  for (int i = 0; i < n; i++)
    order[i] = i;
  if (n > 1) qsort_r(order, (size_t)n, sizeof *order, name_cmp, (void *)names);
  for (int i = 1; i < n; i++)
    if (strcmp(names[order[i - 1]], names[order[i]]) == 0) {
      st = chai_error(CHAI_ERR_ARG, "saving %s: tensor name '%.200s' is given twice", path,
                      names[order[i]]);
      free(order);
      return st;
    }
  /* Stable by element size 8, 4, 2, 1. */
  int k = 0;
  for (size_t es = 8; es >= 1; es /= 2)
    for (int i = 0; i < n; i++)
      if (chai_dtype_size(tensors[i].dtype) == es) layout[k++] = i;

  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) {
    free(order);
    return chai_error(CHAI_ERR_NOMEM, "saving %s: out of memory", path);
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp-XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    st = chai_error(CHAI_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    free(tmp);
    free(order);
    return st;
  }
  fchmod(fd, 0644); /* mkstemp's 0600 is needlessly private for a model file */
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    st = chai_error(CHAI_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    close(fd);
  } else {
    st = write_body(f, path, n, names, tensors, metadata, layout);
    if (!st && (fflush(f) != 0 || fsync(fileno(f)) != 0))
      st = chai_error(CHAI_ERR_IO, "writing %s: %s", path, strerror(errno));
    if (fclose(f) != 0 && !st)
      st = chai_error(CHAI_ERR_IO, "writing %s: %s", path, strerror(errno));
  }
  if (!st && rename(tmp, path) != 0)
    st = chai_error(CHAI_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (st) unlink(tmp);
  free(tmp);
  free(order);
  return st;
}
