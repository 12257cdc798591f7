/* Training pieces for Lua (chai/train.h): the KD and label-smoothed CE losses with their
 * gradients, the optimizer userdata "chai.Optimizer", clipping and schedules. lua/chai/loss.lua and
 * lua/chai/train.lua build the user-facing API on these core functions:
 *   core.loss_kd(student, teacher|nil, labels|nil, {T=, alpha=, label_smoothing=, ignore_index=,
 *                mask=}) → loss, dlogits, {kl=, ce=, count=}
 *   core.optimizer(kind, {weight_decay=, betas=, eps=, momentum=, dampening=, nesterov=})
 *   core.grad_norm(grads) → norm, finite      core.clip_factor(norm, max_norm) → factor
 *   core.schedule_factor({kind=, warmup=, total=, min_ratio=}, step) → factor
 * Labels and class ids are values (0-based, as in the data); -100 is ignored by default. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "bind.h"
#include "chai/checkpoint.h"
#include "chai/rng.h"
#include "chai/train.h"

#define OPTIM_MT "chai.Optimizer"

typedef struct optim_ud {
  chai_optim *o;
} optim_ud;

/* ---- losses --------------------------------------------------------------------------------- */

/* The logits at idx as a contiguous f32 (rows, V) view: (…,V) flattened. Pushes the view (a new
 * userdata) and returns it. */
static chai_tensor *logits_rows(lua_State *L, int idx, const char *what, int64_t *rows,
                                int64_t *V) {
  chai_tensor *t = chai_bind_check_tensor_named(L, idx, CHAI_F32, what);
  if (t->dtype != CHAI_F32)
    luaL_error(L, "%s must be f32, got %s", what, chai_dtype_name(t->dtype));
  if (t->ndim < 1) luaL_error(L, "%s must have at least 1 dim (…,V)", what);
  *V = t->shape[t->ndim - 1];
  *rows = *V ? chai_tensor_numel(t) / *V : 0;
  if (*rows < 1 || *V < 1 || *rows > INT32_MAX || *V > INT32_MAX) {
    char buf[64];
    luaL_error(L, "%s has shape %s; expected (…,V) with at least one row", what,
               chai_shape_str(t->ndim, t->shape, buf, sizeof buf));
  }
  chai_tensor *c = chai_bind_push_tensor(L);
  if (chai_tensor_contiguous(c, t) != CHAI_OK) chai_bind_fail(L);
  return c;
}

/* Labels at idx (tensor i32/i64 or a table) as a new i32 userdata of `rows` values, pushed. */
static int32_t *labels_i32(lua_State *L, int idx, int64_t rows, const char *what) {
  chai_tensor *t = chai_bind_check_tensor_named(L, idx, CHAI_I32, what);
  if (t->dtype != CHAI_I32 && t->dtype != CHAI_I64)
    luaL_error(L, "%s must be integers (i32 or i64), got %s", what, chai_dtype_name(t->dtype));
  if (chai_tensor_numel(t) != rows) {
    char buf[64];
    luaL_error(L, "%s has shape %s (%I values) but the logits have %I rows", what,
               chai_shape_str(t->ndim, t->shape, buf, sizeof buf),
               (lua_Integer)chai_tensor_numel(t), (lua_Integer)rows);
  }
  chai_tensor *out = chai_bind_push_tensor(L);
  if (chai_tensor_new(out, CHAI_I32, 1, (int64_t[]){rows}) != CHAI_OK) chai_bind_fail(L);
  int32_t *y = chai_tensor_data(out);
  for (int64_t i = 0; i < rows; i++) {
    double v = chai_tensor_get_flat(t, i);
    if (v < INT32_MIN || v > INT32_MAX)
      luaL_error(L, "%s: value %I at position %I does not fit in i32", what, (lua_Integer)v,
                 (lua_Integer)(i + 1));
    y[i] = (int32_t)v;
  }
  return y;
}

/* core.loss_kd(student, teacher|nil, labels|nil, opts) → loss, dlogits (shape of student),
 * {kl=, ce=, count=}. */
