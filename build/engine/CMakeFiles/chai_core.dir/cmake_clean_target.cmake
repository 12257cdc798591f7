file(REMOVE_RECURSE
  "libchai_core.a"
)
