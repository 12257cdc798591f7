#!/usr/bin/env bash
# A search on a real full disk: a 1 MiB tmpfs in a private mount namespace (unshare -m, as root),
# filled but one page after the fourth configuration, whose results line (three pages) the kernel
# then writes only in part. The run ends with status 1 and one line naming results.jsonl and the
# disk, the partial line is cut back (every line whole, the three before unchanged), and after the
# file system grows, --resume finishes the search without losing anything. Skipped (with
# a message) where private mounts are not allowed. bash tests/cli/test_search_disk.sh path/to/chai
set -u
chai="$1"
here="$(cd "$(dirname "$0")" && pwd)"
if ! unshare -m true 2>/dev/null; then
  echo "SKIP: no private mount namespace here (needs root or user namespaces); the full-disk path is"
  echo "      covered by tests/lua/test_search.lua's injected write failure"
  exit 0
fi
mnt="$(mktemp -d)"
trap 'rm -rf "$mnt"' EXIT
unshare -m bash -s "$chai" "$here" "$mnt" <<'INNER'
chai="$1"; here="$2"; mnt="$3"
set -u
passed=0; failed=0
check() { if eval "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $1" >&2; fi; }
mount -t tmpfs -o size=1m tmpfs "$mnt" || { echo "SKIP: cannot mount a tmpfs"; exit 0; }
out="$mnt/search"
SEARCH_FILL_ON=chai_target SEARCH_FILL_DIR="$mnt" "$chai" script "$here/search_fake_run.lua" --out "$out" >"/tmp/search_disk_out.$$" 2>"/tmp/search_disk_err.$$"
rc=$?
err="$(cat "/tmp/search_disk_err.$$" | grep -v '^search: ')"
check "status 1 on a full disk (got $rc)" '[ "$rc" = 1 ]'
check "one line: $err" '[ "$(printf "%s\n" "$err" | wc -l)" = 1 ]'
check "names the file and the disk: $err" 'printf "%s" "$err" | grep -q "results.jsonl: No space left on device"'
check "says what is kept: $err" 'printf "%s" "$err" | grep -q "The 3 configurations finished before are kept"'
lines_before=$(wc -l <"$out/results.jsonl")
check "the three finished before the disk filled ($lines_before)" '[ "$lines_before" = 3 ]'
check "results.jsonl ends with a whole line" '[ "$(tail -c 1 "$out/results.jsonl" | od -An -c | tr -d " ")" = "\n" ]'
check "every line is JSON" '"$chai" -e "for l in io.lines(\"$out/results.jsonl\") do assert(require(\"chai.core\").json.decode(l).name) end"'
cp "$out/results.jsonl" "/tmp/search_disk_before.$$"
echo "  the full disk said: $err"
rm -f "$mnt/filler"
mount -o remount,size=4m "$mnt"
"$chai" script "$here/search_fake_run.lua" --resume "$out" >/dev/null 2>"/tmp/search_disk_err.$$"
rc=$?
check "--resume after the disk grew: status 0 (got $rc)" '[ "$rc" = 0 ]'
check "all 13 configurations" '[ "$(wc -l <"$out/results.jsonl")" = 13 ]'
check "the lines written before are kept as they were" \
  'head -n "$lines_before" "$out/results.jsonl" | cmp -s - "/tmp/search_disk_before.$$"'
rm -f "/tmp/search_disk_out.$$" "/tmp/search_disk_err.$$" "/tmp/search_disk_before.$$"
umount "$mnt"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
INNER
