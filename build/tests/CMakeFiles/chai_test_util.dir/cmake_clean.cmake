file(REMOVE_RECURSE
  "CMakeFiles/chai_test_util.dir/c/util/check.c.o"
  "CMakeFiles/chai_test_util.dir/c/util/check.c.o.d"
  "libchai_test_util.a"
  "libchai_test_util.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/chai_test_util.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