static int l_loss_kd(lua_State *L) {
  static const char *const known[] = {"T",     "alpha", "label_smoothing", "ignore_index", "mask",
                                      "fname", NULL};
  chai_bind_check_options(L, 4, "loss", known);
  const char *fname = "kd";
  if (!lua_isnoneornil(L, 4)) {
    lua_getfield(L, 4, "fname");
    if (lua_isstring(L, -1)) fname = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  chai_kd_args a;
  a.T = (float)chai_bind_opt_number(L, 4, "T", 2.0, fname);
  a.alpha = (float)chai_bind_opt_number(L, 4, "alpha", 0.5, fname);
  a.label_smoothing = (float)chai_bind_opt_number(L, 4, "label_smoothing", 0.0, fname);
  lua_Integer ignore = chai_bind_opt_integer(L, 4, "ignore_index", -100, fname);
  if (ignore < INT32_MIN || ignore > INT32_MAX)
    return luaL_error(L, "%s: ignore_index %I does not fit in i32", fname, ignore);
  a.ignore_index = (int)ignore;
  char what[64];
  snprintf(what, sizeof what, "%s: student logits", fname);
  int64_t N, V;
  chai_tensor *s = logits_rows(L, 1, what, &N, &V);
  const float *t = NULL;
  if (!lua_isnoneornil(L, 2)) {
    int64_t N2, V2;
    snprintf(what, sizeof what, "%s: teacher logits", fname);
    chai_tensor *tt = logits_rows(L, 2, what, &N2, &V2);
    if (N2 != N || V2 != V)
      return luaL_error(L, "%s: teacher logits are (%I,%I) rows but the student's are (%I,%I)",
                        fname, (lua_Integer)N2, (lua_Integer)V2, (lua_Integer)N, (lua_Integer)V);
    t = chai_tensor_data(tt);
  }
  int32_t *y = NULL;
  if (!lua_isnoneornil(L, 3)) {
    snprintf(what, sizeof what, "%s: labels", fname);
    y = labels_i32(L, 3, N, what);
  }
  const float *mask = NULL;
  if (!lua_isnoneornil(L, 4)) {
    lua_getfield(L, 4, "mask");
    if (!lua_isnil(L, -1)) {
      snprintf(what, sizeof what, "%s: mask", fname);
      chai_tensor *mt = chai_bind_check_tensor_named(L, -1, CHAI_F32, what);
      if (chai_tensor_numel(mt) != N)
        return luaL_error(L, "%s has %I values but the logits have %I rows", what,
                          (lua_Integer)chai_tensor_numel(mt), (lua_Integer)N);
      chai_tensor *mf = chai_bind_push_tensor(L);
      if (chai_tensor_to(mf, mt, CHAI_F32) != CHAI_OK) return chai_bind_fail(L);
      mask = chai_tensor_data(mf);
    }
  }
  /* Labels are checked here so the row in the message is 1-based, as Lua counts. */
  if (y)
    for (int64_t n = 0; n < N; n++) {
      if ((mask && mask[n] == 0) || y[n] == a.ignore_index) continue;
      if (y[n] < 0 || y[n] >= V)
        return luaL_error(L, "%s: label %d in row %I is outside 0..%I (ignore_index %d)", fname,
                          (int)y[n], (lua_Integer)(n + 1), (lua_Integer)(V - 1), a.ignore_index);
    }
  chai_tensor *orig = chai_bind_test_tensor(L, 1);
  chai_tensor *d = chai_bind_push_tensor(L);
  if (chai_tensor_new(d, CHAI_F32, orig->ndim, orig->shape) != CHAI_OK) return chai_bind_fail(L);
  int di = lua_gettop(L);
  chai_kd_result r;
  if (chai_kd_forward_backward(&r, chai_tensor_data(d), chai_tensor_data(s), t, y, mask, (int)N,
                               (int)V, &a) != CHAI_OK)
    return chai_bind_fail(L);
  chai_bind_gc_nudge(L, chai_tensor_nbytes(d));
  lua_pushnumber(L, r.loss);
  lua_pushvalue(L, di);
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, r.kl);
  lua_setfield(L, -2, "kl");
  lua_pushnumber(L, r.ce);
  lua_setfield(L, -2, "ce");
  lua_pushinteger(L, r.count);
  lua_setfield(L, -2, "count");
  return 3;
}

/* ---- the optimizer -------------------------------------------------------------------------- */

static optim_ud *check_optim(lua_State *L, int idx) {
  optim_ud *u = luaL_checkudata(L, idx, OPTIM_MT);
  if (!u->o) luaL_error(L, "optimizer used after free");
  return u;
}

