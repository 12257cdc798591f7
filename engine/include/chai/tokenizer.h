/* chai — byte-level BPE tokenizer (GPT-2 / RoBERTa / OPT): vocab.json + merges.txt.
 *
 * Encoding follows the GPT-2 reference (openai/gpt-2 encoder.py): the text is split by GPT-2's
 * pre-tokenization pattern (PCRE2, Unicode classes), each piece's UTF-8 bytes are mapped to
 * symbols through the byte<->unicode table, and merges are applied lowest rank first, every
 * occurrence of the chosen pair left to right. Special tokens in the text are NOT recognised: the
 * text "</s>" becomes ordinary BPE tokens, as in encoder.py.
 *
 * Bytes that are not valid UTF-8 never match the pattern; every maximal run of them becomes a piece
 * of its own and is encoded through the byte map like any other piece. So decode(encode(x)) == x
 * for every byte string x, valid UTF-8 or not (with add_prefix_space off and no BOS).
 *
 * A chai_tokenizer is not safe to use for encoding from several threads at once (encoding updates a
 * cache); decoding and the accessors only read. */
#ifndef CHAI_TOKENIZER_H
#define CHAI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "chai/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chai_tokenizer chai_tokenizer;

/* A growable array of token ids. Start from {0} (or chai_token_ids_clear to reuse); functions
 * append. chai_token_ids_free releases the buffer and zeroes the struct; safe on {0}. */
typedef struct chai_token_ids {
  int32_t *data;
  size_t len, cap;
} chai_token_ids;
void chai_token_ids_clear(chai_token_ids *ids);
void chai_token_ids_free(chai_token_ids *ids);
/* Makes room for `extra` more ids beyond len (CHAI_ERR_NOMEM; the ids stay as they were). */
chai_status chai_token_ids_reserve(chai_token_ids *ids, size_t extra);

/* A growable byte string, always NUL-terminated after a successful append (data may hold NULs).
 * Start from {0}; chai_text_free releases it and zeroes the struct; safe on {0}. */
typedef struct chai_text {
  char *data;
  size_t len, cap;
} chai_text;
void chai_text_free(chai_text *text);

/* Loads a tokenizer from the folder `dir`: vocab.json and merges.txt (required), and, when present,
 * tokenizer_config.json (add_bos_token, add_prefix_space, bos/eos/pad/unk_token,
 * added_tokens_decoder) and special_tokens_map.json (bos/eos/pad/unk_token where the config has
 * none). Defaults without them, for OPT's vocabulary: add_bos off (as Hugging Face's
 * GPT2Tokenizer), bos = eos = "</s>" (else "<|endoftext|>"), pad = "<pad>", unk = "<unk>"; a role
 * whose token is not in the vocabulary gets id -1.
 * On success *out is a new tokenizer owned by the caller (chai_tokenizer_free). On failure *out is
 * NULL and the error names the file and the bad value: CHAI_ERR_IO (missing or unreadable file),
 * CHAI_ERR_FORMAT (bad JSON, a vocab entry that is not a non-negative integer, a duplicate id, a
 * malformed merges line, a merge whose parts or result are not in the vocab, a byte with no token),
 * CHAI_ERR_NOMEM. */
chai_status chai_tokenizer_load(chai_tokenizer **out, const char *dir);

/* The same from explicit paths; config_path and special_map_path may be NULL. */
chai_status chai_tokenizer_load_files(chai_tokenizer **out, const char *vocab_path,
                                      const char *merges_path, const char *config_path,
                                      const char *special_map_path);

/* Frees the tokenizer; NULL is ignored. */
void chai_tokenizer_free(chai_tokenizer *tok);

/* One more than the largest id in vocab.json (50265 for OPT). */
int32_t chai_tokenizer_vocab_size(const chai_tokenizer *tok);
/* Special-token ids, -1 when the tokenizer has none for that role. */
int32_t chai_tokenizer_bos_id(const chai_tokenizer *tok);
int32_t chai_tokenizer_eos_id(const chai_tokenizer *tok);
int32_t chai_tokenizer_pad_id(const chai_tokenizer *tok);
int32_t chai_tokenizer_unk_id(const chai_tokenizer *tok);
/* Whether encode prepends bos by default (tokenizer_config.json "add_bos_token", else 0). */
int chai_tokenizer_add_bos(const chai_tokenizer *tok);
/* Overrides that default. CHAI_ERR_ARG when add_bos is set and the tokenizer has no bos token. */
chai_status chai_tokenizer_set_add_bos(chai_tokenizer *tok, int add_bos);
/* Whether `id` is a special token (bos/eos/pad/unk, and added tokens marked special). */
int chai_tokenizer_is_special(const chai_tokenizer *tok, int32_t id);

/* The vocabulary string of `id` (the byte-mapped form, "Ġthe"), not NUL-terminated; NULL when id is
 * out of range or has no token. The pointer lives as long as the tokenizer. */
const char *chai_tokenizer_token(const chai_tokenizer *tok, int32_t id, size_t *len);
/* The id of the vocabulary string s[0..len), or -1. */
int32_t chai_tokenizer_token_id(const chai_tokenizer *tok, const char *s, size_t len);

/* Encodes text[0..len) (any bytes; NULs allowed) and appends the ids to `out`. add_bos: 1 prepend
 * the bos id, 0 do not, -1 the tokenizer's default. On failure `out` keeps its old length and the
 * error says why: CHAI_ERR_ARG (add_bos without a bos token), CHAI_ERR_NOMEM, CHAI_ERR_INTERRUPTED
 * (chai_interrupt during a long text), CHAI_ERR_UNSUPPORTED (a piece over 2^31 bytes). */
chai_status chai_tokenizer_encode(chai_tokenizer *tok, const char *text, size_t len, int add_bos,
                                  chai_token_ids *out);

/* Decodes ids[0..n) to bytes through the inverse byte map and appends them to `out`. Nothing is
 * skipped unless skip_special (then special ids produce no bytes). The bytes of a token that spans
 * part of a UTF-8 character are emitted as they are, so decoding a prefix of the ids may end in an
 * incomplete character. CHAI_ERR_ARG naming the id and its position when an id is out of range or
 * has no token; `out` then keeps its old length. */
chai_status chai_tokenizer_decode(const chai_tokenizer *tok, const int32_t *ids, size_t n,
                                  int skip_special, chai_text *out);

/* Test and tuning knob: pieces of at least `symbols` byte-symbols are merged with the O(n log n)
 * heap algorithm, shorter ones with the direct O(n^2) one (the reference). Both give the same ids;
 * the default is 64. 0 sends every piece through the heap; SIZE_MAX none. Clears the cache. */
void chai_tokenizer_set_heap_threshold(chai_tokenizer *tok, size_t symbols);
/* Test knob: the number of cached pieces (0 disables the cache). Clears the cache. */
void chai_tokenizer_set_cache_capacity(chai_tokenizer *tok, size_t entries);

#ifdef __cplusplus
}
#endif
#endif
