#!/usr/bin/env bash
# The test command: set-up (packages, configure, build) and every test under ctest.
#   scripts/test.sh              Release build in build/, all tests
#   scripts/test.sh --sanitize   the same with ASan+UBSan in build-sanitize/
#   scripts/test.sh --fuzz       clang + libFuzzer build in build-fuzz/, short fuzz runs
# Extra arguments after -- go to ctest (e.g. -- -L fast, -- -R tensor).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=plain
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) mode=sanitize ;;
    --fuzz) mode=fuzz ;;
    --) shift; ctest_args+=("$@"); break ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option '$1'" >&2; sed -n '2,7p' "$0" >&2; exit 2 ;;
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
ctest --output-on-failure -j 2 "${ctest_args[@]}"
