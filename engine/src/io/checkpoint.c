/* The checkpoint object: finds the files of a model folder, maps each once, lets the format
 * readers list their tensors, and serves them by name as views over the mappings. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/ckpt_internal.h"

#define MAX_INDEX_BYTES (100u * 1000u * 1000u)

struct chai_checkpoint {
  const char *format; /* static */
  char *what;         /* the path it was opened from, for messages */
  ckpt_entry *entries;
  int n;
  int *order; /* entries sorted by name */
  chai_storage **files;
  char **paths;
  int nfiles;
};

/* ---- entry lists ---- */

chai_status ckpt_list_push(ckpt_list *l, const ckpt_entry *e) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 64;
    ckpt_entry *p = cap > l->cap ? realloc(l->items, (size_t)cap * sizeof *p) : NULL;
    if (!p) {
      free(e->name);
      return chai_error(CHAI_ERR_NOMEM, "out of memory listing checkpoint tensors");
    }
    l->items = p;
    l->cap = cap;
  }
  l->items[l->n++] = *e;
  return CHAI_OK;
}

void ckpt_list_free(ckpt_list *l) {
  for (int i = 0; i < l->n; i++)
    free(l->items[i].name);
  free(l->items);
  memset(l, 0, sizeof *l);
}

bool ckpt_nbytes(int ndim, const int64_t *shape, size_t elem_size, uint64_t *bytes) {
  /* Zero-size dims are skipped so an overflowing shape is refused even when it is empty; the
   * INT64_MAX/16 bound matches chai_tensor's own shape check. */
  uint64_t n = elem_size;
  bool empty = false;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return false;
    if (!shape[i])
      empty = true;
    else if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n) || n > (uint64_t)INT64_MAX / 16)
      return false;
  }
  *bytes = empty ? 0 : n;
  return true;
}

/* ---- files ---- */

chai_status ckpt_sniff(const uint8_t *data, size_t size, const char *what, const char **format) {
  if (size >= 4 && memcmp(data, "PK\x03\x04", 4) == 0) {
    *format = "pytorch";
  } else if (size >= 4 && memcmp(data, "PK\x05\x06", 4) == 0) {
    *format = "pytorch"; /* an empty zip: the reader says what is missing */
  } else if (size >= 4 && memcmp(data, "\x80\x02\x8a\x0a", 4) == 0) {
    /* The pre-1.6 format starts with a pickled magic number (a LONG1 of 10 bytes); a safetensors
     * header this long would exceed its 100 MB limit, so the test cannot misfire. */
    return chai_error(CHAI_ERR_UNSUPPORTED,
                      "%s is in the legacy (PyTorch < 1.6) torch.save format; re-save it with a "
                      "newer PyTorch or convert it to safetensors",
                      what);
  } else {
    size_t n = strlen(what);
    if (n >= 4 && strcmp(what + n - 4, ".bin") == 0)
      return chai_error(
          CHAI_ERR_FORMAT,
          "%s is not a torch.save zip archive (%zu bytes, starting %02x %02x %02x %02x)", what,
          size, size > 0 ? data[0] : 0, size > 1 ? data[1] : 0, size > 2 ? data[2] : 0,
          size > 3 ? data[3] : 0);
    *format = "safetensors";
  }
  return CHAI_OK;
}

static void unmap(void *ctx, void *data, size_t bytes) {
  (void)ctx;
  if (data) munmap(data, bytes);
}

chai_status ckpt_map_file(const char *path, chai_storage **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return chai_error(CHAI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    int err = errno;
    close(fd);
    return chai_error(CHAI_ERR_IO, "%s is not a regular file%s%s", path, err ? ": " : "",
                      err ? strerror(err) : "");
  }
  size_t size = (size_t)sb.st_size;
  void *p = NULL;
  if (size) {
    /* Private and writable so a caller may scribble on a weight without faulting or touching the
     * file; NORESERVE so a model larger than RAM+swap still maps. Under strict overcommit the
     * writable mapping can be refused: fall back to read-only. */
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      close(fd);
      return chai_error(CHAI_ERR_IO, "cannot map %s (%zu bytes): %s", path, size, strerror(err));
    }
  }
  close(fd);
  chai_storage *s = chai_storage_wrap(p, size, unmap, NULL);
  if (!s) {
    if (p) munmap(p, size);
    return chai_error_context(CHAI_ERR_NOMEM, "mapping %s", path);
  }
  *out = s;
  return CHAI_OK;
}

/* ---- building a checkpoint ---- */

typedef struct builder {
  ckpt_list list;
  chai_storage **files;
  char **paths;
  int nfiles, cap;
  const char *format;
} builder;

