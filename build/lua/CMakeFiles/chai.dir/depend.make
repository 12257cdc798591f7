# Empty dependencies file for chai.
# This may be replaced when dependencies are built.
