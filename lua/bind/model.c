/* The chai.Model userdata (OPT models): chai.core.opt_load / opt_create build one; methods
 * forward, classify, generate, save, num_parameters, memory, warnings, dtype, free; m.config is a
 * table with the Hugging Face key names. lua/chai/opt.lua is the user-facing module. Warnings the
 * model collects (load, first classify with a random head) go to stderr once each unless the
 * model was loaded quiet. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bind.h"
#include "chai/opt.h"

#define MODEL_MT "chai.Model"

typedef struct lmodel {
  chai_opt_model *m;
  int printed; /* warnings already written to stderr */
  bool quiet;
} lmodel;

static lmodel *push_model(lua_State *L) {
  lmodel *u = lua_newuserdatauv(L, sizeof *u, 1); /* user value 1: the cached m.config table */
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, MODEL_MT);
  return u;
}

static lmodel *check_model(lua_State *L, int idx) {
  lmodel *u = luaL_checkudata(L, idx, MODEL_MT);
  if (!u->m) luaL_error(L, "model used after free");
  return u;
}

chai_opt_model **chai_bind_push_model(lua_State *L) {
  return &push_model(L)->m;
}

chai_opt_model *chai_bind_check_model(lua_State *L, int idx) {
  return check_model(L, idx)->m;
}

static void print_warnings(lmodel *u) {
  int n = chai_opt_warning_count(u->m);
  for (; u->printed < n; u->printed++)
    if (!u->quiet) fprintf(stderr, "chai: warning: %s\n", chai_opt_warning(u->m, u->printed));
}

static void nudge(lua_State *L, lmodel *u) {
  size_t w, kv, acts;
  chai_opt_memory(u->m, &w, &kv, &acts);
  chai_bind_gc_nudge(L, w);
}

/* ---- JSON → Lua (for m.config; nulls are left out, as a Lua table cannot hold nil) ---------- */

static void push_json(lua_State *L, const cJSON *it, int depth) {
  luaL_checkstack(L, 4, "config nesting too deep");
  if (depth > 64) {
    lua_pushnil(L);
  } else if (cJSON_IsBool(it)) {
    lua_pushboolean(L, cJSON_IsTrue(it));
  } else if (cJSON_IsNumber(it)) {
    double v = it->valuedouble;
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
      lua_pushinteger(L, (lua_Integer)v);
    else
      lua_pushnumber(L, v);
  } else if (cJSON_IsString(it)) {
    lua_pushstring(L, it->valuestring);
  } else if (cJSON_IsArray(it)) {
    lua_newtable(L);
    lua_Integer i = 1;
    const cJSON *c;
    cJSON_ArrayForEach(c, it) {
      push_json(L, c, depth + 1);
      lua_rawseti(L, -2, i++);
    }
  } else if (cJSON_IsObject(it)) {
    lua_newtable(L);
    const cJSON *c;
    cJSON_ArrayForEach(c, it) {
      if (cJSON_IsNull(c)) continue;
      push_json(L, c, depth + 1);
      lua_setfield(L, -2, c->string);
    }
  } else {
    lua_pushnil(L);
  }
}

#define JSON_BOX_MT "chai.Model.json_box"

static int json_box_gc(lua_State *L) {
  cJSON **box = luaL_checkudata(L, 1, JSON_BOX_MT);
  cJSON_Delete(*box);
  *box = NULL;
  return 0;
}

static void push_config(lua_State *L, lmodel *u) {
  /* The parsed JSON lives in a box that Lua owns, so a raise while building the table (out of
   * memory) cannot leak it. */
  cJSON **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, JSON_BOX_MT);
  char *text = NULL;
  if (chai_opt_config_to_json(chai_opt_get_config(u->m), chai_opt_dtype(u->m), &text))
    chai_bind_fail(L);
  *box = cJSON_Parse(text);
  free(text);
  if (!*box) luaL_error(L, "model.config: out of memory");
  push_json(L, *box, 0);
  lua_remove(L, -2); /* the box; its __gc frees the JSON */
}

/* ---- inputs ---------------------------------------------------------------------------------- */

