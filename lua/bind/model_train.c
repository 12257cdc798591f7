/* Training methods of the chai.Model userdata (chai/opt_train.h), added to the method table that
 * lua/bind/model.c creates:
 *   m:forward_backward{input_ids=, attention_mask=, labels=, head="classify"|"lm", teacher=,
 *                      T=2, alpha=0.5, label_smoothing=0, dropout=0, dropout_seed=0}
 *                      → loss, {kl=, ce=, count=}
 *   m:zero_grad()   m:params() / m:grads() → {Hugging Face name = tensor view}
 *   m:freeze{layers={…}, parts={…}}   m:unfreeze{…}   m:trainable() → {names}, count
 *   m:train_memory() → {grads=, activations=}   m:release_training()
 * Layers are 1-based here; token ids and class labels are values (0-based). teacher is another
 * chai.Model (run forward only: no gradient memory) or a tensor of its logits. */
#include <string.h>

#include "bind.h"
#include "chai/mpi.h"
#include "chai/opt_train.h"

#define MODEL_MT "chai.Model"

/* lua/bind/model.c's userdata starts with the model pointer (C guarantees a pointer to a struct
 * points to its first member). */
static chai_opt_model **test_model_slot(lua_State *L, int idx) {
  return luaL_testudata(L, idx, MODEL_MT);
}

static chai_opt_model *check_model(lua_State *L, int idx) {
  chai_opt_model **slot = luaL_checkudata(L, idx, MODEL_MT);
  if (!*slot) luaL_error(L, "model used after free");
  return *slot;
}

/* Integers at idx (a table of tables, a flat table, or an integer tensor) as a contiguous i32
 * tensor left on the stack (replacing idx). */
static chai_tensor *ints(lua_State *L, int idx, const char *fname, const char *what) {
  idx = lua_absindex(L, idx);
  char label[96];
  snprintf(label, sizeof label, "%s: %s", fname, what);
  chai_tensor *t = chai_bind_check_tensor_named(L, idx, CHAI_I32, label);
  if (t->dtype != CHAI_I32 || !chai_tensor_is_contiguous(t)) {
    if (t->dtype != CHAI_I32 && t->dtype != CHAI_I64 && t->dtype != CHAI_I8 && t->dtype != CHAI_U8)
      luaL_error(L, "%s must hold integers, got a %s tensor", label, chai_dtype_name(t->dtype));
    chai_tensor *c = chai_bind_push_tensor(L);
    if (chai_tensor_to(c, t, CHAI_I32)) chai_bind_fail(L);
    lua_replace(L, idx);
    t = c;
  }
  if (chai_tensor_numel(t) == 0) luaL_error(L, "%s is empty", label);
  return t;
}

static void shape_error(lua_State *L, const char *label, const chai_tensor *t, const char *want) {
  char s[64];
  luaL_error(L, "%s must be %s, got shape %s", label, want,
             chai_shape_str(t->ndim, t->shape, s, sizeof s));
}

/* Field `key` of the options table (at 2) pushed; returns whether it is non-nil. */
static bool field(lua_State *L, const char *key) {
  lua_getfield(L, 2, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return false;
  }
  return true;
}

/* The data-parallel exchange of a forward_backward: each finished group's gradients go to the
 * reducer (in model order within the group; the same on every rank). */
typedef struct grad_sync {
  chai_opt_model *m;
  chai_mpi_reducer *r;
} grad_sync;

static void add_group(void *ctx, int group) {
  grad_sync *s = ctx;
  int n = chai_opt_param_count(s->m);
  for (int i = 0; i < n; i++) {
    chai_tensor g;
    if (chai_opt_param_group(s->m, i) != group || chai_opt_param_frozen(s->m, i) ||
        chai_opt_param_grad(s->m, i, &g))
      continue;
    chai_mpi_reducer_add(s->r, chai_tensor_data(&g), (size_t)chai_tensor_numel(&g));
    chai_tensor_release(&g); /* the model keeps the gradient alive */
  }
}

