/* Head plans: which heads of which layer share their representative's attention scores. The file
 * is JSON with 0-based indices; every malformed plan is refused with the reason, because a wrong
 * plan silently changes a model's outputs. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chai/heads.h"
#include "chai/memory.h"

static void layer_free(chai_heads_layer *l) {
  chai_free(l->order, (size_t)l->n_listed * sizeof(int));
  if (l->start) chai_free(l->start, (size_t)(l->k + 1) * sizeof(int));
  if (l->score_head) chai_free(l->score_head, (size_t)l->n_heads * sizeof(int));
  memset(l, 0, sizeof *l);
  l->layer = -1;
}

void chai_heads_plan_free(chai_heads_plan *plan) {
  if (!plan) return;
  for (int i = 0; i < plan->n_layers; i++)
    layer_free(&plan->layers[i]);
  if (plan->layers) chai_free(plan->layers, (size_t)plan->n_layers * sizeof(chai_heads_layer));
  if (plan->meta_json) chai_free(plan->meta_json, strlen(plan->meta_json) + 1);
  memset(plan, 0, sizeof *plan);
}

chai_status chai_heads_plan_init(chai_heads_plan *plan, int n_layers) {
  memset(plan, 0, sizeof *plan);
  if (n_layers < 0) return chai_error(CHAI_ERR_ARG, "plan: negative layer count %d", n_layers);
  if (n_layers == 0) return CHAI_OK;
  plan->layers = chai_alloc((size_t)n_layers * sizeof(chai_heads_layer), "plan layers");
  if (!plan->layers) return CHAI_ERR_NOMEM;
  plan->n_layers = n_layers;
  for (int i = 0; i < n_layers; i++) {
    memset(&plan->layers[i], 0, sizeof plan->layers[i]);
    plan->layers[i].layer = -1;
  }
  return CHAI_OK;
}

static chai_status check_entry(chai_heads_plan *plan, int i) {
  if (!plan || i < 0 || i >= plan->n_layers)
    return chai_error(CHAI_ERR_ARG, "plan: entry %d out of range", i);
  layer_free(&plan->layers[i]);
  return CHAI_OK;
}

chai_status chai_heads_plan_set_clusters(chai_heads_plan *plan, int i, int layer, int n_heads,
                                         const int *heads, const int *sizes, int k) {
  chai_status st = check_entry(plan, i);
  if (st) return st;
  if (k < 0) return chai_error(CHAI_ERR_ARG, "plan: negative cluster count %d", k);
  long listed = 0;
  for (int c = 0; c < k; c++) {
    if (sizes[c] < 0) return chai_error(CHAI_ERR_ARG, "plan: negative cluster size %d", sizes[c]);
    listed += sizes[c];
  }
  if (listed > (1 << 20)) return chai_error(CHAI_ERR_ARG, "plan: %ld heads listed", listed);
  chai_heads_layer *l = &plan->layers[i];
  l->layer = layer;
  l->n_heads = n_heads > 0 ? n_heads : 0;
  l->has_clusters = true;
  l->start = chai_alloc((size_t)(k + 1) * sizeof(int), "plan clusters");
  if (!l->start) return CHAI_ERR_NOMEM;
  l->k = k;
  if (listed > 0) {
    l->order = chai_alloc((size_t)listed * sizeof(int), "plan heads");
    if (!l->order) return CHAI_ERR_NOMEM;
    memcpy(l->order, heads, (size_t)listed * sizeof(int));
  }
  l->n_listed = (int)listed;
  l->start[0] = 0;
  for (int c = 0; c < k; c++)
    l->start[c + 1] = l->start[c] + sizes[c];
  return CHAI_OK;
}

chai_status chai_heads_plan_set_k(chai_heads_plan *plan, int i, int layer, int n_heads, int k) {
  chai_status st = check_entry(plan, i);
  if (st) return st;
  chai_heads_layer *l = &plan->layers[i];
  l->layer = layer;
  l->n_heads = n_heads > 0 ? n_heads : 0;
  l->k = k;
  l->has_clusters = false;
  return CHAI_OK;
}

chai_status chai_heads_plan_set_labels(chai_heads_plan *plan, int i, int layer, const int *labels,
                                       int n_heads) {
  if (n_heads < 1) return chai_error(CHAI_ERR_ARG, "plan: need n_heads >= 1, got %d", n_heads);
  size_t bytes = (size_t)n_heads * 3 * sizeof(int);
  int *lab = chai_alloc(bytes, "plan labels");
  if (!lab) return CHAI_ERR_NOMEM;
  int *heads = lab + n_heads, *sizes = heads + n_heads;
  memcpy(lab, labels, (size_t)n_heads * sizeof(int));
  int k = chai_labels_canonical(lab, n_heads);
  chai_status st = CHAI_OK;
  if (k < 0) {
    st = chai_error(CHAI_ERR_ARG, "plan: negative label");
  } else {
    int at = 0;
    for (int c = 0; c < k; c++) {
      sizes[c] = 0;
      for (int h = 0; h < n_heads; h++)
        if (lab[h] == c) {
          heads[at++] = h;
          sizes[c]++;
        }
    }
    st = chai_heads_plan_set_clusters(plan, i, layer, n_heads, heads, sizes, k);
  }
  chai_free(lab, bytes);
  return st;
}

static int cmp_layer(const void *a, const void *b) {
  const chai_heads_layer *x = a, *y = b;
  return (x->layer > y->layer) - (x->layer < y->layer);
}

/* Every rule, with messages naming indices in the caller's base. `code` is FORMAT for files and
 * ARG for plans built in memory. */
