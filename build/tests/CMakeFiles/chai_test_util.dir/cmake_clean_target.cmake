file(REMOVE_RECURSE
  "libchai_test_util.a"
)
