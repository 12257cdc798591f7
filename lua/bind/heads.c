/* chai.core.heads: the C side of chai.heads (lua/chai/heads.lua builds the user API on it).
 * Plans cross here between the 0-based engine and 1-based Lua: layer, head and cluster numbers
 * get +1 going out and −1 coming in; file text stays 0-based. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bind.h"
#include "chai/heads.h"
#include "chai/memory.h"
#include "chai/opt.h"
#include "chai/opt_heads.h"
#include "heads_bind.h"

/* ---- a plan owned by a userdata, so a Lua error while filling it cannot leak it ---------------
 */

#define PLAN_BOX_MT "chai.heads.planbox"

static int plan_box_gc(lua_State *L) {
  chai_heads_plan *p = luaL_checkudata(L, 1, PLAN_BOX_MT);
  chai_heads_plan_free(p);
  return 0;
}

chai_heads_plan *chai_bind_push_plan_box(lua_State *L) {
  chai_heads_plan *p = lua_newuserdatauv(L, sizeof *p, 0);
  memset(p, 0, sizeof *p);
  if (luaL_newmetatable(L, PLAN_BOX_MT)) {
    lua_pushcfunction(L, plan_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, plan_box_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  return p;
}

/* An integer field or element at the top of the stack, named for errors; pops it. */
static int pop_int(lua_State *L, const char *fname, const char *what) {
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < INT32_MIN || v > INT32_MAX)
    return luaL_error(L, "%s: %s must be an integer, got %s", fname, what,
                      lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
  lua_pop(L, 1);
  return (int)v;
}

static void check_entry_keys(lua_State *L, int e, int i, const char *fname) {
  lua_pushnil(L);
  while (lua_next(L, e)) {
    lua_pop(L, 1);
    const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (!key || (strcmp(key, "layer") && strcmp(key, "clusters") && strcmp(key, "k")))
      luaL_error(L, "%s: layers[%d]: unknown key %s (expected layer, clusters, k)", fname, i,
                 key ? key : luaL_typename(L, -1));
  }
}

void chai_bind_check_plan(lua_State *L, int idx, chai_heads_plan *plan, const char *fname) {
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lua_getfield(L, idx, "layers") != LUA_TTABLE)
    luaL_error(L, "%s: plan.layers must be a table (a list of layer entries)", fname);
  int layers = lua_gettop(L);
  lua_Integer n = luaL_len(L, layers);
  if (n > 100000) luaL_error(L, "%s: plan lists %I layers", fname, n);
  if (chai_heads_plan_init(plan, (int)n)) chai_bind_fail(L);
  for (int i = 1; i <= (int)n; i++) {
    if (lua_geti(L, layers, i) != LUA_TTABLE)
      luaL_error(L, "%s: plan.layers[%d] must be a table", fname, i);
    int e = lua_gettop(L);
    check_entry_keys(L, e, i, fname);
    if (lua_getfield(L, e, "layer") == LUA_TNIL)
      luaL_error(L, "%s: plan.layers[%d] has no layer", fname, i);
    int layer = pop_int(L, fname, "layer");
    int k = -1;
    if (lua_getfield(L, e, "k") != LUA_TNIL)
      k = pop_int(L, fname, "k");
    else
      lua_pop(L, 1);
    int ct = lua_getfield(L, e, "clusters");
    if (ct == LUA_TNIL) {
      lua_pop(L, 1);
      if (k < 0) luaL_error(L, "%s: plan.layers[%d] needs clusters or k", fname, i);
      if (chai_heads_plan_set_k(plan, i - 1, layer - 1, 0, k)) chai_bind_fail(L);
      lua_pop(L, 1);
      continue;
    }
    if (ct != LUA_TTABLE)
      luaL_error(L, "%s: plan.layers[%d].clusters must be a list of lists", fname, i);
    int cl = lua_gettop(L);
    lua_Integer nc = luaL_len(L, cl);
    if (nc > 100000) luaL_error(L, "%s: layer %d lists %I clusters", fname, layer, nc);
    if (k >= 0 && k != nc)
      luaL_error(L, "%s: plan: layer %d: k = %d but %d clusters listed", fname, layer, k, (int)nc);
    size_t total = 0;
    for (int c = 1; c <= (int)nc; c++) {
      if (lua_geti(L, cl, c) != LUA_TTABLE)
        luaL_error(L, "%s: plan.layers[%d].clusters[%d] must be a list of heads", fname, i, c);
      total += (size_t)luaL_len(L, -1);
      lua_pop(L, 1);
    }
    if (total > 1000000) luaL_error(L, "%s: layer %d lists too many heads", fname, layer);
    /* The scratch lives in a Lua userdata so an error below frees it with the GC. */
    int *buf = lua_newuserdatauv(L, (total + (size_t)nc + 1) * sizeof(int), 0);
    int *heads = buf, *sizes = buf + total, at = 0;
    for (int c = 1; c <= (int)nc; c++) {
      lua_geti(L, cl, c);
      int cidx = lua_gettop(L);
      lua_Integer m = luaL_len(L, cidx);
      sizes[c - 1] = (int)m;
      for (int j = 1; j <= (int)m; j++) {
        lua_geti(L, cidx, j);
        heads[at++] = pop_int(L, fname, "a head") - 1;
      }
      lua_pop(L, 1);
    }
    if (chai_heads_plan_set_clusters(plan, i - 1, layer - 1, 0, heads, sizes, (int)nc))
      chai_bind_fail(L);
    lua_pop(L, 3); /* scratch, clusters, entry */
  }
  lua_pop(L, 1); /* layers */
}

void chai_bind_push_plan(lua_State *L, const chai_heads_plan *plan) {
  lua_createtable(L, 0, 1);
  lua_createtable(L, plan->n_layers, 0);
  for (int i = 0; i < plan->n_layers; i++) {
    const chai_heads_layer *l = &plan->layers[i];
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, l->layer + 1);
    lua_setfield(L, -2, "layer");
    lua_pushinteger(L, l->k);
    lua_setfield(L, -2, "k");
    if (l->has_clusters) {
      lua_createtable(L, l->k, 0);
      for (int c = 0; c < l->k; c++) {
        lua_createtable(L, l->start[c + 1] - l->start[c], 0);
        for (int p = l->start[c]; p < l->start[c + 1]; p++) {
          lua_pushinteger(L, l->order[p] + 1);
          lua_rawseti(L, -2, p - l->start[c] + 1);
        }
        lua_rawseti(L, -2, c + 1);
      }
      lua_setfield(L, -2, "clusters");
    }
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "layers");
}