static chai_status validate(chai_heads_plan *plan, const chai_heads_dims *dims, chai_status code) {
  chai_heads_dims d = dims ? *dims : (chai_heads_dims){0, 0, 0};
  int b = d.base;
  for (int i = 0; i < plan->n_layers; i++) {
    chai_heads_layer *l = &plan->layers[i];
    if (l->layer < 0 || (d.n_layers > 0 && l->layer >= d.n_layers)) {
      if (d.n_layers > 0)
        return chai_error(code, "plan: layer %d out of range (the model has layers %d..%d)",
                          l->layer + b, b, d.n_layers - 1 + b);
      return chai_error(code, "plan: layer %d out of range", l->layer + b);
    }
    for (int j = 0; j < i; j++)
      if (plan->layers[j].layer == l->layer)
        return chai_error(code, "plan: layer %d listed twice", l->layer + b);
    if (d.n_heads > 0) {
      if (l->n_heads > 0 && l->n_heads != d.n_heads)
        return chai_error(code, "plan: layer %d has %d heads, the model %d", l->layer + b,
                          l->n_heads, d.n_heads);
      if (l->score_head && l->n_heads != d.n_heads) {
        chai_free(l->score_head, (size_t)l->n_heads * sizeof(int));
        l->score_head = NULL;
      }
      l->n_heads = d.n_heads;
    } else if (l->n_heads == 0 && l->has_clusters) {
      l->n_heads = l->n_listed;
    }
    int H = l->n_heads;
    if (!l->has_clusters) {
      if (l->k < 1 || (H > 0 && l->k > H))
        return H > 0
                   ? chai_error(code, "plan: layer %d: k = %d outside 1..%d", l->layer + b, l->k, H)
                   : chai_error(code, "plan: layer %d: k = %d must be >= 1", l->layer + b, l->k);
      continue;
    }
    if (l->k < 1) return chai_error(code, "plan: layer %d has no clusters", l->layer + b);
    for (int c = 0; c < l->k; c++)
      if (l->start[c + 1] == l->start[c])
        return chai_error(code, "plan: layer %d: cluster %d is empty", l->layer + b, c + b);
    for (int p = 0; p < l->n_listed; p++) {
      int h = l->order[p];
      if (h < 0 || h >= H)
        return chai_error(code, "plan: layer %d: head %d out of range (heads %d..%d)", l->layer + b,
                          h + b, b, H - 1 + b);
      for (int q = 0; q < p; q++)
        if (l->order[q] == h)
          return chai_error(code, "plan: layer %d: head %d listed twice", l->layer + b, h + b);
    }
    if (l->n_listed != H) {
      /* in range and distinct, so fewer than H: name the first one missing */
      for (int h = 0; h < H; h++) {
        int seen = 0;
        for (int p = 0; p < l->n_listed && !seen; p++)
          seen = l->order[p] == h;
        if (!seen) return chai_error(code, "plan: layer %d: head %d missing", l->layer + b, h + b);
      }
    }
    if (!l->score_head) {
      l->score_head = chai_alloc((size_t)H * sizeof(int), "plan score map");
      if (!l->score_head) return CHAI_ERR_NOMEM;
    }
    for (int c = 0; c < l->k; c++)
      for (int p = l->start[c]; p < l->start[c + 1]; p++)
        l->score_head[l->order[p]] = l->order[l->start[c]];
  }
  if (plan->n_layers > 1) qsort(plan->layers, plan->n_layers, sizeof *plan->layers, cmp_layer);
  return CHAI_OK;
}

