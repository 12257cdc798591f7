/* luaopen_chai_core: the C module "chai.core". Each area registers itself here; lua/chai/init.lua
 * builds the user-facing `chai` table on top. */
#include "bind.h"

int luaopen_chai_core(lua_State *L) {
  lua_newtable(L);
  int t = lua_gettop(L);
  chai_bind_open_tensor(L, t); /* first: creates the chai.Tensor metatable */
  chai_bind_open_ops(L, t);
  chai_bind_open_npy(L, t);
  chai_bind_open_sys(L, t); /* also sets chai.version */
  chai_bind_open_bench(L, t);
  chai_bind_open_json(L, t);
  chai_bind_open_testing(L, t);
  chai_bind_open_model(L, t);
  chai_bind_open_tokenizer(L, t);
  chai_bind_open_hub(L, t);
  chai_bind_open_heads(L, t);
  chai_bind_open_train(L, t);
  chai_bind_open_model_train(L, t);
  chai_bind_open_model_quant(L, t);
  chai_bind_open_mpi(L, t);
  chai_bind_open_serve(L, t);
  chai_bind_open_files(L, t);
  chai_bind_open_signals(L, t);
  return 1;
}
