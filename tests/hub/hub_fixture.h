/* The repos that tests/hub/hub_server.c plays, shared with the tests that check what the client
 * made of them. Binary files are generated from their name (fixture_fill); their sha256 values were
 * computed independently of chai, with coreutils:
 *   for f in pytorch_model.bin ...; do hub_server --dump $f | sha256sum; done
 * (the --dump mode writes a file's bytes to stdout). */
#ifndef CHAI_HUB_FIXTURE_H
#define CHAI_HUB_FIXTURE_H

#include <stdint.h>
#include <string.h>

#define FX_C_MAIN "3c8e1a4f5b6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f" /* org/tiny main, tag v1.0 */
#define FX_C_PR1 "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"  /* org/tiny refs/pr/1 */
#define FX_C_DATA "d0d0d0d0e1e1e1e1f2f2f2f2a3a3a3a3b4b4b4b4" /* datasets org/data main */
#define FX_C_PRIV "5e5e5e5e6f6f6f6f707070708181818192929292" /* org/private main */
#define FX_TOKEN "hf_chai_test_token_0123456789"             /* org/private wants it */

/* How the CDN serves an LFS file. */
enum fx_mode {
  FX_NORMAL,   /* honours Range */
  FX_CUT,      /* a request without Range gets half the bytes, then the connection closes */
  FX_FLAKY,    /* every request gets a quarter of what it asked for, then the connection closes */
  FX_NORANGE,  /* ignores Range: always 200 with every byte */
  FX_SLOW,     /* 16 KiB every 10 ms */
  FX_STALL,    /* a request without Range gets half the bytes, then 3 s of silence */
  FX_BADSUM,   /* X-Linked-Etag announces a sha256 that the bytes do not have */
  FX_BADRANGE, /* a Range request gets a 206 that starts at byte 0 whatever was asked */
};

typedef struct fx_file {
  const char *repo; /* "org/tiny", "datasets/org/data", ... (URL form) */
  const char *name; /* path in the repo */
  int in_main, in_pr1;
  const char *text;   /* content of a git (non-LFS) file; NULL for LFS */
  long size;          /* LFS size */
  const char *sha256; /* LFS: the true sha256 of the bytes */
  int mode;
} fx_file;

/* The etag the CDN announces for FX_BADSUM files: sha256("not these bytes"). */
#define FX_WRONG_SHA "d1c1db97e2e952b5f13887c2361d0a7fab1ac8f2095fb86f334d92fb264654e1"

