#!/usr/bin/env bash
# The distributed search (experiments/search.lua under mpirun -n 2) against the same --quick search
# in one process: search_mpi.lua runs both, a failed configuration on rank 2, and the resumes.
#   test_search_mpi.sh CHAI MPIEXEC   (run by ctest, in tests/mpi)
set -u
exec "$1" script "$(dirname "$0")/search_mpi.lua" "$1" "$2"
