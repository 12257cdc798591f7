/* Broken and hostile checkpoint files: each must fail with a clear message naming the problem, with
 * no crash, no leak and no allocation sized by a lie. safetensors headers and torch.save archives
 * are built here byte by byte (tests/c/util/ckpt_build.h); the pickle with a forbidden global is
 * only ever parsed, never run. Ends with a sweep over every truncation and every single-byte
 * corruption of the real fixtures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chai/chai.h"
#include "check.h"
#include "ckpt_build.h"

#define FIXDIR CHAI_TEST_FIXTURES "/checkpoints"

static char tmpdir[64];
static char path[128];

static const char *put_file(const char *name, const void *data, size_t n) {
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  unlink(path); /* a fresh inode: rewriting by truncation makes ext4 flush on every close */
  if (!tb_save(path, data, n)) fprintf(stderr, "cannot write %s\n", path);
  return path;
}

/* Opens data as `name` and expects failure with code and a message containing needle. */
static void expect_bad(const char *name, const void *data, size_t n, chai_status code,
                       const char *needle, int line) {
  chai_checkpoint *ck = (chai_checkpoint *)1;
  chai_status st = chai_checkpoint_open(&ck, put_file(name, data, n));
  if (st != code || !strstr(chai_last_error(), needle))
    fprintf(stderr, "  (case at line %d)\n", line);
  chai_test_check_err(st, code, needle, name, __FILE__, line);
  CHECK(ck == NULL);
  if (st == CHAI_OK) chai_checkpoint_close(ck);
  unlink(path);
}
#define BAD(name, data, n, code, needle) expect_bad(name, data, n, code, needle, __LINE__)

/* A safetensors file: length, header, then `data_len` bytes of data. */
static void st_file(tb_buf *b, const char *header, size_t data_len) {
  b->n = 0;
  tb_u64(b, strlen(header));
  tb_put(b, header, strlen(header));
  for (size_t i = 0; i < data_len; i++)
    tb_u8(b, (unsigned)i);
}

