file(REMOVE_RECURSE
  "CMakeFiles/chai_core.dir/src/blas.c.o"
  "CMakeFiles/chai_core.dir/src/blas.c.o.d"
  "CMakeFiles/chai_core.dir/src/cpu.c.o"
  "CMakeFiles/chai_core.dir/src/cpu.c.o.d"
  "CMakeFiles/chai_core.dir/src/error.c.o"
  "CMakeFiles/chai_core.dir/src/error.c.o.d"
  "CMakeFiles/chai_core.dir/src/half.c.o"
  "CMakeFiles/chai_core.dir/src/half.c.o.d"
  "CMakeFiles/chai_core.dir/src/memory.c.o"
  "CMakeFiles/chai_core.dir/src/memory.c.o.d"
  "CMakeFiles/chai_core.dir/src/rng.c.o"
  "CMakeFiles/chai_core.dir/src/rng.c.o.d"
  "CMakeFiles/chai_core.dir/src/tensor.c.o"
  "CMakeFiles/chai_core.dir/src/tensor.c.o.d"
  "CMakeFiles/chai_core.dir/src/version.c.o"
  "CMakeFiles/chai_core.dir/src/version.c.o.d"
  "libchai_core.a"
  "libchai_core.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/chai_core.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