/* {layers=, heads=} at idx (none/nil: unknown) → dims with the given base. */
static chai_heads_dims check_dims(lua_State *L, int idx, int base, const char *fname) {
  static const char *const known[] = {"layers", "heads", NULL};
  chai_bind_check_options(L, idx, fname, known);
  chai_heads_dims d = {0, 0, base};
  lua_Integer nl = chai_bind_opt_integer(L, idx, "layers", 0, fname);
  lua_Integer nh = chai_bind_opt_integer(L, idx, "heads", 0, fname);
  if (nl < 0 || nl > 100000 || nh < 0 || nh > 100000)
    luaL_error(L, "%s: layers and heads must be counts >= 1", fname);
  d.n_layers = (int)nl;
  d.n_heads = (int)nh;
  return d;
}

/* heads.parse(text [, dims]) → plan (1-based), meta text or nil. */
static int l_parse(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  chai_heads_dims d = check_dims(L, 2, 0, "chai.heads.parse");
  chai_heads_plan *p = chai_bind_push_plan_box(L);
  if (chai_heads_plan_parse(p, text, len, &d)) return chai_bind_fail(L);
  chai_bind_push_plan(L, p);
  if (p->meta_json)
    lua_pushstring(L, p->meta_json);
  else
    lua_pushnil(L);
  return 2;
}

/* heads.load(path [, dims]) → plan, meta text or nil. */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  chai_heads_dims d = check_dims(L, 2, 0, "chai.heads.load_plan");
  chai_heads_plan *p = chai_bind_push_plan_box(L);
  if (chai_heads_plan_load(p, path, &d)) return chai_bind_fail(L);
  chai_bind_push_plan(L, p);
  if (p->meta_json)
    lua_pushstring(L, p->meta_json);
  else
    lua_pushnil(L);
  return 2;
}

/* A validated C plan from the Lua plan at idx, owned by a box pushed on the stack. */
static chai_heads_plan *plan_arg(lua_State *L, int idx, const chai_heads_dims *d,
                                 const char *fname) {
  chai_heads_plan *p = chai_bind_push_plan_box(L);
  chai_bind_check_plan(L, idx, p, fname);
  if (chai_heads_plan_validate(p, d)) luaL_error(L, "%s: %s", fname, chai_last_error());
  return p;
}

/* heads.validate(plan [, dims]) → the normalised plan (sorted, k filled in). */
static int l_validate(lua_State *L) {
  chai_heads_dims d = check_dims(L, 2, 1, "chai.heads.validate");
  chai_heads_plan *p = plan_arg(L, 1, &d, "chai.heads.validate");
  chai_bind_push_plan(L, p);
  return 1;
}

/* heads.to_json(plan [, meta_text]) → text (0-based). */
static int l_to_json(lua_State *L) {
  const char *meta = luaL_optstring(L, 2, NULL);
  chai_heads_dims d = {0, 0, 1};
  chai_heads_plan *p = plan_arg(L, 1, &d, "chai.heads.save_plan");
  if (meta) {
    size_t n = strlen(meta) + 1;
    p->meta_json = chai_alloc(n, "plan meta");
    if (!p->meta_json) return chai_bind_fail(L);
    memcpy(p->meta_json, meta, n);
  }
  char *text;
  if (chai_heads_plan_to_json(&text, p)) return chai_bind_fail(L);
  lua_pushstring(L, text);
  free(text);
  return 1;
}

/* ---- numeric helpers ------------------------------------------------------------------------ */

/* The f32 contiguous 2-D matrix at idx (a tensor or nested table); a converted copy is left on the
 * stack (anchoring it) and replaces the argument. */
static const float *matrix_arg(lua_State *L, int idx, int *rows, int *cols, const char *fname) {
  idx = lua_absindex(L, idx);
  chai_tensor *t = chai_bind_check_tensor_like(L, idx, CHAI_F32);
  if (t->ndim != 2) {
    char buf[64];
    luaL_error(L, "%s: expected a 2-D (rows, features) matrix, got %s", fname,
               chai_tensor_describe(t, buf, sizeof buf));
  }
  if (t->shape[0] > 1 << 24 || t->shape[1] > 1 << 24) luaL_error(L, "%s: matrix too large", fname);
  if (t->dtype != CHAI_F32 || !chai_tensor_is_contiguous(t)) {
    chai_tensor *c = chai_bind_push_tensor(L);
    if (chai_tensor_to(c, t, CHAI_F32)) chai_bind_fail(L);
    lua_replace(L, idx);
    t = c;
  }
  *rows = (int)t->shape[0];
  *cols = (int)t->shape[1];
  return chai_tensor_data(t);
}

