/* The restricted unpickler. It is a plain loop over opcodes with an explicit value stack (so no
 * input can recurse), values live in one arena addressed by index (so shared and even
 * self-containing containers need no reference counting), and the only "callables" are three
 * whitelisted globals that build inert records: nothing read from the file is ever executed.
 * Every count read from the input is checked against the bytes that remain before it is used. */
#include "io/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBJECTS (1u << 22)
#define MAX_STACK (1u << 20)
#define MAX_MARKS (1u << 12)
#define MAX_ITEMS (1u << 24) /* container slots, over all containers */
#define MAX_MEMO (1u << 22)
#define MAX_LINE 256 /* a GLOBAL's module or name */

static const pkl_storage_type storage_types[] = {
    {"HalfStorage", 2, true, CHAI_F16},      {"FloatStorage", 4, true, CHAI_F32},
    {"BFloat16Storage", 2, true, CHAI_BF16}, {"LongStorage", 8, true, CHAI_I64},
    {"IntStorage", 4, true, CHAI_I32},       {"CharStorage", 1, true, CHAI_I8},
    {"ByteStorage", 1, true, CHAI_U8},       {"DoubleStorage", 8, false, CHAI_F32},
    {"ShortStorage", 2, false, CHAI_F32},    {"BoolStorage", 1, false, CHAI_F32},
};
#define N_STORAGE_TYPES (int)(sizeof storage_types / sizeof storage_types[0])

enum { G_ORDEREDDICT = -1, G_REBUILD = -2 }; /* >= 0: index into storage_types */

typedef enum pv_kind {
  PV_NONE,
  PV_BOOL,
  PV_INT,
  PV_FLOAT,
  PV_STR,
  PV_TUPLE,
  PV_LIST,
  PV_DICT, /* items hold key, value, key, value, ... */
  PV_GLOBAL,
  PV_STORAGE,
  PV_TENSOR,
} pv_kind;

static const char *const kind_names[] = {"None", "bool", "int",    "float",   "str",   "tuple",
                                         "list", "dict", "global", "storage", "tensor"};

typedef struct pv {
  pv_kind kind;
  union {
    int64_t i; /* BOOL, INT; GLOBAL id; TENSOR index into tens */
    double f;
    struct {
      const char *p;
      size_t len;
    } s;
    struct {
      int32_t *items;
      uint32_t n, cap;
    } seq;
    struct {
      const char *key;
      size_t key_len;
      int type;
      uint64_t numel;
    } st;
  };
} pv;

