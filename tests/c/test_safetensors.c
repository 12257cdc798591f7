/* safetensors: chai's writer and reader round trip (every dtype, non-contiguous input, 0-dim and
 * empty tensors, metadata), the file layout (8-byte-padded header, no gaps, aligned data, atomic
 * replace), writer argument errors, and a file written by Python with a misaligned header. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chai/chai.h"
#include "check.h"

#define FIXDIR CHAI_TEST_FIXTURES "/checkpoints"

static char tmpdir[64];

static void path_in(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmpdir, name);
}

static int files_in_tmpdir(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n;
}

static void fill(chai_tensor *t, double scale) {
  int64_t n = chai_tensor_numel(t);
  for (int64_t i = 0; i < n; i++)
    chai_tensor_set_flat(t, i, (double)(i % 7) * scale - 3);
}

static void test_round_trip(void) {
  char path[128];
  path_in(path, sizeof path, "all.safetensors");
  enum { N = 10 };
  chai_tensor t[N], base;
  const char *names[N] = {"u8", "f16",        "i64",    "bf16",  "f32",
                          "i8", "transposed", "scalar", "empty", "i32"};
  chai_dtype dts[N] = {CHAI_U8, CHAI_F16, CHAI_I64, CHAI_BF16, CHAI_F32,
                       CHAI_I8, CHAI_F32, CHAI_F32, CHAI_F16,  CHAI_I32};
  int64_t s3[1] = {3}, s23[2] = {2, 3}, s0[2] = {0, 4}, s34[2] = {3, 4};
  for (int i = 0; i < N; i++) {
    if (i == 6) {
      CHECK_OK(chai_tensor_new(&base, CHAI_F32, 2, s34));
      fill(&base, 0.25);
      CHECK_OK(chai_tensor_transpose(&t[i], &base, 0, 1)); /* (4,3), non-contiguous */
      continue;
    }
    if (i == 7)
      CHECK_OK(chai_tensor_new(&t[i], dts[i], 0, NULL));
    else if (i == 8)
      CHECK_OK(chai_tensor_new(&t[i], dts[i], 2, s0));
    else if (i % 2)
      CHECK_OK(chai_tensor_new(&t[i], dts[i], 2, s23));
    else
      CHECK_OK(chai_tensor_new(&t[i], dts[i], 1, s3));
    fill(&t[i], dts[i] == CHAI_U8 ? 1 : 0.5);
    if (dts[i] == CHAI_U8)
      for (int k = 0; k < 3; k++)
        chai_tensor_set_flat(&t[i], k, 250 + k);
  }
  const char *meta[] = {"format", "pt", "note", "quote \" and \\ and \n", NULL};
  CHECK_OK(chai_safetensors_save(path, N, names, t, meta));
  CHECK(files_in_tmpdir() == 1); /* no temporary left behind */

  /* layout: header length a multiple of 8, data packed with no gaps */
  FILE *f = fopen(path, "rb");
  uint8_t len8[8] = {0};
  CHECK(f && fread(len8, 1, 8, f) == 8);
  if (f) fclose(f);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++)
    hlen |= (uint64_t)len8[i] << (8 * i);
  CHECK(hlen % 8 == 0);
  struct stat sb;
  CHECK(stat(path, &sb) == 0);
  size_t data = 0;
  for (int i = 0; i < N; i++)
    data += chai_tensor_nbytes(&t[i]);
  CHECK((size_t)sb.st_size == 8 + hlen + data);

  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, path));
  if (ck) {
    CHECK(strcmp(chai_checkpoint_format(ck), "safetensors") == 0);
    CHECK(chai_checkpoint_count(ck) == N);
    for (int i = 0; i < N; i++) {
      CHECK(strcmp(chai_checkpoint_name(ck, i), names[i]) == 0); /* header order */
      chai_tensor r;
      CHECK_OK(chai_checkpoint_get(ck, names[i], &r));
      if (!chai_tensor_alive(&r)) continue;
      CHECK(r.dtype == t[i].dtype && r.ndim == t[i].ndim);
      for (int d = 0; d < r.ndim; d++)
        CHECK(r.shape[d] == t[i].shape[d]);
      CHECK(chai_tensor_is_contiguous(&r));
      CHECK(r.storage->release != NULL); /* zero copy: every tensor is aligned */
      CHECK((uintptr_t)chai_tensor_data(&r) % chai_dtype_size(r.dtype) == 0);
      int64_t n = chai_tensor_numel(&r);
      int bad = 0;
      for (int64_t k = 0; k < n; k++)
        bad += chai_tensor_get_flat(&r, k) != chai_tensor_get_flat(&t[i], k);
      CHECK(bad == 0);
      chai_tensor_release(&r);
    }
    chai_checkpoint_close(ck);
  }

  /* saving again replaces the file atomically */
  CHECK_OK(chai_safetensors_save(path, 1, names + 4, t + 4, NULL));
  CHECK_OK(chai_checkpoint_open(&ck, path));
  CHECK(ck && chai_checkpoint_count(ck) == 1 && chai_checkpoint_has(ck, "f32"));
  chai_checkpoint_close(ck);
  CHECK(files_in_tmpdir() == 1);
  /* an empty file of tensors is valid too */
  CHECK_OK(chai_safetensors_save(path, 0, NULL, NULL, NULL));
  CHECK_OK(chai_checkpoint_open(&ck, path));
  CHECK(ck && chai_checkpoint_count(ck) == 0);
  chai_checkpoint_close(ck);

  /* writer argument errors leave nothing behind */
  unlink(path);
  const char *dup[2] = {"a", "a"}, *empty[1] = {""}, *reserved[1] = {"__metadata__"};
  CHECK_ERR(chai_safetensors_save(path, 2, dup, t, NULL), CHAI_ERR_ARG, "'a' is given twice");
  CHECK_ERR(chai_safetensors_save(path, 1, empty, t, NULL), CHAI_ERR_ARG, "empty name");
  CHECK_ERR(chai_safetensors_save(path, 1, reserved, t, NULL), CHAI_ERR_ARG, "reserved");
  const char *badmeta[] = {"k", NULL};
  CHECK_ERR(chai_safetensors_save(path, 1, names, t, badmeta), CHAI_ERR_ARG, "'k' has no value");
  chai_tensor dead = t[0];
  dead.storage = NULL;
  CHECK_ERR(chai_safetensors_save(path, 1, names, &dead, NULL), CHAI_ERR_ARG, "released");
  CHECK_ERR(chai_safetensors_save("/nonexistent-dir/x.safetensors", 1, names, t, NULL), CHAI_ERR_IO,
            "/nonexistent-dir/x.safetensors");
  CHECK(files_in_tmpdir() == 0);
  for (int i = 0; i < N; i++)
    chai_tensor_release(&t[i]);
  chai_tensor_release(&base);
}

