/* The safetensors reader: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then the byte buffer
 * the offsets count from. Everything is checked before an entry is made. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/ckpt_internal.h"

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* the format's own limit */
#define ST_MAX_EXACT 9007199254740992.0      /* 2^53: JSON numbers above it are not exact */

static const struct {
  const char *name;
  size_t size;
  bool supported;
  chai_dtype dtype;
} st_dtypes[] = {
    {"F32", 4, true, CHAI_F32},  {"F16", 2, true, CHAI_F16},      {"BF16", 2, true, CHAI_BF16},
    {"I32", 4, true, CHAI_I32},  {"I64", 8, true, CHAI_I64},      {"I8", 1, true, CHAI_I8},
    {"U8", 1, true, CHAI_U8},    {"F64", 8, false, CHAI_F32},     {"BOOL", 1, false, CHAI_F32},
    {"I16", 2, false, CHAI_F32}, {"U16", 2, false, CHAI_F32},     {"U32", 4, false, CHAI_F32},
    {"U64", 8, false, CHAI_F32}, {"F8_E4M3", 1, false, CHAI_F32}, {"F8_E5M2", 1, false, CHAI_F32},
};

typedef struct st_range {
  uint64_t begin, end;
  int item; /* index into the list, for the message */
} st_range;

static int range_cmp(const void *a, const void *b) {
  const st_range *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return 0;
}

/* "<file>: tensor '<key>': <message>" as a format error. */
static chai_status bad(const char *what, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static chai_status bad(const char *what, const char *key, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (key) return chai_error(CHAI_ERR_FORMAT, "%s: tensor '%.200s': %s", what, key, msg);
  return chai_error(CHAI_ERR_FORMAT, "%s: %s", what, msg);
}

/* A JSON number that is an exact non-negative integer. */
static bool json_uint(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return false;
  double v = j->valuedouble;
  if (!(v >= 0 && v <= ST_MAX_EXACT) || v != (double)(uint64_t)v) return false;
  *out = (uint64_t)v;
  return true;
}

static chai_status parse_entry(const cJSON *item, const char *what, uint64_t buffer_bytes,
                               size_t buffer_start, int file, ckpt_list *out, st_range *range) {
  const char *key = item->string;
  if (!cJSON_IsObject(item)) return bad(what, key, "entry is not a JSON object");
  const cJSON *jd = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  const cJSON *js = cJSON_GetObjectItemCaseSensitive(item, "shape");
  const cJSON *jo = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsString(jd)) return bad(what, key, "missing or non-string \"dtype\"");
  if (!cJSON_IsArray(js)) return bad(what, key, "missing or non-array \"shape\"");
  if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
    return bad(what, key, "\"data_offsets\" must be an array [begin, end]");

  ckpt_entry e;
  memset(&e, 0, sizeof e);
  e.file = file;
  int dt = -1;
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (strcmp(jd->valuestring, st_dtypes[i].name) == 0) dt = (int)i;
  if (dt < 0) return bad(what, key, "unknown dtype \"%.40s\"", jd->valuestring);
  e.supported = st_dtypes[dt].supported;
  e.dtype = st_dtypes[dt].dtype;
  e.dtype_name = st_dtypes[dt].name;
  e.elem_size = st_dtypes[dt].size;

  int ndim = cJSON_GetArraySize(js);
  if (ndim > CKPT_MAX_DIMS)
    return bad(what, key, "%d dims (at most %d are supported)", ndim, CKPT_MAX_DIMS);
  e.ndim = ndim;
  int d = 0;
  for (const cJSON *j = js->child; j; j = j->next, d++) {
    uint64_t v;
    if (!json_uint(j, &v)) {
      char *txt = cJSON_PrintUnformatted(j);
      chai_status st =
          bad(what, key, "shape[%d] = %.40s is not a non-negative integer", d, txt ? txt : "?");
      free(txt);
      return st;
    }
    e.shape[d] = (int64_t)v;
  }
  uint64_t begin, end, need;
  if (!json_uint(jo->child, &begin) || !json_uint(jo->child->next, &end))
    return bad(what, key, "data_offsets are not non-negative integers");
  char shape_txt[200];
  chai_shape_str(ndim, e.shape, shape_txt, sizeof shape_txt);
  if (!ckpt_nbytes(ndim, e.shape, e.elem_size, &need))
    return bad(what, key, "shape %s of %s overflows", shape_txt, e.dtype_name);
  if (begin > end || end > buffer_bytes)
    return bad(what, key, "data_offsets [%llu, %llu] are outside the %llu-byte data buffer",
               (unsigned long long)begin, (unsigned long long)end,
               (unsigned long long)buffer_bytes);
  if (end - begin != need)
    return bad(what, key, "shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu",
               shape_txt, e.dtype_name, (unsigned long long)need, (unsigned long long)begin,
               (unsigned long long)end, (unsigned long long)(end - begin));
  int64_t s = (int64_t)e.elem_size;
  for (int i = ndim - 1; i >= 0; i--) {
    e.stride[i] = s;
    s *= e.shape[i] ? e.shape[i] : 1;
  }
  e.offset = buffer_start + (size_t)begin;
  size_t klen = strlen(key);
  e.name = malloc(klen + 1);
  if (!e.name) return chai_error(CHAI_ERR_NOMEM, "out of memory reading %s", what);
  memcpy(e.name, key, klen + 1);
  range->begin = begin;
  range->end = end;
  range->item = out->n;
  return ckpt_list_push(out, &e);
}

