/* The byte-level BPE tokenizer: encode, decode, accessors. Loading is in tokenizer_load.c. */
#include <string.h>

#include "chai/memory.h"
#include "tokenizer_internal.h"

/* ---- buffers ----------------------------------------------------------------------------------
 */

chai_status chai_token_ids_reserve(chai_token_ids *ids, size_t extra) {
  size_t need = ids->len + extra;
  if (need < ids->len) return chai_error(CHAI_ERR_NOMEM, "token id buffer overflow");
  if (need <= ids->cap) return CHAI_OK;
  size_t cap = ids->cap ? ids->cap : 64;
  while (cap < need)
    cap *= 2;
  int32_t *data = chai_alloc(cap * sizeof *data, "token ids");
  if (!data) return CHAI_ERR_NOMEM;
  if (ids->len) memcpy(data, ids->data, ids->len * sizeof *data);
  chai_free(ids->data, ids->cap * sizeof *data);
  ids->data = data;
  ids->cap = cap;
  return CHAI_OK;
}

void chai_token_ids_clear(chai_token_ids *ids) {
  ids->len = 0;
}

void chai_token_ids_free(chai_token_ids *ids) {
  chai_free(ids->data, ids->cap * sizeof *ids->data);
  memset(ids, 0, sizeof *ids);
}

static chai_status text_reserve(chai_text *t, size_t extra) {
  size_t need = t->len + extra + 1; /* + NUL */
  if (need <= t->len) return chai_error(CHAI_ERR_NOMEM, "text buffer overflow");
  if (need <= t->cap) return CHAI_OK;
  size_t cap = t->cap ? t->cap : 64;
  while (cap < need)
    cap *= 2;
  char *data = chai_alloc(cap, "decoded text");
  if (!data) return CHAI_ERR_NOMEM;
  if (t->len) memcpy(data, t->data, t->len);
  data[t->len] = 0;
  chai_free(t->data, t->cap);
  t->data = data;
  t->cap = cap;
  return CHAI_OK;
}

void chai_text_free(chai_text *text) {
  chai_free(text->data, text->cap);
  memset(text, 0, sizeof *text);
}

/* ---- accessors --------------------------------------------------------------------------------
 */

int32_t chai_tokenizer_vocab_size(const chai_tokenizer *tok) {
  return tok->vocab_size;
}
int32_t chai_tokenizer_bos_id(const chai_tokenizer *tok) {
  return tok->bos;
}
int32_t chai_tokenizer_eos_id(const chai_tokenizer *tok) {
  return tok->eos;
}
int32_t chai_tokenizer_pad_id(const chai_tokenizer *tok) {
  return tok->pad;
}
int32_t chai_tokenizer_unk_id(const chai_tokenizer *tok) {
  return tok->unk;
}
int chai_tokenizer_add_bos(const chai_tokenizer *tok) {
  return tok->add_bos;
}

chai_status chai_tokenizer_set_add_bos(chai_tokenizer *tok, int add_bos) {
  if (add_bos && tok->bos < 0)
    return chai_error(CHAI_ERR_ARG, "add_bos: this tokenizer has no bos token");
  tok->add_bos = add_bos != 0;
  return CHAI_OK;
}

int chai_tokenizer_is_special(const chai_tokenizer *tok, int32_t id) {
  return id >= 0 && id < tok->vocab_size && tok->special[id];
}

const char *chai_tokenizer_token(const chai_tokenizer *tok, int32_t id, size_t *len) {
  if (id < 0 || id >= tok->vocab_size || tok->str_len[id] < 0) return NULL;
  if (len) *len = (size_t)tok->str_len[id];
  return tok->strings + tok->str_off[id];
}

void chai_tokenizer_set_heap_threshold(chai_tokenizer *tok, size_t symbols) {
  tok->heap_threshold = symbols;
  chai_bpe_cache_clear(&tok->cache);
}

void chai_tokenizer_set_cache_capacity(chai_tokenizer *tok, size_t entries) {
  chai_bpe_cache_free(&tok->cache);
  /* on NOMEM the cache stays disabled, which only costs speed */
  (void)chai_bpe_cache_init(&tok->cache, entries);
}

/* ---- encode -----------------------------------------------------------------------------------
 */

