/* The byte-level BPE tokenizer against the GPT-2 reference
 * (tests/fixtures/tokenizer_reference.json, made by make_tokenizer_fixture.py): the anchors, the
 * rows of the data slices in tests/fixtures/data, hand-written hard cases and every code point,
 * round trips, invalid UTF-8, the special tokens and every load/decode error path. The tokenizer
 * is tests/fixtures/data/opt-tokenizer. The whole data files against the reference's digests are
 * tests/c/test_tokenizer_sweep.c (it needs $CHAI_DATA_DIR). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chai/chai.h"
#include "check.h"
#include "tokenizer_fixture.h"

static const char *const tok_dir = CHAI_TEST_FIXTURES "/data/opt-tokenizer";

/* ---- small helpers ----------------------------------------------------------------------------
 */

static void spit(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fputs(text, f);
  fclose(f);
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* decode(encode(s)) == s */
static int round_trips(chai_tokenizer *tok, const char *s, size_t n, chai_token_ids *ids,
                       chai_text *txt) {
  encode_ok(tok, s, n, 0, ids);
  txt->len = 0;
  if (chai_tokenizer_decode(tok, ids->data, ids->len, 0, txt)) return 0;
  return txt->len == n && memcmp(txt->data, s, n) == 0;
}

/* ---- anchors ----------------------------------------------------------------------------------
 */

static void test_anchors(chai_tokenizer *tok) {
  chai_token_ids ids = {0};
  CHECK(chai_tokenizer_vocab_size(tok) == 50265);
  CHECK(chai_tokenizer_bos_id(tok) == 2 && chai_tokenizer_eos_id(tok) == 2);
  CHECK(chai_tokenizer_pad_id(tok) == 1 && chai_tokenizer_unk_id(tok) == 3);
  CHECK(chai_tokenizer_add_bos(tok) == 0); /* no tokenizer_config.json: as GPT2Tokenizer */
  encode_ok(tok, "Hello", 5, -1, &ids);
  CHECK(ids_equal(&ids, (int32_t[]){31414}, 1));
  encode_ok(tok, "Hello world", 11, -1, &ids);
  CHECK(ids_equal(&ids, (int32_t[]){31414, 232}, 2));
  encode_ok(tok, "Hello world", 11, 1, &ids);
  CHECK(ids_equal(&ids, (int32_t[]){2, 31414, 232}, 3));
  const char *s = "it 's a charming and often affecting journey .";
  encode_ok(tok, s, strlen(s), 0, &ids);
  CHECK(ids_equal(&ids, (int32_t[]){405, 128, 29, 10, 18452, 8, 747, 7920, 3251, 479}, 10));
  encode_ok(tok, "", 0, 0, &ids);
  CHECK(ids.len == 0);
  encode_ok(tok, NULL, 0, 1, &ids);
  CHECK(ids_equal(&ids, (int32_t[]){2}, 1));
  size_t n;
  const char *t = chai_tokenizer_token(tok, 5, &n);
  CHECK(t && n == 5 && memcmp(t, "\xc4\xa0the", 5) == 0); /* "Ġthe" */
  CHECK(chai_tokenizer_token_id(tok, "</s>", 4) == 2);
  CHECK(chai_tokenizer_token_id(tok, "no such token", 13) == -1);
  CHECK(chai_tokenizer_token(tok, 50265, &n) == NULL && chai_tokenizer_token(tok, -1, &n) == NULL);
  CHECK(chai_tokenizer_is_special(tok, 2) && chai_tokenizer_is_special(tok, 1));
  CHECK(!chai_tokenizer_is_special(tok, 31414));
  /* decode keeps special tokens unless asked */
  chai_text txt = {0};
  int32_t with_special[] = {2, 31414, 232, 1};
  CHECK_OK(chai_tokenizer_decode(tok, with_special, 4, 0, &txt));
  CHECK(strcmp(txt.data, "</s>Hello world<pad>") == 0);
  txt.len = 0;
  CHECK_OK(chai_tokenizer_decode(tok, with_special, 4, 1, &txt));
  CHECK(strcmp(txt.data, "Hello world") == 0);
  txt.len = 0;
  CHECK_OK(chai_tokenizer_decode(tok, NULL, 0, 0, &txt));
  CHECK(txt.len == 0 && txt.data && txt.data[0] == 0);
  /* special tokens in the text are plain text, as in encoder.py */
  encode_ok(tok, "</s>", 4, 0, &ids);
  CHECK(ids.len > 1);
  chai_text_free(&txt);
  chai_token_ids_free(&ids);
}

/* ---- the fixture ------------------------------------------------------------------------------
 */

/* The rows of the data slices (tests/fixtures/data: the first rows of each file) that the
 * reference's "first" ids cover, and their round trips. */
static void check_slices(chai_tokenizer *tok, const cJSON *files) {
  chai_token_ids ids = {0};
  chai_text txt = {0};
  size_t checked = 0, bad = 0, bad_trips = 0;
  const cJSON *file;
  cJSON_ArrayForEach(file, files) {
    const char *name = cJSON_GetObjectItem(file, "name")->valuestring;
    const cJSON *first = cJSON_GetObjectItem(file, "first");
    texts t = {0};
    if (!read_texts(CHAI_TEST_FIXTURES "/data", name, &t)) continue; /* no slice of this file */
    CHECK(t.n > 0);
    for (size_t i = 0; i < t.n && i < (size_t)cJSON_GetArraySize(first); i++) {
      encode_ok(tok, t.s[i], t.len[i], 0, &ids);
      if (!ids_equal_json(&ids, cJSON_GetArrayItem(first, (int)i)) && bad++ < 3)
        fprintf(stderr, "slice %s text %zu: ids differ: %s\n", name, i, t.s[i]);
      if (!round_trips(tok, t.s[i], t.len[i], &ids, &txt)) bad_trips++;
      checked++;
    }
    texts_free(&t);
  }
  /* 40 texts of each SST-2 slice, the reference's 50 first of RTE (2 a row) and PIQA (3 a row) */
  CHECK(checked == 40 + 40 + 50 + 50 + 50);
  CHECK(bad == 0);
  CHECK(bad_trips == 0);
  chai_text_free(&txt);
  chai_token_ids_free(&ids);
}

static int hexval(char c) {
  return c <= '9' ? c - '0' : c - 'a' + 10;
}

static void check_adversarial(chai_tokenizer *tok, const cJSON *cases) {
  chai_token_ids ids = {0};
  chai_text txt = {0};
  const cJSON *c;
  size_t bad = 0, bad_trip = 0, ncases = 0;
  cJSON_ArrayForEach(c, cases) {
    const char *hex = cJSON_GetObjectItem(c, "hex")->valuestring;
    size_t n = strlen(hex) / 2;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
      s[i] = (char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
    s[n] = 0;
    encode_ok(tok, s, n, 0, &ids);
    if (!ids_equal_json(&ids, cJSON_GetObjectItem(c, "ids")) && bad++ < 5)
      fprintf(stderr, "adversarial case %zu (hex %.60s): ids differ\n", ncases, hex);
    if (!round_trips(tok, s, n, &ids, &txt)) bad_trip++;
    ncases++;
    free(s);
  }
  CHECK(ncases > 100);
  CHECK(bad == 0);
  CHECK(bad_trip == 0);
  chai_text_free(&txt);
  chai_token_ids_free(&ids);
}

static size_t utf8_put(uint32_t cp, char *b) {
  if (cp < 0x80) {
    b[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    b[0] = (char)(0xC0 | cp >> 6);
    b[1] = (char)(0x80 | (cp & 63));
    return 2;
  }
  if (cp < 0x10000) {
    b[0] = (char)(0xE0 | cp >> 12);
    b[1] = (char)(0x80 | ((cp >> 6) & 63));
    b[2] = (char)(0x80 | (cp & 63));
    return 3;
  }
  b[0] = (char)(0xF0 | cp >> 18);
  b[1] = (char)(0x80 | ((cp >> 12) & 63));
  b[2] = (char)(0x80 | ((cp >> 6) & 63));
  b[3] = (char)(0x80 | (cp & 63));
  return 4;
}

/* Every code point Unicode 14 assigns, in the generator's sweep_text(c). */
static void check_codepoints(chai_tokenizer *tok, const cJSON *sweep) {
  int err;
  PCRE2_SIZE eo;
  pcre2_code *cn =
      pcre2_compile((PCRE2_SPTR) "^\\p{Cn}$", PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &eo, NULL);
  pcre2_match_data *md = pcre2_match_data_create(2, NULL);
  const cJSON *blocks = cJSON_GetObjectItem(sweep, "blocks");
  chai_token_ids ids = {0};
  fnv all, blk;
  fnv_init(&all);
  size_t count = 0, bad_blocks = 0;
  for (uint32_t lo = 0; lo < 0x110000; lo += 0x1000) {
    fnv_init(&blk);
    for (uint32_t cp = lo; cp < lo + 0x1000; cp++) {
      char c[4], s[64];
      if (cp >= 0xD800 && cp < 0xE000) continue;
      size_t k = utf8_put(cp, c), n = 0;
      if (pcre2_match(cn, (PCRE2_SPTR)c, k, 0, 0, md, NULL) >= 0) continue;
      const char *parts[] = {c, "a", c, "9", c, "!", c, " ", c, c, " a", c, "'s", c};
      for (int p = 0; p < 14; p++) {
        size_t m = parts[p] == c ? k : strlen(parts[p]);
        memcpy(s + n, parts[p], m);
        n += m;
      }
      encode_ok(tok, s, n, 0, &ids);
      fnv_text(&all, &ids);
      fnv_text(&blk, &ids);
      count++;
    }
    if (!fnv_matches(&blk, cJSON_GetArrayItem(blocks, (int)(lo >> 12))) && bad_blocks++ < 5)
      fprintf(stderr, "code points U+%04X..U+%04X: digest differs\n", lo, lo + 0xFFF);
  }
  CHECK((double)count == cJSON_GetObjectItem(sweep, "count")->valuedouble);
  CHECK(bad_blocks == 0);
  CHECK(fnv_matches(&all, cJSON_GetObjectItem(sweep, "fnv64")));
  chai_token_ids_free(&ids);
  pcre2_match_data_free(md);
  pcre2_code_free(cn);
}

/* tests/fixtures/data/opt-tokenizer holds the files the reference was made with. */
static void test_files(void) {
  cJSON *fx = tokenizer_reference();
  if (!fx) return;
  const char *names[] = {"vocab.json", "merges.txt"}, *keys[] = {"vocab_sha256", "merges_sha256"};
  for (int k = 0; k < 2; k++) {
    char path[1024], hex[65];
    snprintf(path, sizeof path, "%s/%s", tok_dir, names[k]);
    CHECK_OK(chai_sha256_file(path, hex));
    CHECK(strcmp(hex, cJSON_GetObjectItem(fx, keys[k])->valuestring) == 0);
  }
  cJSON_Delete(fx);
}

static void test_fixture(chai_tokenizer *tok) {
  cJSON *fx = tokenizer_reference();
  if (!fx) return;
  check_slices(tok, cJSON_GetObjectItem(fx, "files"));
  check_adversarial(tok, cJSON_GetObjectItem(fx, "adversarial"));
  check_codepoints(tok, cJSON_GetObjectItem(fx, "codepoints"));
  cJSON_Delete(fx);
}

/* ---- round trips on generated text ------------------------------------------------------------
 */

/* A random valid UTF-8 string: ASCII words and spaces, apostrophes, digits, and code points of
 * every length (2-, 3- and 4-byte, no surrogates). */
static size_t random_utf8(uint64_t *seed, char *out, size_t max) {
  size_t n = 0;
  while (n + 4 <= max) {
    uint64_t r = splitmix(seed);
    uint32_t kind = r % 10, cp;
    r >>= 8;
    switch (kind) {
    case 0: cp = ' '; break;
    case 1: cp = "\t\n\r '"[r % 5]; break;
    case 2: cp = '0' + r % 10; break;
    case 3: cp = 0x80 + r % (0x800 - 0x80); break;
    case 4: cp = 0x800 + r % (0xD800 - 0x800); break;
    case 5: cp = 0xE000 + r % (0x10000 - 0xE000); break;
    case 6: cp = 0x10000 + r % (0x110000 - 0x10000); break;
    default: cp = 0x20 + r % 0x5F; break;
    }
    n += utf8_put(cp, out + n);
  }
  return n;
}

static void test_round_trips(chai_tokenizer *tok) {
  uint64_t seed = 42;
  char buf[512];
  chai_token_ids ids = {0}, ids2 = {0};
  chai_text txt = {0};
  size_t bad_valid = 0, bad_bytes = 0, bad_algo = 0;
  for (int i = 0; i < 3000; i++) {
    size_t n = random_utf8(&seed, buf, 8 + splitmix(&seed) % (sizeof buf - 8));
    if (!round_trips(tok, buf, n, &ids, &txt)) bad_valid++;
    /* the heap merge agrees with the direct one */
    chai_tokenizer_set_heap_threshold(tok, 0);
    encode_ok(tok, buf, n, 0, &ids2);
    chai_tokenizer_set_heap_threshold(tok, SIZE_MAX);
    encode_ok(tok, buf, n, 0, &ids);
    if (ids.len != ids2.len || memcmp(ids.data, ids2.data, ids.len * sizeof *ids.data)) bad_algo++;
  }
  chai_tokenizer_set_heap_threshold(tok, 64);
  /* invalid UTF-8: random bytes never crash and still round-trip (each invalid run is a piece) */
  for (int i = 0; i < 3000; i++) {
    size_t n = splitmix(&seed) % sizeof buf;
    for (size_t k = 0; k < n; k++) {
      uint64_t r = splitmix(&seed);
      /* mostly bytes that start or continue multi-byte sequences, to hit truncations */
      buf[k] = (char)(r % 3 == 0   ? 0x80 + (r >> 8) % 0x80
                      : r % 3 == 1 ? (r >> 8) & 0xFF
                                   : 'a' + (r >> 8) % 3);
    }
    if (!round_trips(tok, buf, n, &ids, &txt)) bad_bytes++;
  }
  CHECK(bad_valid == 0);
  CHECK(bad_algo == 0);
  CHECK(bad_bytes == 0);
  /* documented results for invalid input: the invalid run is its own piece */
  encode_ok(tok,
            "ab\xff"
            "cd",
            5, 0, &ids);
  encode_ok(tok, "ab", 2, 0, &ids2);
  CHECK(ids.len >= 3 && ids.data[0] == ids2.data[0] && ids2.len == 1);
  const char *cases[] = {"\xff",
                         "\xc3",
                         "\xe2\x82",
                         "\xf0\x9f\x98",
                         "\xed\xa0\x80",
                         "\xc0\x80",
                         "\xf4\x90\x80\x80",
                         "a\xc3 b",
                         " \x80\x80 ",
                         "\xf8\x88\x80\x80\x80"};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    CHECK(round_trips(tok, cases[i], strlen(cases[i]), &ids, &txt));
  /* NUL bytes are ordinary characters */
  CHECK(round_trips(tok, "a\0b\0\0 c", 7, &ids, &txt));
  chai_text_free(&txt);
  chai_token_ids_free(&ids);
  chai_token_ids_free(&ids2);
}

/* Long pieces go through the heap merge; both algorithms and a round trip agree. */
static void test_long_pieces(chai_tokenizer *tok) {
  size_t n = 200000;
  char *s = malloc(n);
  chai_token_ids a = {0}, b = {0};
  chai_text txt = {0};
  const char fills[] = {'a', ' ', '7', '-', '\n'};
  for (size_t f = 0; f < sizeof fills; f++) {
    memset(s, fills[f], n);
    s[n / 2] = 'x';
    encode_ok(tok, s, n, 0, &a);
    chai_tokenizer_set_heap_threshold(tok, SIZE_MAX);
    encode_ok(tok, s, n, 0, &b);
    chai_tokenizer_set_heap_threshold(tok, 64);
    CHECK(a.len > 0 && a.len == b.len && memcmp(a.data, b.data, a.len * 4) == 0);
    CHECK(round_trips(tok, s, n, &a, &txt));
  }
  /* interrupt: a long text stops at the next check and leaves the output as it was */
  for (size_t i = 0; i < n; i++)
    s[i] = i % 2 ? ' ' : 'a' + i % 26;
  chai_token_ids_clear(&a);
  chai_interrupt();
  CHECK_ERR(chai_tokenizer_encode(tok, s, n, 1, &a), CHAI_ERR_INTERRUPTED, "interrupted");
  CHECK(a.len == 0);
  chai_interrupt_clear();
  CHECK_OK(chai_tokenizer_encode(tok, s, n, 1, &a));
  /* cache off gives the same ids */
  chai_tokenizer_set_cache_capacity(tok, 0);
  chai_token_ids_clear(&b);
  CHECK_OK(chai_tokenizer_encode(tok, s, n, 1, &b));
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len * 4) == 0);
  chai_tokenizer_set_cache_capacity(tok, 4); /* tiny: constantly emptied */
  chai_token_ids_clear(&b);
  CHECK_OK(chai_tokenizer_encode(tok, s, n, 1, &b));
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len * 4) == 0);
  chai_tokenizer_set_cache_capacity(tok, 1 << 15);
  free(s);
  chai_text_free(&txt);
  chai_token_ids_free(&a);
  chai_token_ids_free(&b);
}