static chai_kmeans_opts kmeans_opts(lua_State *L, int idx, const char *fname) {
  static const char *const known[] = {"seed", "n_init", "max_iter", "sensitivity", NULL};
  chai_bind_check_options(L, idx, fname, known);
  chai_kmeans_opts o = chai_kmeans_defaults();
  lua_Integer seed = chai_bind_opt_integer(L, idx, "seed", 0, fname);
  lua_Integer n_init = chai_bind_opt_integer(L, idx, "n_init", o.n_init, fname);
  lua_Integer max_iter = chai_bind_opt_integer(L, idx, "max_iter", o.max_iter, fname);
  if (n_init < 1 || n_init > 100000)
    luaL_error(L, "%s: n_init must be >= 1, got %I", fname, n_init);
  if (max_iter < 1 || max_iter > 10000000)
    luaL_error(L, "%s: max_iter must be >= 1, got %I", fname, max_iter);
  o.seed = (uint64_t)seed;
  o.n_init = (int)n_init;
  o.max_iter = (int)max_iter;
  return o;
}

static void push_int_list(lua_State *L, const int *v, int n, int add) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, v[i] + add);
    lua_rawseti(L, -2, i + 1);
  }
}

static void push_double_list(lua_State *L, const double *v, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* Scratch memory owned by a userdata pushed on the stack. */
static void *scratch(lua_State *L, size_t bytes) {
  return lua_newuserdatauv(L, bytes ? bytes : 1, 0);
}

/* heads.kmeans(rows, k [, opts]) → labels (cluster numbers 1..k per row), inertia, centres. */
static int l_kmeans(lua_State *L) {
  const char *fname = "chai.heads.kmeans";
  lua_Integer k = luaL_checkinteger(L, 2);
  chai_kmeans_opts o = kmeans_opts(L, 3, fname);
  int n, d;
  const float *x = matrix_arg(L, 1, &n, &d, fname);
  if (k < 1 || k > n)
    return luaL_error(L, "%s: k must be in 1..%d (the number of rows), got %I", fname, n, k);
  int *labels = scratch(L, sizeof(int) * (size_t)n);
  float *centers = scratch(L, sizeof(float) * (size_t)k * d);
  double inertia;
  if (chai_kmeans(labels, centers, &inertia, x, n, d, (int)k, &o)) return chai_bind_fail(L);
  push_int_list(L, labels, n, 1);
  lua_pushnumber(L, inertia);
  lua_createtable(L, (int)k, 0);
  for (int c = 0; c < k; c++) {
    lua_createtable(L, d, 0);
    for (int j = 0; j < d; j++) {
      lua_pushnumber(L, centers[(size_t)c * d + j]);
      lua_rawseti(L, -2, j + 1);
    }
    lua_rawseti(L, -2, c + 1);
  }
  return 3;
}

/* The calibration samples at idx: a 3-D tensor (S,H,L), or a list of (H,L) matrices (tensors or
 * nested tables; L may differ). Converted copies are anchored on the stack. */
typedef struct sample_set {
  int S, H;
  const float **x;
  int *cols;
} sample_set;

static sample_set samples_arg(lua_State *L, int idx, const char *fname) {
  idx = lua_absindex(L, idx);
  sample_set ss = {0, 0, NULL, NULL};
  chai_tensor *t3 = chai_bind_test_tensor(L, idx);
  if (t3) {
    t3 = chai_bind_check_tensor(L, idx);
    if (t3->ndim != 3) {
      char buf[64];
      luaL_error(L, "%s: expected (samples, heads, tokens), got %s", fname,
                 chai_tensor_describe(t3, buf, sizeof buf));
    }
    if (t3->shape[0] < 1 || t3->shape[1] < 1 || t3->shape[2] < 1 || t3->shape[0] > 1 << 24 ||
        t3->shape[1] > 1 << 16 || t3->shape[2] > 1 << 24)
      luaL_error(L, "%s: bad sample tensor shape", fname);
    if (t3->dtype != CHAI_F32 || !chai_tensor_is_contiguous(t3)) {
      chai_tensor *c = chai_bind_push_tensor(L);
      if (chai_tensor_to(c, t3, CHAI_F32)) chai_bind_fail(L);
      lua_replace(L, idx);
      t3 = c;
    }
    ss.S = (int)t3->shape[0];
    ss.H = (int)t3->shape[1];
    int Lc = (int)t3->shape[2];
    ss.x = scratch(L, sizeof(float *) * (size_t)ss.S);
    ss.cols = scratch(L, sizeof(int) * (size_t)ss.S);
    for (int s = 0; s < ss.S; s++) {
      ss.x[s] = (const float *)chai_tensor_data(t3) + (size_t)s * ss.H * Lc;
      ss.cols[s] = Lc;
    }
    return ss;
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  if (n < 1) luaL_error(L, "%s: need at least one sample", fname);
  if (n > 1 << 24) luaL_error(L, "%s: too many samples", fname);
  ss.S = (int)n;
  ss.x = scratch(L, sizeof(float *) * (size_t)ss.S);
  ss.cols = scratch(L, sizeof(int) * (size_t)ss.S);
  lua_createtable(L, ss.S, 0); /* anchors converted matrices */
  int anchor = lua_gettop(L);
  for (int s = 0; s < ss.S; s++) {
    lua_geti(L, idx, s + 1);
    char what[80];
    snprintf(what, sizeof what, "%s: sample %d", fname, s + 1);
    int rows;
    ss.x[s] = matrix_arg(L, -1, &rows, &ss.cols[s], what);
    if (s == 0) ss.H = rows;
    if (rows != ss.H)
      luaL_error(L, "%s: sample %d has %d heads, sample 1 has %d", fname, s + 1, rows, ss.H);
    lua_rawseti(L, anchor, s + 1);
  }
  return ss;
}

/* heads.inertia_curve(samples [, opts]) → {inertia for k = 1..H}. */
static int l_inertia_curve(lua_State *L) {
  const char *fname = "chai.heads.inertia_curve";
  chai_kmeans_opts o = kmeans_opts(L, 2, fname);
  sample_set ss = samples_arg(L, 1, fname);
  double *curve = scratch(L, sizeof(double) * (size_t)ss.H);
  if (chai_kmeans_inertia_curve(curve, ss.x, ss.cols, ss.S, ss.H, &o)) return chai_bind_fail(L);
  push_double_list(L, curve, ss.H);
  return 1;
}

/* heads.kmeans_samples(samples, k [, opts]) → labels 1..k per head: one membership for all
 * samples, from k-means on each head's rows concatenated across samples (its squared-distance
 * objective is the sum over samples of the per-sample objective, with shared labels). */
static int l_kmeans_samples(lua_State *L) {
  const char *fname = "chai.heads.kmeans_samples";
  lua_Integer k = luaL_checkinteger(L, 2);
  chai_kmeans_opts o = kmeans_opts(L, 3, fname);
  sample_set ss = samples_arg(L, 1, fname);
  if (k < 1 || k > ss.H)
    return luaL_error(L, "%s: k must be in 1..%d (the number of heads), got %I", fname, ss.H, k);
  size_t width = 0;
  for (int s = 0; s < ss.S; s++)
    width += (size_t)ss.cols[s];
  if (width > ((size_t)1 << 28) / (size_t)ss.H)
    return luaL_error(L, "%s: samples too large", fname);
  float *x = scratch(L, sizeof(float) * width * (size_t)ss.H);
  size_t at = 0;
  for (int s = 0; s < ss.S; s++) {
    for (int h = 0; h < ss.H; h++)
      memcpy(x + (size_t)h * width + at, ss.x[s] + (size_t)h * ss.cols[s],
             sizeof(float) * (size_t)ss.cols[s]);
    at += (size_t)ss.cols[s];
  }
  int *labels = scratch(L, sizeof(int) * (size_t)ss.H);
  if (chai_kmeans(labels, NULL, NULL, x, ss.H, (int)width, (int)k, &o)) return chai_bind_fail(L);
  chai_labels_canonical(labels, ss.H);
  push_int_list(L, labels, ss.H, 1);
  return 1;
}

static double *number_list(lua_State *L, int idx, int *n, const char *fname, const char *what) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer len = luaL_len(L, idx);
  if (len > 1 << 24) luaL_error(L, "%s: %s too long", fname, what);
  double *v = scratch(L, sizeof(double) * (size_t)(len > 0 ? len : 1));
  for (int i = 0; i < (int)len; i++) {
    lua_geti(L, idx, i + 1);
    int ok;
    v[i] = lua_tonumberx(L, -1, &ok);
    if (!ok)
      luaL_error(L, "%s: %s[%d] is %s, not a number", fname, what, i + 1, luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  *n = (int)len;
  return v;
}

/* heads.elbow(inertias [, {sensitivity=}]) → k (1-based count), "kneedle" | "chord". */
static int l_elbow(lua_State *L) {
  const char *fname = "chai.heads.elbow";
  static const char *const known[] = {"sensitivity", NULL};
  chai_bind_check_options(L, 2, fname, known);
  double S = chai_bind_opt_number(L, 2, "sensitivity", 1.0, fname);
  int n;
  double *in = number_list(L, 1, &n, fname, "inertias");
  int k;
  bool by;
  if (chai_elbow(&k, &by, in, n, S)) return chai_bind_fail(L);
  lua_pushinteger(L, k);
  lua_pushstring(L, by ? "kneedle" : "chord");
  return 2;
}

/* heads.kneedle(x, y [, {sensitivity=, curve="convex"|"concave", direction=}]) → 1-based index
 * or nil. */
static int l_kneedle(lua_State *L) {
  const char *fname = "chai.heads.kneedle";
  static const char *const known[] = {"sensitivity", "curve", "direction", NULL};
  chai_bind_check_options(L, 3, fname, known);
  double S = chai_bind_opt_number(L, 3, "sensitivity", 1.0, fname);
  chai_curve curve = CHAI_CURVE_CONVEX;
  chai_direction dir = CHAI_DIR_DECREASING;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "curve");
    const char *c = luaL_optstring(L, -1, "convex");
    if (!strcmp(c, "concave"))
      curve = CHAI_CURVE_CONCAVE;
    else if (strcmp(c, "convex"))
      return luaL_error(L, "%s: curve must be \"convex\" or \"concave\", got \"%s\"", fname, c);
    lua_getfield(L, 3, "direction");
    const char *dn = luaL_optstring(L, -1, "decreasing");
    if (!strcmp(dn, "increasing"))
      dir = CHAI_DIR_INCREASING;
    else if (strcmp(dn, "decreasing"))
      return luaL_error(L, "%s: direction must be \"increasing\" or \"decreasing\", got \"%s\"",
                        fname, dn);
    lua_pop(L, 2);
  }
  int nx, ny;
  double *x = number_list(L, 1, &nx, fname, "x");
  double *y = number_list(L, 2, &ny, fname, "y");
  if (nx != ny) return luaL_error(L, "%s: x has %d values, y %d", fname, nx, ny);
  int knee;
  if (chai_kneedle(&knee, x, y, nx, S, curve, dir)) return chai_bind_fail(L);
  if (knee < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, knee + 1);
  return 1;
}

/* heads.cosine_distance(rows) → n×n table of tables. */
static int l_cosine(lua_State *L) {
  int n, d;
  const float *x = matrix_arg(L, 1, &n, &d, "chai.heads.cosine_distance");
  double *dist = scratch(L, sizeof(double) * (size_t)n * n);
  if (chai_cosine_distance(dist, x, n, d)) return chai_bind_fail(L);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    push_double_list(L, dist + (size_t)i * n, n);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* heads.agglomerative(dist, k) → labels 1..k (numbered by lowest member). dist: an n×n table of
 * tables or a tensor. */
static int l_agglomerative(lua_State *L) {
  const char *fname = "chai.heads.agglomerative";
  lua_Integer k = luaL_checkinteger(L, 2);
  int n, m;
  const float *df = matrix_arg(L, 1, &n, &m, fname);
  if (n != m)
    return luaL_error(L, "%s: the distance matrix must be square, got (%d,%d)", fname, n, m);
  if (k < 1 || k > n) return luaL_error(L, "%s: k must be in 1..%d, got %I", fname, n, k);
  double *dist = scratch(L, sizeof(double) * (size_t)n * n);
  for (size_t i = 0; i < (size_t)n * n; i++)
    dist[i] = df[i];
  int *labels = scratch(L, sizeof(int) * (size_t)n);
  if (chai_agglomerative_average(labels, dist, n, (int)k)) return chai_bind_fail(L);
  push_int_list(L, labels, n, 1);
  return 1;
}

/* heads.ktq_rule(mean_attention [, {sensitivity=, seed=, n_init=, max_iter=}]) → labels 1..k, k. */
static int l_ktq_rule(lua_State *L) {
  const char *fname = "chai.heads.ktq_rule";
  chai_kmeans_opts o = kmeans_opts(L, 2, fname);
  double S = chai_bind_opt_number(L, 2, "sensitivity", 1.0, fname);
  int H;
  double *mean = number_list(L, 1, &H, fname, "mean_attention");
  if (H < 1) return luaL_error(L, "%s: need at least one head", fname);
  float *mf = scratch(L, sizeof(float) * (size_t)H);
  for (int h = 0; h < H; h++)
    mf[h] = (float)mean[h];
  int *labels = scratch(L, sizeof(int) * (size_t)H), k;
  if (chai_heads_ktq_rule(labels, &k, mf, H, S, &o)) return chai_bind_fail(L);
  push_int_list(L, labels, H, 1);
  lua_pushinteger(L, k);
  return 2;
}

/* heads.plan_from_labels(layer, labels) → a plan layer entry {layer=, k=, clusters=} (1-based),
 * clusters ordered by lowest member, representative first. */
static int l_from_labels(lua_State *L) {
  lua_Integer layer = luaL_checkinteger(L, 1);
  int H;
  double *lab = number_list(L, 2, &H, "chai.heads.from_labels", "labels");
  if (H < 1) return luaL_error(L, "chai.heads.from_labels: no labels");
  int *li = scratch(L, sizeof(int) * (size_t)H);
  for (int h = 0; h < H; h++) {
    if (lab[h] != floor(lab[h]) || lab[h] < 1 || lab[h] > 1e9)
      return luaL_error(L, "chai.heads.from_labels: label %d is %g (need an integer >= 1)", h + 1,
                        lab[h]);
    li[h] = (int)lab[h];
  }
  chai_heads_plan *p = chai_bind_push_plan_box(L);
  if (chai_heads_plan_init(p, 1) || chai_heads_plan_set_labels(p, 0, (int)layer - 1, li, H))
    return chai_bind_fail(L);
  chai_heads_dims d = {0, H, 1};
  if (chai_heads_plan_validate(p, &d)) return chai_bind_fail(L);
  chai_bind_push_plan(L, p);
  lua_getfield(L, -1, "layers");
  lua_geti(L, -1, 1);
  return 1;
}

/* ---- model methods: m:set_heads, m:heads, and memory/generate wrapped to report CHAI ----------
 */

static const char *mode_name(chai_heads_mode mode) {
  return mode == CHAI_HEADS_STATIC ? "static" : mode == CHAI_HEADS_ONLINE ? "online" : "dense";
}

static int l_prune(lua_State *L);

/* m:set_heads(plan_or_path_or_nil [, {mode="static"|"online"|"prune", keep=}]). "prune" leaves m
 * as it is and returns a new, smaller model (chai.heads.prune). */
static int m_set_heads(lua_State *L) {
  const char *fname = "model:set_heads";
  chai_opt_model *m = chai_bind_check_model(L, 1);
  static const char *const known[] = {"mode", "keep", NULL};
  chai_bind_check_options(L, 3, fname, known);
  chai_heads_mode mode = CHAI_HEADS_STATIC;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "mode");
    const char *name = luaL_optstring(L, -1, "static");
    if (!strcmp(name, "static"))
      mode = CHAI_HEADS_STATIC;
    else if (!strcmp(name, "online"))
      mode = CHAI_HEADS_ONLINE;
    else if (!strcmp(name, "prune")) {
      if (lua_isnoneornil(L, 2)) return luaL_error(L, "%s: mode \"prune\" needs a plan", fname);
      lua_settop(L, 3);
      lua_createtable(L, 0, 1); /* {keep = opts.keep} for chai.heads.prune */
      lua_getfield(L, 3, "keep");
      lua_setfield(L, -2, "keep");
      lua_replace(L, 3);
      return l_prune(L);
    } else
      return luaL_error(L, "%s: unknown mode \"%s\" (static, online)", fname, name);
    lua_pop(L, 1);
    lua_getfield(L, 3, "keep");
    if (!lua_isnil(L, -1)) return luaL_error(L, "%s: keep applies to mode \"prune\" only", fname);
    lua_pop(L, 1);
  }
  if (lua_isnoneornil(L, 2)) {
    if (chai_opt_set_heads(m, NULL, CHAI_HEADS_DENSE)) return chai_bind_fail(L);
    return 0;
  }
  const chai_opt_config *c = chai_opt_get_config(m);
  chai_heads_plan *p = chai_bind_push_plan_box(L);
  if (lua_type(L, 2) == LUA_TSTRING) {
    chai_heads_dims d = {c->num_hidden_layers, c->num_attention_heads, 0};
    if (chai_heads_plan_load(p, lua_tostring(L, 2), &d)) return chai_bind_fail(L);
  } else if (lua_istable(L, 2)) {
    chai_bind_check_plan(L, 2, p, fname);
    chai_heads_dims d = {c->num_hidden_layers, c->num_attention_heads, 1};
    if (chai_heads_plan_validate(p, &d)) return luaL_error(L, "%s: %s", fname, chai_last_error());
  } else {
    return luaL_error(L, "%s: expected a plan table, a plan file path or nil, got %s", fname,
                      luaL_typename(L, 2));
  }
  if (chai_opt_set_heads(m, p, mode)) return luaL_error(L, "%s: %s", fname, chai_last_error());
  return 0;
}

