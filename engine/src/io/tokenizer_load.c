/* Loading a byte-level BPE tokenizer: vocab.json, merges.txt, tokenizer_config.json,
 * special_tokens_map.json. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chai/memory.h"
#include "tokenizer_internal.h"

enum { MAX_VOCAB_ID = (1 << 24) - 1, DEFAULT_CACHE_ENTRIES = 1 << 15, DEFAULT_HEAP_THRESHOLD = 64 };

/* ---- files ------------------------------------------------------------------------------------
 */

typedef struct file_buf {
  char *data; /* NUL-terminated */
  size_t len, alloc;
} file_buf;

static void file_buf_free(file_buf *f) {
  chai_free(f->data, f->alloc);
  memset(f, 0, sizeof *f);
}

static chai_status read_file(const char *path, file_buf *out) {
  memset(out, 0, sizeof *out);
  FILE *fp = fopen(path, "rb");
  if (!fp) return chai_error(CHAI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(fp);
    return chai_error(CHAI_ERR_IO, "cannot read %s: not a regular file", path);
  }
  size_t size = (size_t)sb.st_size;
  out->alloc = size + 1;
  out->data = chai_alloc(out->alloc, path);
  if (!out->data) {
    fclose(fp);
    out->alloc = 0;
    return CHAI_ERR_NOMEM;
  }
  size_t got = fread(out->data, 1, size, fp);
  int failed = ferror(fp);
  fclose(fp);
  if (failed || got != size) {
    file_buf_free(out);
    return chai_error(CHAI_ERR_IO, "cannot read %s: short read (%zu of %zu bytes)", path, got,
                      size);
  }
  out->data[size] = 0;
  out->len = size;
  return CHAI_OK;
}

static int file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static chai_status parse_json(const char *path, const file_buf *f, cJSON **out) {
  const char *end = NULL;
  *out = cJSON_ParseWithLengthOpts(f->data, f->len, &end, 0);
  if (*out) return CHAI_OK;
  const char *at = end && end >= f->data && end <= f->data + f->len ? end : cJSON_GetErrorPtr();
  if (!at || at < f->data || at > f->data + f->len) at = f->data;
  size_t line = 1;
  for (const char *p = f->data; p < at; p++)
    line += *p == '\n';
  return chai_error(CHAI_ERR_FORMAT, "%s: invalid JSON at byte %zu (line %zu)", path,
                    (size_t)(at - f->data), line);
}

/* ---- the vocabulary ---------------------------------------------------------------------------
 */

static uint64_t str_hash(const char *s, size_t n) {
  return chai_bpe_hash((const uint8_t *)s, n);
}

int32_t chai_tokenizer_token_id(const chai_tokenizer *tok, const char *s, size_t len) {
  uint64_t h = str_hash(s, len);
  for (size_t i = (size_t)(h >> 7) & tok->lookup_mask;; i = (i + 1) & tok->lookup_mask) {
    const chai_vocab_slot *e = &tok->lookup[i];
    if (e->hash == 0) return -1;
    if (e->hash == h && tok->str_len[e->id] == (int32_t)len &&
        memcmp(tok->strings + tok->str_off[e->id], s, len) == 0)
      return e->id;
  }
}

/* Decodes one UTF-8 character at s[0..n): its code point, or -1 (one invalid byte). */
static int32_t utf8_next(const uint8_t *s, size_t n, size_t *used) {
  uint8_t c = s[0];
  *used = 1;
  if (c < 0x80) return c;
  size_t k = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (k == 0 || k > n) return -1;
  uint32_t cp = c & (0x7F >> k);
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xC0) != 0x80) return -1;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return -1;
  *used = k;
  return (int32_t)cp;
}

static size_t utf8_put(uint32_t cp, char *out) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  out[0] = (char)(0xE0 | cp >> 12);
  out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[2] = (char)(0x80 | (cp & 0x3F));
  return 3;
}