/* The token ids at idx (a table of tables, a flat table when flat_ok, or an integer tensor) as a
 * contiguous i32 tensor that replaces idx on the stack. Checks every id against the vocabulary
 * with 1-based positions in the message. */
static chai_tensor *check_ints(lua_State *L, int idx, const char *fname, const char *what,
                               bool flat_ok) {
  idx = lua_absindex(L, idx);
  if (lua_isnoneornil(L, idx))
    luaL_error(L, "%s: %s missing (a table of tables or an i32 tensor)", fname, what);
  chai_tensor *t = chai_bind_check_tensor_like(L, idx, CHAI_I32);
  if (t->dtype != CHAI_I32 || !chai_tensor_is_contiguous(t)) {
    if (t->dtype != CHAI_I32 && t->dtype != CHAI_I64 && t->dtype != CHAI_I8 && t->dtype != CHAI_U8)
      luaL_error(L, "%s: %s must hold integers, got a %s tensor", fname, what,
                 chai_dtype_name(t->dtype));
    chai_tensor *c = chai_bind_push_tensor(L);
    if (chai_tensor_to(c, t, CHAI_I32)) chai_bind_fail(L);
    lua_replace(L, idx);
    t = c;
  }
  if (!(t->ndim == 2 || (flat_ok && t->ndim == 1))) {
    char s[64];
    luaL_error(L, "%s: %s must be %s, got shape %s", fname, what,
               flat_ok ? "(B,T) or (T)" : "(B,T)", chai_shape_str(t->ndim, t->shape, s, sizeof s));
  }
  if (chai_tensor_numel(t) == 0) luaL_error(L, "%s: %s is empty", fname, what);
  return t;
}

static void dims(const chai_tensor *t, int *B, int *T) {
  *B = t->ndim == 2 ? (int)t->shape[0] : 1;
  *T = (int)t->shape[t->ndim - 1];
}

static const int32_t *check_ids(lua_State *L, lmodel *u, int idx, const char *fname, bool flat_ok,
                                int *B, int *T) {
  chai_tensor *t = check_ints(L, idx, fname, "ids", flat_ok);
  dims(t, B, T);
  const int32_t *ids = chai_tensor_data(t);
  int V = chai_opt_get_config(u->m)->vocab_size;
  for (int i = 0; i < *B * *T; i++)
    if (ids[i] < 0 || ids[i] >= V) {
      if (t->ndim == 2)
        luaL_error(L, "%s: ids[%d][%d] = %d is outside the vocabulary 0..%d", fname, i / *T + 1,
                   i % *T + 1, ids[i], V - 1);
      luaL_error(L, "%s: ids[%d] = %d is outside the vocabulary 0..%d", fname, i + 1, ids[i],
                 V - 1);
    }
  return ids;
}

/* opts.attention_mask (same shape as ids, 0/1) or NULL; the converted tensor is left on the
 * stack. */
static const int32_t *opt_mask(lua_State *L, int opts, int B, int T, const char *fname) {
  if (lua_isnoneornil(L, opts)) return NULL;
  lua_getfield(L, opts, "attention_mask");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  chai_tensor *t = check_ints(L, -1, fname, "attention_mask", true);
  int b, tt;
  dims(t, &b, &tt);
  if (b != B || tt != T)
    luaL_error(L, "%s: attention_mask is %d x %d but ids are %d x %d", fname, b, tt, B, T);
  const int32_t *m = chai_tensor_data(t);
  for (int i = 0; i < B * T; i++)
    if (m[i] != 0 && m[i] != 1)
      luaL_error(L, "%s: attention_mask[%d][%d] = %d; it must be 0 or 1", fname, i / T + 1,
                 i % T + 1, m[i]);
  return m;
}

/* ---- chai.core.opt_load / opt_create --------------------------------------------------------- */

