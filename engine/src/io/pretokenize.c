/* GPT-2's pre-tokenization pattern, run by PCRE2 on UTF-8 (JIT when the library has it). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer_internal.h"

/* The GPT-2 pattern is
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * as run by Python's `regex` module, whose \s is Unicode's White_Space property. PCRE2's \s (with
 * UCP) also takes U+180E MONGOLIAN VOWEL SEPARATOR, which Unicode moved out of White_Space in 6.3.
 * So \s is spelled as White_Space is defined: the controls TAB..CR, U+0085, and category Z. */
#define WS "\\t-\\r\\x{85}\\p{Z}"
static const char pattern[] = "'s|'t|'re|'ve|'m|'ll|'d"
                              "| ?\\p{L}+| ?\\p{N}+"
                              "| ?[^" WS "\\p{L}\\p{N}]+"
                              "|[" WS "]+(?![^" WS "])"
                              "|[" WS "]+";

chai_status chai_pretok_init(chai_pretok *p) {
  int err;
  PCRE2_SIZE erroff;
  p->code = NULL;
  p->match_data = NULL;
  /* MATCH_INVALID_UTF: invalid bytes are barriers that no match crosses, instead of an error. */
  pcre2_code *code =
      pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                    PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &erroff, NULL);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return chai_error(CHAI_ERR_UNSUPPORTED, "PCRE2 rejected the GPT-2 pattern at offset %zu: %s",
                      (size_t)erroff, (const char *)msg);
  }
  /* JIT is optional: without it pcre2_match interprets the same pattern. */
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
  if (!md) {
    pcre2_code_free(code);
    return chai_error(CHAI_ERR_NOMEM, "out of memory creating PCRE2 match data");
  }
  p->code = code;
  p->match_data = md;
  return CHAI_OK;
}

void chai_pretok_free(chai_pretok *p) {
  if (p->match_data) pcre2_match_data_free(p->match_data);
  if (p->code) pcre2_code_free(p->code);
  p->code = NULL;
  p->match_data = NULL;
}

void chai_pretok_iter_init(chai_pretok_iter *it, const char *text, size_t len) {
  it->text = (const uint8_t *)text;
  it->len = len;
  it->pos = 0;
  it->held = 0;
  it->held_start = it->held_end = 0;
}

int chai_pretok_next(chai_pretok *p, chai_pretok_iter *it, size_t *start, size_t *end) {
  if (it->held) {
    it->held = 0;
    *start = it->held_start;
    *end = it->pos = it->held_end;
    return 1;
  }
  if (it->pos >= it->len) return 0;
  int rc = pcre2_match(p->code, it->text, it->len, it->pos, 0, p->match_data, NULL);
  if (rc == PCRE2_ERROR_NOMATCH) {
    /* only invalid bytes remain (every valid character starts a match) */
    *start = it->pos;
    *end = it->pos = it->len;
    return 1;
  }
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return chai_error(CHAI_ERR_FORMAT, "pre-tokenizing at byte %zu: PCRE2 error %d: %s", it->pos,
                      rc, (const char *)msg);
  }
  PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->match_data);
  size_t ms = ov[0], me = ov[1];
  if (me <= ms || ms < it->pos)
    return chai_error(CHAI_ERR_FORMAT, "pre-tokenizing at byte %zu: empty or backward match",
                      it->pos);
  if (ms > it->pos) {
    /* a run of invalid bytes before the match: a piece of its own */
    *start = it->pos;
    *end = ms;
    it->held = 1;
    it->held_start = ms;
    it->held_end = me;
    it->pos = ms;
    return 1;
  }
  *start = ms;
  *end = it->pos = me;
  return 1;
}
