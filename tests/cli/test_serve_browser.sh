#!/usr/bin/env bash
# The page of `chai serve` in headless Chromium (tests/serve/browser.js, the DevTools protocol over
# a pipe): opens it, starts a --quick job with the keyboard, sees live progress, the results table
# and both charts, no console error, nothing overflowing a phone-width window; writes
# serve-page.png and serve-phone.png into the build folder. Skips (status 77) without node or
# chromium.
#   bash tests/cli/test_serve_browser.sh path/to/chai
set -u
chai="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
src="${CHAI_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
out="${CHAI_BUILD_DIR:-$(dirname "$chai")}"
chromium="${CHROMIUM:-/usr/bin/chromium}"
if ! command -v node >/dev/null; then
  echo "SKIP: node is not installed (scripts/setup.sh installs nodejs)"; exit 77
fi
if [ ! -x "$chromium" ]; then
  echo "SKIP: chromium is not installed at $chromium (scripts/setup.sh installs it)"; exit 77
fi
tmp="$(mktemp -d)"
server=""
cleanup() {
  [ -n "$server" ] && kill -KILL "$server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/models" "$tmp/hub"
CHAI_MODELS_DIR="$tmp/models" HF_HUB_CACHE="$tmp/hub" FAKE_SEARCH_DELAY=0.25 \
  "$chai" serve --port 0 --results "$tmp/results" --search-script "$src/tests/serve/fake_search.lua" \
  >"$tmp/out" 2>"$tmp/err" &
server=$!
url=""
for _ in $(seq 200); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$tmp/out" 2>/dev/null | head -1)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "FAIL: the server did not start"; cat "$tmp/err"; exit 1; }
CHROMIUM="$chromium" node "$src/tests/serve/browser.js" "$url" "$out/serve-page.png" \
  "$out/serve-phone.png"
rc=$?
kill -TERM "$server"
wait "$server"
[ $? = 0 ] || { echo "FAIL: the server did not exit cleanly"; rc=1; }
server=""
[ "$rc" = 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $rc
