/* chai.core.heads helpers shared with other binding files (the model's set_heads). */
#ifndef CHAI_HEADS_BIND_H
#define CHAI_HEADS_BIND_H

#include "bind.h"
#include "chai/heads.h"

/* Pushes a userdata that owns an empty chai_heads_plan (freed by its __gc) and returns the plan. */
chai_heads_plan *chai_bind_push_plan_box(lua_State *L);
/* Fills `plan` (which must live in a plan box, so an error cannot leak it) from the 1-based Lua
 * plan at idx, converting to 0-based; raises naming the bad field. Does not validate. */
void chai_bind_check_plan(lua_State *L, int idx, chai_heads_plan *plan, const char *fname);
/* Pushes the 1-based Lua table for a plan ({layers={{layer=, k=, clusters=}, ...}}). */
void chai_bind_push_plan(lua_State *L, const chai_heads_plan *plan);

#endif
