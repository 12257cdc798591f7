/* The PyTorch .bin reader (torch.save's zip format, PyTorch >= 1.6): <prefix>/data.pkl holds the
 * state dict as a pickle whose tensors point at storages <prefix>/data/<key>, stored uncompressed
 * and 64-byte aligned, so each tensor becomes a view straight into the mapped file. */
#include <stdlib.h>
#include <string.h>

#include "io/ckpt_internal.h"
#include "io/pickle.h"
#include "io/zip.h"

#define SHOW(n) (int)((n) > 200 ? 200 : (n))

/* The one "<prefix>/data.pkl" entry. */
static chai_status find_pickle(const zip_archive *z, const char *what, const zip_entry **out) {
  *out = NULL;
  for (size_t i = 0; i < z->n; i++) {
    const zip_entry *e = &z->entries[i];
    if (e->name_len < 10 || memcmp(e->name + e->name_len - 9, "/data.pkl", 9) != 0) continue;
    if (memchr(e->name, '/', e->name_len - 9)) continue; /* not at the top level */
    if (*out)
      return chai_error(CHAI_ERR_FORMAT, "%s: the archive has two pickles, '%.*s' and '%.*s'", what,
                        SHOW((*out)->name_len), (*out)->name, SHOW(e->name_len), e->name);
    *out = e;
  }
  if (!*out)
    return chai_error(CHAI_ERR_FORMAT,
                      "%s: a zip without a <prefix>/data.pkl entry is not a torch.save file", what);
  return CHAI_OK;
}

static chai_status check_byteorder(const zip_archive *z, const uint8_t *data, const char *what,
                                   const char *prefix, size_t plen) {
  char name[300];
  if (plen > 250) return CHAI_OK; /* such a prefix cannot name a byteorder entry we look up */
  memcpy(name, prefix, plen);
  memcpy(name + plen, "/byteorder", 10);
  const zip_entry *e = zip_find(z, name, plen + 10);
  if (!e) return CHAI_OK; /* older writers leave it out and are little-endian */
  uint64_t off, n;
  chai_status st = zip_stored(e, what, &off, &n);
  if (st) return st;
  if (n != 6 || memcmp(data + off, "little", 6) != 0)
    return chai_error(CHAI_ERR_UNSUPPORTED, "%s: byteorder is '%.*s'; only little-endian is read",
                      what, SHOW(n), (const char *)data + off);
  return CHAI_OK;
}

