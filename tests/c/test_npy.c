/* NumPy .npy: round trips for every supported dtype, byte-identity with numpy.save, and refusal of
 * the bad files this test writes itself (bad magic, Fortran order, unsupported and big-endian
 * dtypes, lying and malformed headers). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chai/chai.h"
#include "chai/npy.h"
#include "check.h"

static char dir[256];

static const char *tmp_path(const char *name) {
  static char buf[512];
  snprintf(buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(data, 1, n, f) == n);
  fclose(f);
}

/* A v1.0 file with the given header dict text and `data_bytes` zero bytes of data. */
static void write_npy(const char *path, const char *dict, size_t data_bytes) {
  size_t dn = strlen(dict), total = (10 + dn + 1 + 63) / 64 * 64;
  unsigned char *buf = calloc(1, total + data_bytes);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)((total - 10) & 0xff);
  buf[9] = (unsigned char)((total - 10) >> 8);
  memset(buf + 10, ' ', total - 10);
  memcpy(buf + 10, dict, dn);
  buf[total - 1] = '\n';
  write_file(path, buf, total + data_bytes);
  free(buf);
}

static void test_round_trip(void) {
  const chai_dtype dts[] = {CHAI_F32, CHAI_F16, CHAI_I32, CHAI_I64, CHAI_I8, CHAI_U8};
  for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
    int64_t shape[3] = {2, 3, 4};
    chai_tensor t, back;
    CHECK_OK(chai_tensor_new(&t, dts[k], 3, shape));
    for (int i = 0; i < 24; i++)
      chai_tensor_set_flat(&t, i, (i * 7) % 23 - (dts[k] == CHAI_U8 ? 0 : 11));
    const char *p = tmp_path("rt.npy");
    CHECK_OK(chai_npy_save(p, &t));
    CHECK_OK(chai_npy_load(&back, p));
    CHECK(back.dtype == dts[k] && back.ndim == 3 && back.shape[0] == 2 && back.shape[2] == 4);
    CHECK(memcmp(chai_tensor_data(&back), chai_tensor_data(&t), chai_tensor_nbytes(&t)) == 0);
    chai_tensor_release(&back);
    chai_tensor_release(&t);
  }
  /* 0-d, empty and a non-contiguous view (written in C order of the view). */
  chai_tensor s, back, e, m, tr;
  CHECK_OK(chai_tensor_new(&s, CHAI_F32, 0, NULL));
  chai_tensor_set_flat(&s, 0, 2.5);
  CHECK_OK(chai_npy_save(tmp_path("s.npy"), &s));
  CHECK_OK(chai_npy_load(&back, tmp_path("s.npy")));
  CHECK(back.ndim == 0 && chai_tensor_get_flat(&back, 0) == 2.5);
  chai_tensor_release(&back);
  chai_tensor_release(&s);
  int64_t zero[2] = {0, 5};
  CHECK_OK(chai_tensor_new(&e, CHAI_I64, 2, zero));
  CHECK_OK(chai_npy_save(tmp_path("e.npy"), &e));
  CHECK_OK(chai_npy_load(&back, tmp_path("e.npy")));
  CHECK(back.ndim == 2 && back.shape[0] == 0 && back.shape[1] == 5);
  chai_tensor_release(&back);
  chai_tensor_release(&e);
  int64_t ms[2] = {2, 3};
  CHECK_OK(chai_tensor_new(&m, CHAI_F32, 2, ms));
  for (int i = 0; i < 6; i++)
    chai_tensor_set_flat(&m, i, i);
  CHECK_OK(chai_tensor_transpose(&tr, &m, 0, 1));
  CHECK_OK(chai_npy_save(tmp_path("tr.npy"), &tr));
  CHECK_OK(chai_npy_load(&back, tmp_path("tr.npy")));
  CHECK(back.shape[0] == 3 && back.shape[1] == 2);
  CHECK(chai_tensor_get_flat(&back, 1) == 3 && chai_tensor_get_flat(&back, 2) == 1);
  chai_tensor_release(&back);
  chai_tensor_release(&tr);

  /* Byte-identical to numpy 1.24's np.save(np.arange(6, dtype=np.float32).reshape(2, 3)). */
  CHECK_OK(chai_npy_save(tmp_path("np.npy"), &m));
  FILE *f = fopen(tmp_path("np.npy"), "rb");
  unsigned char got[200];
  size_t n = f ? fread(got, 1, sizeof got, f) : 0;
  if (f) fclose(f);
  CHECK(n == 128 + 24);
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  CHECK(memcmp(got, "\x93NUMPY\x01\x00\x76\x00", 10) == 0);
  CHECK(memcmp(got + 10, dict, strlen(dict)) == 0);
  CHECK(got[127] == '\n' && got[126] == ' ');
  float v[6];
  memcpy(v, got + 128, sizeof v);
  CHECK(v[0] == 0 && v[5] == 5);
  chai_tensor_release(&m);

  /* A version 2.0 header (u32 length), as numpy writes for huge headers. */
  unsigned char v2[128 + 12] = "\x93NUMPY\x02\x00";
  const char *d2 = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }";
  memset(v2 + 12, ' ', 116);
  memcpy(v2 + 12, d2, strlen(d2));
  v2[8] = 116;
  v2[127] = '\n';
  int32_t iv[3] = {7, -8, 9};
  memcpy(v2 + 128, iv, 12);
  write_file(tmp_path("v2.npy"), v2, 140);
  CHECK_OK(chai_npy_load(&back, tmp_path("v2.npy")));
  CHECK(back.dtype == CHAI_I32 && back.shape[0] == 3 && chai_tensor_get_flat(&back, 1) == -8);
  chai_tensor_release(&back);
}

