/* SHA-256 against the FIPS 180-2 vectors and hashlib digests at every padding boundary, streamed in
 * every split, and chai_sha256_file. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chai/sha256.h"
#include "check.h"

static void check_hex(const void *data, size_t n, const char *want) {
  char hex[65];
  chai_sha256_hex(data, n, hex);
  if (strcmp(hex, want) != 0)
    fprintf(stderr, "sha256 of %zu bytes: got %s want %s\n", n, hex, want);
  CHECK(strcmp(hex, want) == 0);
}

static void test_fips_vectors(void) {
  check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  check_hex(m448, strlen(m448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const char *m896 =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklm"
      "nopqrlmnopqrsmnopqrstnopqrstu";
  check_hex(m896, strlen(m896), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  char *million = malloc(1000000);
  memset(million, 'a', 1000000);
  check_hex(million, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(million);
}

/* Lengths around the 55/56/64-byte padding edges; digests from Python's hashlib over bytes
 * (i*7) & 255. */
static void test_padding_edges(void) {
  static const struct {
    size_t n;
    const char *hex;
  } v[] = {
      {55, "576a1bf8d4478657e6dc4af9398544765c2a92cde28478b019235cfed315fc09"},
      {56, "9b20501dfd1d99161c257950f3444f3e49230c351c5c8e0943ef369f85f5205d"},
      {57, "a5534a9d0694341dfde5b1bb3d8addcb38bd46f44a629dc97b3f8fb2721b0720"},
      {63, "30b345906b493f06f69444b6521113511c242f30e29840462950035043682f1e"},
      {64, "d8bc63b4fc1156e5e7d95a418b9bf54cd3174bedbc2db40f74895349b229b3c0"},
      {65, "1ee23b0fbcaecc1aff4a9e8f1645f35ab2c8e13609cd73b68df8b5e3f63ce073"},
      {127, "67d79933e3c9aa8e89f481e071cfca1e9a16c09d7263b5efa3bb01f1a9f8d065"},
      {128, "54c9eb041badfd7064645067b107661fed6113197ce2dd066ba69618abd3732f"},
      {129, "5b55715b51c54661ed0cbd75ba5b00cf1ffee3b7c113a636eca613d9425116a6"},
  };
  unsigned char buf[129];
  for (int i = 0; i < 129; i++)
    buf[i] = (unsigned char)(i * 7);
  for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
    check_hex(buf, v[k].n, v[k].hex);
}

/* Streaming: every two-way split and a byte-at-a-time feed give the one-shot digest. */
static void test_streaming(void) {
  unsigned char buf[200];
  for (int i = 0; i < 200; i++)
    buf[i] = (unsigned char)(i * 31 + 5);
  char want[65], got[65];
  chai_sha256_hex(buf, sizeof buf, want);
  int bad = 0;
  for (size_t cut = 0; cut <= sizeof buf; cut++) {
    chai_sha256 s;
    chai_sha256_init(&s);
    chai_sha256_update(&s, buf, cut);
    chai_sha256_update(&s, buf + cut, sizeof buf - cut);
    chai_sha256_final_hex(&s, got);
    bad += strcmp(got, want) != 0;
  }
  CHECK(bad == 0);
  chai_sha256 s;
  chai_sha256_init(&s);
  for (size_t i = 0; i < sizeof buf; i++)
    chai_sha256_update(&s, buf + i, 1);
  chai_sha256_final_hex(&s, got);
  CHECK(strcmp(got, want) == 0);
}

static void test_file(void) {
  char path[] = "/tmp/chai_sha256_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(write(fd, "abc", 3) == 3);
  close(fd);
  char hex[65];
  CHECK_OK(chai_sha256_file(path, hex));
  CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
  unlink(path);
  CHECK_ERR(chai_sha256_file(path, hex), CHAI_ERR_IO, path);
}

int main(void) {
  test_fips_vectors();
  test_padding_edges();
  test_streaming();
  test_file();
  return chai_test_finish();
}
