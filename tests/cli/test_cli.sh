#!/usr/bin/env bash
# Tests of the `chai` command (lua/cli): bash tests/cli/test_cli.sh path/to/chai
# Subcommands and their output, exit statuses (0 ok, 1 Lua error, 2 bad usage), the global `arg`,
# script lookup ($CHAI_HOME, the install layout), Lua subcommands from chai.cli, -e, the REPL
# through a pipe and through a pseudo-terminal, Ctrl-C, and `eval "$(chai env)"` for a stock lua5.4.
set -u

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
  echo "usage: bash $0 path/to/chai" >&2
  exit 2
fi
chai="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
src="${CHAI_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
tmp="$(mktemp -d)"
tmp="$(cd "$tmp" && pwd -P)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
export CHAI_HISTORY="" # never touch the user's ~/.chai_history
unset CHAI_HOME LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4

passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() {
  failed=$((failed + 1))
  echo "FAIL: $*" >&2
}

# run CMD...: runs with stdin from /dev/null; sets rc, out, err.
run() {
  "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
  rc=$?
  out="$(cat "$tmp/out")"
  err="$(cat "$tmp/err")"
}
expect_rc() { # NAME WANT
  if [ "$rc" = "$2" ]; then ok; else fail "$1: exit status $rc, wanted $2; stderr: $err"; fi
}
expect_has() { # NAME HAYSTACK NEEDLE
  if [[ "$2" == *"$3"* ]]; then ok; else fail "$1: no '$3' in: $2"; fi
}
expect_not() { # NAME HAYSTACK NEEDLE
  if [[ "$2" != *"$3"* ]]; then ok; else fail "$1: unexpected '$3' in: $2"; fi
}
expect_eq() { # NAME GOT WANT
  if [ "$2" = "$3" ]; then ok; else fail "$1: got '$2', wanted '$3'"; fi
}
# wait_for FILE TEXT: polls up to 15 s until FILE contains TEXT.
wait_for() {
  for _ in $(seq 300); do
    grep -qF -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
# wait_exit PID: waits up to 15 s, then kills; sets rc (137 when it had to be killed).
wait_exit() {
  for _ in $(seq 300); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$1" 2>/dev/null
  wait "$1"
  rc=$?
}

# ---- help, usage, exit statuses ----
run "$chai" help
expect_rc "help" 0
for word in "usage: chai" "script FILE" "repl" "version" "env" "help" "-e CODE" "Exit status"; do
  expect_has "help lists '$word'" "$out" "$word"
done
expect_eq "help writes nothing on stderr" "$err" ""
help_text="$out"
run "$chai" --help
expect_eq "--help is help" "$out" "$help_text"
run "$chai" -h
expect_eq "-h is help" "$out" "$help_text"

run "$chai" frobnicate
expect_rc "unknown command" 2
expect_has "unknown command named" "$err" "unknown command 'frobnicate'"
expect_has "unknown command prints usage on stderr" "$err" "usage: chai"
expect_eq "unknown command: nothing on stdout" "$out" ""
run "$chai" -x
expect_rc "unknown option" 2
expect_has "unknown option named" "$err" "unknown option '-x'"
run "$chai" script
expect_rc "script without FILE" 2
expect_has "script without FILE message" "$err" "missing FILE"
run "$chai" -e
expect_rc "-e without CODE" 2
run "$chai" version extra
expect_rc "version with an extra argument" 2
expect_has "extra argument named" "$err" "unexpected argument 'extra'"
run "$chai"
expect_rc "no arguments, stdin not a terminal" 2
expect_has "no arguments prints usage" "$err" "usage: chai"

# ---- version ----
run "$chai" version
expect_rc "version" 0
core_version="$("$chai" -e 'io.write(require("chai.core").version)' </dev/null)"
expect_has "version: chai version first" "$(head -n 1 <<<"$out")" "chai $core_version (Lua 5.4"
for word in "openblas  core " "chosen by " "library   /" "features  " "simd      " "kernels   int8 " "threads   "; do
  expect_has "version shows '$word'" "$out" "$word"
done
run env CHAI_CPU=ref "$chai" --version
expect_has "version shows a forced SIMD level" "$out" "simd      ref (CHAI_CPU=ref)"
expect_has "a forced level picks the scalar kernels" "$out" "kernels   int8 ref, int4 ref, bf16 ref"
run env CHAI_BLAS_LIB=libm.so.6 "$chai" version # a library without cblas_sgemm
expect_rc "version without a usable BLAS" 1
expect_has "version says why BLAS is missing" "$out" "openblas  not loaded: "
expect_has "version without BLAS still shows the CPU" "$out" "features  "

# ---- -e ----
run "$chai" -e 'x = 1' -e 'x = x + 1' -e 'print(x)'
expect_rc "-e chunks" 0
expect_eq "-e chunks run in order in one state" "$out" "2"
run "$chai" -e 'error("first")' -e 'print("not reached")'
expect_rc "-e error" 1
expect_has "-e error message" "$err" "chai: (command line):1: first"
expect_has "-e error traceback" "$err" "stack traceback:"
expect_eq "-e stops at the first error" "$out" ""
run "$chai" -e 'local chai = require "chai"; print(chai.version)'
expect_eq "-e can require chai" "$out" "$core_version"
run env LUA_CPATH="$tmp/nowhere/?.so" "$chai" \
  -e 'print(package.preload["chai.core"] ~= nil, require("chai.core").version)'
expect_eq "chai.core is preloaded, no .so needed" "$out" "true	$core_version"
run "$chai" -e 'assert(type(require("chai.cli").commands) == "table")'
expect_rc "chai.cli has a commands table" 0

# ---- script: arg, errors, lookup ----
mkdir -p "$tmp/work" "$tmp/elsewhere"
cat >"$tmp/work/args.lua" <<'EOF'
local t = {}
for i = -2, #arg do t[#t + 1] = tostring(arg[i]) end
print(table.concat(t, "|"), #arg, select("#", ...), ...)
EOF
cat >"$tmp/work/err.lua" <<'EOF'
print("before")
local function inner() error("bad value 42") end
inner()
EOF
printf 'local x = = 1\n' >"$tmp/work/syntax.lua"
printf 'os.exit(7)\n' >"$tmp/work/exit7.lua"
printf 'print(y)\n' >"$tmp/work/yval.lua"

cd "$tmp/work" || exit 1
run "$chai" script args.lua a "b c"
expect_rc "script" 0
expect_eq "script: arg table and ..." "$out" "$chai|script|args.lua|a|b c	2	2	a	b c"
run "$chai" script err.lua
expect_rc "script error" 1
expect_eq "script error: output before the error" "$out" "before"
expect_has "script error: file:line message" "$err" "chai: err.lua:2: bad value 42"
expect_has "script error: traceback" "$err" "stack traceback:"
expect_has "script error: traceback names the caller" "$err" "err.lua:3:"
run "$chai" script syntax.lua
expect_rc "script syntax error" 1
expect_has "script syntax error names file:line" "$err" "syntax.lua:1:"
run "$chai" script exit7.lua
expect_rc "script os.exit(7)" 7
run "$chai" script missing.lua
expect_rc "script not found" 1
expect_has "script not found message" "$err" "cannot find script 'missing.lua'"
run "$chai" -e 'y = 5' script yval.lua
expect_eq "-e runs before the script" "$out" "5"
out="$(printf 'print(1 + 2, arg[0])\n' | "$chai" script - 2>&1)"
expect_eq "script - reads stdin" "$out" "3	-"

# ---- the user's mistakes: one line on stderr, no traceback (chai.cli.fail, docs/cli.md) ----
one_line() { # NAME TEXT: TEXT is one line without a traceback
  expect_eq "$1: one line" "$(printf '%s\n' "$2" | wc -l)" 1
  expect_not "$1: no traceback" "$2" "traceback"
}
printf 'local cli = require "chai.cli"\nprint("before")\ncli.fail("mine.lua: --x 7: bad value", 3)\n' \
  >"$tmp/work/fail3.lua"
run "$chai" script fail3.lua
expect_rc "cli.fail: its status" 3
expect_eq "cli.fail: the message as it is" "$err" "mine.lua: --x 7: bad value"
expect_eq "cli.fail: output before it" "$out" "before"
printf 'local cli = require "chai.cli"\nlocal function load() error("no such model") end\ncli.guard("mine.lua: --model m", load)\n' \
  >"$tmp/work/guard.lua"
run "$chai" script guard.lua
expect_rc "cli.guard: exit 1" 1
expect_eq "cli.guard: what, then the error without its position" "$err" "mine.lua: --model m: no such model"
run "$chai" -e 'require("chai.cli").fail("from -e", 2)'
expect_rc "cli.fail in -e" 2
expect_eq "cli.fail in -e: the message" "$err" "from -e"
run "$chai" -e 'local cli = require "chai.cli"; local ok, e = pcall(cli.fail, "caught"); print(ok, cli.is_failure(e), tostring(e))'
expect_eq "a failure can be caught" "$out" "false	true	caught"
# An error in the user's own script keeps its traceback, also when a chai function raised it.
printf 'local chai = require "chai"\nchai.opt.load("%s/no-such-model")\n' "$tmp" >"$tmp/work/own.lua"
run "$chai" script own.lua
expect_rc "own script, library error" 1
expect_has "own script, library error: traceback" "$err" "stack traceback:"
expect_has "own script, library error: the script's line" "$err" "own.lua:2:"
# `chai download`: bad arguments and a repo that cannot be had
export HF_HUB_OFFLINE=1 HF_HUB_CACHE="$tmp/empty-hub"
run "$chai" download
expect_rc "download without REPO" 2
one_line "download without REPO" "$err"
expect_has "download without REPO: says so" "$err" "chai download: missing REPO"
run "$chai" download org/x --bogus
expect_rc "download --bogus" 2
one_line "download --bogus" "$err"
expect_has "download --bogus: names it" "$err" "unknown option '--bogus'"
run "$chai" download no-such/model
expect_rc "download of a repo the Hub (here: its cache) lacks" 1
one_line "download of a missing repo" "$err"
expect_has "download of a missing repo: names it" "$err" "chai download no-such/model: "
run "$chai" download ../up
expect_rc "download of a bad repo id" 1
one_line "download of a bad repo id" "$err"
unset HF_HUB_OFFLINE HF_HUB_CACHE
# Every bundled script refuses an unknown option in one line with status 2.
while IFS= read -r script; do
  run "$chai" script "$script" --no-such-option
  expect_rc "$script --no-such-option" 2
  one_line "$script --no-such-option" "$err"
  expect_has "$script --no-such-option: names it" "$err" "'--no-such-option'"
done < <(cd "$src/scripts" && find . -name '*.lua' | sed 's|^\./||' | sort)
for script in experiments/chai_sst2.lua experiments/zeroshot.lua; do # chai.cli.options; its own
  run "$chai" script "$script" --help
  expect_rc "$script --help" 0
  expect_has "$script --help: the usage on stdout" "$out" "usage: chai script "
done

# Bundled scripts under $CHAI_HOME/scripts, found from any folder; the current folder wins.
mkdir -p "$tmp/home/scripts/sub" "$tmp/home/lua" "$tmp/work/sub"
printf 'print("bundled", arg[0], ...)\n' >"$tmp/home/scripts/sub/where.lua"
cd "$tmp/elsewhere" || exit 1
run env CHAI_HOME="$tmp/home" "$chai" script sub/where.lua x
expect_rc "bundled script" 0
expect_eq "bundled script found in CHAI_HOME/scripts" "$out" \
  "bundled	$tmp/home/scripts/sub/where.lua	x"
printf 'print("local")\n' >"$tmp/elsewhere/where.lua"
mkdir -p "$tmp/elsewhere/sub"
printf 'print("local", arg[0])\n' >"$tmp/elsewhere/sub/where.lua"
run env CHAI_HOME="$tmp/home" "$chai" script sub/where.lua
expect_eq "the current folder wins over the scripts folder" "$out" "local	sub/where.lua"
run env CHAI_HOME="$tmp/home" "$chai" script sub/nothere.lua
expect_has "not found names the scripts folder" "$err" "$tmp/home/scripts"
# $CHAI_HOME/lua without chai/init.lua is skipped: require "chai" still works.
run env CHAI_HOME="$tmp/home" "$chai" -e 'print(require("chai").version)'
expect_eq "a CHAI_HOME without the chai module falls back" "$out" "$core_version"

# The install layout: <prefix>/bin/chai finds <prefix>/share/chai/{lua,scripts}.
mkdir -p "$tmp/prefix/bin" "$tmp/prefix/share/chai/scripts" "$tmp/prefix/share/chai/lua"
cp "$chai" "$tmp/prefix/bin/chai"
cp -r "$src/lua/chai" "$tmp/prefix/share/chai/lua/"
printf 'print("installed", arg[0])\n' >"$tmp/prefix/share/chai/scripts/inst.lua"
run "$tmp/prefix/bin/chai" script inst.lua
expect_eq "installed binary finds share/chai/scripts" "$out" \
  "installed	$tmp/prefix/share/chai/scripts/inst.lua"
run "$tmp/prefix/bin/chai" -e 'print(package.searchpath("chai", package.path))'
expect_eq "installed binary finds share/chai/lua" "$out" "$tmp/prefix/share/chai/lua/chai/init.lua"

# ---- Lua subcommands: chai.cli.commands ----
mkdir -p "$tmp/cmdhome/lua"
cp -r "$src/lua/chai" "$tmp/cmdhome/lua/"
cat >"$tmp/cmdhome/lua/chai/cli.lua" <<'EOF'
local M = {commands = {}}
M.commands.greet = {args = "NAME [STATUS]", summary = "say hello",
  run = function(args) print("hi " .. args[1], arg[0], #args) return tonumber(args[2]) end}
M.commands.fails = {summary = "raise", run = function() error("nope") end}
M.commands.falsy = {summary = "return false", run = function() return false end}
M.commands.broken = {summary = "no run function"}
return M
EOF
export CHAI_HOME="$tmp/cmdhome"
run "$chai" greet bob
expect_rc "Lua command" 0
expect_eq "Lua command gets its arguments and arg" "$out" "hi bob	greet	1"
run "$chai" greet bob 3
expect_rc "Lua command returning 3" 3
run "$chai" fails
expect_rc "Lua command raising" 1
expect_has "Lua command error message" "$err" "nope"
expect_has "Lua command error traceback" "$err" "stack traceback:"
run "$chai" falsy
expect_rc "Lua command returning false" 1
run "$chai" broken
expect_rc "Lua command without run" 1
run "$chai" nosuch
expect_rc "command in neither table" 2
expect_has "command in neither table: usage lists Lua commands" "$err" "greet NAME [STATUS]"
run "$chai" help
expect_has "help lists Lua commands with their summary" "$out" "say hello"
unset CHAI_HOME

# ---- env: a stock lua5.4 can require "chai" ----
run "$chai" env
expect_rc "env" 0
expect_eq "env prints two lines" "$(wc -l <<<"$out" | tr -d ' ')" "2"
(
  eval "$out"
  [[ "$LUA_PATH" == */\?.lua\;*/\?/init.lua\;\; ]] || exit 11
  [[ "$LUA_CPATH" == */\?.so\;\; ]] || exit 12
  [ -f "${LUA_PATH%%/\?.lua*}/chai/init.lua" ] || exit 13
  [ -f "${LUA_CPATH%%/\?.so*}/chai/core.so" ] || exit 14
)
rc=$?
expect_rc "env paths point at chai/init.lua and chai/core.so" 0
# An installed tree whose path needs quoting: env points at share/chai/lua and lib/lua/5.4.
q="$tmp/it's here/prefix"
mkdir -p "$q/bin" "$q/share/chai/lua" "$q/lib/lua/5.4/chai"
cp "$chai" "$q/bin/chai"
cp -r "$src/lua/chai" "$q/share/chai/lua/"
cp "$(eval "$out" && echo "${LUA_CPATH%%/\?.so*}")/chai/core.so" "$q/lib/lua/5.4/chai/"
qenv="$("$q/bin/chai" env)"
got="$(eval "$qenv" && echo "$LUA_PATH|$LUA_CPATH")"
expect_eq "env of an install, quoted for the shell" "$got" \
  "$q/share/chai/lua/?.lua;$q/share/chai/lua/?/init.lua;;|$q/lib/lua/5.4/?.so;;"
if [ "${CHAI_SANITIZE:-0}" = 1 ] || ! command -v lua5.4 >/dev/null; then
  echo "skip: stock lua5.4 require (sanitizer build or no lua5.4)"
else
  got="$(eval "$out" && cd "$tmp/elsewhere" &&
    lua5.4 -e 'local chai = require "chai"; io.write(chai.version)' 2>&1)"
  expect_eq "eval \"\$(chai env)\"; lua5.4 require 'chai'" "$got" "$core_version"
  got="$(eval "$qenv" && cd "$tmp/elsewhere" &&
    lua5.4 -e 'print(package.searchpath("chai.core", package.cpath), require("chai").version)' \
    2>&1)"
  expect_eq "installed: lua5.4 require 'chai'" "$got" "$q/lib/lua/5.4/chai/core.so	$core_version"
fi

# ---- REPL through a pipe ----
cd "$tmp/work" || exit 1
printf '%s\n' 'x = 40' 'x + 2' 'function double(a)' '  return a * 2' 'end' 'double(21)' \
  'error("oops")' 'print("after the error")' '1, nil, "s"' 'local t = {' '  1,' '  2}' \
  'chai.version' 'for i = 1, 2 do' >"$tmp/repl.in"
"$chai" repl <"$tmp/repl.in" >"$tmp/repl.out" 2>"$tmp/repl.err"
rc=$?
expect_rc "REPL from a pipe" 0
expect_eq "REPL prints values, no prompts" "$(cat "$tmp/repl.out")" \
  "$(printf '42\n42\nafter the error\n1\tnil\ts\n%s' "$core_version")"
expect_has "REPL reports the error" "$(cat "$tmp/repl.err")" "stdin:1: oops"
expect_has "REPL reports an unfinished chunk at the end" "$(cat "$tmp/repl.err")" "'end' expected"

# The REPL session shown in docs/cli.md: lines after the prompts are the input, the other lines
# (but the banner) the output.
if [ -f "$src/docs/cli.md" ]; then
  awk '/^## `chai repl`/ {s = 1} s && /^```/ {n++; if (n == 2) exit; next} s && n == 1' \
    "$src/docs/cli.md" >"$tmp/doc.session"
  sed -n 's/^>>\{0,1\} //p' "$tmp/doc.session" >"$tmp/doc.in"
  tail -n +2 "$tmp/doc.session" | grep -v '^>' >"$tmp/doc.want"
  if [ -s "$tmp/doc.in" ] && [ -s "$tmp/doc.want" ]; then
    "$chai" repl <"$tmp/doc.in" >"$tmp/doc.out" 2>&1
    expect_eq "docs/cli.md REPL session" "$(cat "$tmp/doc.out")" "$(cat "$tmp/doc.want")"
  else
    fail "docs/cli.md: no REPL session found"
  fi
fi

# ---- Ctrl-C ----
# -e: the loop stops with "interrupted", exit status 1.
"$chai" -e 'print("go") while true do end' >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!
pids+=("$pid")
if wait_for "$tmp/int.out" go; then
  sleep 0.5
  kill -INT "$pid"
  wait_exit "$pid"
  expect_rc "Ctrl-C stops -e" 1
  expect_has "Ctrl-C message" "$(cat "$tmp/int.err")" "chai: interrupted"
else
  fail "-e loop never started"
fi
# a long C loop (20 s unless interrupted): chai_interrupt() makes it return at once, and Lua raises
# "interrupted" as the C function returns.
"$chai" -e 'print("go") io.stdout:flush() require("chai.core").testing.spin_until_interrupted(20)' >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!
pids+=("$pid")
if wait_for "$tmp/int.out" go; then
  sleep 0.5
  kill -INT "$pid"
  t0=$(date +%s%N)
  wait_exit "$pid"
  elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  expect_rc "Ctrl-C stops a C loop" 1
  if [ "$elapsed_ms" -lt 3000 ]; then ok; else fail "the C loop took ${elapsed_ms} ms to stop"; fi
  expect_has "C-loop Ctrl-C message" "$(cat "$tmp/int.err")" "interrupted"
else
  fail "C loop never started"
fi
# script: same, with a traceback naming the script.
printf 'print("go")\nlocal n = 0\nwhile true do n = n + 1 end\n' >"$tmp/work/loop.lua"
"$chai" script loop.lua >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!
pids+=("$pid")
if wait_for "$tmp/int.out" go; then
  sleep 0.5
  kill -INT "$pid"
  wait_exit "$pid"
  expect_rc "Ctrl-C stops a script" 1
  expect_has "Ctrl-C script message" "$(cat "$tmp/int.err")" "interrupted"
  expect_has "Ctrl-C script traceback" "$(cat "$tmp/int.err")" "loop.lua:3:"
else
  fail "script loop never started"
fi
# REPL via a fifo: the running chunk stops, the REPL goes on; Ctrl-C while it waits for input is
# harmless.
mkfifo "$tmp/fifo"
"$chai" repl <"$tmp/fifo" >"$tmp/int.out" 2>"$tmp/int.err" &
pid=$!
pids+=("$pid")
exec 3>"$tmp/fifo"
printf '%s\n' 'print("go") while true do end' >&3
if wait_for "$tmp/int.out" go; then
  sleep 0.3
  kill -INT "$pid"
  wait_for "$tmp/int.err" interrupted || fail "REPL: no interrupted message"
  printf '%s\n' 'print("alive")' >&3
  wait_for "$tmp/int.out" alive || fail "REPL: dead after Ctrl-C"
  sleep 0.2
  kill -INT "$pid" # now waiting for a line
  sleep 0.2
  printf '%s\n' 'print("still " .. 1 + 1)' >&3
  wait_for "$tmp/int.out" "still 2" || fail "REPL: dead after Ctrl-C at the prompt"
fi
exec 3>&-
wait_exit "$pid"
expect_rc "REPL after Ctrl-C exits normally at end of input" 0
expect_eq "REPL after Ctrl-C output" "$(cat "$tmp/int.out")" "$(printf 'go\nalive\nstill 2')"
expect_has "REPL Ctrl-C message" "$(cat "$tmp/int.err")" "interrupted"

# ---- REPL on a terminal (readline), through script(1)'s pseudo-terminal ----
if command -v script >/dev/null && script --version 2>/dev/null | grep -q util-linux; then
  rm -f "$tmp/fifo"
  mkfifo "$tmp/fifo"
  CHAI_HISTORY="$tmp/history" script -qfec "$chai repl" /dev/null \
    <"$tmp/fifo" >"$tmp/tty.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  exec 3>"$tmp/fifo"
  if wait_for "$tmp/tty.out" "Ctrl-D exits"; then
    printf '6 * 7\r' >&3
    wait_for "$tmp/tty.out" 42 || fail "tty REPL: no value printed"
    printf 'abc' >&3
    wait_for "$tmp/tty.out" abc || fail "tty REPL: no echo"
    printf '\003' >&3 # Ctrl-C at the prompt drops "abc"
    sleep 0.3
    printf 'print("fresh" .. "line")\r' >&3
    wait_for "$tmp/tty.out" freshline || fail "tty REPL: line not cleared by Ctrl-C"
    printf 'print("loo" .. "ping") while true do end\r' >&3
    wait_for "$tmp/tty.out" looping || fail "tty REPL: loop not started"
    sleep 0.3
    printf '\003' >&3
    wait_for "$tmp/tty.out" interrupted || fail "tty REPL: running chunk not interrupted"
    printf 'print("al" .. "ive")\r' >&3
    wait_for "$tmp/tty.out" alive || fail "tty REPL: dead after Ctrl-C"
    printf '\004' >&3 # Ctrl-D
  else
    fail "tty REPL: no banner"
  fi
  exec 3>&-
  wait_exit "$pid"
  expect_rc "tty REPL exits on Ctrl-D" 0
  expect_not "tty REPL: the abandoned line never ran" "$(cat "$tmp/tty.out")" "abcprint"
  expect_has "tty REPL history saved" "$(cat "$tmp/history" 2>/dev/null)" "6 * 7"
else
  echo "skip: tty REPL (no util-linux script)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