static const fx_file fx_files[] = {
    {"org/tiny", "config.json", 1, 1, "{\"model_type\": \"opt\", \"hidden_size\": 16}\n", 0, 0, 0},
    {"org/tiny", "vocab.json", 1, 1, "{\"</s>\": 2, \"<pad>\": 1, \"a\": 3}\n", 0, 0, 0},
    {"org/tiny", "merges.txt", 1, 1, "#version: 0.2\na b\n", 0, 0, 0},
    {"org/tiny", "tokenizer_config.json", 1, 1, "{\"add_bos_token\": true}\n", 0, 0, 0},
    {"org/tiny", "nested/deep/notes.txt", 1, 1, "three levels down\n", 0, 0, 0},
    {"org/tiny", "weird name+%.txt", 1, 1, "quoted\n", 0, 0, 0},
    {"org/tiny", "pytorch_model.bin", 1, 1, NULL, 300000,
     "b1d022b6357366b0a82edeacdf77afa4e8af202c46b7127e4abbb650cbe786ba", FX_NORMAL},
    {"org/tiny", "model.safetensors", 0, 1, NULL, 200000,
     "3885a2612d794f3bacb41f6612918dbed7b7e9fd4c0ec7f5de0df864386c44ca", FX_NORMAL},
    {"org/tiny", "resume.bin", 1, 1, NULL, 150000,
     "b77d3054c54b63e7525be93b1d4af2b245d513de542611bf861fb2e8f06c6549", FX_NORMAL},
    {"org/tiny", "cut.bin", 1, 1, NULL, 1048576,
     "4d2ffb5f7e7e3797c28d37833279b69444cc42695b0dbbd18a44a6ddec3a4930", FX_CUT},
    {"org/tiny", "flaky.bin", 1, 1, NULL, 400000,
     "c5052253d91dfaeeb7bc3b960ec12705fddd54a34d3b44bebf44e5e656115735", FX_FLAKY},
    {"org/tiny", "norange.bin", 1, 1, NULL, 100000,
     "87bdf5daa4c6be757f1b78490eac6d25d40f0d0c4a927411b3df490bfb36c53d", FX_NORANGE},
    {"org/tiny", "slow.bin", 1, 1, NULL, 1048576,
     "6fe4e77abd490e18400eb957e4effa6139800758a8274743abc83ec1309d1319", FX_SLOW},
    {"org/tiny", "stall.bin", 1, 1, NULL, 200000,
     "9605e06d9bfb440a43e771f02085f2e69030e9b525116f48d2ae442b5eb2197a", FX_STALL},
    {"org/tiny", "badsum.bin", 1, 1, NULL, 50000,
     "dde32f033fd2a00370baa1b8c64b187a0e65c2b419dc7c8856240536c6d81649", FX_BADSUM},
    {"org/tiny", "badrange.bin", 1, 1, NULL, 60000,
     "c696e247b9a77217159b979ee17dcd12610ff799152dcbf27128d659eb2accc0", FX_BADRANGE},
    {"org/private", "config.json", 1, 0, "{\"private\": true}\n", 0, 0, 0},
    {"org/gated", "config.json", 1, 0, "{\"gated\": true}\n", 0, 0, 0},
    {"datasets/org/data", "train.jsonl", 1, 0, "{\"sentence\": \"a\", \"label\": 1}\n", 0, 0, 0},
    {"datasets/org/data", "data/part-0.parquet", 1, 0, NULL, 120000,
     "6dca7df4a3075952228fdbffbce244e18cb081ba42675d3c342d57bbbd03a2e5", FX_NORMAL},
};
#define FX_NFILES ((int)(sizeof fx_files / sizeof fx_files[0]))

static inline const fx_file *fx_find(const char *repo, const char *name) {
  for (int i = 0; i < FX_NFILES; i++)
    if (strcmp(fx_files[i].repo, repo) == 0 && strcmp(fx_files[i].name, name) == 0)
      return &fx_files[i];
  return NULL;
}

static inline long fx_size(const fx_file *f) {
  return f->text ? (long)strlen(f->text) : f->size;
}

/* Bytes [off, off+n) of an LFS file: xorshift64* seeded by FNV-1a of its name, one byte per step
 * (so any range can be produced without the rest). */
static inline uint64_t fx_seed(const char *name) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = name; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  return h | 1;
}

static inline void fx_fill(const fx_file *f, long off, long n, unsigned char *out) {
  if (f->text) {
    memcpy(out, f->text + off, (size_t)n);
    return;
  }
  uint64_t s = fx_seed(f->name);
  for (long i = 0; i < off + n; i++) {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    if (i >= off) out[i - off] = (unsigned char)((s * 2685821657736338717ull) >> 56);
  }
}

/* A git-style blob id for a text file: 40 hex from two FNV-1a passes over name and content.
 * Not the real git sha1 (nothing checks it); unique per file, which is what the cache needs. */
static inline void fx_git_etag(const fx_file *f, char out[41]) {
  uint64_t a = fx_seed(f->name), b = fx_seed(f->text);
  uint64_t c = a * 31 + b;
  static const char hex[] = "0123456789abcdef";
  uint64_t w[3] = {a, b, c};
  for (int i = 0; i < 40; i++)
    out[i] = hex[(w[i / 16] >> (4 * (i % 16))) & 15];
  out[40] = 0;
}

#endif
