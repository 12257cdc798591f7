/* chai.core.testing: hooks for the test suite (not part of the user API). */
#include <time.h>

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

/* testing.spin_until_interrupted([seconds]) → true when chai_interrupt() stopped it, false after
 * `seconds` (default 30): a stand-in for a long C loop (it polls every millisecond), for the Ctrl-C
 * tests. */
static int testing_spin_until_interrupted(lua_State *L) {
  double limit = luaL_optnumber(L, 1, 30);
  struct timespec start, now, tick = {0, 1000000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    if (chai_interrupted()) {
      lua_pushboolean(L, 1);
      return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) * 1e-9 >
        limit) {
      lua_pushboolean(L, 0);
      return 1;
    }
    nanosleep(&tick, NULL);
  }
}

/* testing.fail_writes_after(bytes): chai_file_append/replace let `bytes` more bytes through, then
 * fail with ENOSPC as a full disk does; a negative value turns it off. */
static int testing_fail_writes_after(lua_State *L) {
  chai_file_fail_after((long)luaL_checkinteger(L, 1));
  return 0;
}

void chai_bind_open_testing(lua_State *L, int table) {
  static const luaL_Reg fns[] = {{"fail_alloc_after", testing_fail_alloc_after},
                                 {"spin_until_interrupted", testing_spin_until_interrupted},
                                 {"fail_writes_after", testing_fail_writes_after},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setfield(L, table, "testing");
}