/* m:heads() → {mode=, plan=, fallback=, membership={[layer]=clusters}, kv_cache_bytes_per_token=}
 */
static int m_heads(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  chai_heads_mode mode;
  const chai_heads_plan *plan = chai_opt_get_heads(m, &mode);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, mode_name(mode));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)chai_opt_kv_bytes_per_token(m));
  lua_setfield(L, -2, "kv_cache_bytes_per_token");
  if (!plan) return 1;
  chai_bind_push_plan(L, plan);
  lua_setfield(L, -2, "plan");
  lua_pushboolean(L, chai_opt_heads_fallback(m));
  lua_setfield(L, -2, "fallback");
  /* the membership in force per clustered layer (online: the last request's), 1-based */
  const chai_opt_config *c = chai_opt_get_config(m);
  int H = c->num_attention_heads;
  int *slot = lua_newuserdatauv(L, sizeof(int) * (size_t)H, 0);
  lua_newtable(L);
  for (int l = 0; l < c->num_hidden_layers; l++) {
    int K;
    if (chai_opt_heads_membership(m, l, &K, slot)) return chai_bind_fail(L);
    if (K == 0) continue;
    lua_createtable(L, K, 0);
    for (int s = 0; s < K; s++) {
      lua_newtable(L);
      int n = 0;
      /* representative first, then the other members in index order */
      int rep = -1;
      const chai_heads_layer *pl = chai_heads_plan_find(plan, l);
      if (mode == CHAI_HEADS_STATIC && pl && pl->has_clusters) rep = pl->order[pl->start[s]];
      for (int h = 0; h < H && rep < 0; h++)
        if (slot[h] == s) rep = h;
      lua_pushinteger(L, rep + 1);
      lua_rawseti(L, -2, ++n);
      for (int h = 0; h < H; h++)
        if (slot[h] == s && h != rep) {
          lua_pushinteger(L, h + 1);
          lua_rawseti(L, -2, ++n);
        }
      lua_rawseti(L, -2, s + 1);
    }
    lua_rawseti(L, -2, l + 1);
  }
  lua_setfield(L, -3, "membership");
  lua_pop(L, 1); /* slot scratch */
  return 1;
}

