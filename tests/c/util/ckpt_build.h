/* Test helpers that hand-build checkpoint files byte by byte: a pickle emitter for torch.save's
 * state-dict pickles and a zip writer with stored (or falsely "compressed") entries, optionally
 * in ZIP64 form. Used to craft both valid and deliberately broken files. */
#ifndef CHAI_TEST_CKPT_BUILD_H
#define CHAI_TEST_CKPT_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tb_buf {
  uint8_t *p;
  size_t n, cap;
} tb_buf;

void tb_put(tb_buf *b, const void *data, size_t n);
void tb_u8(tb_buf *b, unsigned v);
void tb_u16(tb_buf *b, unsigned v);
void tb_u32(tb_buf *b, uint32_t v);
void tb_u64(tb_buf *b, uint64_t v);
void tb_free(tb_buf *b);
/* Writes b to path; false on failure. */
bool tb_save(const char *path, const void *data, size_t n);

/* Pickle opcodes (protocol 2 forms). */
void pk_op(tb_buf *b, int op);
void pk_proto(tb_buf *b, int v);
void pk_global(tb_buf *b, const char *module, const char *name);
void pk_str(tb_buf *b, const char *s);
void pk_int(tb_buf *b, long long v); /* BININT1/BININT2/BININT/LONG1 as needed */

/* One tensor of a torch state dict, as _rebuild_tensor_v2 sees it (element units). */
typedef struct tb_tensor {
  const char *name;
  const char *storage_class; /* "HalfStorage" */
  const char *key;           /* data/<key> */
  long long numel;           /* the storage's declared size */
  long long offset;
  int ndim;
  long long shape[8], stride[8];
} tb_tensor;

/* A complete pickle: OrderedDict of name → _rebuild_tensor_v2(...), then STOP. */
void pk_state_dict(tb_buf *b, const tb_tensor *t, int n);

typedef struct zb_entry {
  const char *name;
  const void *data;
  size_t len;
  int method; /* 0 stored; anything else is written as given (the data is not really compressed) */
} zb_entry;

/* A zip of the entries, each entry's data 64-byte aligned as torch.save writes it; zip64 puts
 * every size and offset in ZIP64 extra fields and adds the ZIP64 end records. */
void zb_write(tb_buf *out, const zb_entry *e, int n, bool zip64);

#endif