typedef struct unpickler {
  const uint8_t *d;
  size_t len, pos, op_pos;
  int op;
  const char *what;
  pv *obj;
  size_t nobj, capobj;
  int32_t *stack;
  size_t sp, capstack;
  size_t *marks;
  size_t nmarks, capmarks;
  int32_t *memo;
  size_t capmemo, memo_count;
  pkl_tensor *tens;
  size_t ntens, captens;
  size_t items;
} unpickler;

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static chai_status perr(unpickler *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static chai_status perr(unpickler *u, const char *fmt, ...) {
  char msg[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return chai_error(CHAI_ERR_FORMAT, "%s: %s (opcode 0x%02x at byte %zu)", u->what, msg, u->op,
                    u->op_pos);
}

static chai_status nomem(unpickler *u) {
  return chai_error(CHAI_ERR_NOMEM, "%s: out of memory unpickling", u->what);
}

/* Grows *p (of *cap elements) to hold `need`, doubling; false when `need` exceeds `limit` or
 * memory runs out. */
static bool grow(void **p, size_t *cap, size_t need, size_t elem, size_t limit) {
  if (need <= *cap) return true;
  if (need > limit) return false;
  size_t c = *cap ? *cap : 16;
  while (c < need)
    c *= 2;
  if (c > limit) c = limit;
  void *q = realloc(*p, c * elem);
  if (!q) return false;
  *p = q;
  *cap = c;
  return true;
}

static chai_status need(unpickler *u, size_t n) {
  if (u->len - u->pos < n)
    return perr(u, "pickle is truncated: %zu more bytes needed, %zu left", n, u->len - u->pos);
  return CHAI_OK;
}

static chai_status new_obj(unpickler *u, pv_kind kind, int32_t *id) {
  if (!grow((void **)&u->obj, &u->capobj, u->nobj + 1, sizeof *u->obj, MAX_OBJECTS))
    return u->nobj + 1 > MAX_OBJECTS ? perr(u, "more than %u objects", MAX_OBJECTS) : nomem(u);
  memset(&u->obj[u->nobj], 0, sizeof *u->obj);
  u->obj[u->nobj].kind = kind;
  *id = (int32_t)u->nobj++;
  return CHAI_OK;
}

static chai_status push(unpickler *u, int32_t id) {
  if (!grow((void **)&u->stack, &u->capstack, u->sp + 1, sizeof *u->stack, MAX_STACK))
    return u->sp + 1 > MAX_STACK ? perr(u, "stack deeper than %u", MAX_STACK) : nomem(u);
  u->stack[u->sp++] = id;
  return CHAI_OK;
}

/* Pushes a new object of `kind` and returns it (valid until the next new_obj). */
static chai_status push_new(unpickler *u, pv_kind kind, pv **out) {
  int32_t id;
  chai_status st = new_obj(u, kind, &id);
  if (!st) st = push(u, id);
  if (!st && out) *out = &u->obj[id];
  return st;
}

/* Where the stack stands above the topmost mark. */
static chai_status mark_base(unpickler *u, size_t *base) {
  if (!u->nmarks) return perr(u, "no MARK on the stack");
  *base = u->marks[u->nmarks - 1];
  return CHAI_OK;
}

static chai_status pop(unpickler *u, int32_t *id) {
  size_t floor = u->nmarks ? u->marks[u->nmarks - 1] : 0;
  if (u->sp <= floor) return perr(u, "stack underflow");
  *id = u->stack[--u->sp];
  return CHAI_OK;
}

static chai_status top(unpickler *u, int32_t *id) {
  size_t floor = u->nmarks ? u->marks[u->nmarks - 1] : 0;
  if (u->sp <= floor) return perr(u, "stack underflow");
  *id = u->stack[u->sp - 1];
  return CHAI_OK;
}

/* Appends ids to container `c` (a list, dict or the tuple being built). */
static chai_status seq_add(unpickler *u, int32_t c, const int32_t *ids, size_t n) {
  if (!n) return CHAI_OK;
  if (n > MAX_ITEMS - u->items) return perr(u, "more than %u container items", MAX_ITEMS);
  pv *o = &u->obj[c];
  size_t cap = o->seq.cap;
  if (!grow((void **)&o->seq.items, &cap, (size_t)o->seq.n + n, sizeof(int32_t), MAX_ITEMS))
    return nomem(u);
  o->seq.cap = (uint32_t)cap;
  memcpy(o->seq.items + o->seq.n, ids, n * sizeof(int32_t));
  o->seq.n += (uint32_t)n;
  u->items += n;
  return CHAI_OK;
}

/* Replaces the top n stack values with a tuple of them. */
static chai_status make_tuple(unpickler *u, size_t base) {
  int32_t id;
  chai_status st = new_obj(u, PV_TUPLE, &id);
  if (st) return st;
  if (u->sp > base && (st = seq_add(u, id, u->stack + base, u->sp - base))) return st;
  u->sp = base;
  return push(u, id);
}

static bool is_str(const pv *o, const char *s) {
  return o->kind == PV_STR && o->s.len == strlen(s) && memcmp(o->s.p, s, o->s.len) == 0;
}

static chai_status resolve_global(unpickler *u, const char *mod, size_t mlen, const char *name,
                                  size_t nlen) {
  int g = -100;
  if (mlen == 11 && memcmp(mod, "collections", 11) == 0 && nlen == 11 &&
      memcmp(name, "OrderedDict", 11) == 0)
    g = G_ORDEREDDICT;
  else if (mlen == 12 && memcmp(mod, "torch._utils", 12) == 0 && nlen == 18 &&
           memcmp(name, "_rebuild_tensor_v2", 18) == 0)
    g = G_REBUILD;
  else if (mlen == 5 && memcmp(mod, "torch", 5) == 0)
    for (int i = 0; i < N_STORAGE_TYPES; i++)
      if (nlen == strlen(storage_types[i].name) && memcmp(name, storage_types[i].name, nlen) == 0)
        g = i;
  if (g == -100)
    return perr(u,
                "pickle refers to the global '%.*s.%.*s', which is not allowed (only "
                "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage)",
                (int)(mlen > 100 ? 100 : mlen), mod, (int)(nlen > 100 ? 100 : nlen), name);
  pv *o;
  chai_status st = push_new(u, PV_GLOBAL, &o);
  if (!st) o->i = g;
  return st;
}

/* GLOBAL's two text lines, "module\nname\n". */
static chai_status read_line(unpickler *u, const char **s, size_t *n) {
  const uint8_t *start = u->d + u->pos;
  size_t left = u->len - u->pos, max = left < MAX_LINE ? left : MAX_LINE;
  const uint8_t *nl = memchr(start, '\n', max);
  if (!nl) return perr(u, "GLOBAL name not terminated within %d bytes", MAX_LINE);
  *s = (const char *)start;
  *n = (size_t)(nl - start);
  u->pos += *n + 1;
  return CHAI_OK;
}

static const char *kind_of(const unpickler *u, int32_t id) {
  return kind_names[u->obj[id].kind];
}

/* ("storage", torch.<T>Storage, key, location, numel) → a storage record. */
static chai_status persistent_load(unpickler *u, int32_t pid) {
  const pv *t = &u->obj[pid];
  if (t->kind != PV_TUPLE || t->seq.n != 5)
    return perr(u, "persistent id is a %s of %u items, not a 5-tuple", kind_of(u, pid),
                t->kind == PV_TUPLE ? t->seq.n : 0);
  const int32_t *a = t->seq.items;
  const pv *tag = &u->obj[a[0]], *cls = &u->obj[a[1]], *key = &u->obj[a[2]], *loc = &u->obj[a[3]],
           *num = &u->obj[a[4]];
  if (!is_str(tag, "storage")) return perr(u, "persistent id does not start with 'storage'");
  if (cls->kind != PV_GLOBAL || cls->i < 0)
    return perr(u, "persistent id names a %s, not a torch.*Storage class", kind_of(u, a[1]));
  if (key->kind != PV_STR) return perr(u, "storage key is a %s, not a str", kind_of(u, a[2]));
  if (loc->kind != PV_STR) return perr(u, "storage location is a %s, not a str", kind_of(u, a[3]));
  if (num->kind != PV_INT || num->i < 0) return perr(u, "storage size is not a non-negative int");
  int type = (int)cls->i;
  uint64_t numel = (uint64_t)num->i;
  const char *kp = key->s.p;
  size_t kl = key->s.len;
  pv *o;
  chai_status st = push_new(u, PV_STORAGE, &o);
  if (st) return st;
  o->st.key = kp;
  o->st.key_len = kl;
  o->st.type = type;
  o->st.numel = numel;
  return CHAI_OK;
}

/* A tuple of non-negative ints into dims[]; false with the message set otherwise. */
static chai_status int_tuple(unpickler *u, int32_t id, const char *arg, int64_t *dims, int *n) {
  const pv *t = &u->obj[id];
  if (t->kind != PV_TUPLE)
    return perr(u, "_rebuild_tensor_v2 argument %s is a %s, not a tuple", arg, kind_of(u, id));
  if (t->seq.n > PKL_MAX_DIMS)
    return perr(u, "_rebuild_tensor_v2 argument %s has %u dims (at most %d)", arg, t->seq.n,
                PKL_MAX_DIMS);
  for (uint32_t i = 0; i < t->seq.n; i++) {
    const pv *v = &u->obj[t->seq.items[i]];
    if (v->kind != PV_INT || v->i < 0)
      return perr(u, "_rebuild_tensor_v2 argument %s[%u] is not a non-negative int", arg, i);
    dims[i] = v->i;
  }
  *n = (int)t->seq.n;
  return CHAI_OK;
}

static chai_status rebuild_tensor(unpickler *u, int32_t args) {
  const pv *t = &u->obj[args];
  if (t->seq.n != 6 && t->seq.n != 7)
    return perr(u, "_rebuild_tensor_v2 takes 6 or 7 arguments, not %u", t->seq.n);
  const int32_t *a = t->seq.items;
  const pv *s = &u->obj[a[0]], *off = &u->obj[a[1]], *rg = &u->obj[a[4]];
  if (s->kind != PV_STORAGE)
    return perr(u, "_rebuild_tensor_v2 argument storage is a %s", kind_of(u, a[0]));
  if (off->kind != PV_INT || off->i < 0)
    return perr(u, "_rebuild_tensor_v2 storage_offset is not a non-negative int");
  if (rg->kind != PV_BOOL && rg->kind != PV_INT)
    return perr(u, "_rebuild_tensor_v2 requires_grad is a %s, not a bool", kind_of(u, a[4]));
  pkl_tensor rec;
  memset(&rec, 0, sizeof rec);
  int nstride;
  chai_status st = int_tuple(u, a[2], "size", rec.shape, &rec.ndim);
  if (!st) st = int_tuple(u, a[3], "stride", rec.stride, &nstride);
  if (st) return st;
  if (nstride != rec.ndim)
    return perr(u, "_rebuild_tensor_v2 has %d sizes but %d strides", rec.ndim, nstride);
  rec.key = s->st.key;
  rec.key_len = s->st.key_len;
  rec.type = &storage_types[s->st.type];
  rec.storage_numel = s->st.numel;
  rec.offset = (uint64_t)off->i;
  if (!grow((void **)&u->tens, &u->captens, u->ntens + 1, sizeof *u->tens, MAX_OBJECTS))
    return nomem(u);
  u->tens[u->ntens] = rec;
  pv *o;
  if ((st = push_new(u, PV_TENSOR, &o))) return st;
  o->i = (int64_t)u->ntens++;
  return CHAI_OK;
}

static chai_status reduce(unpickler *u) {
  int32_t args, fn;
  chai_status st = pop(u, &args);
  if (!st) st = pop(u, &fn);
  if (st) return st;
  if (u->obj[fn].kind != PV_GLOBAL) return perr(u, "REDUCE on a %s", kind_of(u, fn));
  if (u->obj[args].kind != PV_TUPLE)
    return perr(u, "REDUCE arguments are a %s, not a tuple", kind_of(u, args));
  int64_t g = u->obj[fn].i;
  if (g == G_ORDEREDDICT) {
    if (u->obj[args].seq.n) return perr(u, "OrderedDict called with arguments");
    return push_new(u, PV_DICT, NULL);
  }
  if (g == G_REBUILD) return rebuild_tensor(u, args);
  return perr(u, "torch.%s cannot be called", storage_types[g].name);
}

static chai_status memo_put(unpickler *u, uint64_t idx) {
  if (idx >= MAX_MEMO || idx > u->len)
    return perr(u, "memo index %llu out of range", (unsigned long long)idx);
  int32_t id;
  chai_status st = top(u, &id);
  if (st) return st;
  size_t old = u->capmemo;
  if (!grow((void **)&u->memo, &u->capmemo, (size_t)idx + 1, sizeof *u->memo, MAX_MEMO))
    return nomem(u);
  for (size_t i = old; i < u->capmemo; i++)
    u->memo[i] = -1;
  if (u->memo[idx] < 0) u->memo_count++;
  u->memo[idx] = id;
  return CHAI_OK;
}

static chai_status memo_get(unpickler *u, uint64_t idx) {
  if (idx >= u->capmemo || u->memo[idx] < 0)
    return perr(u, "memo index %llu was never stored", (unsigned long long)idx);
  return push(u, u->memo[idx]);
}

static chai_status push_int(unpickler *u, int64_t v) {
  pv *o;
  chai_status st = push_new(u, PV_INT, &o);
  if (!st) o->i = v;
  return st;
}

static chai_status push_str(unpickler *u, uint64_t n) {
  if (n > u->len - u->pos)
    return perr(u, "string of %llu bytes runs past the end of the pickle", (unsigned long long)n);
  pv *o;
  chai_status st = push_new(u, PV_STR, &o);
  if (st) return st;
  o->s.p = (const char *)u->d + u->pos;
  o->s.len = (size_t)n;
  u->pos += (size_t)n;
  return CHAI_OK;
}

/* Runs one opcode; *done once STOP leaves the result in *result. */
static chai_status step(unpickler *u, bool *done, int32_t *result) {
  u->op_pos = u->pos;
  u->op = -1;
  chai_status st = need(u, 1);
  if (st) return perr(u, "pickle ends without STOP");
  u->op = u->d[u->pos++];
  const uint8_t *p = u->d + u->pos;
  int32_t a, b, c;
  size_t base = 0;
  pv *o;
  switch (u->op) {
  case 0x80: /* PROTO */
    if ((st = need(u, 1))) return st;
    u->pos++;
    if (p[0] < 2 || p[0] > 5) return perr(u, "unsupported pickle protocol %d", p[0]);
    return CHAI_OK;
  case 0x95: /* FRAME: framing only groups opcodes; the length is advisory */
    if ((st = need(u, 8))) return st;
    u->pos += 8;
    return CHAI_OK;
  case '.': /* STOP */
    if ((st = pop(u, result))) return st;
    *done = true;
    return CHAI_OK;
  case '(': /* MARK */
    if (!grow((void **)&u->marks, &u->capmarks, u->nmarks + 1, sizeof *u->marks, MAX_MARKS))
      return u->nmarks + 1 > MAX_MARKS ? perr(u, "more than %u nested MARKs", MAX_MARKS) : nomem(u);
    u->marks[u->nmarks++] = u->sp;
    return CHAI_OK;
  case '}': return push_new(u, PV_DICT, NULL);
  case ']': return push_new(u, PV_LIST, NULL);
  case ')': return push_new(u, PV_TUPLE, NULL);
  case 't': /* TUPLE */
    if ((st = mark_base(u, &base))) return st;
    u->nmarks--;
    return make_tuple(u, base);
  case 0x85:
  case 0x86:
  case 0x87: { /* TUPLE1..3 */
    size_t n = (size_t)(u->op - 0x84);
    size_t floor = u->nmarks ? u->marks[u->nmarks - 1] : 0;
    if (u->sp - floor < n) return perr(u, "stack underflow");
    return make_tuple(u, u->sp - n);
  }
  case 'X': /* BINUNICODE */
    if ((st = need(u, 4))) return st;
    u->pos += 4;
    return push_str(u, le32(p));
  case 0x8c: /* SHORT_BINUNICODE */
    if ((st = need(u, 1))) return st;
    u->pos += 1;
    return push_str(u, p[0]);
  case 0x8d: /* BINUNICODE8 */
    if ((st = need(u, 8))) return st;
    u->pos += 8;
    return push_str(u, (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32);
  case 'c': { /* GLOBAL */
    const char *mod, *name;
    size_t ml, nl;
    if ((st = read_line(u, &mod, &ml)) || (st = read_line(u, &name, &nl))) return st;
    return resolve_global(u, mod, ml, name, nl);
  }
  case 0x93: /* STACK_GLOBAL */
    if ((st = pop(u, &b)) || (st = pop(u, &a))) return st;
    if (u->obj[a].kind != PV_STR || u->obj[b].kind != PV_STR)
      return perr(u, "STACK_GLOBAL needs two strings, got %s and %s", kind_of(u, a), kind_of(u, b));
    return resolve_global(u, u->obj[a].s.p, u->obj[a].s.len, u->obj[b].s.p, u->obj[b].s.len);
  case 'J': /* BININT */
    if ((st = need(u, 4))) return st;
    u->pos += 4;
    return push_int(u, (int32_t)le32(p));
  case 'K': /* BININT1 */
    if ((st = need(u, 1))) return st;
    u->pos += 1;
    return push_int(u, p[0]);
  case 'M': /* BININT2 */
    if ((st = need(u, 2))) return st;
    u->pos += 2;
    return push_int(u, p[0] | p[1] << 8);
  case 0x8a: { /* LONG1: n bytes of little-endian two's complement */
    if ((st = need(u, 1))) return st;
    size_t n = p[0];
    if (n > 8) return perr(u, "LONG1 of %zu bytes does not fit in 64 bits", n);
    if ((st = need(u, 1 + n))) return st;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
      v |= (uint64_t)p[1 + i] << (8 * i);
    if (n && n < 8 && (p[n] & 0x80)) v |= ~(uint64_t)0 << (8 * n);
    u->pos += 1 + n;
    return push_int(u, (int64_t)v);
  }
  case 0x88:
  case 0x89: /* NEWTRUE, NEWFALSE */
    if ((st = push_new(u, PV_BOOL, &o))) return st;
    o->i = u->op == 0x88;
    return CHAI_OK;
  case 'N': return push_new(u, PV_NONE, NULL);
  case 'G': { /* BINFLOAT: big-endian double */
    if ((st = need(u, 8))) return st;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
      bits = bits << 8 | p[i];
    u->pos += 8;
    if ((st = push_new(u, PV_FLOAT, &o))) return st;
    memcpy(&o->f, &bits, 8);
    return CHAI_OK;
  }
  case 'q': /* BINPUT */
    if ((st = need(u, 1))) return st;
    u->pos += 1;
    return memo_put(u, p[0]);
  case 'r': /* LONG_BINPUT */
    if ((st = need(u, 4))) return st;
    u->pos += 4;
    return memo_put(u, le32(p));
  case 0x94: /* MEMOIZE */ return memo_put(u, u->memo_count);
  case 'h': /* BINGET */
    if ((st = need(u, 1))) return st;
    u->pos += 1;
    return memo_get(u, p[0]);
  case 'j': /* LONG_BINGET */
    if ((st = need(u, 4))) return st;
    u->pos += 4;
    return memo_get(u, le32(p));
  case 'Q': /* BINPERSID */
    if ((st = pop(u, &a))) return st;
    return persistent_load(u, a);
  case 'R': return reduce(u);
  case 's': /* SETITEM */
    if ((st = pop(u, &b)) || (st = pop(u, &a)) || (st = top(u, &c))) return st;
    if (u->obj[c].kind != PV_DICT) return perr(u, "SETITEM on a %s", kind_of(u, c));
    return seq_add(u, c, (int32_t[2]){a, b}, 2);
  case 'u': /* SETITEMS */
    if ((st = mark_base(u, &base))) return st;
    u->nmarks--;
    if ((u->sp - base) % 2) return perr(u, "SETITEMS with an odd number of values");
    if (base == 0 || (u->nmarks && u->marks[u->nmarks - 1] >= base))
      return perr(u, "SETITEMS without a dict below the MARK");
    c = u->stack[base - 1];
    if (u->obj[c].kind != PV_DICT) return perr(u, "SETITEMS on a %s", kind_of(u, c));
    if ((st = seq_add(u, c, u->stack + base, u->sp - base))) return st;
    u->sp = base;
    return CHAI_OK;
  case 'a': /* APPEND */
    if ((st = pop(u, &a)) || (st = top(u, &c))) return st;
    if (u->obj[c].kind != PV_LIST) return perr(u, "APPEND on a %s", kind_of(u, c));
    return seq_add(u, c, &a, 1);
  case 'e': /* APPENDS */
    if ((st = mark_base(u, &base))) return st;
    u->nmarks--;
    if (base == 0 || (u->nmarks && u->marks[u->nmarks - 1] >= base))
      return perr(u, "APPENDS without a list below the MARK");
    c = u->stack[base - 1];
    if (u->obj[c].kind != PV_LIST) return perr(u, "APPENDS on a %s", kind_of(u, c));
    if ((st = seq_add(u, c, u->stack + base, u->sp - base))) return st;
    u->sp = base;
    return CHAI_OK;
  case 'b': /* BUILD: a state dict's _metadata attribute; dropped */
    if ((st = pop(u, &a)) || (st = top(u, &c))) return st;
    if (u->obj[c].kind != PV_DICT) return perr(u, "BUILD on a %s", kind_of(u, c));
    return CHAI_OK;
  default:
    return perr(u, "unsupported pickle opcode (this reader accepts only what torch.save writes)");
  }
}

static void free_unpickler(unpickler *u) {
  for (size_t i = 0; i < u->nobj; i++) {
    pv_kind k = u->obj[i].kind;
    if (k == PV_TUPLE || k == PV_LIST || k == PV_DICT) free(u->obj[i].seq.items);
  }
  free(u->obj);
  free(u->stack);
  free(u->marks);
  free(u->memo);
  free(u->tens);
}

chai_status pkl_load_state_dict(const uint8_t *data, size_t len, const char *what, pkl_tensor **out,
                                int *count) {
  *out = NULL;
  *count = 0;
  unpickler u;
  memset(&u, 0, sizeof u);
  u.d = data;
  u.len = len;
  u.what = what;
  bool done = false;
  int32_t result = -1;
  chai_status st = CHAI_OK;
  while (!done && !st)
    st = step(&u, &done, &result);
  if (st) goto end;
  const pv *top_obj = &u.obj[result];
  if (top_obj->kind != PV_DICT) {
    st = chai_error(CHAI_ERR_FORMAT, "%s: the pickle holds a %s, not a state dict", what,
                    kind_names[top_obj->kind]);
    goto end;
  }
  size_t n = top_obj->seq.n / 2;
  if (n > INT32_MAX / 2) {
    st = chai_error(CHAI_ERR_FORMAT, "%s: too many tensors (%zu)", what, n);
    goto end;
  }
  pkl_tensor *res = n ? calloc(n, sizeof *res) : NULL;
  if (n && !res) {
    st = chai_error(CHAI_ERR_NOMEM, "%s: out of memory", what);
    goto end;
  }
  for (size_t i = 0; i < n; i++) {
    const pv *k = &u.obj[top_obj->seq.items[2 * i]], *v = &u.obj[top_obj->seq.items[2 * i + 1]];
    if (k->kind != PV_STR) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: state dict key %zu is a %s, not a str", what, i,
                      kind_names[k->kind]);
      break;
    }
    int show = (int)(k->s.len > 200 ? 200 : k->s.len);
    if (v->kind != PV_TENSOR) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: state dict value '%.*s' is a %s, not a tensor", what,
                      show, k->s.p, kind_names[v->kind]);
      break;
    }
    if (memchr(k->s.p, 0, k->s.len) || k->s.len == 0) {
      st = chai_error(CHAI_ERR_FORMAT, "%s: state dict key %zu is empty or holds a NUL byte", what,
                      i);
      break;
    }
    res[i] = u.tens[v->i];
    res[i].name = k->s.p;
    res[i].name_len = k->s.len;
  }
  if (st) {
    free(res);
    goto end;
  }
  *out = res;
  *count = (int)n;
end:
  free_unpickler(&u);
  return st;
}