/* memory(): the model's own table plus kv_cache_bytes_per_token under the current plan. */
static int m_memory_heads(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  if (lua_istable(L, -1)) {
    lua_pushinteger(L, (lua_Integer)chai_opt_kv_bytes_per_token(m));
    lua_setfield(L, -2, "kv_cache_bytes_per_token");
  }
  return 1;
}

/* generate(): the model's own result; an online request that fell back to dense says so in it. */
static int m_generate_heads(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, 1);
  chai_heads_mode mode;
  if (chai_opt_get_heads(m, &mode) && mode == CHAI_HEADS_ONLINE && lua_istable(L, -1)) {
    lua_pushboolean(L, chai_opt_heads_fallback(m));
    lua_setfield(L, -2, "dense_fallback");
  }
  return 1;
}

/* heads.capture_begin(model, T) / capture_end(model) */
static int l_capture_begin(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  lua_Integer T = luaL_checkinteger(L, 2);
  if (T < 1 || T > 1 << 20) return luaL_error(L, "chai.heads.calibrate: tokens %I must be >= 1", T);
  if (chai_opt_capture_begin(m, (int)T)) return chai_bind_fail(L);
  return 0;
}

static int l_capture_end(lua_State *L) {
  chai_opt_capture_end(chai_bind_check_model(L, 1));
  return 0;
}