static int optim_gc(lua_State *L) {
  optim_ud *u = luaL_checkudata(L, 1, OPTIM_MT);
  chai_optim_free(u->o);
  u->o = NULL;
  return 0;
}

/* core.optimizer(kind, opts) */
static int l_optimizer(lua_State *L) {
  static const char *const known[] = {"weight_decay", "betas",    "eps", "momentum",
                                      "dampening",    "nesterov", NULL};
  const char *kind_name = luaL_checkstring(L, 1);
  chai_optim_kind kind;
  if (chai_optim_kind_parse(kind_name, &kind) != CHAI_OK) return chai_bind_fail(L);
  chai_bind_check_options(L, 2, kind_name, known);
  chai_optim_config c;
  chai_optim_config_default(&c, kind);
  c.weight_decay = chai_bind_opt_number(L, 2, "weight_decay", c.weight_decay, kind_name);
  c.eps = chai_bind_opt_number(L, 2, "eps", c.eps, kind_name);
  c.momentum = chai_bind_opt_number(L, 2, "momentum", c.momentum, kind_name);
  c.dampening = chai_bind_opt_number(L, 2, "dampening", c.dampening, kind_name);
  c.nesterov = chai_bind_opt_boolean(L, 2, "nesterov", c.nesterov, kind_name);
  if (!lua_isnoneornil(L, 2)) {
    lua_getfield(L, 2, "betas");
    if (!lua_isnil(L, -1)) {
      if (!lua_istable(L, -1) || luaL_len(L, -1) != 2)
        return luaL_error(L, "%s: betas must be a table of two numbers", kind_name);
      lua_geti(L, -1, 1);
      lua_geti(L, -2, 2);
      if (!lua_isnumber(L, -2) || !lua_isnumber(L, -1))
        return luaL_error(L, "%s: betas must be a table of two numbers", kind_name);
      c.beta1 = lua_tonumber(L, -2);
      c.beta2 = lua_tonumber(L, -1);
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
  }
  optim_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->o = NULL;
  luaL_setmetatable(L, OPTIM_MT);
  if (chai_optim_new(&u->o, &c) != CHAI_OK) return chai_bind_fail(L);
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Collects the string keys of the table at idx, sorted (Lua's pairs order is not stable across
 * runs, and the order sets the gradient-norm sum). Pushes a userdata that owns the array. */
static const char **sorted_keys(lua_State *L, int idx, int *count, const char *what) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: keys must be parameter names (strings), got a %s", what,
                 luaL_typename(L, -2));
    n++;
    lua_pop(L, 1);
  }
  const char **keys = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 0);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    keys[i++] = lua_tostring(L, -2); /* the table keeps the string alive */
    lua_pop(L, 1);
  }
  qsort(keys, (size_t)n, sizeof *keys, cmp_str);
  *count = n;
  return keys;
}

/* Builds chai_param entries from params (name → tensor) and grads (name → tensor or absent), the
 * no_decay table (name → bool; missing names use the default rule). Pushes one userdata. */
