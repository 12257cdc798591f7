#!/usr/bin/env bash
# The test command: set-up (packages, configure, build) and every test under ctest.
#   scripts/test.sh              Release build in build/, all tests
#   scripts/test.sh --sanitize   the same with ASan+UBSan in build-sanitize/
#   scripts/test.sh --fuzz       clang + libFuzzer build in build-fuzz/, short fuzz runs
#   scripts/test.sh --no-skip    fail when a test was skipped (CI: the whole data must be there)
# Extra arguments after -- go to ctest (e.g. -- -L fast, -- -R tensor). Tests that need the whole
# data (label full-data) read $CHAI_DATA_DIR; without it ctest reports them as skipped, and their
# reasons are printed after its summary.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=plain
no_skip=0
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) mode=sanitize ;;
    --fuzz) mode=fuzz ;;
    --no-skip) no_skip=1 ;;
    --) shift; ctest_args+=("$@"); break ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option '$1'" >&2; sed -n '2,10p' "$0" >&2; exit 2 ;;
  esac
  shift
done
case "$mode" in
  plain) build="$root/build"; "$root/scripts/setup.sh" ;;
  sanitize) build="$root/build-sanitize"; "$root/scripts/setup.sh" --sanitize
            export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
            export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}" ;;
  fuzz) build="$root/build-fuzz"; "$root/scripts/setup.sh" --fuzz; ctest_args+=(-L fuzz) ;;
esac
cd "$build"
status=0
ctest --output-on-failure -j 2 "${ctest_args[@]}" || status=$?
# The lines of ctest's log that start with the tag $1, each as "  <test>: <rest of the line>".
tagged() {
  awk -v tag="$1" '/^[0-9]+\/[0-9]+ Test: / { name = $3 }
                   index($0, tag) == 1 { print "  " name ": " substr($0, length(tag) + 1) }' \
      Testing/Temporary/LastTest.log 2>/dev/null || true
}
# A skipped test printed "skipped: <why>" (and exited 77): show why, after the summary.
reasons=$(tagged "skipped: ")
if [ -n "$reasons" ]; then
  echo "Skipped tests and why:"
  echo "$reasons"
  if [ "$no_skip" = 1 ]; then
    echo "test.sh: --no-skip: tests were skipped" >&2
    status=1
  fi
fi
# Kernels the CPU lacks (AMX on AMD, say) are not skips: the test ran everything this CPU has.
absent=$(tagged "not run here: ")
if [ -n "$absent" ]; then
  echo "Kernels this machine cannot run (their _ref twins and every other level were tested):"
  echo "$absent"
fi
exit "$status"