/* opt_load(dir, dtype, quiet, copy, quant_spec) */
static int l_opt_load(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  chai_dtype dt = chai_bind_opt_dtype(L, 2, CHAI_F32);
  bool quiet = lua_toboolean(L, 3);
  bool copy = lua_toboolean(L, 4);
  chai_opt_load_opts o = {.dtype = dt, .copy_weights = copy};
  chai_opt_quant q;
  if (!lua_isnoneornil(L, 5)) {
    /* The spec names layers and a tied head: read the config first to check it. */
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    chai_opt_config cfg;
    if (chai_opt_config_load(&cfg, path, NULL)) return chai_bind_fail(L);
    int n_layers = cfg.num_hidden_layers;
    bool tied = cfg.tie_word_embeddings;
    chai_opt_config_free(&cfg); /* before the parser can raise */
    int(*layers)[CHAI_OPT_LAYER_MATRICES] =
        lua_newuserdatauv(L, sizeof(int[CHAI_OPT_LAYER_MATRICES]) * (size_t)(n_layers + 1), 0);
    chai_bind_check_quant_spec(L, 5, n_layers, tied, &q, layers, "chai.opt.load: quant");
    o.quant = &q;
  }
  lmodel *u = push_model(L);
  if (chai_opt_load(&u->m, dir, &o)) return chai_bind_fail(L);
  u->quiet = quiet;
  print_warnings(u);
  nudge(L, u);
  return 1;
}

/* opt_create(config_json, dtype, seed) */
static int l_opt_create(lua_State *L) {
  size_t len;
  const char *json = luaL_checklstring(L, 1, &len);
  chai_dtype dt = chai_bind_opt_dtype(L, 2, CHAI_F32);
  chai_rng rng, *r = NULL;
  if (!lua_isnoneornil(L, 3)) {
    chai_rng_init(&rng, (uint64_t)luaL_checkinteger(L, 3));
    r = &rng;
  }
  lmodel *u = push_model(L);
  chai_opt_config c;
  if (chai_opt_config_parse(&c, json, len, "chai.opt.create config", NULL))
    return chai_bind_fail(L);
  chai_status st = chai_opt_create(&u->m, &c, dt, r);
  chai_opt_config_free(&c);
  if (st) return chai_bind_fail(L);
  nudge(L, u);
  return 1;
}

/* opt_read_bandwidth(megabytes, repeats) → GB/s */
static int l_opt_read_bandwidth(lua_State *L) {
  lua_Integer mb = luaL_optinteger(L, 1, 512), reps = luaL_optinteger(L, 2, 5);
  if (mb < 1 || mb > (1 << 16) || reps < 1 || reps > 1000)
    return luaL_error(L, "opt_read_bandwidth: %I MB x %I repeats is out of range", mb, reps);
  double gbps;
  if (chai_opt_read_bandwidth((size_t)mb << 20, (int)reps, &gbps)) return chai_bind_fail(L);
  lua_pushnumber(L, gbps);
  return 1;
}

/* ---- m:score_continuations(contexts, continuations) ------------------------------------------ */

/* Reads a flat Lua table of ids into a new buffer owned by a userdata on the stack. */
static int32_t *table_ids(lua_State *L, int idx, int *n, const char *what, int item, int choice) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer len = luaL_len(L, idx);
  if (len < 1 || len > (1 << 20)) {
    if (choice)
      luaL_error(L, "score_continuations: item %d continuation %d has %d tokens", item, choice,
                 (int)len);
    luaL_error(L, "score_continuations: item %d %s has %d tokens", item, what, (int)len);
  }
  int32_t *buf = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)len, 0);
  for (lua_Integer i = 1; i <= len; i++) {
    lua_rawgeti(L, idx, i);
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < INT32_MIN || v > INT32_MAX)
      luaL_error(L, "score_continuations: item %d %s token %d is not an integer id", item, what,
                 (int)i);
    buf[i - 1] = (int32_t)v;
    lua_pop(L, 1);
  }
  *n = (int)len;
  return buf;
}

