# Empty dependencies file for chai_test_util.
# This may be replaced when dependencies are built.
