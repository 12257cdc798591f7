#include "bind.h"

#include "chai/chai.h"

int luaopen_chai_core(lua_State *L) {
  lua_newtable(L);
  lua_pushstring(L, chai_version());
  lua_setfield(L, -2, "version");
  return 1;
}
