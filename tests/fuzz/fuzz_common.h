/* Shared by the checkpoint fuzz harnesses: open one in-memory file through the same code path as
 * chai_checkpoint_open (minus mmap), then read every tensor it yields. */
#ifndef CHAI_FUZZ_COMMON_H
#define CHAI_FUZZ_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "io/ckpt_internal.h"

static volatile double fuzz_sink; /* keeps the element reads from being optimized away */

static void fuzz_free(void *ctx, void *data, size_t bytes) {
  (void)ctx;
  (void)bytes;
  free(data);
}

/* The buffer is malloc'ed at its exact size so AddressSanitizer sees any read past its end. */
static void fuzz_open_and_read(const uint8_t *data, size_t size, const char *what) {
  uint8_t *copy = malloc(size ? size : 1);
  if (!copy) return;
  memcpy(copy, data, size);
  chai_storage *s = chai_storage_wrap(copy, size, fuzz_free, NULL);
  if (!s) {
    free(copy);
    return;
  }
  chai_checkpoint *ck;
  if (chai_checkpoint_open_buffer(&ck, s, what) == CHAI_OK) {
    for (int i = 0; i < chai_checkpoint_count(ck); i++) {
      chai_tensor t;
      if (chai_checkpoint_get(ck, chai_checkpoint_name(ck, i), &t) != CHAI_OK) continue;
      /* touch every element the view claims */
      int64_t n = chai_tensor_numel(&t);
      double sum = 0;
      for (int64_t k = 0; k < n; k++)
        sum += chai_tensor_get_flat(&t, k);
      fuzz_sink = sum;
      chai_tensor_release(&t);
    }
    chai_checkpoint_close(ck);
  }
  chai_storage_release(s);
}

#endif
