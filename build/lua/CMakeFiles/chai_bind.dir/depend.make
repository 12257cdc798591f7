# Empty dependencies file for chai_bind.
# This may be replaced when dependencies are built.
