file(REMOVE_RECURSE
  "chai/core.pdb"
  "chai/core.so"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/chai_lua_module.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
