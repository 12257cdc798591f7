/* A read-only zip directory over a buffer in memory (internal to the .bin reader). */
#ifndef CHAI_ZIP_H
#define CHAI_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"

typedef struct zip_entry {
  const char *name; /* points into the buffer; not NUL-terminated */
  size_t name_len;
  uint16_t method;    /* 0 = stored */
  uint64_t offset;    /* of the entry's data in the buffer (after its local header) */
  uint64_t size;      /* bytes of data as stored (compressed size) */
  uint64_t orig_size; /* uncompressed size */
} zip_entry;

typedef struct zip_archive {
  zip_entry *entries; /* sorted by name */
  size_t n;
} zip_archive;

/* Reads the central directory (ZIP64 aware) and every local header; checks every entry's data
 * range lies inside the buffer and that names are unique. `what` names the file in errors. */
chai_status zip_open(zip_archive *z, const uint8_t *data, size_t size, const char *what);
void zip_close(zip_archive *z);
/* The entry called name[0..len), or NULL. */
const zip_entry *zip_find(const zip_archive *z, const char *name, size_t len);
/* The entry's bytes, or CHAI_ERR_UNSUPPORTED naming it when it is compressed or its sizes disagree.
 */
chai_status zip_stored(const zip_entry *e, const char *what, uint64_t *offset, uint64_t *size);

#endif