static void builder_free(builder *b) {
  ckpt_list_free(&b->list);
  for (int i = 0; i < b->nfiles; i++) {
    chai_storage_release(b->files[i]);
    free(b->paths[i]);
  }
  free(b->files);
  free(b->paths);
  memset(b, 0, sizeof *b);
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

/* Adds one file (a new reference to `buf`) and its tensors. */
static chai_status builder_add(builder *b, chai_storage *buf, const char *what) {
  const char *format;
  chai_status st = ckpt_sniff(buf->data, buf->bytes, what, &format);
  if (st) return st;
  if (b->format && strcmp(b->format, format) != 0)
    return chai_error(CHAI_ERR_FORMAT, "%s is %s but the other shards are %s", what, format,
                      b->format);
  if (b->nfiles == b->cap) {
    int cap = b->cap ? b->cap * 2 : 4;
    chai_storage **f = realloc(b->files, (size_t)cap * sizeof *f);
    if (f) b->files = f;
    char **p = f ? realloc(b->paths, (size_t)cap * sizeof *p) : NULL;
    if (p) b->paths = p;
    if (!f || !p) return chai_error(CHAI_ERR_NOMEM, "out of memory opening %s", what);
    b->cap = cap;
  }
  char *path = dupstr(what);
  if (!path) return chai_error(CHAI_ERR_NOMEM, "out of memory opening %s", what);
  chai_storage_retain(buf);
  b->files[b->nfiles] = buf;
  b->paths[b->nfiles] = path;
  int file = b->nfiles++;
  b->format = format;
  if (strcmp(format, "pytorch") == 0)
    return ckpt_torchbin_parse(buf->data, buf->bytes, what, file, &b->list);
  return ckpt_safetensors_parse(buf->data, buf->bytes, what, file, &b->list);
}

static int order_cmp(const void *a, const void *b, void *ctx) {
  const ckpt_entry *items = ctx;
  return strcmp(items[*(const int *)a].name, items[*(const int *)b].name);
}

/* Sorts names for lookup, refuses duplicates, and moves everything into a checkpoint. */
static chai_status builder_finish(builder *b, const char *what, chai_checkpoint **out) {
  chai_checkpoint *ck = calloc(1, sizeof *ck);
  int *order = b->list.n ? malloc((size_t)b->list.n * sizeof *order) : NULL;
  char *w = dupstr(what);
  if (!ck || (b->list.n && !order) || !w) {
    free(ck);
    free(order);
    free(w);
    return chai_error(CHAI_ERR_NOMEM, "out of memory opening %s", what);
  }
  for (int i = 0; i < b->list.n; i++)
    order[i] = i;
  if (b->list.n > 1) qsort_r(order, (size_t)b->list.n, sizeof *order, order_cmp, b->list.items);
  for (int i = 1; i < b->list.n; i++) {
    const ckpt_entry *x = &b->list.items[order[i - 1]], *y = &b->list.items[order[i]];
    if (strcmp(x->name, y->name) == 0) {
      chai_status st;
      if (x->file == y->file)
        st = chai_error(CHAI_ERR_FORMAT, "%s: duplicate tensor name '%.200s'", b->paths[x->file],
                        x->name);
      else
        st = chai_error(CHAI_ERR_FORMAT, "tensor '%.200s' is in both %s and %s", x->name,
                        b->paths[x->file], b->paths[y->file]);
      free(ck);
      free(order);
      free(w);
      return st;
    }
  }
  ck->format = b->format ? b->format : "safetensors";
  ck->what = w;
  ck->entries = b->list.items;
  ck->n = b->list.n;
  ck->order = order;
  ck->files = b->files;
  ck->paths = b->paths;
  ck->nfiles = b->nfiles;
  memset(b, 0, sizeof *b);
  *out = ck;
  return CHAI_OK;
}

chai_status chai_checkpoint_open_buffer(chai_checkpoint **out, chai_storage *buf,
                                        const char *what) {
  *out = NULL;
  builder b;
  memset(&b, 0, sizeof b);
  chai_status st = builder_add(&b, buf, what);
  if (!st) st = builder_finish(&b, what, out);
  builder_free(&b);
  return st;
}

static chai_status open_file(builder *b, const char *path) {
  chai_storage *s;
  chai_status st = ckpt_map_file(path, &s);
  if (st) return st;
  st = builder_add(b, s, path);
  chai_storage_release(s);
  return st;
}

static const ckpt_entry *find(const chai_checkpoint *ck, const char *name);

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A shard name from an index must stay inside the index's folder. */
static bool safe_shard_name(const char *s) {
  if (!*s || *s == '/') return false;
  for (const char *p = s; *p;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.') return false;
    p += n + (slash ? 1 : 0);
  }
  return true;
}

static char *join(const char *dir, size_t dlen, const char *name) {
  size_t n = strlen(name);
  char *p = malloc(dlen + 1 + n + 1);
  if (!p) return NULL;
  memcpy(p, dir, dlen);
  p[dlen] = '/';
  memcpy(p + dlen + 1, name, n + 1);
  return p;
}

/* A *.index.json: {"weight_map": {tensor: shard file}}; each shard is opened once, and every
 * listed tensor must be found in the shard the map names. */
static chai_status open_index(const char *path, chai_checkpoint **out) {
  chai_storage *s;
  chai_status st = ckpt_map_file(path, &s);
  if (st) return st;
  if (s->bytes > MAX_INDEX_BYTES) {
    chai_storage_release(s);
    return chai_error(CHAI_ERR_FORMAT, "%s: %zu bytes is too large for an index", path, s->bytes);
  }
  cJSON *root = cJSON_ParseWithLength((const char *)s->data, s->bytes);
  chai_storage_release(s);
  if (!root) return chai_error(CHAI_ERR_FORMAT, "%s is not valid JSON", path);
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  builder b;
  memset(&b, 0, sizeof b);
  const char **shards = NULL;
  int nshards = 0;
  if (!cJSON_IsObject(map)) {
    st = chai_error(CHAI_ERR_FORMAT, "%s has no \"weight_map\" object", path);
    goto done;
  }
  int count = cJSON_GetArraySize(map);
  shards = count ? malloc((size_t)count * sizeof *shards) : NULL;
  if (count && !shards) {
    st = chai_error(CHAI_ERR_NOMEM, "out of memory reading %s", path);
    goto done;
  }
  const char *slash = strrchr(path, '/');
  size_t dlen = slash ? (size_t)(slash - path) : 1;
  const char *dir = slash ? path : ".";
  if (slash == path) dlen = 1; /* "/x.index.json" */
  for (const cJSON *it = map->child; it && !st; it = it->next) {
    if (!cJSON_IsString(it) || !safe_shard_name(it->valuestring)) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: weight_map entry '%.200s' names no valid shard file",
                      path, it->string ? it->string : "?");
      break;
    }
    bool seen = false;
    for (int i = 0; i < nshards && !seen; i++)
      seen = strcmp(shards[i], it->valuestring) == 0;
    if (seen) continue;
    shards[nshards++] = it->valuestring;
    char *shard_path = join(dir, dlen, it->valuestring);
    if (!shard_path) {
      st = chai_error(CHAI_ERR_NOMEM, "out of memory reading %s", path);
      break;
    }
    st = open_file(&b, shard_path);
    free(shard_path);
    if (st) chai_error_context(st, "shard of %s", path);
  }
  if (!st && nshards == 0) st = chai_error(CHAI_ERR_FORMAT, "%s: weight_map is empty", path);
  if (!st) st = builder_finish(&b, path, out);
  for (const cJSON *it = map ? map->child : NULL; it && !st; it = it->next) {
    const ckpt_entry *e = find(*out, it->string);
    int want = 0;
    while (want < nshards && strcmp(shards[want], it->valuestring) != 0)
      want++;
    /* Shards were opened in first-seen order, so shard i is file i. */
    if (!e || e->file != want) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: weight_map puts '%.200s' in %s, but %s", path,
                      it->string, it->valuestring,
                      e ? "another shard holds it" : "no shard holds it");
      chai_checkpoint_close(*out);
      *out = NULL;
    }
  }
