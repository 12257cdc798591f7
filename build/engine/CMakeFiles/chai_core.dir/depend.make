# Empty dependencies file for chai_core.
# This may be replaced when dependencies are built.
