file(REMOVE_RECURSE
  "CMakeFiles/chai_bind.dir/bind/bench.c.o"
  "CMakeFiles/chai_bind.dir/bind/bench.c.o.d"
  "CMakeFiles/chai_bind.dir/bind/core.c.o"
  "CMakeFiles/chai_bind.dir/bind/core.c.o.d"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/chai_bind.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