/* Python-written file: odd header length, so the tensors are misaligned and must be copied. */
static void test_misaligned(void) {
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, FIXDIR "/misaligned.safetensors"));
  if (!ck) return;
  CHECK(chai_checkpoint_count(ck) == 3);
  chai_tensor w, h, none;
  CHECK_OK(chai_checkpoint_get(ck, "w", &w));
  CHECK_OK(chai_checkpoint_get(ck, "h", &h));
  CHECK_OK(chai_checkpoint_get(ck, "none", &none));
  chai_checkpoint_close(ck);
  if (!chai_tensor_alive(&w) || !chai_tensor_alive(&h)) return;
  CHECK(w.storage->release == NULL); /* an aligned copy chai allocated */
  CHECK((uintptr_t)chai_tensor_data(&w) % 4 == 0 && (uintptr_t)chai_tensor_data(&h) % 2 == 0);
  const double want[6] = {1.5, -2.0, 3.25, 4.0, 5.5, -6.75};
  for (int i = 0; i < 6; i++)
    CHECK(chai_tensor_get_flat(&w, i) == want[i]);
  CHECK(chai_tensor_get_flat(&h, 0) == 0.5 && chai_tensor_get_flat(&h, 1) == -1.0);
  CHECK(chai_tensor_numel(&none) == 0 && none.ndim == 1);
  chai_tensor_release(&w);
  chai_tensor_release(&h);
  chai_tensor_release(&none);
}

/* A folder holding model.safetensors wins over pytorch_model.bin. */
static void test_folder_order(void) {
  char st[128], bin[128];
  path_in(st, sizeof st, "model.safetensors");
  path_in(bin, sizeof bin, "pytorch_model.bin");
  chai_tensor t;
  int64_t s2[1] = {2};
  CHECK_OK(chai_tensor_new(&t, CHAI_F16, 1, s2));
  const char *name = "decoder.x";
  CHECK_OK(chai_safetensors_save(st, 1, &name, &t, NULL));
  FILE *f = fopen(bin, "wb"); /* garbage: must not be opened */
  if (f) fclose(f);
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, tmpdir));
  CHECK(ck && strcmp(chai_checkpoint_format(ck), "safetensors") == 0 &&
        chai_checkpoint_has(ck, "decoder.x"));
  chai_checkpoint_close(ck);
  unlink(st);
  CHECK_ERR(chai_checkpoint_open(&ck, tmpdir), CHAI_ERR_FORMAT,
            "pytorch_model.bin is not a torch.save zip archive");
  CHECK(ck == NULL);
  unlink(bin);
  CHECK_ERR(chai_checkpoint_open(&ck, tmpdir), CHAI_ERR_IO, "holds no model.safetensors");
  chai_tensor_release(&t);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/chai-test-st-XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_round_trip();
  test_misaligned();
  test_folder_order();
  rmdir(tmpdir);
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