done:
  free(shards);
  builder_free(&b);
  cJSON_Delete(root);
  return st;
}

chai_status chai_checkpoint_open(chai_checkpoint **out, const char *path) {
  if (!out) return chai_error(CHAI_ERR_ARG, "chai_checkpoint_open: out is NULL");
  *out = NULL;
  if (!path) return chai_error(CHAI_ERR_ARG, "chai_checkpoint_open: path is NULL");
  struct stat sb;
  if (stat(path, &sb) != 0)
    return chai_error(CHAI_ERR_IO, "cannot open checkpoint %s: %s", path, strerror(errno));
  if (S_ISDIR(sb.st_mode)) {
    static const char *const candidates[] = {"model.safetensors", "model.safetensors.index.json",
                                             "pytorch_model.bin", "pytorch_model.bin.index.json"};
    size_t dlen = strlen(path);
    while (dlen > 1 && path[dlen - 1] == '/')
      dlen--;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
      char *p = join(path, dlen, candidates[i]);
      if (!p) return chai_error(CHAI_ERR_NOMEM, "out of memory opening %s", path);
      struct stat fs;
      if (stat(p, &fs) == 0 && !S_ISDIR(fs.st_mode)) {
        chai_status st = chai_checkpoint_open(out, p);
        free(p);
        return st;
      }
      free(p);
    }
    return chai_error(CHAI_ERR_IO,
                      "%s holds no model.safetensors, model.safetensors.index.json, "
                      "pytorch_model.bin or pytorch_model.bin.index.json",
                      path);
  }
  if (ends_with(path, ".json")) return open_index(path, out);
  builder b;
  memset(&b, 0, sizeof b);
  chai_status st = open_file(&b, path);
  if (!st) st = builder_finish(&b, path, out);
  builder_free(&b);
  return st;
}

