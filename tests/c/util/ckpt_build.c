#include "ckpt_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tb_put(tb_buf *b, const void *data, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n)
      cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) abort(); /* a test helper: out of memory here is not the code under test */
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, data, n);
  b->n += n;
}

void tb_u8(tb_buf *b, unsigned v) {
  uint8_t x = (uint8_t)v;
  tb_put(b, &x, 1);
}
void tb_u16(tb_buf *b, unsigned v) {
  tb_u8(b, v & 0xff);
  tb_u8(b, (v >> 8) & 0xff);
}
void tb_u32(tb_buf *b, uint32_t v) {
  tb_u16(b, v & 0xffff);
  tb_u16(b, v >> 16);
}
void tb_u64(tb_buf *b, uint64_t v) {
  tb_u32(b, (uint32_t)v);
  tb_u32(b, (uint32_t)(v >> 32));
}
void tb_free(tb_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

bool tb_save(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return false;
  bool ok = fwrite(data, 1, n, f) == n;
  return fclose(f) == 0 && ok;
}

void pk_op(tb_buf *b, int op) {
  tb_u8(b, (unsigned)op);
}

void pk_proto(tb_buf *b, int v) {
  pk_op(b, 0x80);
  tb_u8(b, (unsigned)v);
}

void pk_global(tb_buf *b, const char *module, const char *name) {
  pk_op(b, 'c');
  tb_put(b, module, strlen(module));
  tb_u8(b, '\n');
  tb_put(b, name, strlen(name));
  tb_u8(b, '\n');
}

void pk_str(tb_buf *b, const char *s) {
  pk_op(b, 'X');
  tb_u32(b, (uint32_t)strlen(s));
  tb_put(b, s, strlen(s));
}

void pk_int(tb_buf *b, long long v) {
  if (v >= 0 && v < 256) {
    pk_op(b, 'K');
    tb_u8(b, (unsigned)v);
  } else if (v >= 0 && v < 65536) {
    pk_op(b, 'M');
    tb_u16(b, (unsigned)v);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    pk_op(b, 'J');
    tb_u32(b, (uint32_t)(int32_t)v);
  } else {
    pk_op(b, 0x8a);
    tb_u8(b, 8);
    tb_u64(b, (uint64_t)v);
  }
}

void pk_state_dict(tb_buf *b, const tb_tensor *t, int n) {
  pk_proto(b, 2);
  pk_global(b, "collections", "OrderedDict");
  pk_op(b, ')');
  pk_op(b, 'R');
  pk_op(b, '(');
  for (int i = 0; i < n; i++) {
    pk_str(b, t[i].name);
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    pk_op(b, '(');
    pk_op(b, '(');
    pk_str(b, "storage");
    pk_global(b, "torch", t[i].storage_class);
    pk_str(b, t[i].key);
    pk_str(b, "cpu");
    pk_int(b, t[i].numel);
    pk_op(b, 't');
    pk_op(b, 'Q');
    pk_int(b, t[i].offset);
    pk_op(b, '(');
    for (int d = 0; d < t[i].ndim; d++)
      pk_int(b, t[i].shape[d]);
    pk_op(b, 't');
    pk_op(b, '(');
    for (int d = 0; d < t[i].ndim; d++)
      pk_int(b, t[i].stride[d]);
    pk_op(b, 't');
    pk_op(b, 0x89);
    pk_global(b, "collections", "OrderedDict");
    pk_op(b, ')');
    pk_op(b, 'R');
    pk_op(b, 't');
    pk_op(b, 'R');
  }
  pk_op(b, 'u');
  pk_op(b, '.');
}

void zb_write(tb_buf *out, const zb_entry *e, int n, bool zip64) {
  uint64_t *lho = calloc((size_t)n + 1, sizeof *lho);
  if (!lho) abort();
  for (int i = 0; i < n; i++) {
    lho[i] = out->n;
    size_t nlen = strlen(e[i].name);
    /* pad with an "FB" extra field so the data starts 64-byte aligned, as torch does */
    size_t start = out->n + 30 + nlen + 4;
    size_t pad = (64 - start % 64) % 64;
    tb_u32(out, 0x04034b50);
    tb_u16(out, 20);
    tb_u16(out, 0);
    tb_u16(out, (unsigned)e[i].method);
    tb_u32(out, 0); /* time, date */
    tb_u32(out, 0); /* crc: chai does not check it */
    tb_u32(out, (uint32_t)e[i].len);
    tb_u32(out, (uint32_t)e[i].len);
    tb_u16(out, (unsigned)nlen);
    tb_u16(out, (unsigned)(4 + pad));
    tb_put(out, e[i].name, nlen);
    tb_u16(out, 0x4246);
    tb_u16(out, (unsigned)pad);
    for (size_t k = 0; k < pad; k++)
      tb_u8(out, 'Z');
    tb_put(out, e[i].data, e[i].len);
  }
  uint64_t cd = out->n;
  for (int i = 0; i < n; i++) {
    size_t nlen = strlen(e[i].name);
    tb_u32(out, 0x02014b50);
    tb_u16(out, 45);
    tb_u16(out, 45);
    tb_u16(out, 0);
    tb_u16(out, (unsigned)e[i].method);
    tb_u32(out, 0);
    tb_u32(out, 0);
    uint32_t big = 0xFFFFFFFFu;
    tb_u32(out, zip64 ? big : (uint32_t)e[i].len);
    tb_u32(out, zip64 ? big : (uint32_t)e[i].len);
    tb_u16(out, (unsigned)nlen);
    tb_u16(out, zip64 ? 28 : 0);
    tb_u16(out, 0);
    tb_u16(out, 0);
    tb_u16(out, 0);
    tb_u32(out, 0);
    tb_u32(out, zip64 ? big : (uint32_t)lho[i]);
    tb_put(out, e[i].name, nlen);
    if (zip64) {
      tb_u16(out, 1);
      tb_u16(out, 24);
      tb_u64(out, e[i].len);
      tb_u64(out, e[i].len);
      tb_u64(out, lho[i]);
    }
  }
  uint64_t cd_size = out->n - cd;
  if (zip64) {
    uint64_t e64 = out->n;
    tb_u32(out, 0x06064b50);
    tb_u64(out, 44);
    tb_u16(out, 45);
    tb_u16(out, 45);
    tb_u32(out, 0);
    tb_u32(out, 0);
    tb_u64(out, (uint64_t)n);
    tb_u64(out, (uint64_t)n);
    tb_u64(out, cd_size);
    tb_u64(out, cd);
    tb_u32(out, 0x07064b50);
    tb_u32(out, 0);
    tb_u64(out, e64);
    tb_u32(out, 1);
  }
  tb_u32(out, 0x06054b50);
  tb_u16(out, 0);
  tb_u16(out, 0);
  tb_u16(out, zip64 ? 0xFFFF : (unsigned)n);
  tb_u16(out, zip64 ? 0xFFFF : (unsigned)n);
  tb_u32(out, zip64 ? 0xFFFFFFFFu : (uint32_t)cd_size);
  tb_u32(out, zip64 ? 0xFFFFFFFFu : (uint32_t)cd);
  tb_u16(out, 0);
  free(lho);
}
