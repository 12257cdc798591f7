/* NumPy .npy reader and writer. Format: "\x93NUMPY", major, minor, a little-endian header length
 * (u16 in 1.0, u32 in 2.0/3.0), an ASCII Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces and '\n' so the
 * data starts on a 64-byte boundary, then the raw elements. */
#include "chai/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "chai's npy reader assumes a little-endian host"
#endif

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAX_HEADER (1 << 20) /* far beyond any real header; bounds the header allocation */

static const struct {
  const char *descr;
  chai_dtype dt;
} npy_types[] = {{"f4", CHAI_F32}, {"f2", CHAI_F16}, {"i4", CHAI_I32},
                 {"i8", CHAI_I64}, {"i1", CHAI_I8},  {"u1", CHAI_U8}};

/* ---- header parsing ------------------------------------------------------------------------- */

typedef struct npy_parser {
  const char *start, *p, *end;
  const char *path;
} npy_parser;

static void skip_space(npy_parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static chai_status bad_header(const npy_parser *ps, const char *what) {
  return chai_error(CHAI_ERR_FORMAT, "npy %s: malformed header: %s at header offset %ld", ps->path,
                    what, (long)(ps->p - ps->start));
}

/* A quoted Python string literal (no escapes needed by real headers) into buf. */
static chai_status parse_string(npy_parser *ps, char *buf, size_t n) {
  skip_space(ps);
  if (ps->p >= ps->end || (*ps->p != '\'' && *ps->p != '"'))
    return bad_header(ps, "expected a string");
  char q = *ps->p++;
  size_t len = 0;
  while (ps->p < ps->end && *ps->p != q) {
    if (len + 1 >= n) return bad_header(ps, "string too long");
    buf[len++] = *ps->p++;
  }
  if (ps->p >= ps->end) return bad_header(ps, "unterminated string");
  ps->p++;
  buf[len] = 0;
  return CHAI_OK;
}

static bool accept(npy_parser *ps, char c) {
  skip_space(ps);
  if (ps->p < ps->end && *ps->p == c) {
    ps->p++;
    return true;
  }
  return false;
}

/* (d0, d1, ...) with an optional trailing comma; "()" is a 0-d array. */
static chai_status parse_shape(npy_parser *ps, int *ndim, int64_t *shape) {
  if (!accept(ps, '(')) return bad_header(ps, "shape is not a tuple");
  *ndim = 0;
  for (;;) {
    if (accept(ps, ')')) return CHAI_OK;
    skip_space(ps);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
      return bad_header(ps, "shape entry is not a non-negative integer");
    int64_t v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
      if (v > (INT64_MAX - 9) / 10) return bad_header(ps, "shape entry too large");
      v = v * 10 + (*ps->p++ - '0');
    }
    if (*ndim == CHAI_MAX_DIMS)
      return chai_error(CHAI_ERR_UNSUPPORTED, "npy %s: more than %d dims", ps->path, CHAI_MAX_DIMS);
    shape[(*ndim)++] = v;
    if (accept(ps, ')')) return CHAI_OK;
    if (!accept(ps, ',')) return bad_header(ps, "expected ',' or ')' in shape");
  }
}

typedef struct npy_header {
  chai_dtype dtype;
  int ndim;
  int64_t shape[CHAI_MAX_DIMS];
} npy_header;

static chai_status parse_descr(const char *path, const char *descr, chai_dtype *dt) {
  size_t n = strlen(descr);
  if (n == 3 && strchr("<>|=", descr[0])) {
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
      if (strcmp(descr + 1, npy_types[i].descr) != 0) continue;
      bool one_byte = descr[2] == '1';
      /* Byte order is meaningless for 1-byte types; '=' is native, i.e. little-endian here. */
      if (descr[0] == '<' || descr[0] == '=' || one_byte) {
        *dt = npy_types[i].dt;
        return CHAI_OK;
      }
      return chai_error(CHAI_ERR_UNSUPPORTED,
                        "npy %s: big-endian dtype '%s' is not supported (save it as '<%s')", path,
                        descr, descr + 1);
    }
  }
  return chai_error(CHAI_ERR_UNSUPPORTED,
                    "npy %s: unsupported dtype '%s' (chai reads '<f4', '<f2', '<i4', '<i8', '|i1', "
                    "'|u1')",
                    path, descr);
}

