/* Quantization methods of chai.Model: m:quantize(spec), m:formats(), and the spec parser that
 * chai.opt.load(dir, {quant = spec}) shares. A spec is a Lua table (docs/quant.md):
 *   {default = "int8", embeddings = "int8", lm_head = "int8", score = "f32", kv = "int8",
 *    project_in = …, project_out = …, group = 64, method = "rtn"|"mse", zero_point = false,
 *    scales = "f32"|"f16", layers = {[1] = "bf16", [4] = {fc1 = "int4", default = "int8"}}}
 * Resolution: every matrix takes its own entry, else its layer's `default`, else the spec's
 * `default`; absent everywhere, it keeps its format. The embeddings follow `default`; a tied LM
 * head is the embeddings; the score head changes only when `score` names a format (two rows:
 * nothing to gain, and the most sensitive matrix of a classifier). */
#include <string.h>

#include "bind.h"
#include "chai/opt.h"

static const char *const LAYER_KEYS[CHAI_OPT_LAYER_MATRICES] = {"q", "k", "v", "out", "fc1", "fc2"};

/* The format at t[key] (absolute index t), or `def` when absent; raises naming `where` and key. */
static int field_format(lua_State *L, int t, const char *key, int def, const char *fname,
                        const char *where) {
  int ty = lua_getfield(L, t, key);
  int f = def;
  if (ty != LUA_TNIL) {
    chai_qformat q;
    if (ty != LUA_TSTRING)
      luaL_error(L,
                 "%s: %s%s must be a format name (\"f32\", \"f16\", \"bf16\", \"int8\", \"int4\"), "
                 "got %s",
                 fname, where, key, luaL_typename(L, -1));
    if (chai_qformat_parse(lua_tostring(L, -1), &q))
      luaL_error(L, "%s: %s%s: %s", fname, where, key, chai_last_error());
    f = (int)q;
  }
  lua_pop(L, 1);
  return f;
}

/* Raises for a key of the table at t that is not in `known` (a NULL-terminated list). */
static void check_keys(lua_State *L, int t, const char *const *known, const char *fname,
                       const char *where) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    bool ok = false;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; known[i] && !ok; i++)
        ok = strcmp(known[i], lua_tostring(L, -1)) == 0;
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; known[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, known[i]);
      }
      luaL_pushresult(&b);
      luaL_error(L, "%s: unknown %skey '%s' (known: %s)", fname, where, luaL_tolstring(L, -2, NULL),
                 lua_tostring(L, -2));
    }
  }
}

/* One entry of spec.layers: a format name for all six matrices, or a table of them. */
static void layer_entry(lua_State *L, int v, int l, int def, int out[CHAI_OPT_LAYER_MATRICES],
                        const char *fname) {
  char where[48];
  snprintf(where, sizeof where, "layers[%d].", l + 1);
  if (lua_type(L, v) == LUA_TSTRING) {
    chai_qformat q;
    if (chai_qformat_parse(lua_tostring(L, v), &q))
      luaL_error(L, "%s: layers[%d]: %s", fname, l + 1, chai_last_error());
    for (int j = 0; j < CHAI_OPT_LAYER_MATRICES; j++)
      out[j] = (int)q;
    return;
  }
  if (!lua_istable(L, v))
    luaL_error(L,
               "%s: layers[%d] must be a format name or a table {q=, k=, v=, out=, fc1=, fc2=, "
               "default=}, got %s",
               fname, l + 1, luaL_typename(L, v));
  static const char *const known[] = {"q", "k", "v", "out", "fc1", "fc2", "default", NULL};
  check_keys(L, v, known, fname, where);
  int ld = field_format(L, v, "default", def, fname, where);
  for (int j = 0; j < CHAI_OPT_LAYER_MATRICES; j++)
    out[j] = field_format(L, v, LAYER_KEYS[j], ld, fname, where);
}