/* Files in dir whose name contains ".tmp" (left-over temporaries of an atomic save). */
static int count_temporaries(void) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    n += strstr(e->d_name, ".tmp") != NULL;
  if (d) closedir(d);
  return n;
}

static void test_refusals(void) {
  chai_tensor t;
  const char *p = tmp_path("bad.npy");
  const char *zip = "PK\x03\x04 this is a zip, not a npy file";
  write_file(p, zip, strlen(zip));
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "bad magic");
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "bad.npy");
  CHECK(!chai_tensor_alive(&t));

  write_npy(p, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_UNSUPPORTED, "Fortran");
  write_npy(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 24);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_UNSUPPORTED, "'<f8'");
  write_npy(p, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", 12);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_UNSUPPORTED, "big-endian dtype '>f4'");
  write_npy(p, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", 12);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_UNSUPPORTED, "structured");
  write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1), }", 4);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_UNSUPPORTED, "more than 4 dims");

  /* A header that lies: 10^12 elements but 12 data bytes. Must fail before allocating. */
  size_t peak = chai_memory_peak();
  write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", 12);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "(1000000,1000000)");
  CHECK(chai_memory_peak() == peak);
  /* Overflowing products saturate rather than wrap around to a small size. */
  write_npy(p, "{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 0);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "data bytes");
  write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 12);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "truncated");
  write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "holds 12 data bytes");

  write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }", 8);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "unknown key 'extra'");
  write_npy(p, "{'descr': '<f4', 'shape': (2,), }", 8);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "missing key 'fortran_order'");
  write_npy(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", 8);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "malformed header");
  write_npy(p, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "fortran_order");
  write_npy(p, "not a dict", 0);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "expected '{'");

  /* Header length beyond the end of the file. */
  unsigned char lie[16] = "\x93NUMPY\x01\x00\xff\xff{}";
  write_file(p, lie, 12);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "header length 65535");
  unsigned char v9[16] = "\x93NUMPY\x09\x00\x02\x00{}";
  write_file(p, v9, 12);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "version 9.0");
  write_file(p, "\x93NUM", 4);
  CHECK_ERR(chai_npy_load(&t, p), CHAI_ERR_FORMAT, "too short");
  CHECK_ERR(chai_npy_load(&t, tmp_path("missing.npy")), CHAI_ERR_IO, "missing.npy");
  CHECK_ERR(chai_npy_load(&t, dir), CHAI_ERR_IO, "not a regular file");
  CHECK(!chai_tensor_alive(&t));
}

static void test_save_errors(void) {
  int64_t n[1] = {3};
  chai_tensor t, b;
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, 1, n));
  CHECK_ERR(chai_npy_save(tmp_path("no/such/dir/x.npy"), &t), CHAI_ERR_IO, "no/such/dir/x.npy");
  CHECK_OK(chai_tensor_to(&b, &t, CHAI_BF16));
  CHECK_ERR(chai_npy_save(tmp_path("b.npy"), &b), CHAI_ERR_UNSUPPORTED, "bf16");
  CHECK(access(tmp_path("b.npy"), F_OK) != 0);
  chai_tensor_release(&b);
  chai_tensor_release(&t);
  CHECK_ERR(chai_npy_save(tmp_path("f.npy"), &t), CHAI_ERR_STATE, "after free");

  /* A failed save leaves the existing file intact. */
  CHECK_OK(chai_tensor_new(&t, CHAI_F32, 1, n));
  chai_tensor_set_flat(&t, 0, 42);
  CHECK_OK(chai_npy_save(tmp_path("keep.npy"), &t));
  chai_tensor_release(&t);
  CHECK_OK(chai_tensor_new(&b, CHAI_BF16, 1, n));
  CHECK_ERR(chai_npy_save(tmp_path("keep.npy"), &b), CHAI_ERR_UNSUPPORTED, "bf16");
  chai_tensor_release(&b);
  CHECK_OK(chai_npy_load(&t, tmp_path("keep.npy")));
  CHECK(chai_tensor_get_flat(&t, 0) == 42);
  /* Saving over an existing file replaces it. */
  chai_tensor_set_flat(&t, 0, 43);
  CHECK_OK(chai_npy_save(tmp_path("keep.npy"), &t));
  chai_tensor_release(&t);
  CHECK_OK(chai_npy_load(&t, tmp_path("keep.npy")));
  CHECK(chai_tensor_get_flat(&t, 0) == 43);
  chai_tensor_release(&t);
  CHECK(count_temporaries() == 0);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/chai_test_npy_XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_refusals();
  test_save_errors();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