static chai_status parse_header(const char *path, const char *text, size_t len, npy_header *h) {
  npy_parser ps = {text, text, text + len, path};
  bool have_descr = false, have_order = false, have_shape = false;
  char key[32], descr[64];
  chai_status st;
  if (!accept(&ps, '{')) return bad_header(&ps, "expected '{'");
  for (;;) {
    if (accept(&ps, '}')) break;
    if ((st = parse_string(&ps, key, sizeof key))) return st;
    if (!accept(&ps, ':')) return bad_header(&ps, "expected ':'");
    if (strcmp(key, "descr") == 0) {
      skip_space(&ps);
      if (ps.p < ps.end && *ps.p == '[')
        return chai_error(CHAI_ERR_UNSUPPORTED,
                          "npy %s: structured dtypes (descr is a list) are not supported", path);
      if ((st = parse_string(&ps, descr, sizeof descr))) return st;
      if ((st = parse_descr(path, descr, &h->dtype))) return st;
      have_descr = true;
    } else if (strcmp(key, "fortran_order") == 0) {
      skip_space(&ps);
      if ((size_t)(ps.end - ps.p) >= 4 && memcmp(ps.p, "True", 4) == 0)
        return chai_error(CHAI_ERR_UNSUPPORTED,
                          "npy %s: Fortran-order arrays are not supported (fortran_order: True); "
                          "save a C-order copy (numpy.ascontiguousarray)",
                          path);
      if ((size_t)(ps.end - ps.p) < 5 || memcmp(ps.p, "False", 5) != 0)
        return bad_header(&ps, "fortran_order is neither True nor False");
      ps.p += 5;
      have_order = true;
    } else if (strcmp(key, "shape") == 0) {
      if ((st = parse_shape(&ps, &h->ndim, h->shape))) return st;
      have_shape = true;
    } else {
      return chai_error(CHAI_ERR_FORMAT, "npy %s: malformed header: unknown key '%s'", path, key);
    }
    if (accept(&ps, '}')) break;
    if (!accept(&ps, ',')) return bad_header(&ps, "expected ',' or '}'");
  }
  if (!have_descr || !have_order || !have_shape)
    return chai_error(CHAI_ERR_FORMAT, "npy %s: malformed header: missing key '%s'", path,
                      !have_descr   ? "descr"
                      : !have_order ? "fortran_order"
                                    : "shape");
  return CHAI_OK;
}

/* ---- load ----------------------------------------------------------------------------------- */

static chai_status read_exact(FILE *f, void *buf, size_t n, const char *path, const char *what) {
  if (fread(buf, 1, n, f) != n)
    return chai_error(ferror(f) ? CHAI_ERR_IO : CHAI_ERR_FORMAT, "npy %s: %s while reading %s",
                      path, ferror(f) ? strerror(errno) : "unexpected end of file", what);
  return CHAI_OK;
}

static chai_status load_open(chai_tensor *out, const char *path, FILE *f) {
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0)
    return chai_error(CHAI_ERR_IO, "npy %s: cannot stat: %s", path, strerror(errno));
  if (!S_ISREG(sb.st_mode)) return chai_error(CHAI_ERR_IO, "npy %s: not a regular file", path);
  uint64_t file_size = (uint64_t)sb.st_size;
  unsigned char pre[12];
  chai_status st;
  if (file_size < 10)
    return chai_error(CHAI_ERR_FORMAT, "npy %s: too short for a .npy file (%llu bytes)", path,
                      (unsigned long long)file_size);
  if ((st = read_exact(f, pre, 8, path, "the magic"))) return st;
  if (memcmp(pre, NPY_MAGIC, 6) != 0)
    return chai_error(CHAI_ERR_FORMAT,
                      "npy %s: bad magic (not a .npy file): first bytes %02x %02x %02x %02x %02x "
                      "%02x, expected 93 4e 55 4d 50 59",
                      path, pre[0], pre[1], pre[2], pre[3], pre[4], pre[5]);
  unsigned major = pre[6], minor = pre[7];
  uint64_t header_len, prefix;
  if (major == 1) {
    if ((st = read_exact(f, pre + 8, 2, path, "the header length"))) return st;
    header_len = pre[8] | (uint64_t)pre[9] << 8;
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if ((st = read_exact(f, pre + 8, 4, path, "the header length"))) return st;
    header_len = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
    prefix = 12;
  } else {
    return chai_error(CHAI_ERR_FORMAT, "npy %s: unsupported format version %u.%u", path, major,
                      minor);
  }
  if (header_len > NPY_MAX_HEADER || prefix + header_len > file_size)
    return chai_error(CHAI_ERR_FORMAT,
                      "npy %s: header length %llu does not fit in the %llu-byte file", path,
                      (unsigned long long)header_len, (unsigned long long)file_size);
  char *text = malloc(header_len + 1);
  if (!text) return chai_error(CHAI_ERR_NOMEM, "npy %s: out of memory for the header", path);
  npy_header h;
  st = read_exact(f, text, header_len, path, "the header");
  if (!st) {
    text[header_len] = 0;
    st = parse_header(path, text, header_len, &h);
  }
  free(text);
  if (st) return st;

  size_t es = chai_dtype_size(h.dtype);
  uint64_t numel = 1;
  for (int i = 0; i < h.ndim; i++) {
    if (h.shape[i] && numel > UINT64_MAX / es / (uint64_t)h.shape[i]) {
      numel = UINT64_MAX / es; /* saturate: certainly more than the file holds */
      break;
    }
    numel *= (uint64_t)h.shape[i];
  }
  uint64_t need = numel * es, have = file_size - prefix - header_len;
  char shape_buf[128];
  chai_shape_str(h.ndim, h.shape, shape_buf, sizeof shape_buf);
  if (need != have)
    return chai_error(CHAI_ERR_FORMAT,
                      "npy %s: header says shape %s %s (%llu data bytes) but the file holds %llu "
                      "data bytes%s",
                      path, shape_buf, chai_dtype_name(h.dtype), (unsigned long long)need,
                      (unsigned long long)have, need > have ? " (truncated?)" : "");
  if ((st = chai_tensor_new(out, h.dtype, h.ndim, h.shape)))
    return chai_error_context(st, "npy %s", path);
  if ((st = read_exact(f, chai_tensor_data(out), (size_t)need, path, "the data")))
    chai_tensor_release(out);
  return st;
}