/* ---- special tokens and the config files ------------------------------------------------------
 */

static char tmp_root[] = "/tmp/chai_test_tokenizer_XXXXXX";

/* A folder with the OPT vocab and merges (symlinked) and the given config files. */
static const char *make_dir(const char *name, const char *config, const char *special_map) {
  static char dir[2048];
  char path[2200];
  snprintf(dir, sizeof dir, "%s/%s", tmp_root, name);
  mkdir(dir, 0700);
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  char target[2200];
  snprintf(target, sizeof target, "%s/vocab.json", tok_dir);
  if (symlink(target, path) != 0) perror(path);
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  snprintf(target, sizeof target, "%s/merges.txt", tok_dir);
  if (symlink(target, path) != 0) perror(path);
  if (config) {
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    spit(path, config);
  }
  if (special_map) {
    snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
    spit(path, special_map);
  }
  return dir;
}

static void test_config(void) {
  chai_tokenizer *tok = NULL;
  chai_token_ids ids = {0};
  /* OPT's own tokenizer_config.json (facebook/opt-125m) */
  const char *opt_config =
      "{\"add_bos_token\": true, \"add_prefix_space\": false, \"bos_token\": {\"__type\": "
      "\"AddedToken\", \"content\": \"</s>\", \"lstrip\": false, \"normalized\": true, \"rstrip\": "
      "false, \"single_word\": false}, \"eos_token\": {\"__type\": \"AddedToken\", \"content\": "
      "\"</s>\"}, \"errors\": \"replace\", \"model_max_length\": "
      "1000000000000000019884624838656, \"pad_token\": {\"__type\": \"AddedToken\", \"content\": "
      "\"<pad>\"}, \"unk_token\": {\"__type\": \"AddedToken\", \"content\": \"</s>\"}, "
      "\"tokenizer_class\": \"GPT2Tokenizer\"}";
  CHECK_OK(chai_tokenizer_load(&tok, make_dir("opt", opt_config, NULL)));
  if (tok) {
    CHECK(chai_tokenizer_add_bos(tok) == 1);
    CHECK(chai_tokenizer_unk_id(tok) == 2 && chai_tokenizer_pad_id(tok) == 1);
    encode_ok(tok, "Hello world", 11, -1, &ids);
    CHECK(ids_equal(&ids, (int32_t[]){2, 31414, 232}, 3));
    encode_ok(tok, "Hello world", 11, 0, &ids);
    CHECK(ids_equal(&ids, (int32_t[]){31414, 232}, 2));
    CHECK_OK(chai_tokenizer_set_add_bos(tok, 0));
    encode_ok(tok, "Hello", 5, -1, &ids);
    CHECK(ids_equal(&ids, (int32_t[]){31414}, 1));
    chai_tokenizer_free(tok);
  }
  /* special_tokens_map.json fills roles the config leaves out; added tokens mark specials */
  CHECK_OK(chai_tokenizer_load(
      &tok, make_dir("map",
                     "{\"add_prefix_space\": true, \"added_tokens_decoder\": {\"50264\": "
                     "{\"content\": \"<mask>\", \"special\": true}}}",
                     "{\"pad_token\": \"<unk>\", \"bos_token\": \"<s>\", \"eos_token\": null, "
                     "\"additional_special_tokens\": [\"madeupword0000\"]}")));
  if (tok) {
    CHECK(chai_tokenizer_pad_id(tok) == 3 && chai_tokenizer_bos_id(tok) == 0);
    CHECK(chai_tokenizer_eos_id(tok) == -1 && chai_tokenizer_add_bos(tok) == 0);
    CHECK(chai_tokenizer_is_special(tok, 50264) && chai_tokenizer_is_special(tok, 50261));
    /* add_prefix_space: "Hello" is encoded as " Hello" */
    encode_ok(tok, "Hello", 5, 1, &ids);
    CHECK(ids.len == 2 && ids.data[0] == 0 && ids.data[1] == 20920);
    chai_tokenizer_free(tok);
  }
  /* a vocabulary without </s> or <|endoftext|>: no bos, and add_bos is refused */
  chai_token_ids_free(&ids);
}

