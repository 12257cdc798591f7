/* chai — the Lua binding (the only C that includes lua.h).
 *
 * Rules every binding follows: check all arguments first (luaL_check*), then push the result
 * userdata in a released state, then call the core, then raise luaL_error(L, "%s",
 * chai_last_error()) on failure. So no C allocation is ever unowned while something can raise:
 * whatever the core allocated already belongs to a userdata that __gc will release.
 * Positions (dims, indices) are 1-based here and converted to 0-based once, in this folder. */
#ifndef CHAI_BIND_H
#define CHAI_BIND_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>

#include "chai/tensor.h"

/* Opens the C module "chai.core": returns its table. */
int luaopen_chai_core(lua_State *L);

/* Each area registers its functions into the module table at absolute stack index `table`. The
 * tensor area must be opened first: it creates the chai.Tensor metatable that the others add
 * methods to. */
void chai_bind_open_tensor(lua_State *L, int table);
void chai_bind_open_ops(lua_State *L, int table);
void chai_bind_open_npy(lua_State *L, int table);
void chai_bind_open_sys(lua_State *L, int table);
void chai_bind_open_bench(lua_State *L, int table);
/* Adds the quantized-kernel timing helpers to the bench table at `table` (bench_quant.c). */
void chai_bind_bench_quant(lua_State *L, int table);
void chai_bind_open_json(lua_State *L, int table);
void chai_bind_open_testing(lua_State *L, int table);
void chai_bind_open_model(lua_State *L, int table);
void chai_bind_open_tokenizer(lua_State *L, int table);
void chai_bind_open_hub(lua_State *L, int table);
void chai_bind_open_heads(lua_State *L, int table);
void chai_bind_open_train(lua_State *L, int table);
void chai_bind_open_model_train(lua_State *L, int table); /* after chai_bind_open_model */
void chai_bind_open_files(lua_State *L, int table);
void chai_bind_open_signals(lua_State *L, int table);
void chai_bind_open_model_quant(lua_State *L, int table); /* after chai_bind_open_model */
void chai_bind_open_mpi(lua_State *L, int table);

/* The live reducer of the chai.mpi.Reducer userdata at idx (mpi.c); raises for anything else. */
struct chai_mpi_reducer *chai_bind_check_reducer(lua_State *L, int idx);
void chai_bind_open_serve(lua_State *L, int table);

/* The live OPT model of the chai.Model userdata at idx (model.c); raises for anything else. */
struct chai_opt_model *chai_bind_check_model(lua_State *L, int idx);
/* Pushes a new, empty chai.Model userdata and returns where to store the model it will own. */
struct chai_opt_model **chai_bind_push_model(lua_State *L);
/* Adds methods to chai.Model (after chai_bind_open_model). */
void chai_bind_add_model_methods(lua_State *L, const luaL_Reg *methods);
/* Parses a quantization spec table at idx for a model of n_layers layers (tied: its LM head is
 * the embeddings) into *q (layers: room for n_layers rows, which q->layers points at); raises
 * naming a bad key or value (model_quant.c). */
struct chai_opt_quant;
void chai_bind_check_quant_spec(lua_State *L, int idx, int n_layers, bool tied,
                                struct chai_opt_quant *q, int (*layers)[6], const char *fname);
/* Pushes {format = bytes} of the model's weights (formats holding none are left out). */
void chai_bind_push_weight_bytes(lua_State *L, struct chai_opt_model *m);

/* ---- chai.Tensor userdata (tensor.c) --------------------------------------------------------- */

#define CHAI_TENSOR_MT "chai.Tensor"

/* Pushes a new chai.Tensor userdata holding a released tensor and returns that tensor, for the
 * caller to fill through a core call. Raises only on Lua memory exhaustion. */
chai_tensor *chai_bind_push_tensor(lua_State *L);
/* The live tensor at `idx`; raises a type error for a non-tensor and "tensor used after free" for
 * a freed one. */
