/* chai.core.testing: hooks for the test suite (not part of the user API). */
#include "bind.h"
#include "chai/chai.h"

/* testing.fail_alloc_after(n): the n-th chai allocation from now (1 = the next) and all after it
 * fail until fail_alloc_after(0). */
static int testing_fail_alloc_after(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0, 1, "must be >= 0");
  chai_alloc_fail_after((long)n);
  return 0;
}

void chai_bind_open_testing(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"fail_alloc_after", testing_fail_alloc_after}, {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setfield(L, table, "testing");
}