static chai_status load_vocab(chai_tokenizer *tok, const char *path) {
  file_buf f;
  chai_status st = read_file(path, &f);
  if (st) return st;
  cJSON *root = NULL;
  st = parse_json(path, &f, &root);
  file_buf_free(&f);
  if (st) return st;
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return chai_error(CHAI_ERR_FORMAT, "%s: expected a JSON object of token -> id", path);
  }
  /* pass 1: validate ids, size the tables */
  size_t count = 0, bytes = 0;
  int32_t max_id = -1;
  for (cJSON *it = root->child; it; it = it->next) {
    double v = it->valuedouble;
    if (!cJSON_IsNumber(it) || !(v >= 0) || (v <= MAX_VOCAB_ID && v != (double)(int32_t)v)) {
      char *txt = cJSON_PrintUnformatted(it);
      st = chai_error(CHAI_ERR_FORMAT, "%s: token '%s' has id %s, expected an integer >= 0", path,
                      it->string, txt ? txt : "?");
      free(txt);
      cJSON_Delete(root);
      return st;
    }
    if (v > MAX_VOCAB_ID) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: token '%s' has id %.0f, over the limit %d", path,
                      it->string, v, MAX_VOCAB_ID);
      cJSON_Delete(root);
      return st;
    }
    if ((int32_t)v > max_id) max_id = (int32_t)v;
    bytes += strlen(it->string);
    count++;
  }
  if (count == 0) {
    cJSON_Delete(root);
    return chai_error(CHAI_ERR_FORMAT, "%s: the vocabulary is empty", path);
  }
  size_t vs = (size_t)max_id + 1;
  tok->vocab_size = (int32_t)vs;
  tok->strings_bytes = bytes + 1;
  tok->decoded_bytes = bytes + 1;
  size_t nslots = 16;
  while (nslots < count * 2)
    nslots *= 2;
  tok->lookup_mask = nslots - 1;
  tok->strings = chai_alloc(tok->strings_bytes, "tokenizer vocabulary");
  tok->decoded = chai_alloc(tok->decoded_bytes, "tokenizer vocabulary");
  tok->str_off = chai_alloc(vs * sizeof(int64_t), "tokenizer vocabulary");
  tok->dec_off = chai_alloc(vs * sizeof(int64_t), "tokenizer vocabulary");
  tok->str_len = chai_alloc(vs * sizeof(int32_t), "tokenizer vocabulary");
  tok->dec_len = chai_alloc(vs * sizeof(int32_t), "tokenizer vocabulary");
  tok->special = chai_alloc(vs, "tokenizer vocabulary");
  tok->lookup = chai_alloc(nslots * sizeof *tok->lookup, "tokenizer vocabulary");
  if (!tok->strings || !tok->decoded || !tok->str_off || !tok->dec_off || !tok->str_len ||
      !tok->dec_len || !tok->special || !tok->lookup) {
    cJSON_Delete(root);
    return CHAI_ERR_NOMEM;
  }
  memset(tok->str_len, 0xFF, vs * sizeof(int32_t)); /* -1: no token */
  memset(tok->dec_len, 0xFF, vs * sizeof(int32_t));
  memset(tok->special, 0, vs);
  memset(tok->lookup, 0, nslots * sizeof *tok->lookup);
  /* pass 2: strings, decoded bytes, the lookup table */
  size_t so = 0, dof = 0;
  for (cJSON *it = root->child; it; it = it->next) {
    int32_t id = (int32_t)it->valuedouble;
    size_t n = strlen(it->string);
    if (tok->str_len[id] >= 0) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: id %ld is used by both '%.*s' and '%s'", path, (long)id,
                      (int)tok->str_len[id], tok->strings + tok->str_off[id], it->string);
      cJSON_Delete(root);
      return st;
    }
    if (chai_tokenizer_token_id(tok, it->string, n) >= 0) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: token '%s' appears twice", path, it->string);
      cJSON_Delete(root);
      return st;
    }
    memcpy(tok->strings + so, it->string, n);
    tok->str_off[id] = (int64_t)so;
    tok->str_len[id] = (int32_t)n;
    so += n;
    uint64_t h = str_hash(it->string, n);
    size_t i = (size_t)(h >> 7) & tok->lookup_mask;
    while (tok->lookup[i].hash)
      i = (i + 1) & tok->lookup_mask;
    tok->lookup[i] = (chai_vocab_slot){h, id};
    /* a character of the byte map stands for its byte; any other is kept as UTF-8 */
    tok->dec_off[id] = (int64_t)dof;
    const uint8_t *s = (const uint8_t *)it->string;
    for (size_t k = 0; k < n;) {
      size_t used;
      int32_t cp = utf8_next(s + k, n - k, &used);
      int b = cp >= 0 ? chai_bpe_cp_to_byte((uint32_t)cp) : -1;
      if (b >= 0) {
        tok->decoded[dof++] = (uint8_t)b;
      } else {
        memcpy(tok->decoded + dof, s + k, used);
        dof += used;
      }
      k += used;
    }
    tok->dec_len[id] = (int32_t)(dof - (size_t)tok->dec_off[id]);
  }
  cJSON_Delete(root);
  for (int b = 0; b < 256; b++) {
    char u[4];
    size_t n = utf8_put(chai_bpe_byte_to_cp((uint8_t)b), u);
    tok->byte_id[b] = chai_tokenizer_token_id(tok, u, n);
    if (tok->byte_id[b] < 0)
      return chai_error(CHAI_ERR_FORMAT,
                        "%s: byte 0x%02x has no token (its byte-level symbol '%.*s' is missing), "
                        "so this is not a byte-level BPE vocabulary",
                        path, b, (int)n, u);
  }
  return CHAI_OK;
}