/* heads.capture_store(model, rows, s, means) → T: copies the last forward's captured rows into
 * rows[l] (a (S,H,N) f32 tensor per layer) at sample s (1-based) and adds each row's mean to
 * means[l][h]. */
static int l_capture_store(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer s = luaL_checkinteger(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  const chai_opt_config *c = chai_opt_get_config(m);
  int Lyr = c->num_hidden_layers, H = c->num_attention_heads, T = 0, width = 0;
  const float *rows = chai_opt_capture_rows(m, &T, &width);
  if (!rows || T == 0) return luaL_error(L, "chai.heads.calibrate: nothing captured");
  for (int l = 0; l < Lyr; l++) {
    lua_geti(L, 2, l + 1);
    chai_tensor *t = chai_bind_check_tensor(L, -1);
    if (t->ndim != 3 || t->dtype != CHAI_F32 || !chai_tensor_is_contiguous(t) || t->shape[1] != H ||
        t->shape[2] != width || s < 1 || s > t->shape[0])
      return luaL_error(L, "chai.heads.calibrate: bad statistics tensor for layer %d", l + 1);
    int64_t N = t->shape[2];
    float *dst = (float *)chai_tensor_data(t) + (size_t)(s - 1) * H * N;
    lua_pop(L, 1);
    lua_geti(L, 4, l + 1);
    for (int h = 0; h < H; h++) {
      /* the capture buffer's width is the N given to capture_begin */
      const float *src = rows + ((size_t)l * H + h) * (size_t)N;
      memcpy(dst + (size_t)h * N, src, sizeof(float) * (size_t)N);
      double mean = 0;
      for (int j = 0; j < T; j++)
        mean += src[j];
      mean /= T;
      lua_geti(L, -1, h + 1);
      double prev = lua_tonumber(L, -1);
      lua_pop(L, 1);
      lua_pushnumber(L, prev + mean);
      lua_seti(L, -2, h + 1);
    }
    lua_pop(L, 1);
  }
  lua_pushinteger(L, T);
  return 1;
}

/* heads.capture_stats(model) → {[layer] = {{entropy=, max_entropy=, prob_sum=, rows=, cells=},
 * … one per head}}: the sums of every captured forward since capture_begin (1-based layers and
 * heads). */
static int l_capture_stats(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  const chai_attention_stats *st = chai_opt_capture_stats(m);
  if (!st) return luaL_error(L, "chai.heads.capture_stats: no capture in progress");
  const chai_opt_config *c = chai_opt_get_config(m);
  int Lyr = c->num_hidden_layers, H = c->num_attention_heads;
  lua_createtable(L, Lyr, 0);
  for (int l = 0; l < Lyr; l++) {
    lua_createtable(L, H, 0);
    for (int h = 0; h < H; h++) {
      const chai_attention_stats *s = &st[(size_t)l * H + h];
      lua_createtable(L, 0, 5);
      lua_pushnumber(L, s->entropy);
      lua_setfield(L, -2, "entropy");
      lua_pushnumber(L, s->max_entropy);
      lua_setfield(L, -2, "max_entropy");
      lua_pushnumber(L, s->prob_sum);
      lua_setfield(L, -2, "prob_sum");
      lua_pushinteger(L, (lua_Integer)s->rows);
      lua_setfield(L, -2, "rows");
      lua_pushinteger(L, (lua_Integer)s->cells);
      lua_setfield(L, -2, "cells");
      lua_rawseti(L, -2, h + 1);
    }
    lua_rawseti(L, -2, l + 1);
  }
  return 1;
}

static void wrap_method(lua_State *L, int methods, const char *name, lua_CFunction fn) {
  lua_getfield(L, methods, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, methods, name);
}

/* save(dir): the model's own files, then its head plan. A model under a static or online plan
 * gets dir/chai_heads.json (the plan, with "mode" added to its "meta"), which chai.opt.load applies
 * again; a dense model removes a chai_heads.json left in dir by an earlier save. A pruned model
 * needs no file: its head counts are in config.json. */
static int m_save_heads(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 0);
  const char *path = lua_pushfstring(L, "%s/chai_heads.json", dir);
  chai_heads_mode mode;
  const chai_heads_plan *plan = chai_opt_get_heads(m, &mode);
  if (!plan || mode == CHAI_HEADS_DENSE) {
    if (remove(path) != 0 && errno != ENOENT)
      return luaL_error(L, "model:save: cannot remove the stale %s: %s", path, strerror(errno));
    return 0;
  }
  chai_heads_plan *p = chai_bind_push_plan_box(L);
  if (chai_heads_plan_copy(p, plan)) return chai_bind_fail(L);
  /* meta = the plan's own meta (when it is an object) + {"mode": ...}; no Lua call can raise
   * between the cJSON allocations and their release. */
  cJSON *meta = p->meta_json ? cJSON_Parse(p->meta_json) : NULL;
  if (meta && !cJSON_IsObject(meta)) {
    cJSON_Delete(meta);
    meta = NULL;
  }
  if (!meta) meta = cJSON_CreateObject();
  char *text = NULL;
  if (meta) {
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "mode");
    if (cJSON_AddStringToObject(meta, "mode", mode_name(mode))) text = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
  }
  if (!text) return luaL_error(L, "model:save: out of memory writing %s", path);
  if (p->meta_json) chai_free(p->meta_json, strlen(p->meta_json) + 1);
  size_t n = strlen(text) + 1;
  p->meta_json = chai_alloc(n, "plan meta");
  if (p->meta_json) memcpy(p->meta_json, text, n);
  free(text);
  if (!p->meta_json) return chai_bind_fail(L);
  if (chai_heads_plan_save(p, path)) return chai_bind_fail(L);
  return 0;
}

