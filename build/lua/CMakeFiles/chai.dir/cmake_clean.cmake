file(REMOVE_RECURSE
  "../chai"
  "../chai.pdb"
  "CMakeFiles/chai.dir/cli/chai.c.o"
  "CMakeFiles/chai.dir/cli/chai.c.o.d"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/chai.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
