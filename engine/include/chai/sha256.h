/* chai — SHA-256 (FIPS 180-4), used to check Hub downloads against their LFS etag. */
#ifndef CHAI_SHA256_H
#define CHAI_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Streaming state: init, update any number of times with any lengths, final once. */
typedef struct chai_sha256 {
  uint32_t h[8];
  uint64_t bytes;    /* total message length so far */
  uint8_t block[64]; /* pending partial block */
  size_t fill;       /* bytes pending in block */
} chai_sha256;

void chai_sha256_init(chai_sha256 *s);
void chai_sha256_update(chai_sha256 *s, const void *data, size_t n);
/* Writes the 32-byte digest; `s` must be re-initialised before reuse. */
void chai_sha256_final(chai_sha256 *s, uint8_t digest[32]);
/* Writes the digest as 64 lowercase hex digits + NUL. */
void chai_sha256_final_hex(chai_sha256 *s, char hex[65]);

/* One-shot digest of a buffer, as 64 lowercase hex digits + NUL. */
void chai_sha256_hex(const void *data, size_t n, char hex[65]);

/* Digest of a whole file as hex. CHAI_ERR_IO (naming the path) when it cannot be read. */
chai_status chai_sha256_file(const char *path, char hex[65]);

#ifdef __cplusplus
}
#endif
#endif