/* m:add_grads(reducer): every group's gradients in backward order (allocating missing ones): a
 * rank with no rows in a step takes part in the exchange with zeros. */
static int m_add_grads(lua_State *L) {
  chai_opt_model *m = check_model(L, 1);
  grad_sync s = {m, chai_bind_check_reducer(L, 2)};
  if (chai_opt_alloc_grads(m)) return chai_bind_fail(L);
  for (int g = chai_opt_grad_groups(m) - 1; g >= 0; g--)
    add_group(&s, g);
  return 0;
}

static int m_forward_backward(lua_State *L) {
  static const char *const known[] = {"input_ids", "attention_mask",
                                      "labels",    "head",
                                      "teacher",   "T",
                                      "alpha",     "label_smoothing",
                                      "dropout",   "dropout_seed",
                                      "first_row", "loss_count",
                                      "sync",      NULL};
  const char *fname = "model:forward_backward";
  chai_opt_model *m = check_model(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  chai_bind_check_options(L, 2, fname, known);
  lua_settop(L, 2);
  const chai_opt_config *cfg = chai_opt_get_config(m);
  chai_opt_batch b;
  memset(&b, 0, sizeof b);
  b.kd_T = (float)chai_bind_opt_number(L, 2, "T", 2.0, fname);
  b.kd_alpha = (float)chai_bind_opt_number(L, 2, "alpha", 0.5, fname);
  b.label_smoothing = (float)chai_bind_opt_number(L, 2, "label_smoothing", 0.0, fname);
  b.dropout = (float)chai_bind_opt_number(L, 2, "dropout", 0.0, fname);
  b.dropout_seed = (uint64_t)chai_bind_opt_integer(L, 2, "dropout_seed", 0, fname);
  lua_Integer first_row = chai_bind_opt_integer(L, 2, "first_row", 1, fname);
  lua_Integer loss_count = chai_bind_opt_integer(L, 2, "loss_count", 0, fname);
  if (first_row < 1 || first_row > (1 << 24))
    return luaL_error(L, "%s: first_row %I is not a row number >= 1", fname, first_row);
  if (loss_count < 0 || loss_count > INT32_MAX)
    return luaL_error(L, "%s: loss_count %I must be >= 0 (0: this batch's own count)", fname,
                      loss_count);
  b.first_row = (int)first_row - 1;
  b.loss_count = (int)loss_count;
  grad_sync sync = {m, NULL};
  if (field(L, "sync")) {
    sync.r = chai_bind_check_reducer(L, lua_gettop(L));
    lua_pop(L, 1);
    b.grads_ready = add_group;
    b.grads_ctx = &sync;
  }
  const char *head = "lm";
  if (field(L, "head")) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "%s: head must be \"lm\" or \"classify\"", fname);
    head = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  if (strcmp(head, "lm") == 0)
    b.head = CHAI_OPT_HEAD_LM;
  else if (strcmp(head, "classify") == 0)
    b.head = CHAI_OPT_HEAD_CLASSIFY;
  else
    return luaL_error(L, "%s: unknown head '%s' (known: lm, classify)", fname, head);

  if (!field(L, "input_ids")) return luaL_error(L, "%s: input_ids missing", fname);
  chai_tensor *ids = ints(L, -1, fname, "input_ids");
  if (ids->ndim == 1) { /* one row */
    b.B = 1;
    b.T = (int)ids->shape[0];
  } else if (ids->ndim == 2) {
    b.B = (int)ids->shape[0];
    b.T = (int)ids->shape[1];
  } else {
    shape_error(L, "model:forward_backward: input_ids", ids, "(B,T) or (T)");
  }
  b.ids = chai_tensor_data(ids);
  int V = cfg->vocab_size;
  for (int i = 0; i < b.B * b.T; i++)
    if (b.ids[i] < 0 || b.ids[i] >= V)
      return luaL_error(L, "%s: input_ids[%d][%d] = %d is outside the vocabulary 0..%d", fname,
                        i / b.T + 1, i % b.T + 1, (int)b.ids[i], V - 1);
  if (field(L, "attention_mask")) {
    chai_tensor *mt = ints(L, -1, fname, "attention_mask");
    if (chai_tensor_numel(mt) != (int64_t)b.B * b.T)
      shape_error(L, "model:forward_backward: attention_mask", mt, "the shape of input_ids");
    b.mask = chai_tensor_data(mt);
    for (int i = 0; i < b.B * b.T; i++)
      if (b.mask[i] != 0 && b.mask[i] != 1)
        return luaL_error(L, "%s: attention_mask[%d][%d] = %d; it must be 0 or 1", fname,
                          i / b.T + 1, i % b.T + 1, (int)b.mask[i]);
  }
  int64_t want_labels = b.head == CHAI_OPT_HEAD_LM ? (int64_t)b.B * b.T : b.B;
  if (field(L, "labels")) {
    chai_tensor *lt = ints(L, -1, fname, "labels");
    if (chai_tensor_numel(lt) != want_labels)
      shape_error(L, "model:forward_backward: labels", lt,
                  b.head == CHAI_OPT_HEAD_LM ? "the shape of input_ids" : "(B): one class per row");
    b.labels = chai_tensor_data(lt);
    /* 1-based rows in the message, as Lua counts */
    int NL = cfg->num_labels;
    for (int64_t i = 0; b.head == CHAI_OPT_HEAD_CLASSIFY && i < want_labels; i++)
      if (b.labels[i] != -100 && (b.labels[i] < 0 || b.labels[i] >= NL))
        return luaL_error(L, "%s: label %d in row %d is outside 0..%d (num_labels %d)", fname,
                          (int)b.labels[i], (int)i + 1, NL - 1, NL);
  } else if (b.head == CHAI_OPT_HEAD_CLASSIFY) {
    return luaL_error(L, "%s: head \"classify\" needs labels (one class id per row)", fname);
  }
  if (field(L, "teacher")) {
    int ti = lua_gettop(L);
    chai_opt_model **tslot = test_model_slot(L, ti);
    chai_tensor *tl;
    if (tslot) {
      if (!*tslot) return luaL_error(L, "%s: the teacher model was freed", fname);
      chai_opt_model *tm = *tslot;
      if (tm == m) return luaL_error(L, "%s: the teacher is the student itself", fname);
      tl = chai_bind_push_tensor(L);
      chai_status st = b.head == CHAI_OPT_HEAD_LM
                           ? chai_opt_forward(tm, tl, b.ids, b.mask, b.B, b.T, false)
                           : chai_opt_classify(tm, tl, b.ids, b.mask, b.B, b.T);
      if (st) return luaL_error(L, "%s: teacher: %s", fname, chai_last_error());
    } else {
      tl = chai_bind_check_tensor_named(L, ti, CHAI_F32, "model:forward_backward: teacher");
      if (tl->dtype != CHAI_F32 || !chai_tensor_is_contiguous(tl)) {
        chai_tensor *c = chai_bind_push_tensor(L);
        if (chai_tensor_to(c, tl, CHAI_F32)) return chai_bind_fail(L);
        tl = c;
      }
    }
    int64_t classes = b.head == CHAI_OPT_HEAD_LM ? V : cfg->num_labels;
    if (chai_tensor_numel(tl) != want_labels * classes) {
      char s[64];
      return luaL_error(L,
                        "%s: teacher logits have shape %s; the student's are %d x %d x %d (lm) or "
                        "%d x %d (classify): same vocabulary / num_labels needed",
                        fname, chai_shape_str(tl->ndim, tl->shape, s, sizeof s), b.B, b.T, V, b.B,
                        cfg->num_labels);
    }
    b.teacher = chai_tensor_data(tl);
  }
  chai_kd_result r;
  if (chai_opt_forward_backward(m, &b, &r)) return chai_bind_fail(L);
  lua_pushnumber(L, r.loss);
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, r.kl);
  lua_setfield(L, -2, "kl");
  lua_pushnumber(L, r.ce);
  lua_setfield(L, -2, "ce");
  lua_pushinteger(L, r.count);
  lua_setfield(L, -2, "count");
  return 2;
}

