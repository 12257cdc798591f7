# Empty dependencies file for chai_lua_module.
# This may be replaced when dependencies are built.