chai_tensor *chai_bind_check_tensor(lua_State *L, int idx);
/* The chai.Tensor at idx (alive or not), or NULL when the value is something else. */
chai_tensor *chai_bind_test_tensor(lua_State *L, int idx);
/* Like chai_bind_check_tensor, but a nested Lua table or a number there is first converted to a
 * new tensor of dtype `dt` (as chai.tensor does) that replaces it on the stack, so Lua owns it. */
chai_tensor *chai_bind_check_tensor_like(lua_State *L, int idx, chai_dtype dt);
/* The same, with errors naming `what` (e.g. "attention: mask") instead of the argument number. */
chai_tensor *chai_bind_check_tensor_named(lua_State *L, int idx, chai_dtype dt, const char *what);
/* Adds functions to the chai.Tensor method table (what t:name(...) finds). */
void chai_bind_add_methods(lua_State *L, const luaL_Reg *methods);

/* ---- shared argument helpers (util.c) -------------------------------------------------------- */

/* Sets each function as a field of the table at absolute index `table`. */
void chai_bind_register(lua_State *L, int table, const luaL_Reg *fns);
/* Raises the core's last error as a Lua error. */
int chai_bind_fail(lua_State *L);
/* Tells the Lua GC that `bytes` of C memory now hang off a small userdata, so that loops creating
 * large tensors collect the dead ones in time. */
void chai_bind_gc_nudge(lua_State *L, size_t bytes);
/* A dtype name at idx, or `def` when idx is none/nil; raises naming a bad name. */
chai_dtype chai_bind_opt_dtype(lua_State *L, int idx, chai_dtype def);
/* A 1-based dim (negative counts from the end: -1 is the last) → 0-based; raises naming the value.
 */
int chai_bind_check_dim(lua_State *L, int idx, int ndim, const char *fname);
/* A 1-based position within a dim of size n (negative counts from the end) → 0-based. */
int64_t chai_bind_check_pos(lua_State *L, int idx, int64_t n, int dim0, const char *fname);
/* A shape: a table {2,3} at idx, or (when `varargs`) the integers from idx to the top of the
 * stack. Entries may be -1 only when `allow_infer`. Returns ndim. */
int chai_bind_check_shape(lua_State *L, int idx, int64_t *shape, bool varargs, bool allow_infer,
                          const char *fname);
/* An options table at idx (none/nil is fine): raises for a non-table and for any key not in
 * `known` (NULL-terminated), naming it. */
void chai_bind_check_options(lua_State *L, int idx, const char *fname, const char *const *known);
/* Option `key` of the table at idx as a number/integer/boolean, `def` when absent; raises naming
 * the key for a wrong type. idx may be none/nil. */
lua_Number chai_bind_opt_number(lua_State *L, int idx, const char *key, lua_Number def,
                                const char *fname);
lua_Integer chai_bind_opt_integer(lua_State *L, int idx, const char *key, lua_Integer def,
                                  const char *fname);
bool chai_bind_opt_boolean(lua_State *L, int idx, const char *key, bool def, const char *fname);

/* Element access at a byte address of a tensor of dtype dt. push reads exactly (integers as Lua
 * integers). store converts the Lua value at `vidx` without raising: 0 ok, 1 not a number, 2 does
 * not fit the (integer) dtype; element_error raises the matching message, naming the value and
 * `where`; store_checked does both. */
void chai_bind_push_element(lua_State *L, const void *p, chai_dtype dt);
int chai_bind_store_element(lua_State *L, int vidx, void *p, chai_dtype dt);
int chai_bind_element_error(lua_State *L, int vidx, chai_dtype dt, int code, const char *where);
void chai_bind_store_checked(lua_State *L, int vidx, void *p, chai_dtype dt, const char *where);
/* "chai.Tensor (2,3) f32\n[[1, 2, 3], [4, 5, 6]]" (format.c). */
void chai_bind_push_tostring(lua_State *L, const chai_tensor *t);
/* Byte offset of row-major element `flat` of a view. */
int64_t chai_bind_flat_offset(const chai_tensor *t, int64_t flat);

#endif