static int m_zero_grad(lua_State *L) {
  chai_opt_zero_grad(check_model(L, 1));
  return 0;
}

/* {name = view} of the parameters (grads: only those with gradient memory); a quantized matrix
 * gives a new f32 tensor of its dequantized values instead of a view. */
static int name_table(lua_State *L, bool grads) {
  chai_opt_model *m = check_model(L, 1);
  int n = chai_opt_param_count(m);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    chai_tensor t;
    const char *name = chai_opt_param(m, i, &t);
    chai_tensor *v = chai_bind_push_tensor(L);
    if (grads) {
      if (chai_opt_param_grad(m, i, v) != CHAI_OK) {
        lua_pop(L, 1);
        continue;
      }
    } else if (chai_tensor_alive(&t)) {
      chai_tensor_ref(v, &t);
    } else { /* a packed matrix: its dequantized values, a copy */
      const chai_qmat *q = chai_opt_param_qmat(m, i);
      int64_t shape[2] = {q->rows, q->cols};
      if (chai_tensor_new(v, CHAI_F32, 2, shape)) return chai_bind_fail(L);
      chai_qmat_dequant_rows(q, chai_tensor_data(v), 0, q->rows);
    }
    lua_setfield(L, -2, name);
  }
  return 1;
}

static int m_params(lua_State *L) {
  return name_table(L, false);
}
static int m_grads(lua_State *L) {
  return name_table(L, true);
}

