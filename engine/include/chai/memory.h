/* chai — allocation and refcounted storage. */
#ifndef CHAI_MEMORY_H
#define CHAI_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHAI_ALIGN 64

/* Every byte buffer chai owns comes from here: 64-byte aligned, counted in chai_memory_live().
 * Returns NULL (and sets the last error naming `what` and the size) on failure. */
void *chai_alloc(size_t bytes, const char *what);
void chai_free(void *ptr, size_t bytes);

/* Bytes currently held by chai_alloc, and the high-water mark since start. */
size_t chai_memory_live(void);
size_t chai_memory_peak(void);

/* Test hook: the next `n`-th allocation (1 = the very next) and every one after it fails until
 * chai_alloc_fail_after(0) disarms. */
void chai_alloc_fail_after(long n);

/* A refcounted byte buffer. `data` is 64-byte aligned when chai allocated it; an external buffer
 * (an mmapped file, say) carries its own release callback. */
typedef struct chai_storage {
  uint8_t *data;
  size_t bytes;
  long refs;
  void (*release)(void *ctx, void *data, size_t bytes); /* NULL: chai_free */
  void *release_ctx;
} chai_storage;

/* A new storage of `bytes` zeroed bytes with one reference, or NULL (last error set). */
chai_storage *chai_storage_new(size_t bytes);
/* Wraps memory the caller owns; `release(ctx, data, bytes)` runs when the last reference goes. */
chai_storage *chai_storage_wrap(void *data, size_t bytes,
                                void (*release)(void *ctx, void *data, size_t bytes), void *ctx);
void chai_storage_retain(chai_storage *s);
/* Drops one reference; frees at zero. NULL is ignored. */
void chai_storage_release(chai_storage *s);

#ifdef __cplusplus
}
#endif
#endif
