/* Shared by tests/c/test_tokenizer.c and test_tokenizer_sweep.c: the reference of
 * tests/fixtures/tokenizer_reference.json (made by make_tokenizer_fixture.py), its digests, and the
 * data files read exactly as the generator reads them. */
#ifndef CHAI_TEST_TOKENIZER_FIXTURE_H
#define CHAI_TEST_TOKENIZER_FIXTURE_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/chai.h"
#include "check.h"

/* The whole file as a NUL-terminated buffer the caller frees; NULL when it cannot be read. */
static inline char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
  fclose(f);
  buf[n] = 0;
  if (len) *len = (size_t)n;
  return buf;
}

/* FNV-1a 64 over the fixture's stream: each text's ids as little-endian int32, then int32 -1. */
typedef struct fnv {
  uint64_t h;
} fnv;
static inline void fnv_init(fnv *f) {
  f->h = 0xCBF29CE484222325ull;
}
static inline void fnv_i32(fnv *f, int32_t v) {
  uint32_t u = (uint32_t)v;
  for (int k = 0; k < 4; k++)
    f->h = (f->h ^ ((u >> (8 * k)) & 0xFF)) * 0x100000001B3ull;
}
static inline void fnv_text(fnv *f, const chai_token_ids *ids) {
  for (size_t i = 0; i < ids->len; i++)
    fnv_i32(f, ids->data[i]);
  fnv_i32(f, -1);
}
static inline int fnv_matches(const fnv *f, const cJSON *hex) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)f->h);
  return cJSON_IsString(hex) && strcmp(buf, hex->valuestring) == 0;
}

static inline int ids_equal(const chai_token_ids *ids, const int32_t *want, size_t n) {
  return ids->len == n && (n == 0 || memcmp(ids->data, want, n * sizeof *want) == 0);
}

static inline int ids_equal_json(const chai_token_ids *ids, const cJSON *arr) {
  if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) != ids->len) return 0;
  size_t i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) if (e->valueint != ids->data[i++]) return 0;
  return 1;
}

static inline void encode_ok(chai_tokenizer *tok, const char *s, size_t n, int add_bos,
                             chai_token_ids *out) {
  chai_token_ids_clear(out);
  chai_status st = chai_tokenizer_encode(tok, s, n, add_bos, out);
  if (st) {
    fprintf(stderr, "encode failed: %s\n", chai_last_error());
    chai_test_failed++;
  }
}

/* The reference (tests/fixtures/tokenizer_reference.json) parsed; NULL (and a failed check) when
 * it cannot be read. The caller frees it with cJSON_Delete. */
static inline cJSON *tokenizer_reference(void) {
  char path[2048];
  snprintf(path, sizeof path, "%s/tokenizer_reference.json", CHAI_TEST_FIXTURES);
  char *buf = slurp(path, NULL);
  cJSON *fx = buf ? cJSON_Parse(buf) : NULL;
  free(buf);
  CHECK(fx != NULL);
  return fx;
}

/* ---- the data files, read exactly as the generator reads them ---------------------------------
 */

typedef struct texts {
  char **s;
  size_t *len, n, cap;
} texts;

static inline void texts_add(texts *t, const char *s, size_t n) {
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 1024;
    t->s = realloc(t->s, t->cap * sizeof *t->s);
    t->len = realloc(t->len, t->cap * sizeof *t->len);
  }
  t->s[t->n] = malloc(n + 1);
  memcpy(t->s[t->n], s, n);
  t->s[t->n][n] = 0;
  t->len[t->n++] = n;
}

static inline void texts_free(texts *t) {
  for (size_t i = 0; i < t->n; i++)
    free(t->s[i]);
  free(t->s);
  free(t->len);
  memset(t, 0, sizeof *t);
}

/* TSV: skip the header, split on TAB, take columns [0, ncols). */
static inline int read_tsv(const char *path, int ncols, texts *out) {
  char *buf = slurp(path, NULL);
  if (!buf) return 0;
  char *line = strchr(buf, '\n');
  while (line && line[1]) {
    line++;
    char *end = strchr(line, '\n');
    char *f = line;
    for (int c = 0; c < ncols; c++) {
      char *tab = memchr(f, '\t', (size_t)(end - f));
      texts_add(out, f, (size_t)(tab - f));
      f = tab + 1;
    }
    line = end;
  }
  free(buf);
  return 1;
}

static inline int read_piqa(const char *path, texts *out) {
  char *buf = slurp(path, NULL);
  if (!buf) return 0;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    cJSON *row = cJSON_Parse(line);
    const char *keys[3] = {"goal", "sol1", "sol2"};
    for (int k = 0; k < 3; k++) {
      const char *s = cJSON_GetObjectItem(row, keys[k])->valuestring;
      texts_add(out, s, strlen(s));
    }
    cJSON_Delete(row);
  }
  free(buf);
  return 1;
}

/* The texts of data file `name` (e.g. "rte/dev.tsv") under the data folder `dir`. */
static inline int read_texts(const char *dir, const char *name, texts *out) {
  char path[2048];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (strstr(name, "rte/")) return read_tsv(path, 2, out);
  if (strstr(name, ".jsonl")) return read_piqa(path, out);
  return read_tsv(path, 1, out);
}

#endif
