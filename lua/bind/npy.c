/* chai.load_npy(path) and t:save_npy(path): NumPy .npy files (see chai/npy.h). */
#include "chai/npy.h"
#include "bind.h"

static int l_load_npy(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  chai_tensor *t = chai_bind_push_tensor(L);
  if (chai_npy_load(t, path) != CHAI_OK) return chai_bind_fail(L);
  chai_bind_gc_nudge(L, chai_tensor_nbytes(t));
  return 1;
}

/* t:save_npy(path): returns t. */
static int m_save_npy(lua_State *L) {
  chai_tensor *t = chai_bind_check_tensor(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (chai_npy_save(path, t) != CHAI_OK) return chai_bind_fail(L);
  lua_settop(L, 1);
  return 1;
}

void chai_bind_open_npy(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"load_npy", l_load_npy}, {"save_npy", m_save_npy}, {NULL, NULL}};
  static const luaL_Reg methods[] = {{"save_npy", m_save_npy}, {NULL, NULL}};
  chai_bind_register(L, table, fns);
  chai_bind_add_methods(L, methods);
}