void chai_bind_check_quant_spec(lua_State *L, int idx, int n_layers, bool tied, chai_opt_quant *q,
                                int (*layers)[CHAI_OPT_LAYER_MATRICES], const char *fname) {
  static const char *const known[] = {
      "default", "embeddings", "lm_head",    "score",  "project_in", "project_out", "kv",
      "group",   "method",     "zero_point", "scales", "layers",     NULL};
  int t = lua_absindex(L, idx);
  if (!lua_istable(L, t))
    luaL_error(L, "%s: the quantization spec must be a table, got %s", fname, luaL_typename(L, t));
  check_keys(L, t, known, fname, "");
  chai_opt_quant_init(q);
  int def = field_format(L, t, "default", CHAI_OPT_KEEP, fname, "");
  q->embeddings = field_format(L, t, "embeddings", def, fname, "");
  q->lm_head = field_format(L, t, "lm_head", tied ? CHAI_OPT_KEEP : def, fname, "");
  q->score = field_format(L, t, "score", CHAI_OPT_KEEP, fname, "");
  q->project_in = field_format(L, t, "project_in", def, fname, "");
  q->project_out = field_format(L, t, "project_out", def, fname, "");
  q->kv = field_format(L, t, "kv", CHAI_OPT_KEEP, fname, "");
  if (q->kv != CHAI_OPT_KEEP && q->kv != CHAI_QF_F32 && q->kv != CHAI_QF_INT8)
    luaL_error(L, "%s: kv must be \"f32\" or \"int8\", got \"%s\"", fname,
               chai_qformat_name((chai_qformat)q->kv));
  if (lua_getfield(L, t, "group") != LUA_TNIL) {
    int isint;
    lua_Integer g = lua_tointegerx(L, -1, &isint);
    if (!isint || (g != 32 && g != 64 && g != 128))
      luaL_error(L, "%s: group must be 32, 64 or 128, got %s", fname, luaL_tolstring(L, -1, NULL));
    q->group = (int)g;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, t, "method") != LUA_TNIL) {
    const char *s = lua_tostring(L, -1);
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(s, "rtn") == 0)
      q->method = CHAI_QM_RTN;
    else if (lua_type(L, -1) == LUA_TSTRING && strcmp(s, "mse") == 0)
      q->method = CHAI_QM_MSE;
    else
      luaL_error(L, "%s: method must be \"rtn\" or \"mse\", got %s", fname,
                 luaL_tolstring(L, -1, NULL));
  }
  lua_pop(L, 1);
  if (lua_getfield(L, t, "zero_point") != LUA_TNIL) {
    if (!lua_isboolean(L, -1))
      luaL_error(L, "%s: zero_point must be true or false, got %s", fname, luaL_typename(L, -1));
    q->zero_point = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, t, "scales") != LUA_TNIL) {
    const char *s = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING || (strcmp(s, "f16") != 0 && strcmp(s, "f32") != 0))
      luaL_error(L, "%s: scales must be \"f16\" or \"f32\", got %s", fname,
                 luaL_tolstring(L, -1, NULL));
    q->f16_scales = strcmp(s, "f16") == 0;
  }
  lua_pop(L, 1);
  int nl = n_layers;
  for (int l = 0; l < nl; l++)
    for (int j = 0; j < CHAI_OPT_LAYER_MATRICES; j++)
      layers[l][j] = def;
  if (lua_getfield(L, t, "layers") != LUA_TNIL) {
    int lt = lua_absindex(L, -1);
    if (!lua_istable(L, lt))
      luaL_error(L, "%s: layers must be a table {[layer] = format or {q=, ...}}, got %s", fname,
                 luaL_typename(L, lt));
    lua_pushnil(L);
    while (lua_next(L, lt)) {
      int isint;
      lua_Integer l = lua_tointegerx(L, -2, &isint);
      if (lua_type(L, -2) != LUA_TNUMBER || !isint || l < 1 || l > nl)
        luaL_error(L, "%s: layers[%s]: layers are numbered 1..%d", fname,
                   luaL_tolstring(L, -2, NULL), nl);
      layer_entry(L, lua_absindex(L, -1), (int)l - 1, def, layers[l - 1], fname);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  q->layers = layers;
}

/* m:quantize(spec) → m */
static int m_quantize(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  const chai_opt_config *cfg = chai_opt_get_config(m);
  int(*layers)[CHAI_OPT_LAYER_MATRICES] = lua_newuserdatauv(
      L, sizeof(int[CHAI_OPT_LAYER_MATRICES]) * (size_t)(cfg->num_hidden_layers + 1), 0);
  chai_opt_quant q;
  chai_bind_check_quant_spec(L, 2, cfg->num_hidden_layers, cfg->tie_word_embeddings, &q, layers,
                             "model:quantize");
  if (chai_opt_quantize(m, &q)) return chai_bind_fail(L);
  lua_pushvalue(L, 1);
  return 1;
}

/* m:formats() → {[parameter name] = format} for every matrix, plus kv_cache = "f32"|"int8" */
static int m_formats(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  int n = chai_opt_param_count(m);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    if (!chai_opt_param_qmat(m, i)) continue;
    lua_pushstring(L, chai_qformat_name(chai_opt_param_format(m, i, NULL)));
    lua_setfield(L, -2, chai_opt_param(m, i, NULL));
  }
  lua_pushstring(L, chai_qformat_name(chai_opt_kv_format(m)));
  lua_setfield(L, -2, "kv_cache");
  return 1;
}

void chai_bind_push_weight_bytes(lua_State *L, chai_opt_model *m) {
  size_t bytes[CHAI_QF_COUNT];
  chai_opt_weight_bytes(m, bytes);
  lua_createtable(L, 0, CHAI_QF_COUNT);
  for (int f = 0; f < CHAI_QF_COUNT; f++) {
    if (!bytes[f]) continue;
    lua_pushinteger(L, (lua_Integer)bytes[f]);
    lua_setfield(L, -2, chai_qformat_name((chai_qformat)f));
  }
}

void chai_bind_open_model_quant(lua_State *L, int table) {
  (void)table;
  static const luaL_Reg methods[] = {
      {"quantize", m_quantize}, {"formats", m_formats}, {NULL, NULL}};
  chai_bind_add_model_methods(L, methods);
}