chai_status chai_npy_load(chai_tensor *out, const char *path) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return chai_error(CHAI_ERR_IO, "npy %s: cannot open: %s", path, strerror(errno));
  chai_status st = load_open(out, path, f);
  fclose(f);
  return st;
}

/* ---- save ----------------------------------------------------------------------------------- */

static const char *descr_of(chai_dtype dt) {
  switch (dt) {
  case CHAI_F32: return "<f4";
  case CHAI_F16: return "<f2";
  case CHAI_I32: return "<i4";
  case CHAI_I64: return "<i8";
  case CHAI_I8: return "|i1";
  case CHAI_U8: return "|u1";
  default: return NULL;
  }
}

/* The v1.0 prefix + header for t into buf (a multiple of 64 bytes); returns its length. */
static size_t format_header(char *buf, size_t n, const chai_tensor *t, const char *descr) {
  char shape[160];
  size_t used = 0;
  shape[used++] = '(';
  for (int i = 0; i < t->ndim; i++)
    used += (size_t)snprintf(shape + used, sizeof shape - used, i ? ", %lld" : "%lld",
                             (long long)t->shape[i]);
  if (t->ndim == 1) shape[used++] = ',';
  shape[used++] = ')';
  shape[used] = 0;
  int dict = snprintf(buf + 10, n - 10, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      descr, shape);
  /* NumPy (>= 1.17) leaves room for the first dim to grow to 21 digits; doing the same makes
   * our files byte-identical to numpy.save's. */
  if (t->ndim > 0) {
    int digits = snprintf(NULL, 0, "%lld", (long long)t->shape[0]);
    if (digits < 21) dict += 21 - digits;
  }
  size_t total = 10 + (size_t)dict + 1; /* + '\n' */
  total = (total + 63) / 64 * 64;
  memcpy(buf, NPY_MAGIC, 6);
  buf[6] = 1;
  buf[7] = 0;
  size_t header_len = total - 10;
  buf[8] = (char)(header_len & 0xff);
  buf[9] = (char)(header_len >> 8);
  size_t text = strlen(buf + 10);
  memset(buf + 10 + text, ' ', total - 10 - text - 1);
  buf[total - 1] = '\n';
  return total;
}

static chai_status write_all(int fd, const void *data, size_t n, const char *path) {
  const char *p = data;
  while (n) {
    size_t chunk = n > (1u << 30) ? (1u << 30) : n;
    ssize_t w = write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return chai_error(CHAI_ERR_IO, "npy %s: write failed: %s", path, strerror(errno));
    }
    p += w;
    n -= (size_t)w;
  }
  return CHAI_OK;
}

chai_status chai_npy_save(const char *path, const chai_tensor *t) {
  if (!chai_tensor_alive(t))
    return chai_error(CHAI_ERR_STATE, "npy %s: tensor used after free", path);
  const char *descr = descr_of(t->dtype);
  if (!descr)
    return chai_error(CHAI_ERR_UNSUPPORTED,
                      "npy %s: dtype %s has no NumPy equivalent (convert it, e.g. to f32)", path,
                      chai_dtype_name(t->dtype));
  chai_tensor c;
  chai_status st = chai_tensor_contiguous(&c, t);
  if (st) return chai_error_context(st, "npy %s", path);

  static atomic_uint counter;
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 64);
  if (!tmp) {
    chai_tensor_release(&c);
    return chai_error(CHAI_ERR_NOMEM, "npy %s: out of memory", path);
  }
  snprintf(tmp, plen + 64, "%s.tmp%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    st = chai_error(CHAI_ERR_IO, "npy %s: cannot create: %s", path, strerror(errno));
  } else {
    char header[256];
    size_t hn = format_header(header, sizeof header, &c, descr);
    st = write_all(fd, header, hn, path);
    if (!st) st = write_all(fd, chai_tensor_data(&c), chai_tensor_nbytes(&c), path);
    if (close(fd) != 0 && !st)
      st = chai_error(CHAI_ERR_IO, "npy %s: close failed: %s", path, strerror(errno));
    if (!st && rename(tmp, path) != 0)
      st = chai_error(CHAI_ERR_IO, "npy %s: cannot rename the temporary file into place: %s", path,
                      strerror(errno));
    if (st) unlink(tmp);
  }
  free(tmp);
  chai_tensor_release(&c);
  return st;
}