/* Adds the CHAI methods to chai.Model (its method table is the upvalue of its __index). */
static void add_model_methods(lua_State *L) {
  if (luaL_getmetatable(L, "chai.Model") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "__index");
  if (!lua_iscfunction(L, -1) || !lua_getupvalue(L, -1, 1)) {
    lua_pop(L, 2);
    return;
  }
  int methods = lua_gettop(L);
  if (lua_istable(L, methods)) {
    lua_pushcfunction(L, m_set_heads);
    lua_setfield(L, methods, "set_heads");
    lua_pushcfunction(L, m_heads);
    lua_setfield(L, methods, "heads");
    wrap_method(L, methods, "memory", m_memory_heads);
    wrap_method(L, methods, "generate", m_generate_heads);
    wrap_method(L, methods, "save", m_save_heads);
  }
  lua_pop(L, 3);
}

/* heads.prune(model, plan_or_path [, {keep=1}]) → a new, smaller chai.Model. */
static int l_prune(lua_State *L) {
  const char *fname = "chai.heads.prune";
  chai_opt_model *m = chai_bind_check_model(L, 1);
  static const char *const known[] = {"keep", NULL};
  chai_bind_check_options(L, 3, fname, known);
  lua_Integer keep = chai_bind_opt_integer(L, 3, "keep", 1, fname);
  if (keep < 1 || keep > 1 << 16)
    return luaL_error(L, "%s: keep must be >= 1, got %I", fname, keep);
  const chai_opt_config *c = chai_opt_get_config(m);
  chai_heads_plan *p = chai_bind_push_plan_box(L);
  if (lua_type(L, 2) == LUA_TSTRING) {
    chai_heads_dims d = {c->num_hidden_layers, c->num_attention_heads, 0};
    if (chai_heads_plan_load(p, lua_tostring(L, 2), &d)) return chai_bind_fail(L);
  } else {
    luaL_checktype(L, 2, LUA_TTABLE);
    chai_bind_check_plan(L, 2, p, fname);
    chai_heads_dims d = {c->num_hidden_layers, c->num_attention_heads, 1};
    if (chai_heads_plan_validate(p, &d)) return luaL_error(L, "%s: %s", fname, chai_last_error());
  }
  chai_opt_model **slot = chai_bind_push_model(L);
  if (chai_opt_prune_heads(slot, m, p, (int)keep))
    return luaL_error(L, "%s: %s", fname, chai_last_error());
  return 1;
}

