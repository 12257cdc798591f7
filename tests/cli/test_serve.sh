#!/usr/bin/env bash
# `chai serve` against real servers on loopback ports started here, with the stand-in search
# (tests/serve/fake_search.lua): options and refusals, every endpoint, every error status, the
# event stream, cancel (running and queued), resume, a crashing and a failing job, SIGTERM with a
# job running and a restart that keeps the jobs, a second signal, the bearer token, idle timeouts,
# and the curl examples of docs/serve.md.
#   bash tests/cli/test_serve.sh path/to/chai
set -u
if [ $# -lt 1 ] || [ ! -x "$1" ]; then
  echo "usage: bash $0 path/to/chai" >&2
  exit 2
fi
chai="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
src="${CHAI_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
fake="$src/tests/serve/fake_search.lua"
tmp="$(mktemp -d)"
tmp="$(cd "$tmp" && pwd -P)"
servers=()
cleanup() {
  for p in "${servers[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
export CHAI_HISTORY=""
unset CHAI_HOME LUA_PATH LUA_CPATH
# No Hub cache and one model trained by chai (just its config.json: the fake search never loads it)
mkdir -p "$tmp/hub" "$tmp/models/tiny-opt" "$tmp/models/not-a-model"
echo '{"model_type": "opt", "num_hidden_layers": 2, "hidden_size": 16, "num_attention_heads": 2}' \
  >"$tmp/models/tiny-opt/config.json"
export HF_HUB_CACHE="$tmp/hub" CHAI_MODELS_DIR="$tmp/models"

passed=0
failed=0
t_start=$(date +%s%N)
section() { echo "== $1 ($(( ($(date +%s%N) - t_start) / 1000000 )) ms)"; }
ok() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  echo "FAIL: $*" >&2
}
expect_eq() { if [ "$2" = "$3" ]; then ok; else fail "$1: got '$2', wanted '$3'"; fi; }
expect_has() { if [[ "$2" == *"$3"* ]]; then ok; else fail "$1: no '$3' in: ${2:0:600}"; fi; }
expect_not() { if [[ "$2" != *"$3"* ]]; then ok; else fail "$1: unexpected '$3' in: ${2:0:600}"; fi; }

# start NAME [ENV=V...] -- [ARGS...]: starts a server with results in $tmp/NAME; sets B (its URL)
# and pid.
start() {
  local name=$1
  shift
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  mkdir -p "$tmp/$name"
  env "${envs[@]}" "$chai" serve --port 0 --results "$tmp/$name/results" --search-script "$fake" \
    "$@" >"$tmp/$name/out" 2>"$tmp/$name/err" &
  pid=$!
  servers+=("$pid")
  B=""
  for _ in $(seq 400); do
    B=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/$name/out" 2>/dev/null | head -1)
    [ -n "$B" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$B" ]; then
    fail "server $name did not start: $(cat "$tmp/$name/err")"
    return 1
  fi
}

# req METHOD PATH [BODY] [CURL ARGS...]: sets status, body, hdrs. A BODY is sent as JSON.
req() {
  local method=$1 path=$2
  shift 2
  local args=(-s -X "$method" -o "$tmp/body" -D "$tmp/hdrs" -w "%{http_code}")
  [ "$method" = HEAD ] && args=(-s -I -o "$tmp/body" -D "$tmp/hdrs" -w "%{http_code}")
  if [ $# -gt 0 ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$1")
    shift
  fi
  local t0=$(date +%s%N)
  status=$(curl "${args[@]}" "$@" "$B$path")
  local dt=$(( ($(date +%s%N) - t0) / 1000000 )); [ "$dt" -gt 300 ] && echo "slow: $method $path ${dt} ms"
  body=$(cat "$tmp/body")
  hdrs=$(tr -d '\r' <"$tmp/hdrs")
}

# jstr KEY: the first "KEY":"value" (or number/literal) in $body.
jstr() { grep -o "\"$1\":\"\?[^\",}]*" <<<"$body" | head -1 | sed "s/\"$1\":\"\?//"; }

# wait_state ID STATE...: polls GET /jobs/ID up to 60 s until its state is one of STATE.
wait_state() {
  local id=$1
  shift
  for _ in $(seq 600); do
    body=$(curl -s "$B/jobs/$id")
    local st
    st=$(jstr state)
    for want in "$@"; do [ "$st" = "$want" ] && return 0; done
    sleep 0.1
  done
  fail "job $id never reached state $* (last: $(jstr state))"
  return 1
}

# wait_lines FILE N: polls up to 30 s until FILE has at least N lines.
wait_lines() {
  for _ in $(seq 300); do
    [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

# state_in FILE: the "state" of a job.json (indented JSON)
state_in() { grep -o '"state":[[:space:]]*"[a-z]*"' "$1" | grep -o '"[a-z]*"$' | tr -d '"'; }

# stop PID: SIGTERM, wait up to 30 s; sets rc.
stop() {
  kill -TERM "$1" 2>/dev/null
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1"
  rc=$?
}

find_best='{"model_name": "default", "dataset_name": "sst2", "criterion": "accuracy", "quick": true}'

# ---- options and refusals ----
section "options and refusals"
"$chai" serve --help >"$tmp/o" 2>&1
expect_eq "--help exits 0" "$?" 0
expect_has "--help" "$(cat "$tmp/o")" "--token TOKEN"
"$chai" help >"$tmp/o" 2>&1
expect_has "chai help lists serve" "$(cat "$tmp/o")" "serve"
check_usage() { # NAME WANT_TEXT ARGS...
  local name=$1 want=$2
  shift 2
  "$chai" serve --search-script "$fake" "$@" >"$tmp/o" 2>&1
  local code=$?
  expect_eq "$name: exit status" "$code" 2
  expect_has "$name: message" "$(cat "$tmp/o")" "$want"
}
check_usage "a public host without a token" "not a loopback address" --host 0.0.0.0
check_usage "an IPv6 public host without a token" "not a loopback address" --host 2001:db8::1
check_usage "a host name" "numeric IPv4 or IPv6" --host example.com
check_usage "a bad port" "--port must be an integer 0..65535" --port 70000
check_usage "a port that is not a number" "--port must be" --port abc
check_usage "a short token" "at least 16" --token short
check_usage "a token with a space" "at least 16" --token "has a space in it ok ok"
check_usage "--jobs 0" "--jobs must be an integer 1..64" --jobs 0
check_usage "--timeout 0" "--timeout must be" --timeout 0
check_usage "an unknown option" "unknown option '--bogus'" --bogus
check_usage "a missing value" "--results needs a value" --results
"$chai" serve --port 0 --search-script "$tmp/none.lua" >"$tmp/o" 2>&1
expect_eq "a missing search script: status" "$?" 1
expect_has "a missing search script: message" "$(cat "$tmp/o")" "cannot find the search script"
echo x >"$tmp/file"
"$chai" serve --port 0 --results "$tmp/file/sub" --search-script "$fake" >"$tmp/o" 2>&1
expect_eq "a results folder that cannot be made: status" "$?" 1
expect_has "a results folder that cannot be made" "$(cat "$tmp/o")" "--results"

# ---- server A: every endpoint ----
section "server A: every endpoint"
start a FAKE_SEARCH_DELAY=0.15 -- --timeout 3 || exit 1
pid_a=$pid
A=$B
port_a=${B##*:}
"$chai" serve --port "$port_a" --results "$tmp/a2" --search-script "$fake" >"$tmp/o" 2>&1
expect_eq "a port in use: status" "$?" 1
expect_has "a port in use: message" "$(cat "$tmp/o")" "cannot listen on 127.0.0.1 port $port_a"

req GET /health
expect_eq "GET /health" "$status" 200
expect_has "/health status" "$body" '"status":"ok"'
expect_has "/health version" "$body" '"version":"'
expect_has "/health kernels" "$body" '"simd":"'
expect_has "/health jobs" "$body" '"queued":0'
expect_has "/health is JSON" "$hdrs" "Content-Type: application/json"
expect_has "no caching" "$hdrs" "Cache-Control: no-store"
expect_has "nosniff" "$hdrs" "X-Content-Type-Options: nosniff"
req HEAD /health
expect_eq "HEAD /health" "$status" 200
req GET /models
expect_eq "GET /models" "$status" 200
expect_has "/models default" "$body" '"name":"default"'
expect_has "/models lists a model trained by chai" "$body" '"name":"tiny-opt"'
expect_not "/models skips a folder without config.json" "$body" "not-a-model"
expect_not "/models hides paths" "$body" "$tmp"
expect_has "/models tasks" "$body" '"name":"sst2"'
expect_has "/models splits" "$body" '"splits":[{'
expect_has "/models configurations" "$body" '"chai_quant"'
expect_has "/models criteria" "$body" '"pareto"'
req GET /
expect_eq "GET /" "$status" 200
expect_has "the page" "$body" '<script src="/static/app.js"'
expect_has "the page's CSP" "$hdrs" "Content-Security-Policy: default-src 'none'; script-src 'self'"
expect_has "the page cannot be framed" "$hdrs" "X-Frame-Options: DENY"
req GET /static/app.js
expect_eq "GET /static/app.js" "$status" 200
expect_has "app.js type" "$hdrs" "Content-Type: text/javascript"
req GET /static/chart.min.js
expect_has "Chart.js is embedded" "$body" "Chart.js v3"
req GET /static/style.css
expect_has "style.css type" "$hdrs" "Content-Type: text/css"

# a search, its stream, its results and report
req POST /find_best_configuration "$find_best"
expect_eq "POST /find_best_configuration" "$status" 202
id=$(jstr id)
expect_has "202 gives the job's URL" "$hdrs" "Location: /jobs/$id"
expect_has "202 gives the events URL" "$body" "\"events\":\"/jobs/$id/events\""
expect_has "202 gives the state" "$body" '"state":"queued"'
curl -sN --max-time 30 "$B/jobs/$id/events" >"$tmp/events"
events=$(cat "$tmp/events")
expect_has "events: progress" "$events" "event: progress"
expect_has "events: a start" "$events" '"event":"start"'
expect_has "events: a finished configuration" "$events" "event: result"
expect_has "events: state" "$events" "event: state"
expect_has "events end with the job" "$(tail -3 "$tmp/events")" 'event: end'
expect_has "events: done" "$events" '"state":"done"'
expect_has "events: ids" "$events" "id: 1"
req GET "/jobs/$id"
expect_eq "GET /jobs/ID" "$status" 200
expect_has "the job is done" "$body" '"state":"done"'
expect_eq "results so far" "$(grep -o '"status":"ok"' <<<"$body" | wc -l)" 6
expect_has "the last progress event" "$body" '"event":"done"'
expect_not "step records stay out of the API" "$body" '"records"'
expect_has "the exit status" "$body" '"code":0'
req GET "/jobs/$id/events" "" -H "Last-Event-ID: 5"
expect_not "Last-Event-ID 5 skips event 5" "$body" "id: 5"$'\n'
expect_has "Last-Event-ID 5 sends event 6" "$body" "id: 6"$'\n'
req GET "/jobs/$id/report"
expect_eq "GET /jobs/ID/report" "$status" 200
expect_has "the report" "$body" "Fake search"
expect_has "the report is sandboxed" "$hdrs" "Content-Security-Policy: sandbox allow-scripts"
req GET /jobs
expect_eq "GET /jobs" "$status" 200
expect_has "the job is listed" "$body" "\"id\":\"$id\""
expect_has "job counts" "$body" '"counts":{'
meta=$(cat "$tmp/a/results/$id/meta.json")
expect_has "the search got --quick" "$meta" '"--quick"'
expect_has "the search wrote in the job's folder" "$meta" "$tmp/a/results/$id"
[ -f "$tmp/a/results/$id/job.json" ] && ok || fail "job.json is kept"
[ -f "$tmp/a/results/$id/output.log" ] && ok || fail "output.log is kept"

# choose_configuration, a model trained by chai, the CHAI-KTQ project's spelling
req POST /choose_configuration '{"model_name": "tiny-opt", "dataset_name": "rte", "configurations": ["chai-quant", "chai_kd"], "quick": true}'
expect_eq "POST /choose_configuration" "$status" 202
expect_has "configurations spelled the chai way" "$body" '"configurations":["chai_quant","chai_kd"]'
expect_has "criterion defaults to accuracy" "$body" '"criterion":"accuracy"'
id2=$(jstr id)
wait_state "$id2" done
expect_eq "two configurations measured" "$(grep -o '"status":"ok"' <<<"$body" | wc -l)" 2
meta=$(cat "$tmp/a/results/$id2/meta.json")
expect_has "--model is the trained model's folder" "$meta" "\"model\":\"$tmp/models/tiny-opt\""
expect_has "--configs" "$meta" '"chai_quant,chai_kd"'
expect_has "--task" "$meta" '"task":"rte"'

# ---- every error status ----
section "every error status"
bad() { # NAME PATH BODY STATUS FIELD
  req POST "$2" "$3"
  expect_eq "$1: status" "$status" "$4"
  expect_has "$1: names the field" "$body" "\"field\":\"$5\""
}
bad "a body that is not JSON" /find_best_configuration '{"model_name": ' 400 body
bad "trailing bytes" /find_best_configuration "$find_best x" 400 body
bad "a repeated key" /find_best_configuration '{"model_name": "default", "model_name": "default", "dataset_name": "sst2", "criterion": "accuracy"}' 400 body
bad "an array" /find_best_configuration '[1]' 400 body
bad "a missing model" /find_best_configuration '{"dataset_name": "sst2", "criterion": "accuracy"}' 400 model_name
bad "a model that is a number" /find_best_configuration '{"model_name": 1, "dataset_name": "sst2", "criterion": "accuracy"}' 400 model_name
bad "a model that does not exist" /find_best_configuration '{"model_name": "../etc", "dataset_name": "sst2", "criterion": "accuracy"}' 400 model_name
bad "a folder without config.json" /find_best_configuration '{"model_name": "not-a-model", "dataset_name": "sst2", "criterion": "accuracy"}' 400 model_name
bad "an unknown task" /find_best_configuration '{"model_name": "default", "dataset_name": "mnli", "criterion": "accuracy"}' 400 dataset_name
bad "an unknown criterion" /find_best_configuration '{"model_name": "default", "dataset_name": "sst2", "criterion": "speed"}' 400 criterion
bad "a missing criterion" /find_best_configuration '{"model_name": "default", "dataset_name": "sst2"}' 400 criterion
bad "quick as a string" /find_best_configuration '{"model_name": "default", "dataset_name": "sst2", "criterion": "accuracy", "quick": "yes"}' 400 quick
bad "an unknown field" /find_best_configuration '{"model_name": "default", "dataset_name": "sst2", "criterion": "accuracy", "budget": 5}' 400 budget
bad "configurations on find_best" /find_best_configuration '{"model_name": "default", "dataset_name": "sst2", "criterion": "accuracy", "configurations": ["chai_kd"]}' 400 configurations
bad "missing configurations" /choose_configuration '{"model_name": "default", "dataset_name": "sst2"}' 400 configurations
bad "configurations as a string" /choose_configuration '{"model_name": "default", "dataset_name": "sst2", "configurations": "chai_kd"}' 400 configurations
bad "no configurations" /choose_configuration '{"model_name": "default", "dataset_name": "sst2", "configurations": []}' 400 configurations
bad "an unknown configuration" /choose_configuration '{"model_name": "default", "dataset_name": "sst2", "configurations": ["chai_kd", "chai_magic"]}' 400 'configurations[1]'
bad "a repeated configuration" /choose_configuration '{"model_name": "default", "dataset_name": "sst2", "configurations": ["chai_kd", "chai-kd"]}' 400 'configurations[1]'
bad "a number among configurations" /choose_configuration '{"model_name": "default", "dataset_name": "sst2", "configurations": [3]}' 400 'configurations[0]'
req POST /find_best_configuration '{"model_name": "d\u00e9fault", "dataset_name": "sst2", "criterion": "accuracy"}'
expect_has "unicode in a name is shown safely" "$body" "no model 'd??fault'"
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: text/plain' --data-binary "$find_best" "$B/find_best_configuration")
expect_eq "a body that is not application/json" "$status" 415
req POST /find_best_configuration "$find_best" -H 'Content-Type: text/plain'
expect_eq "two Content-Types" "$status" 400
req POST /find_best_configuration "$(head -c 70000 /dev/zero | tr '\0' ' ')"
expect_eq "a 70 KB body" "$status" 413
req GET /nowhere
expect_eq "an unknown route" "$status" 404
expect_has "404 names the path" "$body" '"field":"path"'
req GET /jobs/20990101-000000-abcdef
expect_eq "an unknown job" "$status" 404
req GET /jobs/..%2F..%2Fetc%2Fpasswd/report
expect_eq "a path that leaves the folder" "$status" 404
req GET /static/..%2Fserve.lua
expect_eq "a static path that leaves the folder" "$status" 404
req GET /find_best_configuration
expect_eq "GET on a POST route" "$status" 405
expect_has "405 says what is allowed" "$hdrs" "Allow: POST"
req DELETE /health
expect_eq "DELETE /health" "$status" 405
req PUT "/jobs/$id"
expect_eq "PUT /jobs/ID" "$status" 405
expect_has "405 on a job" "$hdrs" "Allow: GET, DELETE, HEAD"
req DELETE "/jobs/$id"
expect_eq "cancel a finished job" "$status" 409
expect_has "409 says why" "$body" "is already done"
req POST "/jobs/$id/resume"
expect_eq "resume a finished job" "$status" 409
req GET /health "" -H "Host: evil.example:${port_a}"
expect_eq "a foreign Host (DNS rebinding)" "$status" 403
req POST /find_best_configuration "$find_best" -H "Origin: http://evil.example"
expect_eq "a cross-site POST" "$status" 403
req POST /find_best_configuration "$find_best" -H "Origin: null"
expect_eq "an opaque-origin POST" "$status" 403

# ---- cancel a running job, keep what finished, resume it ----
section "cancel a running job, keep what finished, resume it"
req POST /find_best_configuration '{"model_name": "default", "dataset_name": "sst2", "criterion": "latency"}'
id3=$(jstr id)
curl -sN --max-time 30 "$B/jobs/$id3/events" >"$tmp/events3" &
ev_pid=$!
wait_lines "$tmp/a/results/$id3/results.jsonl" 1 || fail "the job to cancel made no result"
req DELETE "/jobs/$id3"
expect_eq "cancel a running job" "$status" 202
expect_has "cancelling" "$body" '"state":"cancelling"'
wait_state "$id3" cancelled
kept=$(wc -l <"$tmp/a/results/$id3/results.jsonl")
[ "$kept" -ge 1 ] && [ "$kept" -lt 6 ] && ok || fail "a cancelled job keeps what finished ($kept of 6)"
expect_has "the search stopped cleanly" "$(tail -1 "$tmp/a/results/$id3/progress.jsonl")" '"event":"stopped"'
wait "$ev_pid"
expect_has "the stream ends with the cancel" "$(tail -3 "$tmp/events3")" '"state":"cancelled"'
req POST "/jobs/$id3/resume"
expect_eq "resume a cancelled job" "$status" 202
wait_state "$id3" done
expect_eq "resumed: every configuration measured once" "$(wc -l <"$tmp/a/results/$id3/results.jsonl")" 6
expect_has "resumed with --resume" "$(cat "$tmp/a/results/$id3/meta.json")" '"--resume"'
expect_has "two runs" "$body" '"runs":2'

# ---- a queued job is cancelled at once ----
section "a queued job is cancelled at once"
req POST /find_best_configuration "$find_best"
id4=$(jstr id)
req POST /find_best_configuration "$find_best"
id5=$(jstr id)
expect_has "the second job waits" "$body" '"position":'
req DELETE "/jobs/$id5"
expect_eq "cancel a queued job" "$status" 200
expect_has "cancelled at once" "$body" '"state":"cancelled"'
wait_state "$id4" done
req GET "/jobs/$id5"
expect_has "the cancelled job never ran" "$body" '"runs":0'
[ -f "$tmp/a/results/$id5/progress.jsonl" ] && fail "a job cancelled in the queue ran" || ok

# ---- idle clients time out (--timeout 3); an event stream lives on with keep-alives ----
section "idle clients time out (--timeout 3); an event stream lives on with keep-alives"
exec 3<>"/dev/tcp/127.0.0.1/$port_a"
printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n' >&3 # headers never finished
t0=$(date +%s%N)
timeout 10 cat <&3 >/dev/null
t1=$(date +%s%N)
exec 3<&-
waited=$(((t1 - t0) / 1000000))
[ "$waited" -ge 2000 ] && [ "$waited" -lt 8000 ] && ok ||
  fail "a stalled client is dropped after the timeout (after ${waited} ms)"
kill -0 "$pid_a" && ok || fail "server A lives on"

# ---- the curl examples of docs/serve.md ----
section "the curl examples of docs/serve.md"
awk '/^```sh$/{on=1; next} /^```$/{on=0} on' "$src/docs/serve.md" >"$tmp/doc.sh"
[ "$(grep -c curl "$tmp/doc.sh")" -ge 6 ] && ok || fail "docs/serve.md has curl examples"
(cd "$tmp" && CHAI_URL="$B" bash -e "$tmp/doc.sh") >"$tmp/doc.out" 2>&1
expect_eq "docs/serve.md examples run" "$?" 0
doc=$(cat "$tmp/doc.out")
expect_has "docs: /health" "$doc" '"status":"ok"'
expect_has "docs: the job's events end" "$doc" "event: end"
expect_has "docs: the report" "$(cat "$tmp/report.html" 2>/dev/null)" "Fake search"
expect_has "docs: choose_configuration" "$doc" '"kind":"choose_configuration"'
stop "$pid_a"
expect_eq "server A exits 0 on SIGTERM" "$rc" 0
expect_has "server A says it stopped" "$(cat "$tmp/a/err")" "stopped"

# ---- server B: a job that crashes, one that fails, one whose configuration fails ----
section "server B: a job that crashes, one that fails, one whose configuration fails"
# (handle_segv=0: under AddressSanitizer the crash must still be a SIGSEGV, not ASan's exit 1)
start b FAKE_SEARCH_DELAY=0.05 FAKE_SEARCH_CRASH=chai_kd FAKE_SEARCH_ERROR=chai_ktq \
  FAKE_SEARCH_FAIL=chai_target "ASAN_OPTIONS=handle_segv=0:${ASAN_OPTIONS:-}" || exit 1
pid_b=$pid
choose() { req POST /choose_configuration "{\"model_name\": \"default\", \"dataset_name\": \"sst2\", \"configurations\": [$1]}"; }
choose '"chai_quant", "chai_kd"'
idc=$(jstr id)
wait_state "$idc" failed
expect_has "a crash fails the job" "$body" "the search crashed (SIGSEGV)"
expect_has "a crash keeps what finished" "$body" '"name":"chai_quant"'
req GET /health
expect_eq "the server lives on after a crash" "$status" 200
choose '"chai_base", "chai_ktq"'
ide=$(jstr id)
wait_state "$ide" failed
expect_has "a failing search: its message and status" "$body" "told to fail at chai_ktq (exit status 1)"
choose '"chai_target"'
idf=$(jstr id)
wait_state "$idf" done
expect_has "a failed configuration is a result" "$body" '"status":"failed"'
req POST "/jobs/$ide/resume"
expect_eq "resume a failed job" "$status" 202
wait_state "$ide" failed
stop "$pid_b"
expect_eq "server B exits 0" "$rc" 0

# ---- server C: SIGTERM while a job runs; a restart keeps the jobs ----
section "server C: SIGTERM while a job runs; a restart keeps the jobs"
start c FAKE_SEARCH_DELAY=1 -- --timeout 2 || exit 1
pid_c=$pid
req POST /find_best_configuration '{"model_name": "default", "dataset_name": "sst2", "criterion": "memory"}'
idr=$(jstr id)
req POST /find_best_configuration '{"model_name": "default", "dataset_name": "piqa", "criterion": "accuracy"}'
idq=$(jstr id)
curl -sN --max-time 6 "$B/jobs/$idq/events" >"$tmp/events_q" & # the queued job's stream
sleep 3.5 # longer than the timeout (2 s): the stream must get keep-alives, not be dropped
kill -0 "$pid_c" && ok || fail "server C runs"
stop "$pid_c"
expect_eq "SIGTERM with a job running: exit 0" "$rc" 0
expect_has "SIGTERM waits for the search" "$(cat "$tmp/c/err")" "waiting for 1 running search"
expect_has "the search stopped cleanly" "$(tail -1 "$tmp/c/results/$idr/progress.jsonl")" '"event":"stopped"'
expect_eq "the running job is interrupted" "$(state_in "$tmp/c/results/$idr/job.json")" interrupted
expect_eq "the queued job stays queued" "$(state_in "$tmp/c/results/$idq/job.json")" queued
expect_has "a stream outlives the idle timeout" "$(cat "$tmp/events_q")" ": keep-alive"
kept=$(wc -l <"$tmp/c/results/$idr/results.jsonl")
start c FAKE_SEARCH_DELAY=0.05 -- --timeout 3 || exit 1
pid_c=$pid
req GET /jobs
expect_has "after a restart: the interrupted job" "$body" "\"id\":\"$idr\""
req GET "/jobs/$idr"
expect_has "after a restart: interrupted" "$body" '"state":"interrupted"'
expect_has "after a restart: why" "$body" "the server stopped while the job ran"
wait_state "$idq" done
expect_has "after a restart: the queued job ran" "$body" '"dataset_name":"piqa"'
req POST "/jobs/$idr/resume"
expect_eq "resume an interrupted job" "$status" 202
wait_state "$idr" done
expect_eq "the resumed job measured the rest" "$(wc -l <"$tmp/c/results/$idr/results.jsonl")" 6
[ "$kept" -ge 1 ] && ok || fail "something finished before the SIGTERM ($kept)"
req POST /find_best_configuration "$find_best"
idk=$(jstr id)
wait_state "$idk" running
kill -TERM "$pid_c"
sleep 0.2
stop "$pid_c" # the second signal
expect_eq "a second signal: exit 0" "$rc" 0
expect_has "a second signal kills the search" "$(cat "$tmp/c/err")" "again"
expect_eq "killed: interrupted" "$(state_in "$tmp/c/results/$idk/job.json")" interrupted

# ---- server E: a bearer token ----
section "server E: a bearer token"
token="test-token-0123456789abcdef"
start e FAKE_SEARCH_DELAY=0.05 -- --token "$token" || exit 1
pid_e=$pid
expect_has "the start line says a token is needed" "$(cat "$tmp/e/out")" "token required"
req GET /health
expect_eq "/health needs no token" "$status" 200
req GET /
expect_eq "the page needs no token" "$status" 200
req GET /models
expect_eq "/models without the token" "$status" 401
expect_has "401 asks for a bearer token" "$hdrs" 'WWW-Authenticate: Bearer realm="chai"'
req GET /models "" -H "Authorization: Bearer wrong-token-0123456789ab"
expect_eq "a wrong token" "$status" 401
req GET /nowhere
expect_eq "unknown routes need the token first" "$status" 401
req GET /models "" -H "Authorization: Bearer $token"
expect_eq "the right token" "$status" 200
req POST /find_best_configuration "$find_best" -H "Authorization: Bearer $token"
expect_eq "a job with the token" "$status" 202
ide=$(jstr id)
for _ in $(seq 300); do
  body=$(curl -s -H "Authorization: Bearer $token" "$B/jobs/$ide")
  [ "$(jstr state)" = done ] && break
  sleep 0.1
done
req GET "/jobs/$ide/report"
expect_eq "the report without the token" "$status" 401
req GET "/jobs/$ide/report?token=$token"
expect_eq "the report with ?token=" "$status" 200
req GET "/jobs/$ide?token=$token"
expect_eq "?token= works for the report only" "$status" 401
req GET /health "" -H "Host: evil.example"
expect_eq "with a token the Host is not checked" "$status" 200
stop "$pid_e"
expect_eq "server E exits 0" "$rc" 0

section end
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