/* contexts: {ids, ...}; continuations: {{ids, ids, ...}, ...} → {{ {ll=, greedy=}, ... }, ...} */
static int m_score_continuations(lua_State *L) {
  lmodel *u = check_model(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (n < 1 || n != luaL_len(L, 3))
    return luaL_error(L, "score_continuations: %d contexts but %d continuation lists", (int)n,
                      (int)luaL_len(L, 3));
  lua_settop(L, 3);
  /* All buffers are userdata anchored in a table at index 4, so a Lua error frees them. */
  lua_newtable(L);
  chai_opt_score_item *items = lua_newuserdatauv(L, sizeof *items * (size_t)n, 0);
  lua_rawseti(L, 4, 1);
  int anchors = 2;
  for (lua_Integer i = 1; i <= n; i++) {
    chai_opt_score_item *it = &items[i - 1];
    memset(it, 0, sizeof *it);
    lua_rawgeti(L, 2, i);
    it->ctx = table_ids(L, lua_gettop(L), &it->ctx_len, "context", (int)i, 0);
    lua_rawseti(L, 4, anchors++);
    lua_pop(L, 1);
    lua_rawgeti(L, 3, i);
    int conts = lua_gettop(L);
    luaL_checktype(L, conts, LUA_TTABLE);
    int J = (int)luaL_len(L, conts);
    if (J < 1 || J > 4096)
      luaL_error(L, "score_continuations: item %d has %d continuations", (int)i, J);
    const int32_t **cont = lua_newuserdatauv(L, sizeof *cont * (size_t)J, 0);
    lua_rawseti(L, 4, anchors++);
    int *cont_len = lua_newuserdatauv(L, sizeof(int) * (size_t)J, 0);
    lua_rawseti(L, 4, anchors++);
    it->ll = lua_newuserdatauv(L, sizeof(double) * (size_t)J, 0);
    lua_rawseti(L, 4, anchors++);
    it->greedy = lua_newuserdatauv(L, sizeof(bool) * (size_t)J, 0);
    lua_rawseti(L, 4, anchors++);
    for (int j = 1; j <= J; j++) {
      lua_rawgeti(L, conts, j);
      cont[j - 1] = table_ids(L, lua_gettop(L), &cont_len[j - 1], "continuation", (int)i, j);
      lua_rawseti(L, 4, anchors++);
      lua_pop(L, 1);
    }
    it->cont = cont;
    it->cont_len = cont_len;
    it->n_choices = J;
    lua_pop(L, 1);
  }
  if (chai_opt_score_continuations(u->m, items, (int)n)) return chai_bind_fail(L);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    const chai_opt_score_item *it = &items[i - 1];
    lua_createtable(L, it->n_choices, 0);
    for (int j = 0; j < it->n_choices; j++) {
      lua_createtable(L, 0, 2);
      lua_pushnumber(L, it->ll[j]);
      lua_setfield(L, -2, "ll");
      lua_pushboolean(L, it->greedy[j]);
      lua_setfield(L, -2, "greedy");
      lua_rawseti(L, -2, j + 1);
    }
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* ---- methods --------------------------------------------------------------------------------- */

static int m_forward(lua_State *L) {
  static const char *const known[] = {"attention_mask", "last_only", NULL};
  const char *fname = "model:forward";
  lmodel *u = check_model(L, 1);
  chai_bind_check_options(L, 3, fname, known);
  int B, T;
  const int32_t *ids = check_ids(L, u, 2, fname, true, &B, &T);
  const int32_t *mask = opt_mask(L, 3, B, T, fname);
  bool last = chai_bind_opt_boolean(L, 3, "last_only", false, fname);
  chai_tensor *out = chai_bind_push_tensor(L);
  if (chai_opt_forward(u->m, out, ids, mask, B, T, last)) return chai_bind_fail(L);
  chai_bind_gc_nudge(L, chai_tensor_nbytes(out));
  return 1;
}

static int m_classify(lua_State *L) {
  static const char *const known[] = {"attention_mask", NULL};
  const char *fname = "model:classify";
  lmodel *u = check_model(L, 1);
  chai_bind_check_options(L, 3, fname, known);
  int B, T;
  const int32_t *ids = check_ids(L, u, 2, fname, true, &B, &T);
  const int32_t *mask = opt_mask(L, 3, B, T, fname);
  chai_tensor *out = chai_bind_push_tensor(L);
  chai_status st = chai_opt_classify(u->m, out, ids, mask, B, T);
  print_warnings(u);
  if (st) return chai_bind_fail(L);
  return 1;
}

static int m_generate(lua_State *L) {
  static const char *const known[] = {"max_new_tokens", "temperature",  "top_k", "top_p",
                                      "seed",           "eos_token_id", NULL};
  const char *fname = "model:generate";
  lmodel *u = check_model(L, 1);
  chai_bind_check_options(L, 3, fname, known);
  int B, T;
  const int32_t *ids = check_ids(L, u, 2, fname, true, &B, &T);
  if (B != 1)
    return luaL_error(L, "%s: ids must be one prompt (a flat table), got %d rows", fname, B);
  chai_opt_generate_opts o;
  chai_opt_generate_defaults(u->m, &o);
  lua_Integer n_new = chai_bind_opt_integer(L, 3, "max_new_tokens", o.max_new_tokens, fname);
  if (n_new < 0 || n_new > (1 << 20))
    return luaL_error(L, "%s: max_new_tokens %I must be between 0 and %d", fname, n_new, 1 << 20);
  o.max_new_tokens = (int)n_new;
  bool has_t = false, has_k = false, has_p = false;
  if (!lua_isnoneornil(L, 3)) {
    lua_getfield(L, 3, "temperature");
    has_t = !lua_isnil(L, -1);
    lua_getfield(L, 3, "top_k");
    has_k = !lua_isnil(L, -1);
    lua_getfield(L, 3, "top_p");
    has_p = !lua_isnil(L, -1);
    lua_pop(L, 3);
  }
  o.sample = has_t || has_k || has_p; /* greedy unless a sampling option is given */
  o.temperature = (float)chai_bind_opt_number(L, 3, "temperature", 1.0, fname);
  lua_Integer k = chai_bind_opt_integer(L, 3, "top_k", 0, fname);
  if (k < 0 || k > (1 << 30)) return luaL_error(L, "%s: top_k %I must be >= 0", fname, k);
  o.top_k = (int)k;
  o.top_p = (float)chai_bind_opt_number(L, 3, "top_p", 1.0, fname);
  lua_Integer eos = chai_bind_opt_integer(L, 3, "eos_token_id", o.eos_token_id, fname);
  if (eos < -1 || eos > (1 << 30))
    return luaL_error(L, "%s: eos_token_id %I is not a token id (or -1 for none)", fname, eos);
  o.eos_token_id = (int)eos;
  /* No seed: one draw from chai.seed's generator, so chai.seed(n) makes runs repeatable. */
  lua_Integer seed = chai_bind_opt_integer(L, 3, "seed", -1, fname);
  o.seed = seed >= 0 ? (uint64_t)seed : chai_rng_u64(chai_rng_global());
  int32_t *out = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)(o.max_new_tokens + 1), 0);
  int n = 0;
  if (chai_opt_generate(u->m, out, &n, ids, T, &o)) return chai_bind_fail(L);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, out[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int m_save(lua_State *L) {
  lmodel *u = check_model(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  if (chai_opt_save(u->m, dir)) return chai_bind_fail(L);
  return 0;
}

static int m_num_parameters(lua_State *L) {
  lmodel *u = check_model(L, 1);
  lua_pushinteger(L, (lua_Integer)chai_opt_num_parameters(u->m));
  return 1;
}

static int m_memory(lua_State *L) {
  lmodel *u = check_model(L, 1);
  size_t w, kv, acts;
  chai_opt_memory(u->m, &w, &kv, &acts);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)w);
  lua_setfield(L, -2, "weights");
  lua_pushinteger(L, (lua_Integer)kv);
  lua_setfield(L, -2, "kv_cache");
  lua_pushinteger(L, (lua_Integer)acts);
  lua_setfield(L, -2, "activations");
  chai_bind_push_weight_bytes(L, u->m);
  lua_setfield(L, -2, "weights_by_format");
  return 1;
}

static int m_decode_bytes(lua_State *L) {
  lmodel *u = check_model(L, 1);
  lua_Integer ctx = luaL_optinteger(L, 2, 0);
  if (ctx < 0) return luaL_error(L, "model:decode_bytes: context %I must be >= 0", ctx);
  lua_pushinteger(L, (lua_Integer)chai_opt_decode_bytes(u->m, (int64_t)ctx));
  return 1;
}

static int m_warnings(lua_State *L) {
  lmodel *u = check_model(L, 1);
  int n = chai_opt_warning_count(u->m);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, chai_opt_warning(u->m, i));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* m:score_random() → true while the classification head is the random one drawn at load;
 * m:score_random(false) marks it trained. */
static int m_score_random(lua_State *L) {
  lmodel *u = check_model(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    if (lua_toboolean(L, 2))
      return luaL_error(L, "model:score_random: only false (mark the head trained) can be set");
    chai_opt_score_mark_trained(u->m);
  }
  lua_pushboolean(L, chai_opt_score_random(u->m));
  return 1;
}

/* m:clone() → a new model sharing nothing with m (formats and codes kept; no head plan) */
static int m_clone(lua_State *L) {
  lmodel *u = check_model(L, 1);
  lmodel *c = push_model(L);
  if (chai_opt_clone(&c->m, u->m)) return chai_bind_fail(L);
  c->quiet = u->quiet;
  c->printed = chai_opt_warning_count(c->m);
  nudge(L, c);
  return 1;
}

static int m_dtype(lua_State *L) {
  lmodel *u = check_model(L, 1);
  lua_pushstring(L, chai_dtype_name(chai_opt_dtype(u->m)));
  return 1;
}

static int m_release(lua_State *L) {
  lmodel *u = luaL_checkudata(L, 1, MODEL_MT);
  chai_opt_free(u->m);
  u->m = NULL;
  return 0;
}

static int m_tostring(lua_State *L) {
  lmodel *u = luaL_checkudata(L, 1, MODEL_MT);
  if (!u->m) {
    lua_pushstring(L, "chai.Model (freed)");
    return 1;
  }
  const chai_opt_config *c = chai_opt_get_config(u->m);
  lua_pushfstring(L, "chai.Model (OPT, %d layers, hidden %d, %s, %s)", c->num_hidden_layers,
                  c->hidden_size, c->do_layer_norm_before ? "pre-LN" : "post-LN",
                  chai_dtype_name(chai_opt_dtype(u->m)));
  return 1;
}

/* m.config (cached), else a method. */
static int m_index(lua_State *L) {
  lmodel *u = luaL_checkudata(L, 1, MODEL_MT);
  const char *key = lua_tostring(L, 2);
  if (key && strcmp(key, "config") == 0) {
    if (!u->m) return luaL_error(L, "model used after free");
    if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
      lua_pop(L, 1);
      push_config(L, u);
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, 1, 1);
    }
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

void chai_bind_add_model_methods(lua_State *L, const luaL_Reg *methods) {
  /* __index is a closure whose first upvalue is the method table. */
  luaL_getmetatable(L, MODEL_MT);
  if (lua_isnil(L, -1)) luaL_error(L, "chai.Model must be registered before more of its methods");
  lua_getfield(L, -1, "__index");
  const char *up = lua_getupvalue(L, -1, 1);
  if (!up || !lua_istable(L, -1)) luaL_error(L, "chai.Model's method table was not found");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 3);
}

void chai_bind_open_model(lua_State *L, int table) {
  static const luaL_Reg methods[] = {{"forward", m_forward},
                                     {"classify", m_classify},
                                     {"generate", m_generate},
                                     {"score_continuations", m_score_continuations},
                                     {"save", m_save},
                                     {"num_parameters", m_num_parameters},
                                     {"memory", m_memory},
                                     {"decode_bytes", m_decode_bytes},
                                     {"warnings", m_warnings},
                                     {"dtype", m_dtype},
                                     {"score_random", m_score_random},
                                     {"clone", m_clone},
                                     {"free", m_release},
                                     {NULL, NULL}};
  luaL_newmetatable(L, MODEL_MT);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushcclosure(L, m_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, m_release);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, m_release);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, m_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "chai.Model");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  luaL_newmetatable(L, JSON_BOX_MT);
  lua_pushcfunction(L, json_box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"opt_load", l_opt_load},
                                 {"opt_create", l_opt_create},
                                 {"opt_read_bandwidth", l_opt_read_bandwidth},
                                 {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, table, f->name);
  }
}
