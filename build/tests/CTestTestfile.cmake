# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test(c/test_blas "/work/main/build/tests/test_blas")
set_tests_properties(c/test_blas PROPERTIES  LABELS "fast" TIMEOUT "300" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;15;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test(c/test_half "/work/main/build/tests/test_half")
set_tests_properties(c/test_half PROPERTIES  LABELS "fast" TIMEOUT "300" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;15;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test(c/test_rng "/work/main/build/tests/test_rng")
set_tests_properties(c/test_rng PROPERTIES  LABELS "fast" TIMEOUT "300" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;15;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test(c/test_tensor "/work/main/build/tests/test_tensor")
set_tests_properties(c/test_tensor PROPERTIES  LABELS "fast" TIMEOUT "300" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;15;add_test;/work/main/tests/CMakeLists.txt;0;")
