/* chai — reading model checkpoints (safetensors, PyTorch .bin, sharded) and writing safetensors. */
#ifndef CHAI_CHECKPOINT_H
#define CHAI_CHECKPOINT_H

#include <stdbool.h>

#include "chai/error.h"
#include "chai/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Named tensors from one or more files. Each file is mmapped once (private, copy-on-write, so a
 * tensor handed out may be written without touching the file) and fully validated at open: every
 * tensor's bytes are known to lie inside its file before any get. */
typedef struct chai_checkpoint chai_checkpoint;

/* path: a folder (model.safetensors, model.safetensors.index.json, pytorch_model.bin or
 * pytorch_model.bin.index.json — first found in that order) or one .safetensors/.bin file (the
 * format is told by the file's first bytes, not its name; a *.index.json names shards by
 * "weight_map", each shard opened once). On success *out owns the checkpoint (free with
 * chai_checkpoint_close). Failures: CHAI_ERR_IO (missing/unreadable file), CHAI_ERR_FORMAT (a
 * malformed file: the message names the file, the key and the bad values), CHAI_ERR_UNSUPPORTED (a
 * legacy torch.save file, a compressed zip entry, a big-endian checkpoint), CHAI_ERR_NOMEM. *out is
 * NULL on failure. */
chai_status chai_checkpoint_open(chai_checkpoint **out, const char *path);
/* Frees the checkpoint; tensors already handed out stay valid (they hold storage references to the
 * mapped files). NULL is ignored. */
void chai_checkpoint_close(chai_checkpoint *ck);
/* Number of tensors, and the name of tensor i (0-based, in file order, shard by shard); NULL when i
 * is out of range. The string lives as long as the checkpoint. */
int chai_checkpoint_count(const chai_checkpoint *ck);
const char *chai_checkpoint_name(const chai_checkpoint *ck, int i);
/* "safetensors" | "pytorch" */
const char *chai_checkpoint_format(const chai_checkpoint *ck);
bool chai_checkpoint_has(const chai_checkpoint *ck, const char *name);
/* A new reference to the stored tensor as a view (dtype as stored: F32/F16/BF16/I32/I64/I8/U8; F64,
 * BOOL etc. → CHAI_ERR_UNSUPPORTED naming the key and dtype, as are tensors of more than 4 dims).
 * Zero copy over the mmapped file when the data is aligned for its dtype; otherwise an aligned
 * copy. A PyTorch tensor keeps its strides (a transposed tensor is a non-contiguous view). Missing
 * key → CHAI_ERR_ARG naming it. `out` is released on failure. */
chai_status chai_checkpoint_get(const chai_checkpoint *ck, const char *name, chai_tensor *out);
/* Writes a safetensors file atomically (temp + rename): names[i] → tensors[i] (contiguous or not),
 * header padded to 8 bytes, optional metadata pairs (NULL-terminated key,value list, may be NULL).
 * Data is laid out by descending element size so every tensor is aligned for its dtype. Names must
 * be unique, non-empty and not "__metadata__" (CHAI_ERR_ARG); CHAI_ERR_IO names the path when
 * writing fails, and no partial file is left behind. */
chai_status chai_safetensors_save(const char *path, int n, const char *const *names,
                                  const chai_tensor *tensors, const char *const *metadata);

#ifdef __cplusplus
}
#endif
#endif
