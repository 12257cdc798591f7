#!/usr/bin/env bash
# 300 malformed or hostile requests against a real `chai serve` on a loopback port (the client is
# tests/serve/hostile.c): each must be answered 4xx, the server must answer /health after them and
# exit 0 on SIGTERM (under the sanitizer build: no leak, no error on the way out).
#   bash tests/cli/test_serve_hostile.sh path/to/chai   (CHAI_TEST_HOSTILE: the client)
set -u
chai="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
src="${CHAI_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
client="${CHAI_TEST_HOSTILE:?set CHAI_TEST_HOSTILE to the chai_test_hostile client}"
tmp="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill -KILL "$server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/models" "$tmp/hub" "$tmp/results"
token="hostile-test-token-0123456789"
# No model but "default" exists, so no body the client sends can be valid.
CHAI_MODELS_DIR="$tmp/models" HF_HUB_CACHE="$tmp/hub" \
  "$chai" serve --port 0 --results "$tmp/results" --token "$token" --timeout 5 \
  --search-script "$src/tests/serve/fake_search.lua" >"$tmp/out" 2>"$tmp/err" &
server=$!
port=""
for _ in $(seq 200); do
  port=$(grep -o '127.0.0.1:[0-9]*' "$tmp/out" 2>/dev/null | head -1 | cut -d: -f2)
  [ -n "$port" ] && break
  sleep 0.05
done
if [ -z "$port" ]; then
  echo "FAIL: the server did not start"; cat "$tmp/err"; exit 1
fi
"$client" "$port" "$token"
rc=$?
kill -0 "$server" 2>/dev/null || { echo "FAIL: the server died"; cat "$tmp/err"; exit 1; }
jobs_made=$(ls "$tmp/results" | wc -l)
[ "$jobs_made" = 0 ] || { echo "FAIL: hostile requests made $jobs_made jobs"; rc=1; }
kill -TERM "$server"
for _ in $(seq 200); do kill -0 "$server" 2>/dev/null || break; sleep 0.05; done
wait "$server"
src_rc=$?
server=""
if [ "$src_rc" != 0 ]; then
  echo "FAIL: the server exited with status $src_rc after SIGTERM"; cat "$tmp/err"; rc=1
fi
exit $rc