static void test_safetensors(void) {
  tb_buf b = {0};
  BAD("short.safetensors", "\x10\0\0", 3, CHAI_ERR_FORMAT, "too short for the 8-byte");
  BAD("empty.safetensors", "", 0, CHAI_ERR_FORMAT, "0 bytes");
  st_file(&b, "{}", 0);
  b.p[0] = 200; /* header length beyond the file */
  BAD("past.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "header length 200 runs past the end");
  tb_buf huge = {0};
  tb_u64(&huge, 200000000ull);
  BAD("huge.safetensors", huge.p, huge.n, CHAI_ERR_FORMAT, "100 MB");
  tb_free(&huge);
  st_file(&b, "{\"a\": {\"dtype\": \"F32\", ", 0);
  BAD("json.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "not valid JSON");
  st_file(&b, "[1, 2]", 0);
  BAD("array.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "not an object");
  st_file(&b, "{}    x ", 0);
  BAD("trailing.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "unexpected byte 0x78");
  st_file(&b, "{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
  BAD("dtype.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "unknown dtype \"F17\"");
  st_file(&b, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
  BAD("neg.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "shape[0] = -1");
  st_file(&b, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4);
  BAD("frac.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "shape[0] = 1.5");
  st_file(&b, "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]}}", 4);
  BAD("strshape.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "is not a non-negative integer");
  st_file(&b, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4);
  BAD("offs1.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "[begin, end]");
  st_file(&b, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
  BAD("nodtype.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "'a': missing or non-string \"dtype\"");
  st_file(&b, "{\"a\":[1]}", 4);
  BAD("entry.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "'a': entry is not a JSON object");
  st_file(&b, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4);
  BAD("range.safetensors", b.p, b.n, CHAI_ERR_FORMAT,
      "tensor 'a': data_offsets [0, 8] are outside the 4-byte data buffer");
  st_file(&b, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4);
  BAD("backwards.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "[4, 0] are outside");
  st_file(&b, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16);
  BAD("count.safetensors", b.p, b.n, CHAI_ERR_FORMAT,
      "shape (2,3) of F32 needs 24 bytes but data_offsets [0, 16] hold 16");
  st_file(&b,
          "{\"a\":{\"dtype\":\"F16\",\"shape\":[4294967296,4294967296,4294967296],"
          "\"data_offsets\":[0,0]}}",
          0);
  BAD("overflow.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "overflows");
  st_file(&b, "{\"a\":{\"dtype\":\"F16\",\"shape\":[1e300],\"data_offsets\":[0,2]}}", 2);
  BAD("big.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "shape[0]");
  st_file(&b,
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
          12);
  BAD("overlap.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "overlap tensor 'a' ending at 8");
  st_file(&b,
          "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
          4);
  BAD("dup.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "duplicate tensor name 'a'");
  st_file(&b, "{\"__metadata__\":[1]}", 0);
  BAD("meta.safetensors", b.p, b.n, CHAI_ERR_FORMAT, "\"__metadata__\" is not a JSON object");

  /* valid edge cases: empty tensors may share an offset; unsupported dtypes fail only on get */
  st_file(
      &b,
      "{\"__metadata__\":{\"k\":\"v\"},\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":"
      "[0,0]},\"e2\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
      "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[8,9]},"
      "\"big\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[9,10]}}   ",
      10);
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, put_file("ok.safetensors", b.p, b.n)));
  if (ck) {
    chai_tensor t;
    CHECK(chai_checkpoint_count(ck) == 5);
    CHECK_OK(chai_checkpoint_get(ck, "e2", &t));
    CHECK(chai_tensor_numel(&t) == 0 && t.shape[1] == 5);
    chai_tensor_release(&t);
    CHECK_ERR(chai_checkpoint_get(ck, "d", &t), CHAI_ERR_UNSUPPORTED, "tensor 'd' has dtype F64");
    CHECK_ERR(chai_checkpoint_get(ck, "b", &t), CHAI_ERR_UNSUPPORTED, "dtype BOOL");
    CHECK_ERR(chai_checkpoint_get(ck, "big", &t), CHAI_ERR_UNSUPPORTED, "5 dims");
    CHECK_ERR(chai_checkpoint_get(ck, "missing", &t), CHAI_ERR_ARG, "no tensor 'missing'");
    CHECK(!chai_tensor_alive(&t));
    chai_checkpoint_close(ck);
  }
  unlink(path);
  tb_free(&b);
}

/* A torch.save-layout zip: archive/data.pkl = pkl, plus the given storages. */
static void torch_zip(tb_buf *out, const tb_buf *pkl, const zb_entry *extra, int n_extra) {
  zb_entry e[8] = {{"archive/data.pkl", pkl->p, pkl->n, 0}, {"archive/version", "3\n", 2, 0}};
  for (int i = 0; i < n_extra; i++)
    e[2 + i] = extra[i];
  out->n = 0;
  zb_write(out, e, 2 + n_extra, false);
}

static const uint16_t halves[8] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600, 0x4700, 0x4800};

static void test_torch(void) {
  tb_buf pk = {0}, zip = {0};
  tb_tensor t = {.name = "w",
                 .storage_class = "HalfStorage",
                 .key = "0",
                 .numel = 8,
                 .offset = 0,
                 .ndim = 2,
                 .shape = {2, 4},
                 .stride = {4, 1}};
  zb_entry data0 = {"archive/data/0", halves, sizeof halves, 0};

  /* the baseline is valid */
  pk_state_dict(&pk, &t, 1);
  torch_zip(&zip, &pk, &data0, 1);
  chai_checkpoint *ck;
  CHECK_OK(chai_checkpoint_open(&ck, put_file("ok.bin", zip.p, zip.n)));
  chai_checkpoint_close(ck);

  /* compressed storage entry */
  zb_entry deflated = data0;
  deflated.method = 8;
  torch_zip(&zip, &pk, &deflated, 1);
  BAD("deflate.bin", zip.p, zip.n, CHAI_ERR_UNSUPPORTED,
      "zip entry 'archive/data/0' is compressed (method 8)");
  /* missing data/0 */
  torch_zip(&zip, &pk, NULL, 0);
  BAD("missing.bin", zip.p, zip.n, CHAI_ERR_FORMAT,
      "tensor 'w' uses storage '0' but the archive has no entry 'archive/data/0'");
  /* a zip with no pickle */
  zip.n = 0;
  zb_write(&zip, &data0, 1, false);
  BAD("nopickle.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "without a <prefix>/data.pkl");
  /* a storage declaring more elements than its entry holds */
  pk.n = 0;
  t.numel = 1000;
  pk_state_dict(&pk, &t, 1);
  torch_zip(&zip, &pk, &data0, 1);
  BAD("lie.bin", zip.p, zip.n, CHAI_ERR_FORMAT,
      "storage '0' declares 1000 HalfStorage elements but its entry holds 16 bytes");
  t.numel = 1ll << 62; /* numel * 2 overflows nothing in 64 bits but dwarfs the file */
  pk.n = 0;
  pk_state_dict(&pk, &t, 1);
  torch_zip(&zip, &pk, &data0, 1);
  BAD("lie2.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "declares 4611686018427387904");
  /* a view reaching past its storage */
  t.numel = 8;
  t.offset = 1;
  pk.n = 0;
  pk_state_dict(&pk, &t, 1);
  torch_zip(&zip, &pk, &data0, 1);
  BAD("reach.bin", zip.p, zip.n, CHAI_ERR_FORMAT,
      "tensor 'w' (size (2,4), stride (4,1), offset 1) reaches past the 8 elements");
  t.offset = 0;
  t.stride[0] = 1ll << 61;
  pk.n = 0;
  pk_state_dict(&pk, &t, 1);
  torch_zip(&zip, &pk, &data0, 1);
  BAD("stride.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "reaches past");
  /* a stride-0 expansion claiming far more elements than the file holds */
  tb_tensor exp = {.name = "x",
                   .storage_class = "HalfStorage",
                   .key = "0",
                   .numel = 8,
                   .ndim = 2,
                   .shape = {1ll << 30, 1ll << 30},
                   .stride = {0, 0}};
  pk.n = 0;
  pk_state_dict(&pk, &exp, 1);
  torch_zip(&zip, &pk, &data0, 1);
  BAD("expand.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "needs more bytes than the");
  /* a forbidden global, in both spellings */
  pk.n = 0;
  pk_proto(&pk, 2);
  pk_global(&pk, "os", "system");
  pk_str(&pk, "echo pwned");
  pk_op(&pk, 0x85);
  pk_op(&pk, 'R');
  pk_op(&pk, '.');
  torch_zip(&zip, &pk, NULL, 0);
  BAD("evil.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "global 'os.system', which is not allowed");
  pk.n = 0;
  pk_proto(&pk, 4);
  pk_str(&pk, "builtins");
  pk_str(&pk, "eval");
  pk_op(&pk, 0x93);
  pk_op(&pk, '.');
  torch_zip(&zip, &pk, NULL, 0);
  BAD("evil4.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "'builtins.eval'");
  pk.n = 0;
  pk_proto(&pk, 2);
  pk_global(&pk, "torch", "HalfStorage");
  pk_op(&pk, ')');
  pk_op(&pk, 'R');
  pk_op(&pk, '.');
  torch_zip(&zip, &pk, NULL, 0);
  BAD("callstorage.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "torch.HalfStorage cannot be called");
  /* pickles of the wrong shape */
  const struct {
    const char *name, *bytes;
    size_t n;
    const char *needle;
  } pickles[] = {
      {"list.bin", "\x80\x02].", 4, "holds a list, not a state dict"},
      {"emptytuple.bin", "\x80\x02(t.", 5, "holds a tuple"}, /* found by fuzz_torchbin */
      {"nostop.bin", "\x80\x02}", 3, "ends without STOP"},
      {"inst.bin", "\x80\x02(i", 4, "unsupported pickle opcode"},
      {"proto.bin", "\x80\x09}.", 4, "unsupported pickle protocol 9"},
      {"memo.bin", "\x80\x02h\x05.", 5, "memo index 5 was never stored"},
      {"longbinput.bin", "\x80\x02}r\xff\xff\xff\x7f.", 9, "memo index 2147483647 out of range"},
      {"underflow.bin", "\x80\x02.", 3, "stack underflow"},
      {"markstop.bin", "\x80\x02}(.", 5, "stack underflow"},
      {"setitems.bin", "\x80\x02](K\x01K\x02u.", 10, "SETITEMS on a list"},
      {"oddsetitems.bin", "\x80\x02}(K\x01u.", 8, "odd number"},
      {"value.bin",
       "\x80\x02}X\x01\x00\x00\x00"
       "aK\x01s.",
       13, "value 'a' is a int, not a tensor"},
      {"key.bin", "\x80\x02}K\x01K\x01s.", 9, "key 0 is a int, not a str"},
      {"strlen.bin", "\x80\x02X\xff\xff\xff\x00" "a.", 10, "runs past the end of the pickle"},
      {"long1.bin", "\x80\x02\x8a\x09", 4, "LONG1 of 9 bytes"},
      {"global.bin",
       "\x80\x02"
       "ccollections",
       14, "not terminated"},
      {"persid.bin", "\x80\x02K\x01Q.", 6, "persistent id is a int"},
      {"build.bin", "\x80\x02]}b.", 6, "BUILD on a list"},
  };
  for (size_t i = 0; i < sizeof pickles / sizeof pickles[0]; i++) {
    pk.n = 0;
    tb_put(&pk, pickles[i].bytes, pickles[i].n);
    torch_zip(&zip, &pk, NULL, 0);
    BAD(pickles[i].name, zip.p, zip.n, CHAI_ERR_FORMAT, pickles[i].needle);
  }
  /* MARKs nested without end are bounded, not a stack overflow */
  pk.n = 0;
  pk_proto(&pk, 2);
  for (int i = 0; i < 5000; i++)
    pk_op(&pk, '(');
  torch_zip(&zip, &pk, NULL, 0);
  BAD("marks.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "nested MARKs");
  /* deep nesting of real containers is fine: the unpickler never recurses */
  pk.n = 0;
  pk_proto(&pk, 2);
  for (int i = 0; i < 100000; i++)
    pk_op(&pk, ']');
  for (int i = 0; i < 99999; i++)
    pk_op(&pk, 'a');
  pk_op(&pk, '.');
  torch_zip(&zip, &pk, NULL, 0);
  BAD("deep.bin", zip.p, zip.n, CHAI_ERR_FORMAT, "holds a list");

  /* zip structure */
  pk.n = 0;
  pk_state_dict(&pk, &t, 1);
  torch_zip(&zip, &pk, &data0, 1);
  BAD("cut.bin", zip.p, zip.n - 30, CHAI_ERR_FORMAT, "no zip end-of-central-directory");
  tb_buf z2 = {0};
  tb_put(&z2, zip.p, zip.n);
  z2.p[z2.n - 6] = 0xff; /* central directory offset */
  z2.p[z2.n - 5] = 0xff;
  z2.p[z2.n - 4] = 0xff;
  BAD("cdoff.bin", z2.p, z2.n, CHAI_ERR_FORMAT, "central directory");
  z2.n = 0;
  tb_put(&z2, zip.p, zip.n);
  z2.p[z2.n - 12] = 0xff; /* entry count */
  BAD("count.bin", z2.p, z2.n, CHAI_ERR_FORMAT, "holds at most");
  tb_free(&z2);

  /* legacy format and files that are not checkpoints at all */
  FILE *f = fopen(FIXDIR "/legacy.bin", "rb");
  uint8_t buf[1024];
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  CHECK(n > 0);
  BAD("legacy.bin", buf, n, CHAI_ERR_UNSUPPORTED, "legacy (PyTorch < 1.6)");
  BAD("text.bin", "hello", 5, CHAI_ERR_FORMAT, "not a torch.save zip archive");
  tb_free(&pk);
  tb_free(&zip);
}

static void test_index(void) {
  const char *shard = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
  tb_buf b = {0};
  st_file(&b, shard, 1);
  char s1[160], s2[160], idx[160];
  snprintf(s1, sizeof s1, "%s/one.safetensors", tmpdir);
  snprintf(s2, sizeof s2, "%s/two.safetensors", tmpdir);
  snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", tmpdir);
  CHECK(tb_save(s1, b.p, b.n));
  CHECK(tb_save(s2, b.p, b.n));
  chai_checkpoint *ck;
  const struct {
    const char *json;
    chai_status code;
    const char *needle;
  } cases[] = {
      {"{\"weight_map\":{\"a\":\"one.safetensors\"}}", CHAI_OK, ""},
      {"{\"weight_map\":{\"a\":\"one.safetensors\",\"b\":\"two.safetensors\"}}", CHAI_ERR_FORMAT,
       "tensor 'a' is in both"},
      {"{\"weight_map\":{\"a\":\"missing.safetensors\"}}", CHAI_ERR_IO, "missing.safetensors"},
      {"{\"weight_map\":{\"a\":\"../etc/passwd\"}}", CHAI_ERR_FORMAT, "names no valid shard"},
      {"{\"weight_map\":{\"a\":\"/etc/passwd\"}}", CHAI_ERR_FORMAT, "names no valid shard"},
      {"{\"weight_map\":{\"a\":1}}", CHAI_ERR_FORMAT, "names no valid shard"},
      {"{\"weight_map\":{}}", CHAI_ERR_FORMAT, "weight_map is empty"},
      {"{\"weight_map\":{\"zz\":\"one.safetensors\"}}", CHAI_ERR_FORMAT,
       "puts 'zz' in one.safetensors, but no shard holds it"},
      {"{\"metadata\":{}}", CHAI_ERR_FORMAT, "no \"weight_map\""},
      {"{\"weight_map\":", CHAI_ERR_FORMAT, "not valid JSON"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    CHECK(tb_save(idx, cases[i].json, strlen(cases[i].json)));
    if (cases[i].code == CHAI_OK) {
      CHECK_OK(chai_checkpoint_open(&ck, tmpdir)); /* the folder finds the index */
      CHECK(ck && chai_checkpoint_count(ck) == 1);
      chai_checkpoint_close(ck);
    } else {
      CHECK_ERR(chai_checkpoint_open(&ck, idx), cases[i].code, cases[i].needle);
      CHECK(ck == NULL);
    }
  }
  /* shards of different formats */
  const char *mixed = "{\"weight_map\":{\"a\":\"one.safetensors\",\"w\":\"x.bin\"}}";
  tb_buf pk = {0}, zip = {0};
  tb_tensor t = {.name = "w",
                 .storage_class = "HalfStorage",
                 .key = "0",
                 .numel = 8,
                 .ndim = 1,
                 .shape = {8},
                 .stride = {1}};
  pk_state_dict(&pk, &t, 1);
  zb_entry data0 = {"archive/data/0", halves, sizeof halves, 0};
  torch_zip(&zip, &pk, &data0, 1);
  char bin[160];
  snprintf(bin, sizeof bin, "%s/x.bin", tmpdir);
  CHECK(tb_save(bin, zip.p, zip.n));
  CHECK(tb_save(idx, mixed, strlen(mixed)));
  CHECK_ERR(chai_checkpoint_open(&ck, idx), CHAI_ERR_FORMAT, "x.bin is pytorch but the other");
  unlink(bin);
  unlink(idx);
  unlink(s1);
  unlink(s2);
  CHECK_ERR(chai_checkpoint_open(&ck, "/nonexistent/model"), CHAI_ERR_IO, "/nonexistent/model");
  tb_free(&b);
  tb_free(&pk);
  tb_free(&zip);
}

/* Every prefix and every single-byte corruption of real files: errors or success, never a crash
 * (ASan builds make this a memory-safety sweep). */
static void sweep(const char *src, const char *name, bool flips) {
  FILE *f = fopen(src, "rb");
  static uint8_t buf[8192];
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  CHECK(n > 0 && n < sizeof buf);
  int ok = 0, failed = 0;
  for (size_t cut = 0; cut < n; cut++) {
    chai_checkpoint *ck;
    if (chai_checkpoint_open(&ck, put_file(name, buf, cut)) == CHAI_OK) {
      ok++;
      chai_checkpoint_close(ck);
    } else {
      failed++;
    }
  }
  CHECK(ok == 0); /* no proper prefix is a valid file */
  for (size_t i = 0; flips && i < n; i++) {
    buf[i] ^= 0xA5;
    chai_checkpoint *ck;
    if (chai_checkpoint_open(&ck, put_file(name, buf, n)) == CHAI_OK) {
      for (int k = 0; k < chai_checkpoint_count(ck); k++) {
        chai_tensor t;
        if (chai_checkpoint_get(ck, chai_checkpoint_name(ck, k), &t) == CHAI_OK) {
          int64_t m = chai_tensor_numel(&t);
          double s = 0;
          for (int64_t j = 0; j < m; j++)
            s += chai_tensor_get_flat(&t, j);
          (void)s;
          chai_tensor_release(&t);
        }
      }
      chai_checkpoint_close(ck);
    }
    buf[i] ^= 0xA5;
  }
  unlink(path);
  (void)failed;
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/chai-test-bad-XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_safetensors();
  test_torch();
  test_index();
  sweep(FIXDIR "/fp16.bin", "sweep.bin", true);
  sweep(FIXDIR "/proto4.bin", "sweep.bin", true);
  sweep(FIXDIR "/misaligned.safetensors", "sweep.safetensors", true);
  rmdir(tmpdir);
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
