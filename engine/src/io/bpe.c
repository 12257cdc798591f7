/* Byte-level BPE: GPT-2's byte<->unicode map, the merge-rank table, the two merge algorithms and
 * the piece cache. */
#include <stdbool.h>
#include <string.h>

#include "chai/memory.h"
#include "tokenizer_internal.h"

/* ---- byte <-> unicode (GPT-2 bytes_to_unicode) ---------------------------------------------- */

static bool byte_is_printable(unsigned b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t chai_bpe_byte_to_cp(uint8_t b) {
  if (byte_is_printable(b)) return b;
  /* the n-th non-printable byte (in byte order) maps to 256 + n */
  unsigned n = 0;
  for (unsigned c = 0; c < b; c++)
    n += !byte_is_printable(c);
  return 256 + n;
}

int chai_bpe_cp_to_byte(uint32_t cp) {
  if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
  unsigned n = 0;
  for (unsigned c = 0; c < 256; c++) {
    if (byte_is_printable(c)) continue;
    if (256 + n == cp) return (int)c;
    n++;
  }
  return -1;
}

/* ---- merge ranks ------------------------------------------------------------------------------
 */

chai_status chai_merge_map_init(chai_merge_map *m, size_t expected) {
  size_t n = 1024;
  while (n < expected * 2 + 2)
    n *= 2; /* load factor <= 1/2 */
  memset(m, 0, sizeof *m);
  m->mask = n - 1;
  m->keys = chai_alloc(n * sizeof *m->keys, "tokenizer merge table");
  m->rank = chai_alloc(n * sizeof *m->rank, "tokenizer merge table");
  m->merged = chai_alloc(n * sizeof *m->merged, "tokenizer merge table");
  if (!m->keys || !m->rank || !m->merged) {
    chai_merge_map_free(m);
    return CHAI_ERR_NOMEM;
  }
  memset(m->keys, 0xFF, n * sizeof *m->keys);
  return CHAI_OK;
}

void chai_merge_map_free(chai_merge_map *m) {
  size_t n = m->mask + 1;
  chai_free(m->keys, n * sizeof *m->keys);
  chai_free(m->rank, n * sizeof *m->rank);
  chai_free(m->merged, n * sizeof *m->merged);
  memset(m, 0, sizeof *m);
}

void chai_merge_map_put(chai_merge_map *m, int32_t a, int32_t b, int32_t rank, int32_t merged) {
  uint64_t key = chai_merge_key(a, b);
  size_t i = chai_merge_slot(m, key);
  while (m->keys[i] != UINT64_MAX && m->keys[i] != key)
    i = (i + 1) & m->mask;
  if (m->keys[i] == UINT64_MAX) m->count++;
  m->keys[i] = key;
  m->rank[i] = rank;
  m->merged[i] = merged;
}

/* ---- merging ----------------------------------------------------------------------------------
 */

size_t chai_bpe_merge_ref(const chai_merge_map *m, int32_t *sym, size_t n) {
  while (n > 1) {
    int32_t best = -1, a = 0, b = 0, merged = 0;
    for (size_t i = 0; i + 1 < n; i++) {
      int32_t mid;
      int32_t r = chai_merge_find(m, sym[i], sym[i + 1], &mid);
      if (r >= 0 && (best < 0 || r < best)) {
        best = r;
        a = sym[i];
        b = sym[i + 1];
        merged = mid;
      }
    }
    if (best < 0) break;
    /* every occurrence of (a, b), left to right, without overlaps (encoder.py's inner loop) */
    size_t j = 0;
    for (size_t i = 0; i < n;) {
      if (i + 1 < n && sym[i] == a && sym[i + 1] == b) {
        sym[j++] = merged;
        i += 2;
      } else {
        sym[j++] = sym[i++];
      }
    }
    n = j;
  }
  return n;
}

chai_status chai_bpe_work_reserve(chai_bpe_work *w, size_t n) {
  if (n <= w->cap) return CHAI_OK;
  size_t cap = w->cap ? w->cap : 256;
  while (cap < n)
    cap *= 2;
  chai_bpe_work nw = {0};
  nw.sym = chai_alloc(cap * sizeof(int32_t), "BPE scratch");
  nw.next = chai_alloc(cap * sizeof(int32_t), "BPE scratch");
  nw.prev = chai_alloc(cap * sizeof(int32_t), "BPE scratch");
  nw.todo = chai_alloc(cap * sizeof(int32_t), "BPE scratch");
  nw.heap = chai_alloc(3 * cap * sizeof(uint64_t), "BPE scratch");
  nw.cap = cap;
  if (!nw.sym || !nw.next || !nw.prev || !nw.todo || !nw.heap) {
    chai_bpe_work_free(&nw);
    return CHAI_ERR_NOMEM;
  }
  chai_bpe_work_free(w);
  *w = nw;
  return CHAI_OK;
}

void chai_bpe_work_free(chai_bpe_work *w) {
  chai_free(w->sym, w->cap * sizeof(int32_t));
  chai_free(w->next, w->cap * sizeof(int32_t));
  chai_free(w->prev, w->cap * sizeof(int32_t));
  chai_free(w->todo, w->cap * sizeof(int32_t));
  chai_free(w->heap, 3 * w->cap * sizeof(uint64_t));
  memset(w, 0, sizeof *w);
}

/* A binary min-heap of keys (rank << 32 | position): the lowest rank first, and among equal ranks
 * (the same pair) the leftmost first. */
static void heap_push(uint64_t *h, size_t *n, uint64_t key) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p] <= key) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = key;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
  uint64_t top = h[0], last = h[--(*n)];
  size_t i = 0, len = *n;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= len) break;
    if (c + 1 < len && h[c + 1] < h[c]) c++;
    if (last <= h[c]) break;
    h[i] = h[c];
    i = c;
  }
  if (len) h[i] = last;
  return top;
}

