/* The PyTorch .bin reader against files torch.save wrote (tests/fixtures/checkpoints, made by
 * make_checkpoint_fixtures.py): names in file order, dtypes, shapes, strides, values, shared
 * storages with offsets, non-contiguous views, zero copy, protocol 4, shards, and a ZIP64 archive
 * built by hand. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chai/chai.h"
#include "check.h"
#include "ckpt_build.h"

#define DIR CHAI_TEST_FIXTURES "/checkpoints"

static cJSON *expected;

static cJSON *load_expected(void) {
  FILE *f = fopen(DIR "/expected.json", "rb");
  if (!f) return NULL;
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  return cJSON_Parse(buf);
}

static bool dtype_of(const char *torch_name, chai_dtype *dt) {
  static const struct {
    const char *name;
    chai_dtype dt;
  } map[] = {{"float32", CHAI_F32}, {"float16", CHAI_F16}, {"bfloat16", CHAI_BF16},
             {"int32", CHAI_I32},   {"int64", CHAI_I64},   {"int8", CHAI_I8},
             {"uint8", CHAI_U8}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(map[i].name, torch_name) == 0) {
      *dt = map[i].dt;
      return true;
    }
  return false;
}

/* Every tensor of `key` in expected.json read back from `path`; returns tensors checked. */
static int check_file(const char *key, const char *path, bool expect_zero_copy) {
  const cJSON *want = cJSON_GetObjectItemCaseSensitive(expected, key);
  CHECK(want != NULL);
  if (!want) return 0;
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, path));
  if (!ck) return 0;
  CHECK(strcmp(chai_checkpoint_format(ck),
               strstr(path, ".safetensors") ? "safetensors" : "pytorch") == 0);
  CHECK(chai_checkpoint_count(ck) == cJSON_GetArraySize(want));
  int i = 0, checked = 0;
  chai_tensor kept[64];
  double sums[64];
  int nkept = 0;
  for (const cJSON *w = want->child; w; w = w->next, i++) {
    const char *name = w->string;
    const char *got_name = chai_checkpoint_name(ck, i);
    CHECK(got_name && strcmp(got_name, name) == 0); /* file order is kept */
    CHECK(chai_checkpoint_has(ck, name));
    const char *tdt = cJSON_GetObjectItem(w, "dtype")->valuestring;
    const cJSON *shape = cJSON_GetObjectItem(w, "shape"),
                *stride = cJSON_GetObjectItem(w, "stride");
    const cJSON *values = cJSON_GetObjectItem(w, "values");
    chai_tensor t;
    chai_dtype dt = CHAI_F32;
    if (strcmp(tdt, "float64") == 0) {
      CHECK_ERR(chai_checkpoint_get(ck, name, &t), CHAI_ERR_UNSUPPORTED, "DoubleStorage");
      CHECK(!chai_tensor_alive(&t));
      continue;
    }
    if (strcmp(tdt, "bool") == 0) {
      CHECK_ERR(chai_checkpoint_get(ck, name, &t), CHAI_ERR_UNSUPPORTED, "BoolStorage");
      continue;
    }
    if (cJSON_GetArraySize(shape) > CHAI_MAX_DIMS) {
      CHECK_ERR(chai_checkpoint_get(ck, name, &t), CHAI_ERR_UNSUPPORTED, "5 dims");
      continue;
    }
    CHECK(dtype_of(tdt, &dt));
    CHECK_OK(chai_checkpoint_get(ck, name, &t));
    if (!chai_tensor_alive(&t)) continue;
    CHECK(t.dtype == dt);
    CHECK(t.ndim == cJSON_GetArraySize(shape));
    int d = 0;
    size_t es = chai_dtype_size(dt);
    int64_t numel = 1;
    for (const cJSON *s = shape->child, *st = stride->child; s; s = s->next, st = st->next, d++) {
      CHECK(t.shape[d] == (int64_t)s->valuedouble);
      numel *= t.shape[d];
      if (t.shape[d] > 1) CHECK(t.stride[d] == (int64_t)st->valuedouble * (int64_t)es);
    }
    CHECK(chai_tensor_is_contiguous(&t) == cJSON_IsTrue(cJSON_GetObjectItem(w, "contiguous")) ||
          numel == 0);
    CHECK(cJSON_GetArraySize(values) == numel);
    int k = 0, bad = 0;
    for (const cJSON *v = values->child; v; v = v->next, k++)
      if (chai_tensor_get_flat(&t, k) != v->valuedouble) bad++;
    CHECK(bad == 0);
    if (bad) fprintf(stderr, "  %s: %d of %lld values differ\n", name, bad, (long long)numel);
    /* aligned data is served straight from the mapping (a storage chai did not allocate) */
    bool mapped = t.storage->release != NULL;
    CHECK(mapped == expect_zero_copy);
    CHECK(((uintptr_t)chai_tensor_data(&t) % es) == 0);
    if (nkept < 64) {
      sums[nkept] = 0;
      for (int64_t j = 0; j < numel; j++)
        sums[nkept] += chai_tensor_get_flat(&t, j);
      kept[nkept++] = t;
    } else {
      chai_tensor_release(&t);
    }
    checked++;
  }
  chai_checkpoint_close(ck);
  /* tensors outlive the checkpoint: re-read them after close */
  int bad = 0;
  for (int k = 0; k < nkept; k++) {
    int64_t n = chai_tensor_numel(&kept[k]);
    double sum = 0;
    for (int64_t j = 0; j < n; j++)
      sum += chai_tensor_get_flat(&kept[k], j);
    bad += sum != sums[k];
    chai_tensor_release(&kept[k]);
  }
  CHECK(bad == 0);
  return checked;
}