/* ---- errors -----------------------------------------------------------------------------------
 */

/* A minimal byte-level vocabulary (the 256 byte symbols) + extra JSON entries, and merges. */
static const char *write_tiny(const char *name, const char *extra_vocab, const char *merges) {
  static char dir[2048];
  char path[2200];
  snprintf(dir, sizeof dir, "%s/%s", tmp_root, name);
  mkdir(dir, 0700);
  size_t cap = 16384 + strlen(extra_vocab);
  char *v = malloc(cap), *p = v;
  p += sprintf(p, "{");
  uint32_t others = 0;
  for (int b = 0; b < 256; b++) {
    /* GPT-2's byte map: printable Latin-1 stands for itself, the n-th other byte for 256 + n */
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    uint32_t cp = printable ? (uint32_t)b : 256u + others++;
    char u[5] = {0};
    utf8_put(cp, u);
    if (cp == '"' || cp == '\\')
      p += sprintf(p, "%s\"\\%s\": %d", b ? ", " : "", u, b);
    else
      p += sprintf(p, "%s\"%s\": %d", b ? ", " : "", u, b);
  }
  p += sprintf(p, "%s}", extra_vocab);
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  spit(path, v);
  free(v);
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  spit(path, merges);
  return dir;
}

static void test_errors(chai_tokenizer *opt) {
  chai_tokenizer *tok = (chai_tokenizer *)1;
  char path[2200];
  CHECK_ERR(chai_tokenizer_load(&tok, "/nonexistent/tokenizer"), CHAI_ERR_IO,
            "/nonexistent/tokenizer");
  CHECK(tok == NULL);
  snprintf(path, sizeof path, "%s/vocab.json", tok_dir);
  CHECK_ERR(chai_tokenizer_load(&tok, path), CHAI_ERR_IO, "not a directory");
  /* the tiny vocabulary works: "ab" merges to id 256 */
  const char *dir = write_tiny("tiny", ", \"ab\": 256, \"abc\": 257", "#version: 0.2\na b\nab c\n");
  CHECK_OK(chai_tokenizer_load(&tok, dir));
  if (tok) {
    chai_token_ids ids = {0};
    encode_ok(tok, "abcab", 5, 0, &ids);
    CHECK(ids_equal(&ids, (int32_t[]){257, 256}, 2));
    CHECK(chai_tokenizer_bos_id(tok) == -1 && chai_tokenizer_pad_id(tok) == -1);
    CHECK_ERR(chai_tokenizer_encode(tok, "ab", 2, 1, &ids), CHAI_ERR_ARG, "no bos token");
    CHECK_ERR(chai_tokenizer_set_add_bos(tok, 1), CHAI_ERR_ARG, "no bos token");
    CHECK(ids.len == 2);
    chai_token_ids_free(&ids);
    chai_tokenizer_free(tok);
  }
  /* missing files */
  char empty[2200];
  snprintf(empty, sizeof empty, "%s/empty", tmp_root);
  mkdir(empty, 0700);
  CHECK_ERR(chai_tokenizer_load(&tok, empty), CHAI_ERR_IO, "empty/vocab.json");
  dir = write_tiny("nomerges", "", "");
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  unlink(path);
  CHECK_ERR(chai_tokenizer_load(&tok, dir), CHAI_ERR_IO, "nomerges/merges.txt");
  /* bad vocab.json */
  dir = write_tiny("badjson", ", \"x\": ", "");
  CHECK_ERR(chai_tokenizer_load(&tok, dir), CHAI_ERR_FORMAT, "badjson/vocab.json: invalid JSON");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("strid", ", \"x\": \"7\"", "")), CHAI_ERR_FORMAT,
            "token 'x' has id \"7\"");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("negid", ", \"x\": -4", "")), CHAI_ERR_FORMAT,
            "token 'x' has id -4");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("fracid", ", \"x\": 2.5", "")), CHAI_ERR_FORMAT,
            "token 'x' has id 2.5");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("bigid", ", \"x\": 1e12", "")), CHAI_ERR_FORMAT,
            "over the limit");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("dupid", ", \"x\": 5", "")), CHAI_ERR_FORMAT,
            "id 5 is used by both");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("duptok", ", \"a\": 300", "")), CHAI_ERR_FORMAT,
            "token 'a' appears twice");
  snprintf(path, sizeof path, "%s/array", tmp_root);
  mkdir(path, 0700);
  char file[2300];
  snprintf(file, sizeof file, "%s/vocab.json", path);
  spit(file, "[1, 2]");
  CHECK_ERR(chai_tokenizer_load(&tok, path), CHAI_ERR_FORMAT, "expected a JSON object");
  spit(file, "{\"a\": 0}");
  CHECK_ERR(chai_tokenizer_load(&tok, path), CHAI_ERR_FORMAT, "byte 0x00 has no token");
  /* bad merges.txt */
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("m1", ", \"ab\": 256", "a b c\n")),
            CHAI_ERR_FORMAT, "merges.txt line 1: expected two tokens");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("m2", ", \"ab\": 256", "#version: 0.2\nab\n")),
            CHAI_ERR_FORMAT, "line 2: expected two tokens separated by one space, got 'ab'");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("m3", ", \"ab\": 256", "a b\nab zz\n")),
            CHAI_ERR_FORMAT, "line 2: 'zz' is not in the vocabulary");
  CHECK_ERR(chai_tokenizer_load(&tok, write_tiny("m4", ", \"ab\": 256", "a b\nb c\n")),
            CHAI_ERR_FORMAT, "line 2: the merge result 'bc' is not in the vocabulary");
  /* CRLF merges and blank lines are fine */
  CHECK_OK(chai_tokenizer_load(&tok, write_tiny("crlf", ", \"ab\": 256", "a b\r\n\r\n")));
  chai_tokenizer_free(tok);
  /* bad config files */
  CHECK_ERR(chai_tokenizer_load(&tok, make_dir("c1", "{\"add_bos_token\": \"yes\"}", NULL)),
            CHAI_ERR_FORMAT, "c1/tokenizer_config.json: add_bos_token must be true or false");
  CHECK_ERR(chai_tokenizer_load(&tok, make_dir("c2", "{\"bos_token\": \"<nope>\"}", NULL)),
            CHAI_ERR_UNSUPPORTED, "bos_token '<nope>' is not in vocab.json");
  CHECK_ERR(chai_tokenizer_load(&tok, make_dir("c3", "{\"pad_token\": 7}", NULL)), CHAI_ERR_FORMAT,
            "pad_token must be a string");
  CHECK_ERR(chai_tokenizer_load(&tok, make_dir("c4", "{oops", NULL)), CHAI_ERR_FORMAT,
            "c4/tokenizer_config.json: invalid JSON");
  CHECK_ERR(chai_tokenizer_load(&tok, make_dir("c5", NULL, "{\"unk_token\": [1]}")),
            CHAI_ERR_FORMAT, "special_tokens_map.json: unk_token must be");
  CHECK_ERR(chai_tokenizer_load(&tok, make_dir("c6",
                                               "{\"added_tokens_decoder\": {\"50265\": "
                                               "{\"content\": \"<new>\"}}}",
                                               NULL)),
            CHAI_ERR_UNSUPPORTED, "added token '<new>' (id 50265)");
  CHECK_ERR(chai_tokenizer_load(&tok, make_dir("c7", "{\"additional_special_tokens\": 3}", NULL)),
            CHAI_ERR_FORMAT, "additional_special_tokens must be a list");
  CHECK_ERR(chai_tokenizer_load(&tok, make_dir("c8",
                                               "{\"add_bos_token\": true, \"bos_token\": "
                                               "null}",
                                               NULL)),
            CHAI_ERR_FORMAT, "add_bos_token is true but there is no bos_token");
  /* decode: ids out of range name the id and its position */
  chai_text txt = {0};
  int32_t bad1[] = {31414, 50265}, bad2[] = {-1};
  CHECK_ERR(chai_tokenizer_decode(opt, bad1, 2, 0, &txt), CHAI_ERR_ARG,
            "id 50265 at position 1 is not in the vocabulary");
  CHECK_ERR(chai_tokenizer_decode(opt, bad2, 1, 0, &txt), CHAI_ERR_ARG, "id -1 at position 0");
  CHECK(txt.len == 0);
  chai_text_free(&txt);
  CHECK_ERR(chai_tokenizer_encode(opt, NULL, 3, 0, &(chai_token_ids){0}), CHAI_ERR_ARG, "NULL");
}

