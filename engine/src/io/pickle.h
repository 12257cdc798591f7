/* A restricted unpickler for torch.save's data.pkl (internal to the .bin reader). */
#ifndef CHAI_PICKLE_H
#define CHAI_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chai/tensor.h"

#define PKL_MAX_DIMS 8

/* A torch.<T>Storage class the unpickler accepts. */
typedef struct pkl_storage_type {
  const char *name; /* "HalfStorage" */
  size_t elem_size;
  bool supported; /* chai_tensor can hold it */
  chai_dtype dtype;
} pkl_storage_type;

/* One state-dict entry: name → _rebuild_tensor_v2(storage, offset, size, stride, ...). Strings
 * point into the pickle bytes (not NUL-terminated). Sizes, strides and offsets are in elements,
 * non-negative, and not yet checked against any storage. */
typedef struct pkl_tensor {
  const char *name;
  size_t name_len;
  const char *key; /* storage key: the data/<key> zip entry */
  size_t key_len;
  const pkl_storage_type *type;
  uint64_t storage_numel; /* as the persistent id declares it */
  uint64_t offset;
  int ndim;
  int64_t shape[PKL_MAX_DIMS];
  int64_t stride[PKL_MAX_DIMS];
} pkl_tensor;

/* Unpickles `data[0..len)` (protocols 2–4, a fixed opcode subset, iteratively, with bounded stack
 * and memo) and returns the top-level dict of tensors as a malloc'ed array the caller frees.
 * Only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and the torch.*Storage classes may
 * be named; any other global is refused (CHAI_ERR_FORMAT naming module.name) and nothing is ever
 * called. `what` names the pickle in errors. */
chai_status pkl_load_state_dict(const uint8_t *data, size_t len, const char *what, pkl_tensor **out,
                                int *count);

#endif