static void test_fixtures(void) {
  CHECK(check_file("fp16.bin", DIR "/fp16.bin", true) == 5);
  CHECK(check_file("f32_views.bin", DIR "/f32_views.bin", true) == 13);
  CHECK(check_file("proto4.bin", DIR "/proto4.bin", true) == 2);
  /* a folder with only an index: found and opened shard by shard */
  CHECK(check_file("sharded", DIR "/sharded", true) == 3);
  CHECK(check_file("sharded", DIR "/sharded/pytorch_model.bin.index.json", true) == 3);
}

static void test_shared_storage(void) {
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, DIR "/f32_views.bin"));
  if (!ck) return;
  chai_tensor a, b, c, t;
  CHECK_OK(chai_checkpoint_get(ck, "shared.a", &a));
  CHECK_OK(chai_checkpoint_get(ck, "shared.b", &b));
  CHECK_OK(chai_checkpoint_get(ck, "shared.c", &c));
  CHECK_OK(chai_checkpoint_get(ck, "transposed", &t));
  /* one mapping for the whole file; the shared storage's offsets land 6 and 18 floats in */
  CHECK(a.storage == b.storage && b.storage == t.storage);
  CHECK((uint8_t *)chai_tensor_data(&b) - (uint8_t *)chai_tensor_data(&a) == 6 * 4);
  CHECK((uint8_t *)chai_tensor_data(&c) - (uint8_t *)chai_tensor_data(&a) == 18 * 4);
  CHECK(!chai_tensor_is_contiguous(&t) && t.stride[0] == 4 && t.stride[1] == 20);
  /* a contiguous copy of the transposed view equals element-wise reads */
  chai_tensor tc;
  CHECK_OK(chai_tensor_contiguous(&tc, &t));
  CHECK(chai_tensor_get_flat(&tc, 1) == chai_tensor_get_flat(&t, 1));
  /* writing into a weight is allowed (private mapping) and does not reach the file */
  float *pa = chai_tensor_data(&a);
  float old = pa[0];
  pa[0] = 99;
  chai_tensor_release(&a);
  chai_tensor_release(&b);
  chai_tensor_release(&c);
  chai_tensor_release(&t);
  chai_tensor_release(&tc);
  chai_checkpoint_close(ck);
  CHECK_OK(chai_checkpoint_open(&ck, DIR "/f32_views.bin"));
  CHECK_OK(chai_checkpoint_get(ck, "shared.a", &a));
  CHECK(((float *)chai_tensor_data(&a))[0] == old);
  chai_tensor_release(&a);
  CHECK(chai_checkpoint_name(ck, -1) == NULL && chai_checkpoint_name(ck, 1000) == NULL);
  CHECK_ERR(chai_checkpoint_get(ck, "decoder.nope", &a), CHAI_ERR_ARG, "decoder.nope");
  CHECK(!chai_checkpoint_has(ck, "decoder.nope"));
  chai_checkpoint_close(ck);
}

/* A torch-layout archive built by hand in ZIP64 form, read like any other. */
static void test_zip64(void) {
  uint16_t half[6] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600}; /* 1..6 */
  tb_tensor t = {.name = "decoder.w",
                 .storage_class = "HalfStorage",
                 .key = "0",
                 .numel = 6,
                 .offset = 0,
                 .ndim = 2,
                 .shape = {2, 3},
                 .stride = {3, 1}};
  tb_tensor u = {.name = "decoder.col",
                 .storage_class = "HalfStorage",
                 .key = "0",
                 .numel = 6,
                 .offset = 1,
                 .ndim = 1,
                 .shape = {2},
                 .stride = {3}};
  tb_tensor both[2] = {t, u};
  tb_buf pk = {0}, zip = {0};
  pk_state_dict(&pk, both, 2);
  zb_entry e[3] = {{"archive/data.pkl", pk.p, pk.n, 0},
                   {"archive/byteorder", "little", 6, 0},
                   {"archive/data/0", half, sizeof half, 0}};
  zb_write(&zip, e, 3, true);
  char path[] = "/tmp/chai-test-zip64-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  CHECK(tb_save(path, zip.p, zip.n));
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, path));
  if (ck) {
    chai_tensor w, c;
    CHECK_OK(chai_checkpoint_get(ck, "decoder.w", &w));
    CHECK_OK(chai_checkpoint_get(ck, "decoder.col", &c));
    CHECK(w.storage && w.storage->release != NULL); /* zero copy */
    CHECK(chai_tensor_get_flat(&w, 5) == 6 && chai_tensor_get_flat(&c, 0) == 2 &&
          chai_tensor_get_flat(&c, 1) == 5 && c.stride[0] == 6);
    chai_tensor_release(&w);
    chai_tensor_release(&c);
    chai_checkpoint_close(ck);
  }
  unlink(path);
  tb_free(&pk);
  tb_free(&zip);
}

int main(void) {
  expected = load_expected();
  CHECK(expected != NULL);
  if (expected) {
    test_fixtures();
    cJSON_Delete(expected);
  }
  test_shared_storage();
  test_zip64();
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
