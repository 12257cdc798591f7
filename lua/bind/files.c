/* chai.core.files: durable writes for result files (chai/file.h).
 *   files.append(path, text)    the whole text appended and fsynced, or none of it (raises)
 *   files.replace(path, text)   path replaced atomically through path.tmp (raises) */
#include "bind.h"
#include "chai/file.h"

static int files_append(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  if (chai_file_append(path, text, len)) return chai_bind_fail(L);
  return 0;
}

static int files_replace(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  if (chai_file_replace(path, text, len)) return chai_bind_fail(L);
  return 0;
}

void chai_bind_open_files(lua_State *L, int table) {
  static const luaL_Reg fns[] = {
      {"append", files_append}, {"replace", files_replace}, {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setfield(L, table, "files");
}
