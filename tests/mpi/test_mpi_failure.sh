#!/usr/bin/env bash
# A rank that fails ends every rank, with its message, instead of leaving the others waiting:
# an error on rank 2 while rank 1 waits in a barrier; os.exit with a failure on one rank; the
# clean endings (end of script, os.exit(0)) that finalise MPI on every rank; and CHAI_MPI_AUTO=0,
# which keeps a launched process out of the group.
#   test_mpi_failure.sh CHAI MPIEXEC   (run by ctest)
set -u
chai=$1
mpiexec=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
run() { # run NAME SCRIPT: mpirun -n 2 on a script; sets $status and $out
  printf '%s\n' "$2" >"$tmp/$1.lua"
  out=$(timeout 120 "$mpiexec" -n 2 --oversubscribe "$chai" script "$tmp/$1.lua" 2>&1)
  status=$?
}
check() { # check WHAT CONDITION...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; echo "$out" | head -30; fails=$((fails + 1)); fi
}
has() { grep -qF -- "$1" <<<"$out"; }

run error 'local mpi = require("chai").mpi
if mpi.rank() == 2 then error("boom on two") end
mpi.barrier()
print("rank 1 passed the barrier")'
check "an error on rank 2 ends the run (no hang)" test "$status" -ne 0 -a "$status" -ne 124
check "the error names its rank" has "chai (rank 2 of 2): $tmp/error.lua:2: boom on two"
check "and says every rank ends" has "ending every rank"
check "rank 1 never passes the barrier" bash -c "! grep -q 'passed the barrier' <<<\"\$1\"" _ "$out"

run exit 'local mpi = require("chai").mpi
if mpi.rank() == 2 then os.exit(3) end
mpi.barrier()'
check "os.exit(3) on one rank ends the run" test "$status" -ne 0 -a "$status" -ne 124
check "os.exit says so" has "os.exit(3): ending every rank"

run abort 'local mpi = require("chai").mpi
if mpi.rank() == 1 then mpi.abort("stopping here", 3) end
mpi.barrier()'
check "chai.mpi.abort ends every rank" test "$status" -ne 0 -a "$status" -ne 124
check "with its message and rank" has "chai: rank 1 of 2: stopping here"

run clean 'local mpi = require("chai").mpi
mpi.barrier()
print("done " .. mpi.rank())'
check "a clean end finalises MPI on every rank" test "$status" -eq 0
check "both ranks ran" bash -c 'grep -q "done 1" <<<"$1" && grep -q "done 2" <<<"$1"' _ "$out"

run exit0 'local mpi = require("chai").mpi
mpi.barrier()
os.exit(0)'
check "os.exit(0) on every rank ends cleanly" test "$status" -eq 0

run nompi 'print("no chai here")'
check "a script that never loads chai runs under mpirun" test "$status" -eq 0

out=$(CHAI_MPI_AUTO=0 timeout 120 "$mpiexec" -n 2 --oversubscribe "$chai" -e \
      'local m = require("chai").mpi; print("size " .. m.size() .. " started " .. tostring(m.initialized()))' 2>&1)
check "CHAI_MPI_AUTO=0: each rank runs alone" bash -c '[ "$(grep -c "size 1 started false" <<<"$1")" = 2 ]' _ "$out"

echo "$fails failed"
[ "$fails" -eq 0 ]
