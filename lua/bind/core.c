#include "bind.h"

#include "chai/chai.h"

int luaopen_chai_core(lua_State *L) {
  lua_newtable(L);
  int table = lua_gettop(L);
  lua_pushstring(L, chai_version());
  lua_setfield(L, table, "version");
  chai_bind_open_bench(L, table);
  chai_bind_open_json(L, table);
  return 1;
}
