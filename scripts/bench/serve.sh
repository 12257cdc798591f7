#!/usr/bin/env bash
# Benchmark of `chai serve` (docs/benchmarks.md, "chai serve"): wrk on GET /health and GET /models,
# 64 connections for 20 s each, with the server idle and then while a search job runs; the time
# from POST /find_best_configuration to the job's first progress event on its event stream; the
# idle server's memory (VmRSS). Everything on a loopback port; the server is started and stopped
# here.
#
#   scripts/bench/serve.sh [--chai build/chai] [--duration 20] [--connections 64] [--threads 2]
#                          [--job JSON] [--search-script FILE]
#
# --job is the body of the POST (default: the default model, SST-2, accuracy, quick: a search of
# a few minutes that keeps both cores busy); --search-script runs another search program (the
# tests' stand-in, say). Not a test: it prints figures, it does not judge them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
chai="$root/build/chai"
duration=20
connections=64
threads=2
job='{"model_name": "default", "dataset_name": "sst2", "criterion": "accuracy", "quick": true}'
search=()
while [ $# -gt 0 ]; do
  case "$1" in
    --chai) chai="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --connections) connections="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --job) job="$2"; shift ;;
    --search-script) search=(--search-script "$2"); shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "serve.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
  shift
done
command -v wrk >/dev/null || { echo "serve.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
tmp=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server" 2>/dev/null || true
    # a search the server had no time to stop
    pkill -KILL -f "$tmp/results" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$chai" serve --port 0 --results "$tmp/results" "${search[@]}" >"$tmp/out" 2>"$tmp/err" &
server=$!
url=""
for _ in $(seq 200); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/out" 2>/dev/null | head -1) && [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "serve.sh: the server did not start:"; cat "$tmp/err"; exit 1; } >&2

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
sleep 1
echo "chai serve at $url (pid $server), $(nproc) cores, wrk $threads threads $connections connections ${duration}s"
echo "idle server memory: VmRSS $(rss_kb) kB at start"

# wrk_run LABEL PATH: one wrk run; prints requests/s, p50, p99 and errors.
wrk_run() {
  local label=$1 path=$2 out
  out=$(wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$url$path")
  local rps p50 p99 errors non2xx
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(grep -o 'Socket errors:.*' <<<"$out" || echo "Socket errors: none")
  non2xx=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' <<<"$out" || echo "Non-2xx or 3xx responses: 0")
  printf '%-22s %-9s %10s req/s   p50 %8s   p99 %8s   %s; %s\n' "$label" "$path" "$rps" "$p50" \
    "$p99" "$non2xx" "$errors"
}

wrk_run "idle" /health
wrk_run "idle" /models
echo "idle server memory: VmRSS $(rss_kb) kB after the idle runs"

# POST → the first progress event, as a client that posts and then follows the stream sees it.
t0=$(date +%s%N)
location=$(curl -s -o /dev/null -w '%header{location}' -X POST -H 'Content-Type: application/json' \
  -d "$job" "$url/find_best_configuration")
[ -n "$location" ] || { echo "serve.sh: the POST did not start a job" >&2; exit 1; }
first=""
while IFS= read -r line; do
  if [ "$line" = "event: progress" ]; then first=$(date +%s%N); break; fi
done < <(curl -sN --max-time 600 "$url$location/events")
[ -n "$first" ] || { echo "serve.sh: no progress event arrived" >&2; exit 1; }
echo "POST to the first progress event: $(( (first - t0) / 1000000 )) ms (job $location)"

state() { curl -s "$url$location" | grep -o '"state":"[a-z]*"' | head -1 | cut -d'"' -f4; }
for path in /health /models; do
  s=$(state)
  [ "$s" = running ] || { echo "serve.sh: the job is $s, not running: make it longer (--job)"; exit 1; }
  wrk_run "while a search runs" "$path"
done
echo "job state after the runs: $(state); server memory: VmRSS $(rss_kb) kB"
curl -s -o /dev/null -X DELETE "$url$location"