/* The parameters named in the list at the top of the stack (Hugging Face names), frozen or not;
 * raises naming an unknown name before changing anything. */
static int freeze_names(lua_State *L, chai_opt_model *m, bool frozen, const char *fname) {
  int list = lua_gettop(L), n = chai_opt_param_count(m);
  if (!lua_istable(L, list))
    return luaL_error(L, "%s: names must be a list of parameter names", fname);
  lua_Integer count = luaL_len(L, list);
  bool *pick = lua_newuserdatauv(L, sizeof(bool) * (size_t)(n ? n : 1), 0);
  memset(pick, 0, sizeof(bool) * (size_t)(n ? n : 1));
  for (lua_Integer k = 1; k <= count; k++) {
    lua_rawgeti(L, list, k);
    const char *want = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "%s: names[%d] is not a string", fname, (int)k);
    int found = -1;
    for (int i = 0; i < n && found < 0; i++) {
      chai_tensor t;
      if (strcmp(chai_opt_param(m, i, &t), want) == 0) found = i;
    }
    if (found < 0) return luaL_error(L, "%s: the model has no parameter named '%s'", fname, want);
    pick[found] = true;
    lua_pop(L, 1);
  }
  for (int i = 0; i < n; i++)
    if (pick[i] && chai_opt_freeze_param(m, i, frozen)) return chai_bind_fail(L);
  return 0;
}

/* freeze / unfreeze {layers = {1-based …}, parts = {"attention", …}} (both optional), or
 * {names = {Hugging Face names …}} alone. */
