/* chai — tokenizer internals shared by tokenizer.c (load, encode, decode), bpe.c (byte map,
 * merges, cache) and pretokenize.c (the GPT-2 pattern). */
#ifndef CHAI_TOKENIZER_INTERNAL_H
#define CHAI_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "chai/tokenizer.h"

/* ---- pretokenize.c: GPT-2's pre-tokenization pattern with PCRE2 ---------------------------- */

typedef struct chai_pretok {
  void *code;       /* pcre2_code_8 */
  void *match_data; /* pcre2_match_data_8 */
} chai_pretok;

chai_status chai_pretok_init(chai_pretok *p);
void chai_pretok_free(chai_pretok *p);

/* Walks text[0..len) piece by piece. */
typedef struct chai_pretok_iter {
  const uint8_t *text;
  size_t len, pos;
  size_t held_start, held_end; /* a match found after a gap of invalid bytes */
  int held;
} chai_pretok_iter;

void chai_pretok_iter_init(chai_pretok_iter *it, const char *text, size_t len);
/* The next piece [*start, *end): a match of the pattern, or a maximal run of bytes that are not
 * valid UTF-8 (which no pattern item matches). Returns 1 with a piece, 0 at the end, or a negative
 * chai_status if PCRE2 failed (the message names the PCRE2 error and the byte offset). */
int chai_pretok_next(chai_pretok *p, chai_pretok_iter *it, size_t *start, size_t *end);

/* ---- bpe.c ---------------------------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode(): the code point that stands for byte b (b itself for printable
 * Latin-1, 256 + n for the others, in byte order). */
uint32_t chai_bpe_byte_to_cp(uint8_t b);
/* The inverse: the byte for code point cp, or -1 when cp is not in the map's image. */
int chai_bpe_cp_to_byte(uint32_t cp);

/* (left id, right id) -> (rank, merged id); open addressing. */
typedef struct chai_merge_map {
  uint64_t *keys; /* UINT64_MAX = empty */
  int32_t *rank, *merged;
  size_t mask, count;
} chai_merge_map;

chai_status chai_merge_map_init(chai_merge_map *m, size_t expected);
void chai_merge_map_free(chai_merge_map *m);
/* Inserts or overwrites (the last line of a merges file wins, as in GPT-2's dict of ranks). */
void chai_merge_map_put(chai_merge_map *m, int32_t a, int32_t b, int32_t rank, int32_t merged);

static inline uint64_t chai_merge_key(int32_t a, int32_t b) {
  return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}
static inline size_t chai_merge_slot(const chai_merge_map *m, uint64_t key) {
  return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & m->mask;
}
/* The rank of pair (a, b), or -1 when it is not a merge; *merged receives the result id. */
static inline int32_t chai_merge_find(const chai_merge_map *m, int32_t a, int32_t b,
                                      int32_t *merged) {
  uint64_t key = chai_merge_key(a, b);
  for (size_t i = chai_merge_slot(m, key);; i = (i + 1) & m->mask) {
    if (m->keys[i] == key) {
      *merged = m->merged[i];
      return m->rank[i];
    }
    if (m->keys[i] == UINT64_MAX) return -1;
  }
}

/* Piece bytes -> ids, bounded: when full it is emptied (deterministic; results never depend on it).
 */
typedef struct chai_bpe_cache {
  struct chai_bpe_slot *slots;
  size_t nslots, count, max_entries;
  uint8_t *arena;
  size_t arena_len, arena_cap;
} chai_bpe_cache;

chai_status chai_bpe_cache_init(chai_bpe_cache *c, size_t max_entries);
void chai_bpe_cache_free(chai_bpe_cache *c);
void chai_bpe_cache_clear(chai_bpe_cache *c);
/* The cached ids of piece s[0..n) or NULL. */
const int32_t *chai_bpe_cache_get(const chai_bpe_cache *c, const uint8_t *s, size_t n, uint64_t h,
                                  size_t *nids);
/* Remembers ids for s[0..n) (silently skipped when the piece is too long to cache). */
void chai_bpe_cache_put(chai_bpe_cache *c, const uint8_t *s, size_t n, uint64_t h,
                        const int32_t *ids, size_t nids);
uint64_t chai_bpe_hash(const uint8_t *s, size_t n);

/* Scratch space for merging one piece; grown on demand. */
typedef struct chai_bpe_work {
  int32_t *sym, *next, *prev, *todo;
  uint64_t *heap;
  size_t cap; /* symbols */
} chai_bpe_work;

void chai_bpe_work_free(chai_bpe_work *w);

/* Merges the symbols sym[0..n) in place (GPT-2 semantics) and returns the new count.
 * chai_bpe_merge_ref: the direct algorithm of encoder.py, O(n^2).
 * chai_bpe_merge_heap: the same result with a min-heap of (rank, position), O(n log n); needs
 * w->cap >= n. */
size_t chai_bpe_merge_ref(const chai_merge_map *m, int32_t *sym, size_t n);
size_t chai_bpe_merge_heap(const chai_merge_map *m, chai_bpe_work *w, int32_t *sym, size_t n);
/* Makes room for n symbols in w (CHAI_ERR_NOMEM). */
chai_status chai_bpe_work_reserve(chai_bpe_work *w, size_t n);

/* ---- tokenizer.c ---------------------------------------------------------------------------- */

/* string -> id, for loading (merges, special tokens) and chai_tokenizer_token_id. */
typedef struct chai_vocab_slot {
  uint64_t hash; /* 0 = empty */
  int32_t id;
} chai_vocab_slot;

struct chai_tokenizer {
  int32_t vocab_size;
  /* token strings (byte-mapped UTF-8) and their decoded bytes, by id; len -1 = no token */
  char *strings;
  size_t strings_bytes;
  uint8_t *decoded;
  size_t decoded_bytes;
  int64_t *str_off, *dec_off; /* [vocab_size] */
  int32_t *str_len, *dec_len; /* [vocab_size] */
  uint8_t *special;           /* [vocab_size] */
  chai_vocab_slot *lookup;
  size_t lookup_mask;

  int32_t byte_id[256]; /* the token of each single byte */
  chai_merge_map merges;
  chai_pretok pretok;
  chai_bpe_cache cache;
  chai_bpe_work work;
  size_t heap_threshold;

  int32_t bos, eos, pad, unk;
  int add_bos, add_prefix_space;
};

#endif