/* Allocation failures at every step of loading and encoding leave nothing behind. */
static void test_nomem(void) {
  const char *dir = write_tiny("nomem", ", \"ab\": 256, \"abc\": 257", "a b\nab c\n");
  size_t base = chai_memory_live();
  int failures = 0, loaded = 0;
  for (long k = 1; k < 64 && !loaded; k++) {
    chai_tokenizer *tok = NULL;
    chai_alloc_fail_after(k);
    chai_status st = chai_tokenizer_load(&tok, dir);
    if (st == CHAI_OK) {
      chai_token_ids ids = {0};
      st = chai_tokenizer_encode(tok, "abc abcab", 9, 0, &ids);
      chai_alloc_fail_after(0);
      if (st == CHAI_OK)
        loaded = 1;
      else
        CHECK(st == CHAI_ERR_NOMEM && ids.len == 0);
      chai_token_ids_free(&ids);
      chai_tokenizer_free(tok);
    } else {
      chai_alloc_fail_after(0);
      CHECK(st == CHAI_ERR_NOMEM && tok == NULL);
      failures++;
    }
    CHECK(chai_memory_live() == base);
  }
  chai_alloc_fail_after(0);
  CHECK(loaded && failures > 5);
}

static void rm_tree(const char *root) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}

int main(void) {
  if (!mkdtemp(tmp_root)) {
    perror("mkdtemp");
    return 1;
  }
  test_files();
  chai_tokenizer *tok = NULL;
  CHECK_OK(chai_tokenizer_load(&tok, tok_dir));
  if (tok) {
    test_anchors(tok);
    test_fixture(tok);
    /* the fixture again with every piece through the heap merge and no cache */
    chai_tokenizer_set_heap_threshold(tok, 0);
    chai_tokenizer_set_cache_capacity(tok, 0);
    test_fixture(tok);
    chai_tokenizer_set_heap_threshold(tok, 64);
    chai_tokenizer_set_cache_capacity(tok, 1 << 15);
    test_round_trips(tok);
    test_long_pieces(tok);
    test_config();
    test_errors(tok);
  }
  chai_tokenizer_free(tok);
  test_nomem();
  CHECK(chai_memory_live() == 0);
  rm_tree(tmp_root);
  return chai_test_finish();
}
