/* The tokenizer over every text of the data files tests/fixtures/tokenizer_reference.json was made
 * from (SST-2, RTE, PIQA: about 85,000 texts), against the reference's digests: each file whole,
 * per block of 1024 texts, and the first 50 texts id by id; then the dev files again with every
 * piece through the heap merge and no cache. The files come from $CHAI_DATA_DIR, checked by
 * sha256; without them the test exits 77, which ctest reports as skipped. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chai/chai.h"
#include "check.h"
#include "tokenizer_fixture.h"

enum { SKIPPED = 77 }; /* SKIP_RETURN_CODE in tests/CMakeLists.txt */

static const char *data_dir;

static void check_file(chai_tokenizer *tok, const cJSON *file, size_t block) {
  const char *name = cJSON_GetObjectItem(file, "name")->valuestring;
  texts t = {0};
  if (!read_texts(data_dir, name, &t)) {
    fprintf(stderr, "cannot read %s/%s\n", data_dir, name);
    chai_test_failed++;
    return;
  }
  CHECK((double)t.n == cJSON_GetObjectItem(file, "texts")->valuedouble);
  const cJSON *first = cJSON_GetObjectItem(file, "first");
  const cJSON *blocks = cJSON_GetObjectItem(file, "blocks");
  chai_token_ids ids = {0};
  chai_text txt = {0};
  fnv all, blk;
  fnv_init(&all);
  fnv_init(&blk);
  size_t tokens = 0, bad_first = 0, bad_blocks = 0, bad_trips = 0;
  for (size_t i = 0; i < t.n; i++) {
    encode_ok(tok, t.s[i], t.len[i], 0, &ids);
    tokens += ids.len;
    if (i < (size_t)cJSON_GetArraySize(first) &&
        !ids_equal_json(&ids, cJSON_GetArrayItem(first, (int)i))) {
      if (bad_first++ < 3) fprintf(stderr, "%s text %zu: ids differ: %s\n", name, i, t.s[i]);
    }
    fnv_text(&all, &ids);
    fnv_text(&blk, &ids);
    if ((i + 1) % block == 0 || i + 1 == t.n) {
      if (!fnv_matches(&blk, cJSON_GetArrayItem(blocks, (int)(i / block))) && bad_blocks++ < 3)
        fprintf(stderr, "%s texts %zu..%zu: digest differs\n", name, i / block * block, i);
      fnv_init(&blk);
    }
    txt.len = 0;
    if (chai_tokenizer_decode(tok, ids.data, ids.len, 0, &txt) || txt.len != t.len[i] ||
        memcmp(txt.data, t.s[i], t.len[i]) != 0)
      bad_trips++;
  }
  CHECK(bad_first == 0);
  CHECK(bad_blocks == 0);
  CHECK(bad_trips == 0);
  CHECK((double)tokens == cJSON_GetObjectItem(file, "tokens")->valuedouble);
  CHECK(fnv_matches(&all, cJSON_GetObjectItem(file, "fnv64")));
  texts_free(&t);
  chai_text_free(&txt);
  chai_token_ids_free(&ids);
}

/* Whether every file of the reference is under data_dir; prints the first missing one. */
static int have_files(const cJSON *files) {
  const cJSON *file;
  cJSON_ArrayForEach(file, files) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", data_dir, cJSON_GetObjectItem(file, "name")->valuestring);
    if (access(path, R_OK) != 0) {
      printf("skipped: the whole-file tokenizer sweep needs %s (not found; CHAI_DATA_DIR=%s)\n",
             path, data_dir);
      return 0;
    }
  }
  return 1;
}

int main(void) {
  data_dir = getenv("CHAI_DATA_DIR");
  if (!data_dir || !*data_dir) {
    printf(
        "skipped: the whole-file tokenizer sweep needs the full data files: set CHAI_DATA_DIR to "
        "a folder holding sst2/, rte/ and piqa/ as tests/fixtures/tokenizer_reference.json "
        "lists them\n");
    return SKIPPED;
  }
  cJSON *fx = tokenizer_reference();
  if (!fx) return chai_test_finish();
  const cJSON *files = cJSON_GetObjectItem(fx, "files");
  if (!have_files(files)) {
    cJSON_Delete(fx);
    return SKIPPED;
  }
  /* The reference was made from exactly these bytes. */
  const cJSON *file;
  cJSON_ArrayForEach(file, files) {
    char path[2048], hex[65];
    snprintf(path, sizeof path, "%s/%s", data_dir, cJSON_GetObjectItem(file, "name")->valuestring);
    CHECK_OK(chai_sha256_file(path, hex));
    if (strcmp(hex, cJSON_GetObjectItem(file, "sha256")->valuestring) != 0) {
      fprintf(stderr, "%s has sha256 %s, not the reference's %s\n", path, hex,
              cJSON_GetObjectItem(file, "sha256")->valuestring);
      chai_test_failed++;
    }
  }
  chai_tokenizer *tok = NULL;
  CHECK_OK(chai_tokenizer_load(&tok, CHAI_TEST_FIXTURES "/data/opt-tokenizer"));
  if (tok) {
    size_t block = (size_t)cJSON_GetObjectItem(fx, "block")->valuedouble;
    cJSON_ArrayForEach(file, files) check_file(tok, file, block);
    /* the dev files again with every piece through the heap merge and no cache */
    chai_tokenizer_set_heap_threshold(tok, 0);
    chai_tokenizer_set_cache_capacity(tok, 0);
    cJSON_ArrayForEach(file, files) {
      if (strstr(cJSON_GetObjectItem(file, "name")->valuestring, "dev"))
        check_file(tok, file, block);
    }
  }
  chai_tokenizer_free(tok);
  cJSON_Delete(fx);
  CHECK(chai_memory_live() == 0);
  return chai_test_finish();
}
