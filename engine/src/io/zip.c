/* The zip directory reader. Layout (APPNOTE.TXT): local headers + data, then the central directory,
 * then the end-of-central-directory record (EOCD), preceded by the ZIP64 EOCD record and locator
 * when a count, size or offset does not fit in 16/32 bits. Every offset read from the file is
 * checked against the buffer size before it is used, and nothing is allocated from a count that
 * the central directory's byte size cannot hold. */
#include "io/zip.h"

#include <stdlib.h>
#include <string.h>

#include "io/ckpt_internal.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

static int entry_cmp(const void *a, const void *b) {
  const zip_entry *x = a, *y = b;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(x->name, y->name, n);
  if (c) return c;
  return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

/* Finds the EOCD by scanning back over at most a 64 KiB comment. */
static chai_status find_eocd(const uint8_t *data, size_t size, const char *what, size_t *at) {
  if (size < 22)
    return chai_error(CHAI_ERR_FORMAT, "%s: %zu bytes is too short for a zip file", what, size);
  size_t lowest = size - 22 > 65535 ? size - 22 - 65535 : 0;
  for (size_t p = size - 22 + 1; p-- > lowest;)
    if (ckpt_le32(data + p) == SIG_EOCD && p + 22 + ckpt_le16(data + p + 20) <= size) {
      *at = p;
      return CHAI_OK;
    }
  return chai_error(CHAI_ERR_FORMAT, "%s: no zip end-of-central-directory record (truncated file?)",
                    what);
}

/* Fills the 0xFFFFFFFF-marked fields from a ZIP64 extended-information extra field. */
static chai_status zip64_extra(const uint8_t *extra, size_t len, uint64_t *orig, uint64_t *comp,
                               uint64_t *lho, const char *what, const zip_entry *e) {
  size_t p = 0;
  while (p + 4 <= len) {
    uint16_t id = ckpt_le16(extra + p), n = ckpt_le16(extra + p + 2);
    if (p + 4 + n > len) break;
    if (id == 1) {
      const uint8_t *f = extra + p + 4;
      size_t q = 0;
      uint64_t *fields[3] = {orig, comp, lho};
      for (int i = 0; i < 3; i++) {
        if (*fields[i] != 0xFFFFFFFFu) continue;
        if (q + 8 > n)
          return chai_error(CHAI_ERR_FORMAT, "%s: zip entry '%.*s': ZIP64 extra field too short",
                            what, (int)(e->name_len > 200 ? 200 : e->name_len), e->name);
        *fields[i] = ckpt_le64(f + q);
        q += 8;
      }
      return CHAI_OK;
    }
    p += 4 + (size_t)n;
  }
  if (*orig == 0xFFFFFFFFu || *comp == 0xFFFFFFFFu || *lho == 0xFFFFFFFFu)
    return chai_error(CHAI_ERR_FORMAT, "%s: zip entry '%.*s' needs a ZIP64 extra field it lacks",
                      what, (int)(e->name_len > 200 ? 200 : e->name_len), e->name);
  return CHAI_OK;
}

chai_status zip_open(zip_archive *z, const uint8_t *data, size_t size, const char *what) {
  memset(z, 0, sizeof *z);
  size_t eocd = 0;
  chai_status st = find_eocd(data, size, what, &eocd);
  if (st) return st;
  const uint8_t *r = data + eocd;
  uint64_t count = ckpt_le16(r + 10), cd_size = ckpt_le32(r + 12), cd_off = ckpt_le32(r + 16);
  if (ckpt_le16(r + 4) != 0 || ckpt_le16(r + 6) != 0)
    return chai_error(CHAI_ERR_UNSUPPORTED, "%s: multi-disk zip archives are not supported", what);
  if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
    if (eocd < 20 || ckpt_le32(data + eocd - 20) != SIG_LOC64)
      return chai_error(CHAI_ERR_FORMAT, "%s: zip needs ZIP64 but has no ZIP64 locator", what);
    uint64_t e64 = ckpt_le64(data + eocd - 20 + 8);
    if (e64 > size || size - e64 < 56 || ckpt_le32(data + e64) != SIG_EOCD64)
      return chai_error(CHAI_ERR_FORMAT, "%s: bad ZIP64 end-of-central-directory offset %llu", what,
                        (unsigned long long)e64);
    count = ckpt_le64(data + e64 + 32);
    cd_size = ckpt_le64(data + e64 + 40);
    cd_off = ckpt_le64(data + e64 + 48);
  }
  if (cd_off > size || cd_size > size - cd_off)
    return chai_error(CHAI_ERR_FORMAT,
                      "%s: zip central directory [%llu, +%llu) lies outside the %zu-byte file",
                      what, (unsigned long long)cd_off, (unsigned long long)cd_size, size);
  if (count > cd_size / 46)
    return chai_error(CHAI_ERR_FORMAT,
                      "%s: zip claims %llu entries but its %llu-byte central directory holds at "
                      "most %llu",
                      what, (unsigned long long)count, (unsigned long long)cd_size,
                      (unsigned long long)(cd_size / 46));
  if (count) {
    z->entries = calloc((size_t)count, sizeof *z->entries);
    if (!z->entries) return chai_error(CHAI_ERR_NOMEM, "out of memory reading %s", what);
  }
  const uint8_t *cd = data + cd_off;
  size_t p = 0;
  for (uint64_t i = 0; i < count; i++) {
    zip_entry *e = &z->entries[i];
    if (cd_size - p < 46 || ckpt_le32(cd + p) != SIG_CENTRAL) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: zip central directory entry %llu is corrupt", what,
                      (unsigned long long)i);
      goto fail;
    }
    uint16_t flags = ckpt_le16(cd + p + 8);
    size_t nlen = ckpt_le16(cd + p + 28), xlen = ckpt_le16(cd + p + 30),
           clen = ckpt_le16(cd + p + 32);
    if (cd_size - p - 46 < nlen + xlen + clen) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: zip central directory entry %llu runs past its end",
                      what, (unsigned long long)i);
      goto fail;
    }
    e->name = (const char *)cd + p + 46;
    e->name_len = nlen;
    e->method = ckpt_le16(cd + p + 10);
    uint64_t comp = ckpt_le32(cd + p + 20), orig = ckpt_le32(cd + p + 24),
             lho = ckpt_le32(cd + p + 42);
    if ((st = zip64_extra(cd + p + 46 + nlen, xlen, &orig, &comp, &lho, what, e))) goto fail;
    int show = (int)(nlen > 200 ? 200 : nlen);
    if (flags & 1) {
      st = chai_error(CHAI_ERR_UNSUPPORTED, "%s: zip entry '%.*s' is encrypted", what, show,
                      e->name);
      goto fail;
    }
    if (lho > size || size - lho < 30 || ckpt_le32(data + lho) != SIG_LOCAL) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: zip entry '%.*s' has a bad local header offset %llu",
                      what, show, e->name, (unsigned long long)lho);
      goto fail;
    }
    uint64_t start = lho + 30 + ckpt_le16(data + lho + 26) + ckpt_le16(data + lho + 28);
    if (start > size || comp > size - start) {
      st = chai_error(
          CHAI_ERR_FORMAT, "%s: zip entry '%.*s' data [%llu, +%llu) lies outside the %zu-byte file",
          what, show, e->name, (unsigned long long)start, (unsigned long long)comp, size);
      goto fail;
    }
    e->offset = start;
    e->size = comp;
    e->orig_size = orig;
    p += 46 + nlen + xlen + clen;
  }
  z->n = (size_t)count;
  if (z->n > 1) {
    qsort(z->entries, z->n, sizeof *z->entries, entry_cmp);
    for (size_t i = 1; i < z->n; i++)
      if (entry_cmp(&z->entries[i - 1], &z->entries[i]) == 0) {
        st = chai_error(CHAI_ERR_FORMAT, "%s: zip has two entries named '%.*s'", what,
                        (int)(z->entries[i].name_len > 200 ? 200 : z->entries[i].name_len),
                        z->entries[i].name);
        goto fail;
      }
  }
  return CHAI_OK;
fail:
  zip_close(z);
  return st;
}

void zip_close(zip_archive *z) {
  free(z->entries);
  memset(z, 0, sizeof *z);
}

const zip_entry *zip_find(const zip_archive *z, const char *name, size_t len) {
  zip_entry key = {.name = name, .name_len = len};
  if (!z->n) return NULL;
  return bsearch(&key, z->entries, z->n, sizeof *z->entries, entry_cmp);
}

chai_status zip_stored(const zip_entry *e, const char *what, uint64_t *offset, uint64_t *size) {
  int show = (int)(e->name_len > 200 ? 200 : e->name_len);
  if (e->method != 0)
    return chai_error(CHAI_ERR_UNSUPPORTED,
                      "%s: zip entry '%.*s' is compressed (method %u); only stored entries can be "
                      "mapped (torch.save never compresses)",
                      what, show, e->name, (unsigned)e->method);
  if (e->size != e->orig_size)
    return chai_error(CHAI_ERR_FORMAT,
                      "%s: stored zip entry '%.*s' has compressed size %llu but size %llu", what,
                      show, e->name, (unsigned long long)e->size, (unsigned long long)e->orig_size);
  *offset = e->offset;
  *size = e->size;
  return CHAI_OK;
}
