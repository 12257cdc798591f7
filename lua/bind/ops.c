/* The numeric ops (chai/ops.h) as module functions chai.<op>(...) and as methods t:<op>(...), and
 * the arithmetic metamethods. Dims are 1-based here (negative from the end). Tensor arguments may
 * also be nested Lua tables (converted to f32; ids and targets to i32). */
#include <math.h>

#include "bind.h"
#include "chai/ops.h"

/* Raises on failure; nudges the GC on success. `out` is already owned by a userdata. */
static int finish(lua_State *L, chai_status st, const chai_tensor *out) {
  if (st != CHAI_OK) return chai_bind_fail(L);
  chai_bind_gc_nudge(L, chai_tensor_nbytes(out));
  return 1;
}

/* ---- elementwise ---------------------------------------------------------------------------- */

static int binary(lua_State *L, chai_binop op) {
  bool a_num = lua_type(L, 1) == LUA_TNUMBER, b_num = lua_type(L, 2) == LUA_TNUMBER;
  if (a_num && b_num) return luaL_error(L, "chai: arithmetic needs at least one tensor operand");
  if (a_num || b_num) {
    int ti = a_num ? 2 : 1;
    chai_tensor *t = chai_bind_check_tensor_like(L, ti, CHAI_F32);
    double s = lua_tonumber(L, a_num ? 1 : 2);
    chai_tensor *out = chai_bind_push_tensor(L);
    return finish(L, chai_op_binary_scalar(out, op, t, s, a_num), out);
  }
  chai_tensor *a = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  chai_tensor *b = chai_bind_check_tensor_like(L, 2, CHAI_F32);
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, chai_op_binary(out, op, a, b), out);
}

static int l_add(lua_State *L) {
  return binary(L, CHAI_BINOP_ADD);
}
static int l_sub(lua_State *L) {
  return binary(L, CHAI_BINOP_SUB);
}
static int l_mul(lua_State *L) {
  return binary(L, CHAI_BINOP_MUL);
}
static int l_div(lua_State *L) {
  return binary(L, CHAI_BINOP_DIV);
}

static int l_neg(lua_State *L) {
  chai_tensor *a = chai_bind_check_tensor(L, 1);
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, chai_op_neg(out, a), out);
}

typedef chai_status (*unary_fn)(chai_tensor *out, const chai_tensor *x);

static int unary(lua_State *L, unary_fn fn) {
  chai_tensor *x = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, fn(out, x), out);
}

static int l_relu(lua_State *L) {
  return unary(L, chai_op_relu);
}
static int l_gelu(lua_State *L) {
  return unary(L, chai_op_gelu);
}

/* ---- reductions and normalisation ----------------------------------------------------------- */

/* chai.softmax(t [, dim]) over dim (default -1, the last). */
static int softmax_like(lua_State *L, bool log, const char *fname) {
  chai_tensor *x = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  if (x->ndim == 0) return luaL_error(L, "%s: a 0-d tensor has no dim", fname);
  int d = lua_isnoneornil(L, 2) ? x->ndim - 1 : chai_bind_check_dim(L, 2, x->ndim, fname);
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, log ? chai_op_log_softmax(out, x, d) : chai_op_softmax(out, x, d), out);
}

static int l_softmax(lua_State *L) {
  return softmax_like(L, false, "softmax");
}
static int l_log_softmax(lua_State *L) {
  return softmax_like(L, true, "log_softmax");
}

/* t:sum() → number (all elements); t:sum(dim) → tensor with that dim removed. */
static int l_sum(lua_State *L) {
  chai_tensor *x = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  if (lua_isnoneornil(L, 2)) {
    double s;
    if (chai_op_sum_all(&s, x) != CHAI_OK) return chai_bind_fail(L);
    lua_pushnumber(L, s);
    return 1;
  }
  int d = chai_bind_check_dim(L, 2, x->ndim, "sum");
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, chai_op_sum_dim(out, x, d), out);
}

/* chai.layernorm(x, w, b [, eps=1e-5]) over the last dim; w and b may be nil. */
static int l_layernorm(lua_State *L) {
  chai_tensor *x = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  chai_tensor *w = lua_isnoneornil(L, 2) ? NULL : chai_bind_check_tensor_like(L, 2, CHAI_F32);
  chai_tensor *b = lua_isnoneornil(L, 3) ? NULL : chai_bind_check_tensor_like(L, 3, CHAI_F32);
  lua_Number eps = luaL_optnumber(L, 4, 1e-5);
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, chai_op_layernorm(out, x, w, b, (float)eps), out);
}

/* ---- products ------------------------------------------------------------------------------- */

static int l_matmul(lua_State *L) {
  chai_tensor *a = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  chai_tensor *b = chai_bind_check_tensor_like(L, 2, CHAI_F32);
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, chai_op_matmul(out, a, b), out);
}