void chai_checkpoint_close(chai_checkpoint *ck) {
  if (!ck) return;
  for (int i = 0; i < ck->n; i++)
    free(ck->entries[i].name);
  free(ck->entries);
  free(ck->order);
  for (int i = 0; i < ck->nfiles; i++) {
    chai_storage_release(ck->files[i]);
    free(ck->paths[i]);
  }
  free(ck->files);
  free(ck->paths);
  free(ck->what);
  free(ck);
}

/* ---- queries ---- */

int chai_checkpoint_count(const chai_checkpoint *ck) {
  return ck ? ck->n : 0;
}

const char *chai_checkpoint_name(const chai_checkpoint *ck, int i) {
  return ck && i >= 0 && i < ck->n ? ck->entries[i].name : NULL;
}

const char *chai_checkpoint_format(const chai_checkpoint *ck) {
  return ck ? ck->format : NULL;
}

static const ckpt_entry *find(const chai_checkpoint *ck, const char *name) {
  int lo = 0, hi = ck->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    const ckpt_entry *e = &ck->entries[ck->order[mid]];
    int c = strcmp(name, e->name);
    if (!c) return e;
    if (c < 0)
      hi = mid - 1;
    else
      lo = mid + 1;
  }
  return NULL;
}

bool chai_checkpoint_has(const chai_checkpoint *ck, const char *name) {
  return ck && name && find(ck, name);
}

/* Copies a strided view element by element into contiguous dst (misaligned sources only). */
static void gather(uint8_t *dst, const uint8_t *src, size_t es, int ndim, const int64_t *shape,
                   const int64_t *stride) {
  int64_t idx[CHAI_MAX_DIMS] = {0}, numel = 1;
  for (int i = 0; i < ndim; i++)
    numel *= shape[i];
  for (int64_t k = 0; k < numel; k++) {
    const uint8_t *p = src;
    for (int i = 0; i < ndim; i++)
      p += idx[i] * stride[i];
    memcpy(dst + (size_t)k * es, p, es);
    for (int i = ndim - 1; i >= 0; i--) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
}

chai_status chai_checkpoint_get(const chai_checkpoint *ck, const char *name, chai_tensor *out) {
  if (!out) return chai_error(CHAI_ERR_ARG, "chai_checkpoint_get: out is NULL");
  memset(out, 0, sizeof *out);
  if (!ck || !name) return chai_error(CHAI_ERR_ARG, "chai_checkpoint_get: NULL checkpoint or name");
  const ckpt_entry *e = find(ck, name);
  if (!e)
    return chai_error(CHAI_ERR_ARG, "%s has no tensor '%.200s' (it holds %d)", ck->what, name,
                      ck->n);
  const char *file = ck->paths[e->file];
  if (!e->supported)
    return chai_error(CHAI_ERR_UNSUPPORTED,
                      "%s: tensor '%.200s' has dtype %s, which chai does not hold (F32, F16, "
                      "BF16, I32, I64, I8 and U8 are read)",
                      file, name, e->dtype_name);
  if (e->ndim > CHAI_MAX_DIMS)
    return chai_error(CHAI_ERR_UNSUPPORTED,
                      "%s: tensor '%.200s' has %d dims; chai holds at most %d", file, name, e->ndim,
                      CHAI_MAX_DIMS);
  chai_storage *s = ck->files[e->file];
  const uint8_t *src = s->data + e->offset;
  if ((uintptr_t)src % e->elem_size == 0) {
    out->dtype = e->dtype;
    out->ndim = e->ndim;
    for (int i = 0; i < e->ndim; i++) {
      out->shape[i] = e->shape[i];
      out->stride[i] = e->stride[i];
    }
    out->offset = e->offset;
    chai_storage_retain(s);
    out->storage = s;
    return CHAI_OK;
  }
  chai_status st = chai_tensor_new(out, e->dtype, e->ndim, e->shape);
  if (st) return chai_error_context(st, "copying misaligned tensor '%.200s' of %s", name, file);
  gather(chai_tensor_data(out), src, e->elem_size, e->ndim, e->shape, e->stride);
  return CHAI_OK;
}