chai_status chai_heads_plan_validate(chai_heads_plan *plan, const chai_heads_dims *dims) {
  if (!plan) return chai_error(CHAI_ERR_ARG, "plan: NULL");
  return validate(plan, dims, CHAI_ERR_ARG);
}

const chai_heads_layer *chai_heads_plan_find(const chai_heads_plan *plan, int layer) {
  if (!plan) return NULL;
  for (int i = 0; i < plan->n_layers; i++)
    if (plan->layers[i].layer == layer) return &plan->layers[i];
  return NULL;
}

static chai_status set_meta(chai_heads_plan *plan, const char *text) {
  size_t n = strlen(text) + 1;
  plan->meta_json = chai_alloc(n, "plan meta");
  if (!plan->meta_json) return CHAI_ERR_NOMEM;
  memcpy(plan->meta_json, text, n);
  return CHAI_OK;
}

chai_status chai_heads_plan_copy(chai_heads_plan *out, const chai_heads_plan *plan) {
  chai_status st = chai_heads_plan_init(out, plan->n_layers);
  for (int i = 0; !st && i < plan->n_layers; i++) {
    const chai_heads_layer *l = &plan->layers[i];
    if (!l->has_clusters) {
      st = chai_heads_plan_set_k(out, i, l->layer, l->n_heads, l->k);
      continue;
    }
    int sizes_buf[64], *sizes = sizes_buf;
    size_t bytes = (size_t)l->k * sizeof(int);
    if (l->k > 64 && !(sizes = chai_alloc(bytes, "plan copy"))) {
      st = CHAI_ERR_NOMEM;
      break;
    }
    for (int c = 0; c < l->k; c++)
      sizes[c] = l->start[c + 1] - l->start[c];
    st = chai_heads_plan_set_clusters(out, i, l->layer, l->n_heads, l->order, sizes, l->k);
    if (sizes != sizes_buf) chai_free(sizes, bytes);
    if (!st && l->score_head) {
      chai_heads_layer *o = &out->layers[i];
      o->score_head = chai_alloc((size_t)l->n_heads * sizeof(int), "plan score map");
      if (!o->score_head)
        st = CHAI_ERR_NOMEM;
      else
        memcpy(o->score_head, l->score_head, (size_t)l->n_heads * sizeof(int));
    }
  }
  if (!st && plan->meta_json) st = set_meta(out, plan->meta_json);
  if (st) chai_heads_plan_free(out);
  return st;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

static chai_status get_int(const cJSON *item, const char *what, int idx, int *out) {
  if (!cJSON_IsNumber(item) || item->valuedouble != (double)(int)item->valuedouble)
    return chai_error(CHAI_ERR_FORMAT, "plan: layers[%d].%s must be an integer", idx, what);
  *out = (int)item->valuedouble;
  return CHAI_OK;
}

static chai_status parse_layer(chai_heads_plan *plan, int i, const cJSON *e) {
  if (!cJSON_IsObject(e))
    return chai_error(CHAI_ERR_FORMAT, "plan: layers[%d] must be an object", i);
  const cJSON *jl = NULL, *jc = NULL, *jk = NULL;
  for (const cJSON *c = e->child; c; c = c->next) {
    if (!strcmp(c->string, "layer"))
      jl = c;
    else if (!strcmp(c->string, "clusters"))
      jc = c;
    else if (!strcmp(c->string, "k"))
      jk = c;
    else
      return chai_error(CHAI_ERR_FORMAT, "plan: layers[%d]: unknown key \"%s\"", i, c->string);
  }
  if (!jl) return chai_error(CHAI_ERR_FORMAT, "plan: layers[%d] has no \"layer\"", i);
  if (!jc && !jk)
    return chai_error(CHAI_ERR_FORMAT, "plan: layers[%d] needs \"clusters\" or \"k\"", i);
  int layer = -1, k = -1;
  chai_status st = get_int(jl, "layer", i, &layer);
  if (!st && jk) st = get_int(jk, "k", i, &k);
  if (st) return st;
  if (!jc) return chai_heads_plan_set_k(plan, i, layer, 0, k);
  if (!cJSON_IsArray(jc))
    return chai_error(CHAI_ERR_FORMAT, "plan: layers[%d].clusters must be an array of arrays", i);
  int nc = cJSON_GetArraySize(jc), total = 0;
  for (const cJSON *c = jc->child; c; c = c->next) {
    if (!cJSON_IsArray(c))
      return chai_error(CHAI_ERR_FORMAT, "plan: layers[%d].clusters must be an array of arrays", i);
    total += cJSON_GetArraySize(c);
  }
  if (jk && k != nc)
    return chai_error(CHAI_ERR_FORMAT, "plan: layer %d: k = %d but %d clusters listed", layer, k,
                      nc);
  size_t bytes = ((size_t)total + nc + 1) * sizeof(int);
  int *heads = chai_alloc(bytes, "plan parse");
  if (!heads) return CHAI_ERR_NOMEM;
  int *sizes = heads + total, at = 0, ci = 0;
  for (const cJSON *c = jc->child; c && !st; c = c->next, ci++) {
    sizes[ci] = cJSON_GetArraySize(c);
    for (const cJSON *h = c->child; h && !st; h = h->next)
      st = get_int(h, "clusters[]", i, &heads[at++]);
  }
  if (!st) st = chai_heads_plan_set_clusters(plan, i, layer, 0, heads, sizes, nc);
  chai_free(heads, bytes);
  return st;
}

chai_status chai_heads_plan_parse(chai_heads_plan *plan, const char *json, size_t len,
                                  const chai_heads_dims *dims) {
  memset(plan, 0, sizeof *plan);
  if (!json) return chai_error(CHAI_ERR_ARG, "plan: NULL text");
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  if (!root)
    return chai_error(CHAI_ERR_FORMAT, "plan: malformed JSON at byte %zu",
                      end && end >= json ? (size_t)(end - json) : (size_t)0);
  chai_status st = CHAI_OK;
  const cJSON *layers = NULL, *meta = NULL;
  if (!cJSON_IsObject(root)) {
    st = chai_error(CHAI_ERR_FORMAT, "plan: the top level must be an object");
    goto done;
  }
  for (const cJSON *c = root->child; c; c = c->next) {
    if (!strcmp(c->string, "layers"))
      layers = c;
    else if (!strcmp(c->string, "meta"))
      meta = c;
    else {
      st = chai_error(CHAI_ERR_FORMAT, "plan: unknown key \"%s\" (expected \"layers\", \"meta\")",
                      c->string);
      goto done;
    }
  }
  if (!cJSON_IsArray(layers)) {
    st = chai_error(CHAI_ERR_FORMAT, "plan: \"layers\" must be an array");
    goto done;
  }
  st = chai_heads_plan_init(plan, cJSON_GetArraySize(layers));
  int i = 0;
  for (const cJSON *e = layers->child; e && !st; e = e->next, i++)
    st = parse_layer(plan, i, e);
  if (!st && meta) {
    char *text = cJSON_PrintUnformatted(meta);
    if (!text) {
      st = chai_error(CHAI_ERR_NOMEM, "plan: out of memory printing meta");
    } else {
      st = set_meta(plan, text);
      cJSON_free(text);
    }
  }
  if (!st) st = validate(plan, dims, CHAI_ERR_FORMAT);
done:
  cJSON_Delete(root);
  if (st) chai_heads_plan_free(plan);
  return st;
}

chai_status chai_heads_plan_load(chai_heads_plan *plan, const char *path,
                                 const chai_heads_dims *dims) {
  memset(plan, 0, sizeof *plan);
  FILE *f = fopen(path, "rb");
  if (!f) return chai_error(CHAI_ERR_IO, "cannot open plan %s: %s", path, strerror(errno));
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    if (n == cap) {
      char *nb = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
      if (!nb) break;
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int err = ferror(f) || (buf && n == cap);
  fclose(f);
  if (!buf || err) {
    free(buf);
    return chai_error(CHAI_ERR_IO, "cannot read plan %s (unreadable or over 64 MiB)", path);
  }
  chai_status st = chai_heads_plan_parse(plan, buf, n, dims);
  free(buf);
  if (st) return chai_error_context(st, "%s", path);
  return CHAI_OK;
}

/* A growing text buffer (malloc'ed: the caller of to_json frees it with free()). */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void put(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *s, const char *fmt, ...) {
  if (s->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, ap);
    va_end(ap);
    if (w < 0) {
      s->oom = 1;
      return;
    }
    if (s->p && s->n + (size_t)w < s->cap) {
      s->n += (size_t)w;
      return;
    }
    size_t cap = s->cap ? s->cap * 2 : 256;
    while (cap < s->n + (size_t)w + 1)
      cap *= 2;
    char *np = realloc(s->p, cap);
    if (!np) {
      s->oom = 1;
      return;
    }
    s->p = np;
    s->cap = cap;
  }
}

chai_status chai_heads_plan_to_json(char **out, const chai_heads_plan *plan) {
  *out = NULL;
  if (plan->meta_json) {
    cJSON *m = cJSON_Parse(plan->meta_json);
    if (!m) return chai_error(CHAI_ERR_ARG, "plan: meta is not valid JSON");
    cJSON_Delete(m);
  }
  sbuf s = {0};
  put(&s, "{\"layers\":[");
  for (int i = 0; i < plan->n_layers; i++) {
    const chai_heads_layer *l = &plan->layers[i];
    put(&s, "%s\n  {\"layer\":%d", i ? "," : "", l->layer);
    if (l->has_clusters) {
      put(&s, ",\"clusters\":[");
      for (int c = 0; c < l->k; c++) {
        put(&s, "%s[", c ? "," : "");
        for (int p = l->start[c]; p < l->start[c + 1]; p++)
          put(&s, "%s%d", p > l->start[c] ? "," : "", l->order[p]);
        put(&s, "]");
      }
      put(&s, "]");
    }
    put(&s, ",\"k\":%d}", l->k);
  }
  put(&s, "%s]", plan->n_layers ? "\n" : "");
  if (plan->meta_json) put(&s, ",\n\"meta\":%s", plan->meta_json);
  put(&s, "}\n");
  if (s.oom) {
    free(s.p);
    return chai_error(CHAI_ERR_NOMEM, "plan: out of memory writing JSON");
  }
  *out = s.p;
  return CHAI_OK;
}

chai_status chai_heads_plan_save(const chai_heads_plan *plan, const char *path) {
  char *text;
  chai_status st = chai_heads_plan_to_json(&text, plan);
  if (st) return st;
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(text);
    return chai_error(CHAI_ERR_IO, "cannot write plan %s: %s", path, strerror(errno));
  }
  size_t n = strlen(text);
  int bad = fwrite(text, 1, n, f) != n;
  bad |= fclose(f) != 0;
  free(text);
  if (bad) return chai_error(CHAI_ERR_IO, "cannot write plan %s", path);
  return CHAI_OK;
}
