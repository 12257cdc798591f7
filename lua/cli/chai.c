#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>

#include "bind.h"

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "chai.core", luaopen_chai_core, 0);
  lua_close(L);
  return 0;
}
