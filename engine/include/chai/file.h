/* chai — durable writes for result files: a record appended whole or not at all, a file replaced
 * atomically. The search (scripts/experiments/search.lua) keeps its results with these, so an
 * interrupted run or a full disk never leaves a partial line and never loses a finished one. */
#ifndef CHAI_FILE_H
#define CHAI_FILE_H

#include <stddef.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends `len` bytes to `path` (created 0644 when missing) with write() (looping over short
 * writes) and fsync(). When any write or the fsync fails, the file is cut back to the length it had
 * before the call, so it holds either the whole record or none of it; the error is CHAI_ERR_IO and
 * names the path and the system's reason ("No space left on device"). One writer per file. */
chai_status chai_file_append(const char *path, const void *data, size_t len);

/* Replaces `path` with `len` bytes: writes "<path>.tmp", fsyncs it, renames it over `path` and
 * fsyncs the folder. On failure `path` is untouched and the temporary removed; CHAI_ERR_IO names
 * the path and the reason. */
chai_status chai_file_replace(const char *path, const void *data, size_t len);

/* Testing hook: after `bytes` more bytes written through chai_file_append/chai_file_replace, writes
 * fail with ENOSPC (a short write first when a call straddles the limit), as a full disk does.
 * A negative value turns it off (the default). */
void chai_file_fail_after(long bytes);

#ifdef __cplusplus
}
#endif
#endif
