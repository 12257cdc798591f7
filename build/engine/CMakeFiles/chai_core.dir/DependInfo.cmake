
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/engine/src/blas.c" "engine/CMakeFiles/chai_core.dir/src/blas.c.o" "gcc" "engine/CMakeFiles/chai_core.dir/src/blas.c.o.d"
  "/work/main/engine/src/cpu.c" "engine/CMakeFiles/chai_core.dir/src/cpu.c.o" "gcc" "engine/CMakeFiles/chai_core.dir/src/cpu.c.o.d"
  "/work/main/engine/src/error.c" "engine/CMakeFiles/chai_core.dir/src/error.c.o" "gcc" "engine/CMakeFiles/chai_core.dir/src/error.c.o.d"
  "/work/main/engine/src/half.c" "engine/CMakeFiles/chai_core.dir/src/half.c.o" "gcc" "engine/CMakeFiles/chai_core.dir/src/half.c.o.d"
  "/work/main/engine/src/memory.c" "engine/CMakeFiles/chai_core.dir/src/memory.c.o" "gcc" "engine/CMakeFiles/chai_core.dir/src/memory.c.o.d"
  "/work/main/engine/src/rng.c" "engine/CMakeFiles/chai_core.dir/src/rng.c.o" "gcc" "engine/CMakeFiles/chai_core.dir/src/rng.c.o.d"
  "/work/main/engine/src/tensor.c" "engine/CMakeFiles/chai_core.dir/src/tensor.c.o" "gcc" "engine/CMakeFiles/chai_core.dir/src/tensor.c.o.d"
  "/work/main/engine/src/version.c" "engine/CMakeFiles/chai_core.dir/src/version.c.o" "gcc" "engine/CMakeFiles/chai_core.dir/src/version.c.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