static void push_pair(const chai_merge_map *m, chai_bpe_work *w, size_t *hn, int32_t i) {
  int32_t j = w->next[i], merged;
  if (j < 0) return;
  int32_t r = chai_merge_find(m, w->sym[i], w->sym[j], &merged);
  if (r < 0) return;
  CHAI_ASSERT(*hn < 3 * w->cap);
  heap_push(w->heap, hn, (uint64_t)(uint32_t)r << 32 | (uint32_t)i);
}

/* Nodes are the initial positions; a merge keeps the left node and unlinks the right one, so node
 * order is text order. One "pass" of encoder.py (all occurrences of the lowest-rank pair) is the
 * run of heap entries with that rank: they are popped together before any pair that the pass
 * creates can compete, and applied left to right; entries that a merge made stale fail the rank
 * check. A pair created by a merge never has the rank being applied (it contains the merged
 * symbol). Sizes: a node's symbol only grows, so (rank, position) is pushed at most once; there are
 * at most n - 1 initial pairs and 2 pushes per merge, so the heap never holds 3n entries, and one
 * pass has at most n positions. */
size_t chai_bpe_merge_heap(const chai_merge_map *m, chai_bpe_work *w, int32_t *sym, size_t n) {
  if (n < 2) return n;
  int32_t *s = w->sym, *nx = w->next, *pv = w->prev, *todo = w->todo;
  uint64_t *h = w->heap;
  size_t hn = 0;
  for (size_t i = 0; i < n; i++) {
    s[i] = sym[i];
    nx[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
    pv[i] = (int32_t)i - 1;
  }
  for (size_t i = 0; i + 1 < n; i++)
    push_pair(m, w, &hn, (int32_t)i);
  while (hn > 0) {
    uint32_t rank = (uint32_t)(h[0] >> 32);
    size_t ntodo = 0;
    while (hn > 0 && (uint32_t)(h[0] >> 32) == rank) {
      CHAI_ASSERT(ntodo < n);
      todo[ntodo++] = (int32_t)heap_pop(h, &hn);
    }
    for (size_t k = 0; k < ntodo; k++) {
      int32_t i = todo[k];
      int32_t j = nx[i], merged;
      if (s[i] < 0 || j < 0) continue;
      int32_t r = chai_merge_find(m, s[i], s[j], &merged);
      if (r < 0 || (uint32_t)r != rank) continue;
      s[i] = merged;
      s[j] = -1;
      nx[i] = nx[j];
      if (nx[j] >= 0) pv[nx[j]] = i;
      if (pv[i] >= 0) push_pair(m, w, &hn, pv[i]);
      push_pair(m, w, &hn, i);
    }
  }
  size_t out = 0;
  for (int32_t i = 0; i >= 0; i = nx[i])
    sym[out++] = s[i];
  return out;
}

/* ---- the piece cache --------------------------------------------------------------------------
 */

struct chai_bpe_slot {
  uint64_t hash; /* 0 = empty */
  uint32_t key_off, key_len, ids_off, ids_len;
};

enum { CACHE_MAX_PIECE = 128, CACHE_BYTES_PER_ENTRY = 64 };

uint64_t chai_bpe_hash(const uint8_t *s, size_t n) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 0x100000001B3ull;
  return h | 1; /* never 0, the empty mark */
}