static chai_param *build_params(lua_State *L, int pidx, int gidx, int ndidx, int *count,
                                const char *fname) {
  luaL_checktype(L, pidx, LUA_TTABLE);
  luaL_checktype(L, gidx, LUA_TTABLE);
  int n;
  const char **names = sorted_keys(L, pidx, &n, fname);
  chai_param *ps = lua_newuserdatauv(L, sizeof(chai_param) * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_getfield(L, pidx, names[i]);
    chai_tensor *p = chai_bind_test_tensor(L, -1);
    if (!p || !p->storage)
      luaL_error(L, "%s: parameter %s is not a live chai.Tensor", fname, names[i]);
    if (chai_tensor_check(p, names[i], CHAI_F32, true) != CHAI_OK) chai_bind_fail(L);
    lua_pop(L, 1);
    ps[i].name = names[i];
    ps[i].data = chai_tensor_data(p);
    ps[i].n = (size_t)chai_tensor_numel(p);
    ps[i].grad = NULL;
    lua_getfield(L, gidx, names[i]);
    if (!lua_isnil(L, -1)) {
      chai_tensor *g = chai_bind_test_tensor(L, -1);
      if (!g || !g->storage)
        luaL_error(L, "%s: gradient %s is not a live chai.Tensor", fname, names[i]);
      if (chai_tensor_check(g, names[i], CHAI_F32, true) != CHAI_OK) chai_bind_fail(L);
      if ((size_t)chai_tensor_numel(g) != ps[i].n)
        luaL_error(L, "%s: gradient %s has %I values but the parameter has %I", fname, names[i],
                   (lua_Integer)chai_tensor_numel(g), (lua_Integer)ps[i].n);
      ps[i].grad = chai_tensor_data(g);
    }
    lua_pop(L, 1);
    ps[i].no_decay = chai_param_default_no_decay(names[i]);
    if (ndidx && lua_istable(L, ndidx)) {
      lua_getfield(L, ndidx, names[i]);
      if (!lua_isnil(L, -1)) ps[i].no_decay = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
  }
  /* a gradient without a parameter is a mistake worth naming */
  lua_pushnil(L);
  while (lua_next(L, gidx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: gradient keys must be parameter names", fname);
    lua_pushvalue(L, -1);
    lua_gettable(L, pidx);
    if (lua_isnil(L, -1))
      luaL_error(L, "%s: gradient %s has no parameter", fname, lua_tostring(L, -2));
    lua_pop(L, 1);
  }
  *count = n;
  return ps;
}

/* opt:step(params, grads, {lr=, grad_scale=1, no_decay={name=bool}}) */
static int l_optim_step(lua_State *L) {
  static const char *const known[] = {"lr", "grad_scale", "no_decay", NULL};
  optim_ud *u = check_optim(L, 1);
  chai_bind_check_options(L, 4, "optimizer:step", known);
  lua_Number lr = chai_bind_opt_number(L, 4, "lr", NAN, "optimizer:step");
  if (isnan(lr)) return luaL_error(L, "optimizer:step: option lr is required");
  lua_Number gs = chai_bind_opt_number(L, 4, "grad_scale", 1.0, "optimizer:step");
  int nd = 0;
  if (!lua_isnoneornil(L, 4)) {
    lua_getfield(L, 4, "no_decay");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TTABLE);
      nd = lua_gettop(L);
    }
  }
  int n;
  chai_param *ps = build_params(L, 2, 3, nd, &n, "optimizer:step");
  if (chai_optim_step(u->o, ps, n, lr, (float)gs) != CHAI_OK) return chai_bind_fail(L);
  return 0;
}

/* opt:state() → {name = tensor copy} */
static int l_optim_state(lua_State *L) {
  optim_ud *u = check_optim(L, 1);
  int n = chai_optim_state_count(u->o);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const char *name;
    chai_tensor live;
    if (chai_optim_state_get(u->o, i, &name, &live) != CHAI_OK) return chai_bind_fail(L);
    chai_tensor *c = chai_bind_push_tensor(L);
    chai_status st = chai_tensor_clone(c, &live);
    chai_tensor_release(&live);
    if (st != CHAI_OK) return chai_bind_fail(L);
    lua_setfield(L, -2, name);
  }
  return 1;
}

