#include "chai/memory.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_size_t live_bytes, peak_bytes;
static atomic_long fail_countdown;

void chai_alloc_fail_after(long n) { atomic_store(&fail_countdown, n); }

void *chai_alloc(size_t bytes, const char *what) {
  long n = atomic_load(&fail_countdown);
  if (n > 0) {
    if (n == 1) {
      chai_error(CHAI_ERR_NOMEM, "out of memory allocating %zu bytes for %s (injected failure)",
                 bytes, what);
      return NULL;
    }
    atomic_fetch_sub(&fail_countdown, 1);
  }
  size_t rounded = (bytes + CHAI_ALIGN - 1) / CHAI_ALIGN * CHAI_ALIGN;
  if (rounded == 0) rounded = CHAI_ALIGN;
  if (rounded < bytes) {
    chai_error(CHAI_ERR_NOMEM, "allocation of %zu bytes for %s is too large", bytes, what);
    return NULL;
  }
  void *p = aligned_alloc(CHAI_ALIGN, rounded);
  if (!p) {
    chai_error(CHAI_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
    return NULL;
  }
  size_t now = atomic_fetch_add(&live_bytes, bytes) + bytes;
  size_t peak = atomic_load(&peak_bytes);
  while (now > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, now)) {
  }
  return p;
}

void chai_free(void *ptr, size_t bytes) {
  if (!ptr) return;
  atomic_fetch_sub(&live_bytes, bytes);
  free(ptr);
}

size_t chai_memory_live(void) { return atomic_load(&live_bytes); }
size_t chai_memory_peak(void) { return atomic_load(&peak_bytes); }

chai_storage *chai_storage_new(size_t bytes) {
  chai_storage *s = chai_alloc(sizeof *s, "storage header");
  if (!s) return NULL;
  s->data = chai_alloc(bytes, "tensor storage");
  if (!s->data) {
    chai_free(s, sizeof *s);
    return NULL;
  }
  memset(s->data, 0, bytes);
  s->bytes = bytes;
  s->refs = 1;
  s->release = NULL;
  s->release_ctx = NULL;
  return s;
}

chai_storage *chai_storage_wrap(void *data, size_t bytes,
                                void (*release)(void *ctx, void *data, size_t bytes), void *ctx) {
  chai_storage *s = chai_alloc(sizeof *s, "storage header");
  if (!s) return NULL;
  s->data = data;
  s->bytes = bytes;
  s->refs = 1;
  s->release = release;
  s->release_ctx = ctx;
  return s;
}

void chai_storage_retain(chai_storage *s) {
  if (s) __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void chai_storage_release(chai_storage *s) {
  if (!s) return;
  if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
  if (s->release)
    s->release(s->release_ctx, s->data, s->bytes);
  else
    chai_free(s->data, s->bytes);
  chai_free(s, sizeof *s);
}