chai_status chai_bpe_cache_init(chai_bpe_cache *c, size_t max_entries) {
  memset(c, 0, sizeof *c);
  if (max_entries == 0) return CHAI_OK;
  size_t nslots = 16;
  while (nslots < max_entries * 2)
    nslots *= 2;
  size_t arena = max_entries * CACHE_BYTES_PER_ENTRY;
  if (arena < 4 * CACHE_MAX_PIECE * 5) arena = 4 * CACHE_MAX_PIECE * 5;
  c->slots = chai_alloc(nslots * sizeof *c->slots, "tokenizer cache");
  c->arena = chai_alloc(arena, "tokenizer cache");
  if (!c->slots || !c->arena) {
    chai_free(c->slots, nslots * sizeof *c->slots);
    chai_free(c->arena, arena);
    memset(c, 0, sizeof *c);
    return CHAI_ERR_NOMEM;
  }
  memset(c->slots, 0, nslots * sizeof *c->slots);
  c->nslots = nslots;
  c->max_entries = max_entries;
  c->arena_cap = arena;
  return CHAI_OK;
}

void chai_bpe_cache_free(chai_bpe_cache *c) {
  chai_free(c->slots, c->nslots * sizeof *c->slots);
  chai_free(c->arena, c->arena_cap);
  memset(c, 0, sizeof *c);
}

void chai_bpe_cache_clear(chai_bpe_cache *c) {
  if (c->slots) memset(c->slots, 0, c->nslots * sizeof *c->slots);
  c->count = 0;
  c->arena_len = 0;
}

const int32_t *chai_bpe_cache_get(const chai_bpe_cache *c, const uint8_t *s, size_t n, uint64_t h,
                                  size_t *nids) {
  if (!c->nslots || n > CACHE_MAX_PIECE) return NULL;
  size_t mask = c->nslots - 1;
  for (size_t i = (size_t)(h >> 7) & mask;; i = (i + 1) & mask) {
    const struct chai_bpe_slot *e = &c->slots[i];
    if (e->hash == 0) return NULL;
    if (e->hash == h && e->key_len == n && memcmp(c->arena + e->key_off, s, n) == 0) {
      *nids = e->ids_len;
      return (const int32_t *)(c->arena + e->ids_off);
    }
  }
}

void chai_bpe_cache_put(chai_bpe_cache *c, const uint8_t *s, size_t n, uint64_t h,
                        const int32_t *ids, size_t nids) {
  if (!c->nslots || n > CACHE_MAX_PIECE) return;
  size_t ids_off = (c->arena_len + n + 3) & ~(size_t)3;
  size_t need = ids_off + nids * sizeof(int32_t);
  if (c->count >= c->max_entries || need > c->arena_cap) {
    chai_bpe_cache_clear(c);
    ids_off = (n + 3) & ~(size_t)3;
    need = ids_off + nids * sizeof(int32_t);
  }
  size_t mask = c->nslots - 1, i = (size_t)(h >> 7) & mask;
  while (c->slots[i].hash != 0)
    i = (i + 1) & mask;
  memcpy(c->arena + c->arena_len, s, n);
  memcpy(c->arena + ids_off, ids, nids * sizeof(int32_t));
  c->slots[i] = (struct chai_bpe_slot){h, (uint32_t)c->arena_len, (uint32_t)n, (uint32_t)ids_off,
                                       (uint32_t)nids};
  c->arena_len = need;
  c->count++;
}