/* ---- merges -----------------------------------------------------------------------------------
 */

static chai_status load_merges(chai_tokenizer *tok, const char *path) {
  file_buf f;
  chai_status st = read_file(path, &f);
  if (st) return st;
  size_t lines = 1;
  for (size_t i = 0; i < f.len; i++)
    lines += f.data[i] == '\n';
  if ((st = chai_merge_map_init(&tok->merges, lines))) {
    file_buf_free(&f);
    return st;
  }
  size_t cat_cap = 256, line_no = 0;
  char *cat = chai_alloc(cat_cap, "merges line");
  if (!cat) {
    file_buf_free(&f);
    return CHAI_ERR_NOMEM;
  }
  int32_t rank = 0;
  char *p = f.data, *end = f.data + f.len;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *le = nl ? nl : end;
    char *next = nl ? nl + 1 : end;
    line_no++;
    if (le > p && le[-1] == '\r') le--;
    size_t n = (size_t)(le - p);
    if (n == 0 || (line_no == 1 && n >= 8 && memcmp(p, "#version", 8) == 0)) {
      p = next;
      continue;
    }
    char *sp = memchr(p, ' ', n);
    if (!sp || sp == p || sp + 1 == le || memchr(sp + 1, ' ', (size_t)(le - sp - 1))) {
      st = chai_error(CHAI_ERR_FORMAT,
                      "%s line %zu: expected two tokens separated by one space, "
                      "got '%.*s'",
                      path, line_no, (int)(n > 200 ? 200 : n), p);
      break;
    }
    size_t na = (size_t)(sp - p), nb = (size_t)(le - sp - 1);
    int32_t a = chai_tokenizer_token_id(tok, p, na);
    int32_t b = chai_tokenizer_token_id(tok, sp + 1, nb);
    if (a < 0 || b < 0) {
      st = chai_error(CHAI_ERR_FORMAT, "%s line %zu: '%.*s' is not in the vocabulary", path,
                      line_no, (int)(a < 0 ? na : nb), a < 0 ? p : sp + 1);
      break;
    }
    if (na + nb > cat_cap) {
      chai_free(cat, cat_cap);
      cat_cap = (na + nb) * 2;
      if (!(cat = chai_alloc(cat_cap, "merges line"))) {
        st = CHAI_ERR_NOMEM;
        break;
      }
    }
    memcpy(cat, p, na);
    memcpy(cat + na, sp + 1, nb);
    int32_t m = chai_tokenizer_token_id(tok, cat, na + nb);
    if (m < 0) {
      st = chai_error(CHAI_ERR_FORMAT,
                      "%s line %zu: the merge result '%.*s' is not in the "
                      "vocabulary",
                      path, line_no, (int)(na + nb), cat);
      break;
    }
    chai_merge_map_put(&tok->merges, a, b, rank++, m);
    p = next;
  }
  chai_free(cat, cat_cap);
  file_buf_free(&f);
  return st;
}

/* ---- tokenizer_config.json / special_tokens_map.json ------------------------------------------
 */

enum { ROLE_BOS, ROLE_EOS, ROLE_PAD, ROLE_UNK, ROLE_COUNT };
static const char *const role_key[ROLE_COUNT] = {"bos_token", "eos_token", "pad_token",
                                                 "unk_token"};