/* Turns one pickled tensor into an entry after checking its extent against its storage's bytes. */
static chai_status place_tensor(const zip_archive *z, const char *what, const char *prefix,
                                size_t plen, const pkl_tensor *t, uint64_t size_limit, int file,
                                ckpt_list *out) {
  size_t ename_len = plen + 6 + t->key_len;
  char *ename = malloc(ename_len);
  if (!ename) return chai_error(CHAI_ERR_NOMEM, "%s: out of memory", what);
  memcpy(ename, prefix, plen);
  memcpy(ename + plen, "/data/", 6);
  memcpy(ename + plen + 6, t->key, t->key_len);
  const zip_entry *ze = zip_find(z, ename, ename_len);
  chai_status st = CHAI_OK;
  if (!ze)
    st = chai_error(CHAI_ERR_FORMAT,
                    "%s: tensor '%.*s' uses storage '%.*s' but the archive has no entry '%.*s'",
                    what, SHOW(t->name_len), t->name, SHOW(t->key_len), t->key, SHOW(ename_len),
                    ename);
  free(ename);
  if (st) return st;
  uint64_t data_off, data_bytes;
  if ((st = zip_stored(ze, what, &data_off, &data_bytes))) return st;

  size_t es = t->type->elem_size;
  uint64_t storage_bytes;
  if (__builtin_mul_overflow(t->storage_numel, (uint64_t)es, &storage_bytes) ||
      storage_bytes > data_bytes)
    return chai_error(CHAI_ERR_FORMAT,
                      "%s: storage '%.*s' declares %llu %s elements but its entry holds %llu bytes",
                      what, SHOW(t->key_len), t->key, (unsigned long long)t->storage_numel,
                      t->type->name, (unsigned long long)data_bytes);
  ckpt_entry e;
  memset(&e, 0, sizeof e);
  e.file = file;
  e.supported = t->type->supported;
  e.dtype = t->type->dtype;
  e.dtype_name = t->type->name;
  e.elem_size = es;
  e.ndim = t->ndim;
  bool empty = false;
  for (int i = 0; i < t->ndim; i++) {
    e.shape[i] = t->shape[i];
    if (!t->shape[i]) empty = true;
  }
  /* Contiguous strides for the size-1 dims (where PyTorch's stride is arbitrary and could
   * overflow once scaled to bytes) and for empty tensors, which read nothing. */
  uint64_t logical;
  if (!ckpt_nbytes(t->ndim, t->shape, es, &logical) || logical > size_limit) {
    char shape[200];
    chai_shape_str(t->ndim, t->shape, shape, sizeof shape);
    return chai_error(CHAI_ERR_FORMAT,
                      "%s: tensor '%.*s' of size %s needs more bytes than the %llu-byte file holds",
                      what, SHOW(t->name_len), t->name, shape, (unsigned long long)size_limit);
  }
  uint64_t cs = es;
  uint64_t last = t->offset; /* the highest element the view reaches */
  bool overflow = false;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (empty || t->shape[i] == 1) {
      e.stride[i] = (int64_t)cs;
    } else {
      uint64_t reach;
      overflow |=
          __builtin_mul_overflow((uint64_t)(t->shape[i] - 1), (uint64_t)t->stride[i], &reach);
      overflow |= __builtin_add_overflow(last, reach, &last);
      e.stride[i] = (int64_t)((uint64_t)t->stride[i] * es); /* < storage bytes once checked */
    }
    cs *= t->shape[i] ? (uint64_t)t->shape[i] : 1; /* bounded: logical bytes fit the file */
  }
  if (empty) {
    e.offset = (size_t)data_off;
  } else {
    if (overflow || last >= t->storage_numel) {
      char shape[200], stride[200];
      chai_shape_str(t->ndim, t->shape, shape, sizeof shape);
      chai_shape_str(t->ndim, t->stride, stride, sizeof stride);
      return chai_error(CHAI_ERR_FORMAT,
                        "%s: tensor '%.*s' (size %s, stride %s, offset %llu) reaches past the "
                        "%llu elements of storage '%.*s'",
                        what, SHOW(t->name_len), t->name, shape, stride,
                        (unsigned long long)t->offset, (unsigned long long)t->storage_numel,
                        SHOW(t->key_len), t->key);
    }
    e.offset = (size_t)(data_off + t->offset * es);
  }
  e.name = malloc(t->name_len + 1);
  if (!e.name) return chai_error(CHAI_ERR_NOMEM, "%s: out of memory", what);
  memcpy(e.name, t->name, t->name_len);
  e.name[t->name_len] = 0;
  return ckpt_list_push(out, &e);
}

chai_status ckpt_torchbin_parse(const uint8_t *data, size_t size, const char *what, int file,
                                ckpt_list *out) {
  zip_archive z;
  chai_status st = zip_open(&z, data, size, what);
  if (st) return st;
  const zip_entry *pe;
  pkl_tensor *tens = NULL;
  int n = 0;
  if ((st = find_pickle(&z, what, &pe))) goto done;
  const char *prefix = pe->name;
  size_t plen = pe->name_len - 9;
  uint64_t off, len;
  if ((st = check_byteorder(&z, data, what, prefix, plen))) goto done;
  if ((st = zip_stored(pe, what, &off, &len))) goto done;
  if ((st = pkl_load_state_dict(data + off, (size_t)len, what, &tens, &n))) goto done;
  for (int i = 0; i < n && !st; i++)
    st = place_tensor(&z, what, prefix, plen, &tens[i], size, file, out);
done:
  free(tens);
  zip_close(&z);
  return st;
}