static int freeze(lua_State *L, bool frozen) {
  static const char *const known[] = {"layers", "parts", "names", NULL};
  const char *fname = frozen ? "model:freeze" : "model:unfreeze";
  chai_opt_model *m = check_model(L, 1);
  chai_bind_check_options(L, 2, fname, known);
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "names");
    if (!lua_isnil(L, -1)) {
      lua_getfield(L, 2, "layers");
      lua_getfield(L, 2, "parts");
      bool other = !lua_isnil(L, -1) || !lua_isnil(L, -2);
      lua_pop(L, 2);
      if (other) return luaL_error(L, "%s: names cannot be combined with layers or parts", fname);
      return freeze_names(L, m, frozen, fname);
    }
    lua_pop(L, 1);
  }
  int L_ = chai_opt_get_config(m)->num_hidden_layers;
  unsigned parts = CHAI_OPT_PART_ALL;
  int n_layers = -1;
  int *layers = NULL;
  if (!lua_isnoneornil(L, 2)) {
    lua_getfield(L, 2, "parts");
    if (!lua_isnil(L, -1)) {
      if (!lua_istable(L, -1)) return luaL_error(L, "%s: parts must be a table of names", fname);
      parts = 0;
      lua_Integer n = luaL_len(L, -1);
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        unsigned bit;
        if (lua_type(L, -1) != LUA_TSTRING)
          return luaL_error(L, "%s: parts[%d] is not a name", fname, (int)i);
        if (chai_opt_part_parse(lua_tostring(L, -1), &bit))
          return luaL_error(L, "%s: %s", fname, chai_last_error());
        parts |= bit;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "layers");
    if (!lua_isnil(L, -1)) {
      if (!lua_istable(L, -1)) return luaL_error(L, "%s: layers must be a table of numbers", fname);
      lua_Integer n = luaL_len(L, -1);
      layers = lua_newuserdatauv(L, sizeof(int) * (size_t)(n ? n : 1), 0);
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        int isint;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 1 || v > L_)
          return luaL_error(L, "%s: layers[%d] = %s is not a layer 1..%d", fname, (int)i,
                            luaL_tolstring(L, -1, NULL), L_);
        layers[i - 1] = (int)v - 1;
        lua_pop(L, 1);
      }
      n_layers = (int)n;
    }
  }
  if (chai_opt_freeze(m, layers, n_layers, parts, frozen)) return chai_bind_fail(L);
  return 0;
}

static int m_freeze(lua_State *L) {
  return freeze(L, true);
}
static int m_unfreeze(lua_State *L) {
  return freeze(L, false);
}

/* → {names of trainable parameters} (in model order), count of trainable values */
static int m_trainable(lua_State *L) {
  chai_opt_model *m = check_model(L, 1);
  int n = chai_opt_param_count(m), k = 0;
  lua_Integer values = 0;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    chai_tensor t;
    const char *name = chai_opt_param(m, i, &t);
    if (chai_opt_param_frozen(m, i)) continue;
    lua_pushstring(L, name);
    lua_rawseti(L, -2, ++k);
    values += chai_tensor_numel(&t);
  }
  lua_pushinteger(L, values);
  return 2;
}

static int m_train_memory(lua_State *L) {
  size_t g, a;
  chai_opt_train_memory(check_model(L, 1), &g, &a);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)g);
  lua_setfield(L, -2, "grads");
  lua_pushinteger(L, (lua_Integer)a);
  lua_setfield(L, -2, "activations");
  return 1;
}

static int m_release_training(lua_State *L) {
  chai_opt_train_release(check_model(L, 1));
  return 0;
}

void chai_bind_open_model_train(lua_State *L, int table) {
  (void)table;
  static const luaL_Reg methods[] = {{"forward_backward", m_forward_backward},
                                     {"zero_grad", m_zero_grad},
                                     {"params", m_params},
                                     {"grads", m_grads},
                                     {"freeze", m_freeze},
                                     {"unfreeze", m_unfreeze},
                                     {"trainable", m_trainable},
                                     {"train_memory", m_train_memory},
                                     {"release_training", m_release_training},
                                     {"add_grads", m_add_grads},
                                     {NULL, NULL}};
  chai_bind_add_model_methods(L, methods);
}