/* opt:load_state({name = tensor}): forgets the current state first. */
static int l_optim_load_state(lua_State *L) {
  optim_ud *u = check_optim(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n;
  const char **names = sorted_keys(L, 2, &n, "optimizer:load_state");
  for (int i = 0; i < n; i++) {
    lua_getfield(L, 2, names[i]);
    chai_tensor *t = chai_bind_test_tensor(L, -1);
    if (!t || !t->storage)
      return luaL_error(L, "optimizer:load_state: %s is not a live chai.Tensor", names[i]);
    lua_pop(L, 1);
  }
  chai_optim_reset(u->o);
  for (int i = 0; i < n; i++) {
    lua_getfield(L, 2, names[i]);
    chai_tensor *t = chai_bind_test_tensor(L, -1);
    if (chai_optim_state_set(u->o, names[i], t) != CHAI_OK) {
      chai_optim_reset(u->o);
      return chai_bind_fail(L);
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int l_optim_reset(lua_State *L) {
  chai_optim_reset(check_optim(L, 1)->o);
  return 0;
}

/* opt:config() → {kind=, weight_decay=, ...} */
static int l_optim_config(lua_State *L) {
  const chai_optim_config *c = chai_optim_get_config(check_optim(L, 1)->o);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, chai_optim_kind_name(c->kind));
  lua_setfield(L, -2, "kind");
  lua_pushnumber(L, c->weight_decay);
  lua_setfield(L, -2, "weight_decay");
  if (c->kind == CHAI_OPTIM_ADAMW) {
    lua_createtable(L, 2, 0);
    lua_pushnumber(L, c->beta1);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, c->beta2);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "betas");
    lua_pushnumber(L, c->eps);
    lua_setfield(L, -2, "eps");
  } else {
    lua_pushnumber(L, c->momentum);
    lua_setfield(L, -2, "momentum");
    lua_pushnumber(L, c->dampening);
    lua_setfield(L, -2, "dampening");
    lua_pushboolean(L, c->nesterov);
    lua_setfield(L, -2, "nesterov");
  }
  return 1;
}

static int l_optim_tostring(lua_State *L) {
  optim_ud *u = luaL_checkudata(L, 1, OPTIM_MT);
  if (!u->o)
    lua_pushstring(L, "chai.Optimizer (freed)");
  else
    lua_pushfstring(L, "chai.Optimizer %s (%d state tensors)",
                    chai_optim_kind_name(chai_optim_get_config(u->o)->kind),
                    chai_optim_state_count(u->o));
  return 1;
}

/* ---- clipping and schedules ----------------------------------------------------------------- */

/* core.grad_norm(grads) → global L2 norm, finite (names sorted, so the sum order is fixed). */
static int l_grad_norm(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n;
  const char **names = sorted_keys(L, 1, &n, "grad_norm");
  chai_param *ps = lua_newuserdatauv(L, sizeof(chai_param) * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_getfield(L, 1, names[i]);
    chai_tensor *g = chai_bind_test_tensor(L, -1);
    if (!g || !g->storage)
      return luaL_error(L, "grad_norm: %s is not a live chai.Tensor", names[i]);
    if (chai_tensor_check(g, names[i], CHAI_F32, true) != CHAI_OK) return chai_bind_fail(L);
    lua_pop(L, 1);
    ps[i] = (chai_param){names[i], NULL, chai_tensor_data(g), (size_t)chai_tensor_numel(g), false};
  }
  double norm;
  bool finite;
  chai_grad_global_norm(&norm, &finite, ps, n);
  lua_pushnumber(L, norm);
  lua_pushboolean(L, finite);
  return 2;
}

static int l_clip_factor(lua_State *L) {
  lua_pushnumber(L, chai_clip_factor(luaL_checknumber(L, 1), (float)luaL_checknumber(L, 2)));
  return 1;
}

static int l_schedule_factor(lua_State *L) {
  static const char *const known[] = {"kind", "warmup", "total", "min_ratio", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  chai_bind_check_options(L, 1, "schedule", known);
  lua_Integer step = luaL_checkinteger(L, 2);
  chai_schedule s = {0};
  lua_getfield(L, 1, "kind");
  const char *kind = lua_isnil(L, -1) ? "constant" : lua_tostring(L, -1);
  if (!kind) return luaL_error(L, "schedule: kind must be a string");
  if (chai_schedule_kind_parse(kind, &s.kind) != CHAI_OK) return chai_bind_fail(L);
  lua_pop(L, 1);
  s.warmup_steps = (long)chai_bind_opt_integer(L, 1, "warmup", 0, "schedule");
  s.total_steps = (long)chai_bind_opt_integer(L, 1, "total", 0, "schedule");
  s.min_ratio = (float)chai_bind_opt_number(L, 1, "min_ratio", 0, "schedule");
  if (chai_schedule_check(&s) != CHAI_OK) return chai_bind_fail(L);
  if (step < 0) return luaL_error(L, "schedule: step %I is negative", step);
  lua_pushnumber(L, chai_schedule_factor(&s, (long)step));
  return 1;
}

/* core.ema_update(ema, params, decay): for every name of params, ema[name] ← decay·ema[name] +
 * (1−decay)·params[name] (same sizes, f32, contiguous). */
static int l_ema_update(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Number decay = luaL_checknumber(L, 3);
  if (!(decay >= 0 && decay <= 1)) return luaL_error(L, "ema_update: decay %f outside 0..1", decay);
  int n;
  const char **names = sorted_keys(L, 2, &n, "ema_update");
  for (int i = 0; i < n; i++) {
    lua_getfield(L, 2, names[i]);
    chai_tensor *p = chai_bind_test_tensor(L, -1);
    lua_getfield(L, 1, names[i]);
    chai_tensor *e = chai_bind_test_tensor(L, -1);
    if (!p || !p->storage || !e || !e->storage)
      return luaL_error(L, "ema_update: %s is missing or not a live chai.Tensor", names[i]);
    if (chai_tensor_check(p, names[i], CHAI_F32, true) ||
        chai_tensor_check(e, names[i], CHAI_F32, true))
      return chai_bind_fail(L);
    if (chai_tensor_numel(p) != chai_tensor_numel(e))
      return luaL_error(L, "ema_update: %s has %I values, its average %I", names[i],
                        (lua_Integer)chai_tensor_numel(p), (lua_Integer)chai_tensor_numel(e));
    chai_ema_update(chai_tensor_data(e), chai_tensor_data(p), (size_t)chai_tensor_numel(p),
                    (float)decay);
    lua_pop(L, 2);
  }
  return 0;
}

/* ---- files and state for checkpoints -------------------------------------------------------- */

/* core.save_safetensors(path, {name = tensor}): names sorted, written atomically. */
static int l_save_safetensors(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n;
  const char **names = sorted_keys(L, 2, &n, "save_safetensors");
  chai_tensor *ts = lua_newuserdatauv(L, sizeof(chai_tensor) * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_getfield(L, 2, names[i]);
    chai_tensor *t = chai_bind_test_tensor(L, -1);
    if (!t || !t->storage)
      return luaL_error(L, "save_safetensors: %s is not a live chai.Tensor", names[i]);
    ts[i] = *t; /* borrowed: the table keeps the tensor alive */
    lua_pop(L, 1);
  }
  if (chai_safetensors_save(path, n, names, ts, NULL)) return chai_bind_fail(L);
  return 0;
}

/* core.load_safetensors(path) → {name = tensor} (copies, so the file may be replaced later). */
static int l_load_safetensors(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  chai_checkpoint *ck;
  if (chai_checkpoint_open(&ck, path)) return chai_bind_fail(L);
  int n = chai_checkpoint_count(ck);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const char *name = chai_checkpoint_name(ck, i);
    chai_tensor view;
    if (chai_checkpoint_get(ck, name, &view)) {
      chai_checkpoint_close(ck);
      return chai_bind_fail(L);
    }
    chai_tensor *t = chai_bind_push_tensor(L);
    chai_status st = chai_tensor_clone(t, &view);
    chai_tensor_release(&view);
    if (st) {
      chai_checkpoint_close(ck);
      return chai_bind_fail(L);
    }
    lua_setfield(L, -2, name);
  }
  chai_checkpoint_close(ck);
  return 1;
}

/* core.rng_state() → seed, counter of chai's global generator (as 64-bit integers). */
static int l_rng_state(lua_State *L) {
  chai_rng *r = chai_rng_global();
  lua_pushinteger(L, (lua_Integer)r->seed);
  lua_pushinteger(L, (lua_Integer)r->counter);
  return 2;
}

static int l_rng_set_state(lua_State *L) {
  chai_rng *r = chai_rng_global();
  r->seed = (uint64_t)luaL_checkinteger(L, 1);
  r->counter = (uint64_t)luaL_checkinteger(L, 2);
  return 0;
}

/* core.stderr_isatty() → whether stderr is a terminal (for progress bars). */
static int l_stderr_isatty(lua_State *L) {
  lua_pushboolean(L, isatty(STDERR_FILENO));
  return 1;
}

void chai_bind_open_train(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"loss_kd", l_loss_kd},
                                 {"optimizer", l_optimizer},
                                 {"grad_norm", l_grad_norm},
                                 {"clip_factor", l_clip_factor},
                                 {"schedule_factor", l_schedule_factor},
                                 {"save_safetensors", l_save_safetensors},
                                 {"load_safetensors", l_load_safetensors},
                                 {"rng_state", l_rng_state},
                                 {"rng_set_state", l_rng_set_state},
                                 {"stderr_isatty", l_stderr_isatty},
                                 {"ema_update", l_ema_update},
                                 {NULL, NULL}};
  chai_bind_register(L, table, fns);
  static const luaL_Reg methods[] = {{"step", l_optim_step},
                                     {"state", l_optim_state},
                                     {"load_state", l_optim_load_state},
                                     {"reset", l_optim_reset},
                                     {"config", l_optim_config},
                                     {"free", optim_gc},
                                     {NULL, NULL}};
  luaL_newmetatable(L, OPTIM_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, optim_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, optim_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_optim_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