/* chai.linear(x, w [, b]): x (...,C) · w (OC,C)ᵀ + b (OC). */
static int l_linear(lua_State *L) {
  chai_tensor *x = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  chai_tensor *w = chai_bind_check_tensor_like(L, 2, CHAI_F32);
  chai_tensor *b = lua_isnoneornil(L, 3) ? NULL : chai_bind_check_tensor_like(L, 3, CHAI_F32);
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, chai_op_linear(out, x, w, b), out);
}

/* ---- lookups and losses --------------------------------------------------------------------- */

/* chai.embedding(ids, table): ids (i32/i64 tensor or table of ids, 0-based values) → rows. */
static int l_embedding(lua_State *L) {
  chai_tensor *ids = chai_bind_check_tensor_like(L, 1, CHAI_I32);
  chai_tensor *table = chai_bind_check_tensor_like(L, 2, CHAI_F32);
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, chai_op_embedding(out, ids, table), out);
}

/* chai.cross_entropy(logits, targets [, {ignore_index=-100}]) → mean loss (a number). */
static int l_cross_entropy(lua_State *L) {
  static const char *const known[] = {"ignore_index", NULL};
  chai_tensor *logits = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  chai_tensor *targets = chai_bind_check_tensor_like(L, 2, CHAI_I32);
  chai_bind_check_options(L, 3, "cross_entropy", known);
  lua_Integer ignore = chai_bind_opt_integer(L, 3, "ignore_index", -100, "cross_entropy");
  if (ignore < INT32_MIN || ignore > INT32_MAX)
    return luaL_error(L, "cross_entropy: ignore_index %I does not fit in i32", ignore);
  double loss;
  if (chai_op_cross_entropy(&loss, logits, targets, (int)ignore) != CHAI_OK)
    return chai_bind_fail(L);
  lua_pushnumber(L, loss);
  return 1;
}

/* chai.attention(q, k, v [, {causal=false, mask=nil, scale=1/sqrt(D)}]): q, k, v (B,T,H,D);
 * mask (B,Tk) with 1 = attend, 0 = padding. */
static int l_attention(lua_State *L) {
  static const char *const known[] = {"causal", "mask", "scale", NULL};
  chai_tensor *q = chai_bind_check_tensor_like(L, 1, CHAI_F32);
  chai_tensor *k = chai_bind_check_tensor_like(L, 2, CHAI_F32);
  chai_tensor *v = chai_bind_check_tensor_like(L, 3, CHAI_F32);
  chai_bind_check_options(L, 4, "attention", known);
  bool causal = chai_bind_opt_boolean(L, 4, "causal", false, "attention");
  lua_Number scale = q->ndim == 4 && q->shape[3] > 0 ? 1.0 / sqrt((double)q->shape[3]) : 1.0;
  scale = chai_bind_opt_number(L, 4, "scale", scale, "attention");
  chai_tensor *mask = NULL;
  if (!lua_isnoneornil(L, 4)) {
    lua_getfield(L, 4, "mask");
    if (!lua_isnil(L, -1)) mask = chai_bind_check_tensor_named(L, -1, CHAI_F32, "attention: mask");
    /* the mask (or its converted copy) stays on the stack, owned by Lua, until we return */
  }
  chai_tensor *out = chai_bind_push_tensor(L);
  return finish(L, chai_op_attention(out, q, k, v, mask, causal, (float)scale), out);
}

void chai_bind_open_ops(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"add", l_add},
                                 {"sub", l_sub},
                                 {"mul", l_mul},
                                 {"div", l_div},
                                 {"neg", l_neg},
                                 {"relu", l_relu},
                                 {"gelu", l_gelu},
                                 {"softmax", l_softmax},
                                 {"log_softmax", l_log_softmax},
                                 {"sum", l_sum},
                                 {"layernorm", l_layernorm},
                                 {"matmul", l_matmul},
                                 {"linear", l_linear},
                                 {"embedding", l_embedding},
                                 {"cross_entropy", l_cross_entropy},
                                 {"attention", l_attention},
                                 {NULL, NULL}};
  static const luaL_Reg methods[] = {{"sum", l_sum},
                                     {"matmul", l_matmul},
                                     {"softmax", l_softmax},
                                     {"log_softmax", l_log_softmax},
                                     {"relu", l_relu},
                                     {"gelu", l_gelu},
                                     {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__add", l_add}, {"__sub", l_sub}, {"__mul", l_mul},
                                  {"__div", l_div}, {"__unm", l_neg}, {NULL, NULL}};
  chai_bind_register(L, table, fns);
  chai_bind_add_methods(L, methods);
  luaL_getmetatable(L, CHAI_TENSOR_MT);
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
}