chai_status ckpt_safetensors_parse(const uint8_t *data, size_t size, const char *what, int file,
                                   ckpt_list *out) {
  if (size < 8)
    return bad(what, NULL, "file is %zu bytes, too short for the 8-byte safetensors header length",
               size);
  uint64_t n = ckpt_le64(data);
  if (n > ST_MAX_HEADER)
    return bad(what, NULL, "header length %llu exceeds the 100 MB limit of the format",
               (unsigned long long)n);
  if (n > size - 8)
    return bad(what, NULL, "header length %llu runs past the end of the %zu-byte file",
               (unsigned long long)n, size);
  if (n < 2)
    return bad(what, NULL, "header length %llu is too short for a JSON object",
               (unsigned long long)n);
  const char *json = (const char *)data + 8;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)n, &end, 0);
  if (!root) {
    size_t at = end && end >= json && end <= json + n ? (size_t)(end - json) : 0;
    return bad(what, NULL, "header is not valid JSON (error near header byte %zu)", at);
  }
  chai_status st = CHAI_OK;
  /* Writers pad the header with spaces; anything else after the JSON is corruption. */
  for (const char *p = end; p && p < json + n; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != 0) {
      st = bad(what, NULL, "unexpected byte 0x%02x after the JSON header at header byte %zu",
               (unsigned char)*p, (size_t)(p - json));
      goto done;
    }
  if (!cJSON_IsObject(root)) {
    st = bad(what, NULL, "header is JSON but not an object");
    goto done;
  }
  int count = cJSON_GetArraySize(root);
  st_range *ranges = count ? malloc((size_t)count * sizeof *ranges) : NULL;
  if (count && !ranges) {
    st = chai_error(CHAI_ERR_NOMEM, "out of memory reading %s", what);
    goto done;
  }
  int nr = 0;
  bool seen_meta = false;
  size_t buffer_start = 8 + (size_t)n;
  uint64_t buffer_bytes = size - buffer_start;
  for (const cJSON *item = root->child; item; item = item->next) {
    if (!item->string) continue;
    if (strcmp(item->string, "__metadata__") == 0) {
      if (seen_meta) {
        st = bad(what, NULL, "duplicate key \"__metadata__\"");
        break;
      }
      seen_meta = true;
      if (!cJSON_IsObject(item)) {
        st = bad(what, NULL, "\"__metadata__\" is not a JSON object");
        break;
      }
      continue;
    }
    if ((st = parse_entry(item, what, buffer_bytes, buffer_start, file, out, &ranges[nr]))) break;
    nr++;
  }
  if (!st && nr > 1) {
    /* Empty tensors own no bytes, so they may sit anywhere; the rest must not share a byte. */
    qsort(ranges, (size_t)nr, sizeof *ranges, range_cmp);
    uint64_t max_end = 0;
    int max_item = -1;
    for (int i = 0; i < nr && !st; i++) {
      if (ranges[i].begin == ranges[i].end) continue;
      if (max_item >= 0 && ranges[i].begin < max_end)
        st = bad(what, out->items[ranges[i].item].name,
                 "data_offsets [%llu, %llu] overlap tensor '%.200s' ending at %llu",
                 (unsigned long long)ranges[i].begin, (unsigned long long)ranges[i].end,
                 out->items[max_item].name, (unsigned long long)max_end);
      if (ranges[i].end > max_end) {
        max_end = ranges[i].end;
        max_item = ranges[i].item;
      }
    }
  }
  free(ranges);
done:
  cJSON_Delete(root);
  return st;
}