/* heads.layer_heads(model) → {heads of layer 1, ...} */
static int l_layer_heads(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  int n = chai_opt_get_config(m)->num_hidden_layers;
  lua_createtable(L, n, 0);
  for (int l = 0; l < n; l++) {
    lua_pushinteger(L, chai_opt_layer_heads(m, l));
    lua_rawseti(L, -2, l + 1);
  }
  return 1;
}

/* heads.bench_decode(model, context, steps) → prefill seconds, min step seconds, median step
 * seconds, prefill CPU seconds, min step CPU seconds: one sequence of `context` token ids (2, then
 * 100 + (7919·t) mod 40000) prefilled through the KV cache, then `steps` single-token decode steps,
 * each timed on its own. The minimum, and the process CPU time (with one thread: the work itself,
 * whatever else runs on the machine), are robust to a shared machine. A benchmark helper. */
static double clock_seconds(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now_seconds(void) {
  return clock_seconds(CLOCK_MONOTONIC);
}
static double cpu_seconds(void) {
  return clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int l_bench_decode(lua_State *L) {
  chai_opt_model *m = chai_bind_check_model(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2), steps = luaL_checkinteger(L, 3);
  const chai_opt_config *c = chai_opt_get_config(m);
  if (n < 1 || steps < 1 || n + steps > c->max_position_embeddings)
    return luaL_error(L, "bench_decode: context %I + steps %I must fit in %d positions", n, steps,
                      c->max_position_embeddings);
  int32_t *ids = lua_newuserdatauv(L, sizeof(int32_t) * (size_t)(n + steps), 0);
  double *t = lua_newuserdatauv(L, sizeof(double) * (size_t)steps, 0);
  double *tc = lua_newuserdatauv(L, sizeof(double) * (size_t)steps, 0);
  float *logits = lua_newuserdatauv(L, sizeof(float) * (size_t)c->vocab_size, 0);
  for (lua_Integer i = 0; i < n + steps; i++)
    ids[i] = i == 0 ? 2 : (int32_t)(100 + (i * 7919) % 40000) % c->vocab_size;
  if (chai_opt_cache_begin(m, 1, (int)(n + steps))) return chai_bind_fail(L);
  double t0 = now_seconds(), c0 = cpu_seconds();
  if (chai_opt_cache_step(m, logits, ids, NULL, 1, (int)n)) return chai_bind_fail(L);
  double prefill = now_seconds() - t0, prefill_cpu = cpu_seconds() - c0;
  for (lua_Integer s = 0; s < steps; s++) {
    t0 = now_seconds();
    c0 = cpu_seconds();
    if (chai_opt_cache_step(m, logits, ids + n + s, NULL, 1, 1)) return chai_bind_fail(L);
    t[s] = now_seconds() - t0;
    tc[s] = cpu_seconds() - c0;
  }
  qsort(t, (size_t)steps, sizeof(double), cmp_double);
  qsort(tc, (size_t)steps, sizeof(double), cmp_double);
  lua_pushnumber(L, prefill);
  lua_pushnumber(L, t[0]);
  lua_pushnumber(L, t[steps / 2]);
  lua_pushnumber(L, prefill_cpu);
  lua_pushnumber(L, tc[0]);
  return 5;
}

void chai_bind_open_heads(lua_State *L, int table) {
  static const luaL_Reg fns[] = {
      {"parse", l_parse},
      {"load", l_load},
      {"validate", l_validate},
      {"to_json", l_to_json},
      {"kmeans", l_kmeans},
      {"inertia_curve", l_inertia_curve},
      {"kmeans_samples", l_kmeans_samples},
      {"elbow", l_elbow},
      {"kneedle", l_kneedle},
      {"cosine_distance", l_cosine},
      {"agglomerative", l_agglomerative},
      {"ktq_rule", l_ktq_rule},
      {"from_labels", l_from_labels},
      {"capture_begin", l_capture_begin},
      {"capture_end", l_capture_end},
      {"capture_store", l_capture_store},
      {"capture_stats", l_capture_stats},
      {"prune", l_prune},
      {"layer_heads", l_layer_heads},
      {"bench_decode", l_bench_decode},
      {NULL, NULL},
  };
  lua_newtable(L);
  chai_bind_register(L, lua_gettop(L), fns);
  lua_setfield(L, table, "heads");
  add_model_methods(L);
}
