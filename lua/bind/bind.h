/* chai — the Lua binding (the only C that includes lua.h). */
#ifndef CHAI_BIND_H
#define CHAI_BIND_H

#include <lauxlib.h>
#include <lua.h>

/* Opens the C module "chai.core": returns its table. */
int luaopen_chai_core(lua_State *L);

/* Each area adds its functions to the module table at stack index `table`. */
void chai_bind_open_bench(lua_State *L, int table);
void chai_bind_open_json(lua_State *L, int table);

#endif