/* A token given as "</s>" or {"content": "</s>", ...} or null. Sets *id (-1 for null). */
static chai_status token_value(const chai_tokenizer *tok, const char *path, const char *key,
                               const cJSON *v, int32_t *id) {
  if (cJSON_IsNull(v)) {
    *id = -1;
    return CHAI_OK;
  }
  const cJSON *s = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "content") : v;
  if (!cJSON_IsString(s))
    return chai_error(CHAI_ERR_FORMAT, "%s: %s must be a string, {\"content\": string} or null",
                      path, key);
  *id = chai_tokenizer_token_id(tok, s->valuestring, strlen(s->valuestring));
  if (*id < 0)
    return chai_error(CHAI_ERR_UNSUPPORTED, "%s: %s '%s' is not in vocab.json", path, key,
                      s->valuestring);
  return CHAI_OK;
}

static chai_status read_bool(const char *path, const cJSON *root, const char *key, int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) return CHAI_OK;
  if (!cJSON_IsBool(v))
    return chai_error(CHAI_ERR_FORMAT, "%s: %s must be true or false", path, key);
  *out = cJSON_IsTrue(v);
  return CHAI_OK;
}

/* Reads one of the two optional files; `have[r]` tells whether a role was set by an earlier file
 * (tokenizer_config.json wins over special_tokens_map.json). */
static chai_status load_special(chai_tokenizer *tok, const char *path, int is_config,
                                int32_t role_id[ROLE_COUNT], int have[ROLE_COUNT]) {
  file_buf f;
  chai_status st = read_file(path, &f);
  if (st) return st;
  cJSON *root = NULL;
  st = parse_json(path, &f, &root);
  file_buf_free(&f);
  if (st) return st;
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return chai_error(CHAI_ERR_FORMAT, "%s: expected a JSON object", path);
  }
  for (int r = 0; r < ROLE_COUNT && !st; r++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, role_key[r]);
    if (!v || have[r]) continue;
    if (!(st = token_value(tok, path, role_key[r], v, &role_id[r]))) have[r] = 1;
  }
  if (!st && is_config) st = read_bool(path, root, "add_bos_token", &tok->add_bos);
  if (!st && is_config) st = read_bool(path, root, "add_prefix_space", &tok->add_prefix_space);
  const cJSON *extra = cJSON_GetObjectItemCaseSensitive(root, "additional_special_tokens");
  if (!st && extra) {
    if (!cJSON_IsArray(extra)) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: additional_special_tokens must be a list", path);
    } else {
      const cJSON *e;
      cJSON_ArrayForEach(e, extra) {
        int32_t id;
        if ((st = token_value(tok, path, "additional_special_tokens", e, &id))) break;
        if (id >= 0) tok->special[id] = 1;
      }
    }
  }
  const cJSON *added =
      is_config ? cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder") : NULL;
  if (!st && added) {
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
      char *endp;
      long id = strtol(e->string ? e->string : "", &endp, 10);
      const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
      if (!e->string || *endp || !cJSON_IsString(content)) {
        st = chai_error(CHAI_ERR_FORMAT,
                        "%s: added_tokens_decoder entry '%s' needs an integer key "
                        "and a string \"content\"",
                        path, e->string ? e->string : "?");
        break;
      }
      size_t n;
      const char *have_str = chai_tokenizer_token(tok, (int32_t)(id > INT32_MAX ? -1 : id), &n);
      if (!have_str || n != strlen(content->valuestring) ||
          memcmp(have_str, content->valuestring, n) != 0) {
        st = chai_error(CHAI_ERR_UNSUPPORTED,
                        "%s: added token '%s' (id %ld) is not that entry of "
                        "vocab.json; tokens added outside vocab.json are not supported",
                        path, content->valuestring, id);
        break;
      }
      if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special"))) tok->special[id] = 1;
    }
  }
  cJSON_Delete(root);
  return st;
}

static int32_t find_str(const chai_tokenizer *tok, const char *s) {
  return chai_tokenizer_token_id(tok, s, strlen(s));
}

/* ---- load / free ------------------------------------------------------------------------------
 */

