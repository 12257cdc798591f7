/* Internal to the checkpoint readers: the entry list the format parsers fill, and the from-memory
 * open used by the fuzz harnesses. Not part of the public API. */
#ifndef CHAI_CKPT_INTERNAL_H
#define CHAI_CKPT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/checkpoint.h"

/* Tensors of up to this many dims are read and validated; chai_checkpoint_get serves up to
 * CHAI_MAX_DIMS of them. */
#define CKPT_MAX_DIMS 8

/* One named tensor inside one mapped file. All byte ranges were checked against the file when the
 * entry was made, so a get needs no further validation. */
typedef struct ckpt_entry {
  char *name;             /* owned, NUL-terminated */
  int file;               /* index into the checkpoint's files */
  bool supported;         /* dtype is one chai_tensor can hold */
  chai_dtype dtype;       /* valid when supported */
  const char *dtype_name; /* as the file spells it ("F64", "DoubleStorage"); static */
  size_t elem_size;
  int ndim;
  int64_t shape[CKPT_MAX_DIMS];
  int64_t stride[CKPT_MAX_DIMS]; /* in bytes */
  size_t offset;                 /* bytes from the start of the file */
} ckpt_entry;

typedef struct ckpt_list {
  ckpt_entry *items;
  int n, cap;
} ckpt_list;

/* Appends *e (the list takes ownership of e->name, even on failure). */
chai_status ckpt_list_push(ckpt_list *l, const ckpt_entry *e);
void ckpt_list_free(ckpt_list *l);

/* Parse one file held in `data[0..size)`; append its tensors (tagged with `file`) to `out`.
 * `what` names the file in error messages. Offsets in the entries are relative to `data`. */
chai_status ckpt_safetensors_parse(const uint8_t *data, size_t size, const char *what, int file,
                                   ckpt_list *out);
chai_status ckpt_torchbin_parse(const uint8_t *data, size_t size, const char *what, int file,
                                ckpt_list *out);

/* "safetensors" or "pytorch" judged by the first bytes; CHAI_ERR_UNSUPPORTED for the legacy
 * (pre-1.6, non-zip) torch.save format. */
chai_status ckpt_sniff(const uint8_t *data, size_t size, const char *what, const char **format);

/* mmaps `path` read-only-to-disk (private) into a storage whose release unmaps it. */
chai_status ckpt_map_file(const char *path, chai_storage **out);

/* Opens a checkpoint over one in-memory file (takes a new reference to `buf`); `what` names it in
 * errors. The fuzz harnesses use this. */
chai_status chai_checkpoint_open_buffer(chai_checkpoint **out, chai_storage *buf, const char *what);

/* Product of the dims times elem_size into *bytes; false on overflow. */
bool ckpt_nbytes(int ndim, const int64_t *shape, size_t elem_size, uint64_t *bytes);

static inline uint16_t ckpt_le16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t ckpt_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t ckpt_le64(const uint8_t *p) {
  return (uint64_t)ckpt_le32(p) | (uint64_t)ckpt_le32(p + 4) << 32;
}

#endif