/* Appends the ids of one piece (its bytes s[0..n)). */
static chai_status encode_piece(chai_tokenizer *tok, const uint8_t *s, size_t n,
                                chai_token_ids *out) {
  if (n == 1) {
    chai_status st = chai_token_ids_reserve(out, 1);
    if (st) return st;
    out->data[out->len++] = tok->byte_id[s[0]];
    return CHAI_OK;
  }
  if (n > INT32_MAX)
    return chai_error(CHAI_ERR_UNSUPPORTED, "a pre-tokenized piece of %zu bytes is too long", n);
  uint64_t h = chai_bpe_hash(s, n);
  size_t nids;
  const int32_t *hit = chai_bpe_cache_get(&tok->cache, s, n, h, &nids);
  if (hit) {
    chai_status st = chai_token_ids_reserve(out, nids);
    if (st) return st;
    memcpy(out->data + out->len, hit, nids * sizeof *hit);
    out->len += nids;
    return CHAI_OK;
  }
  chai_status st = chai_bpe_work_reserve(&tok->work, n);
  if (st) return st;
  int32_t *sym = tok->work.sym;
  for (size_t i = 0; i < n; i++)
    sym[i] = tok->byte_id[s[i]];
  size_t m = n >= tok->heap_threshold ? chai_bpe_merge_heap(&tok->merges, &tok->work, sym, n)
                                      : chai_bpe_merge_ref(&tok->merges, sym, n);
  st = chai_token_ids_reserve(out, m);
  if (st) return st;
  memcpy(out->data + out->len, sym, m * sizeof *sym);
  out->len += m;
  chai_bpe_cache_put(&tok->cache, s, n, h, sym, m);
  return CHAI_OK;
}

chai_status chai_tokenizer_encode(chai_tokenizer *tok, const char *text, size_t len, int add_bos,
                                  chai_token_ids *out) {
  size_t old_len = out->len;
  if (add_bos < 0) add_bos = tok->add_bos;
  if (add_bos && tok->bos < 0)
    return chai_error(CHAI_ERR_ARG, "add_bos: this tokenizer has no bos token");
  if (!text && len) return chai_error(CHAI_ERR_ARG, "encode: text is NULL but len is %zu", len);
  chai_status st = CHAI_OK;
  char *copy = NULL;
  size_t copy_bytes = 0;
  if (add_bos) {
    if ((st = chai_token_ids_reserve(out, 1))) return st;
    out->data[out->len++] = tok->bos;
  }
  if (tok->add_prefix_space) {
    /* Hugging Face's GPT2Tokenizer: text = " " + text */
    copy_bytes = len + 1;
    copy = chai_alloc(copy_bytes, "tokenizer input copy");
    if (!copy) {
      out->len = old_len;
      return CHAI_ERR_NOMEM;
    }
    copy[0] = ' ';
    if (len) memcpy(copy + 1, text, len);
    text = copy;
    len = copy_bytes;
  }
  chai_pretok_iter it;
  chai_pretok_iter_init(&it, text, len);
  size_t start, end, pieces = 0;
  int rc;
  while ((rc = chai_pretok_next(&tok->pretok, &it, &start, &end)) == 1) {
    if ((++pieces & 4095) == 0 && chai_interrupted()) {
      st = chai_error(CHAI_ERR_INTERRUPTED, "encode interrupted at byte %zu of %zu", start, len);
      break;
    }
    st = encode_piece(tok, (const uint8_t *)text + start, end - start, out);
    if (st) break;
  }
  if (rc < 0) st = (chai_status)rc;
  chai_free(copy, copy_bytes);
  if (st) out->len = old_len;
  return st;
}

/* ---- decode -----------------------------------------------------------------------------------
 */

chai_status chai_tokenizer_decode(const chai_tokenizer *tok, const int32_t *ids, size_t n,
                                  int skip_special, chai_text *out) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= tok->vocab_size || tok->dec_len[id] < 0)
      return chai_error(CHAI_ERR_ARG,
                        "decode: id %ld at position %zu is not in the vocabulary (ids 0..%ld)",
                        (long)id, i, (long)tok->vocab_size - 1);
    if (!(skip_special && tok->special[id])) total += (size_t)tok->dec_len[id];
  }
  chai_status st = text_reserve(out, total);
  if (st) return st;
  char *p = out->data + out->len;
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (skip_special && tok->special[id]) continue;
    memcpy(p, tok->decoded + tok->dec_off[id], (size_t)tok->dec_len[id]);
    p += tok->dec_len[id];
  }
  out->len += total;
  out->data[out->len] = 0;
  return CHAI_OK;
}
