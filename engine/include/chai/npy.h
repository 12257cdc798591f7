/* chai — NumPy .npy files (format versions 1.0, 2.0 and 3.0 read; 1.0 written), C order only.
 * Dtypes: f32 '<f4', f16 '<f2', i32 '<i4', i64 '<i8', i8 '|i1', u8 '|u1'. bf16 has no NumPy dtype.
 */
#ifndef CHAI_NPY_H
#define CHAI_NPY_H

#include "chai/error.h"
#include "chai/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes t (any strides; written in C order) to `path` as a .npy v1.0 file. The bytes go to a
 * temporary file beside `path` that is renamed over it, so a reader never sees half a file and a
 * failed save leaves an existing `path` untouched. Fails with CHAI_ERR_STATE for a released tensor,
 * CHAI_ERR_UNSUPPORTED for bf16, CHAI_ERR_IO (naming the path) when the file cannot be written. */
chai_status chai_npy_save(const char *path, const chai_tensor *t);

/* Reads a .npy file into a new contiguous tensor; `out` receives the only reference and is left
 * released on failure. Refuses, with a message naming the path and the bad value: a bad magic or
 * version (CHAI_ERR_FORMAT), a malformed header (CHAI_ERR_FORMAT), Fortran order, big-endian or
 * other dtypes ('<f8', '>f4', ...) and more than 4 dims (CHAI_ERR_UNSUPPORTED), and a data section
 * whose size differs from what the header's shape implies (CHAI_ERR_FORMAT). The size check runs
 * before any allocation, so a lying header never causes a large allocation. */
chai_status chai_npy_load(chai_tensor *out, const char *path);

#ifdef __cplusplus
}
#endif
#endif