void chai_tokenizer_free(chai_tokenizer *tok) {
  if (!tok) return;
  size_t vs = tok->vocab_size > 0 ? (size_t)tok->vocab_size : 0;
  chai_free(tok->strings, tok->strings_bytes);
  chai_free(tok->decoded, tok->decoded_bytes);
  chai_free(tok->str_off, vs * sizeof(int64_t));
  chai_free(tok->dec_off, vs * sizeof(int64_t));
  chai_free(tok->str_len, vs * sizeof(int32_t));
  chai_free(tok->dec_len, vs * sizeof(int32_t));
  chai_free(tok->special, vs);
  chai_free(tok->lookup, (tok->lookup_mask + 1) * sizeof *tok->lookup);
  chai_merge_map_free(&tok->merges);
  chai_pretok_free(&tok->pretok);
  chai_bpe_cache_free(&tok->cache);
  chai_bpe_work_free(&tok->work);
  chai_free(tok, sizeof *tok);
}

chai_status chai_tokenizer_load_files(chai_tokenizer **out, const char *vocab_path,
                                      const char *merges_path, const char *config_path,
                                      const char *special_map_path) {
  *out = NULL;
  chai_tokenizer *tok = chai_alloc(sizeof *tok, "tokenizer");
  if (!tok) return CHAI_ERR_NOMEM;
  memset(tok, 0, sizeof *tok);
  tok->heap_threshold = DEFAULT_HEAP_THRESHOLD;
  chai_status st = load_vocab(tok, vocab_path);
  if (!st) st = load_merges(tok, merges_path);
  int32_t role_id[ROLE_COUNT] = {-1, -1, -1, -1};
  int have[ROLE_COUNT] = {0};
  if (!st && config_path) st = load_special(tok, config_path, 1, role_id, have);
  if (!st && special_map_path) st = load_special(tok, special_map_path, 0, role_id, have);
  if (!st) {
    /* OPT's roles where no file named them; "<|endoftext|>" is GPT-2's bos/eos */
    int32_t eot = find_str(tok, "<|endoftext|>"), eos = find_str(tok, "</s>");
    if (!have[ROLE_BOS]) role_id[ROLE_BOS] = eos >= 0 ? eos : eot;
    if (!have[ROLE_EOS]) role_id[ROLE_EOS] = eos >= 0 ? eos : eot;
    if (!have[ROLE_PAD]) role_id[ROLE_PAD] = find_str(tok, "<pad>");
    if (!have[ROLE_UNK]) role_id[ROLE_UNK] = find_str(tok, "<unk>");
    tok->bos = role_id[ROLE_BOS];
    tok->eos = role_id[ROLE_EOS];
    tok->pad = role_id[ROLE_PAD];
    tok->unk = role_id[ROLE_UNK];
    for (int r = 0; r < ROLE_COUNT; r++)
      if (role_id[r] >= 0) tok->special[role_id[r]] = 1;
    if (tok->add_bos && tok->bos < 0)
      st = chai_error(CHAI_ERR_FORMAT, "%s: add_bos_token is true but there is no bos_token",
                      config_path ? config_path : vocab_path);
  }
  if (!st) st = chai_pretok_init(&tok->pretok);
  if (!st) st = chai_bpe_cache_init(&tok->cache, DEFAULT_CACHE_ENTRIES);
  if (st) {
    chai_tokenizer_free(tok);
    return st;
  }
  *out = tok;
  return CHAI_OK;
}

chai_status chai_tokenizer_load(chai_tokenizer **out, const char *dir) {
  *out = NULL;
  struct stat sb;
  if (stat(dir, &sb) != 0)
    return chai_error(CHAI_ERR_IO, "tokenizer folder %s: %s", dir, strerror(errno));
  if (!S_ISDIR(sb.st_mode))
    return chai_error(CHAI_ERR_IO, "tokenizer folder %s: not a directory", dir);
  size_t n = strlen(dir) + 32;
  char *paths = chai_alloc(4 * n, "tokenizer paths");
  if (!paths) return CHAI_ERR_NOMEM;
  char *vocab = paths, *merges = paths + n, *config = paths + 2 * n, *special = paths + 3 * n;
  snprintf(vocab, n, "%s/vocab.json", dir);
  snprintf(merges, n, "%s/merges.txt", dir);
  snprintf(config, n, "%s/tokenizer_config.json", dir);
  snprintf(special, n, "%s/special_tokens_map.json", dir);
  chai_status st =
      chai_tokenizer_load_files(out, vocab, merges, file_exists(config) ? config : NULL,
                                file_exists(special) ? special : NULL);
  chai_free(paths, 4 * n);
  return st;
}
