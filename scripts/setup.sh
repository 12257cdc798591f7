#!/usr/bin/env bash
# Set-up: installs the Debian packages chai needs (only the missing ones, saying which), configures a
# Release build in build/ and builds. Quick and quiet when nothing changed.
#   scripts/setup.sh [--sanitize] [--fuzz] [--build-dir DIR]
# --sanitize builds with ASan+UBSan in build-sanitize/; --fuzz builds the libFuzzer harnesses with
# clang in build-fuzz/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build"
cmake_args=(-DCMAKE_BUILD_TYPE=Release)
cc=()
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) build="$root/build-sanitize"; cmake_args+=(-DCHAI_SANITIZE=ON) ;;
    --fuzz) build="$root/build-fuzz"; cmake_args+=(-DCHAI_FUZZ=ON); cc=(env CC=clang)
            targets=(--target fuzz_safetensors fuzz_torchbin) ;;
    --build-dir) build="$2"; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$1'" >&2; sed -n '2,7p' "$0" >&2; exit 2 ;;
  esac
  shift
done

packages=(build-essential cmake pkg-config lua5.4 liblua5.4-dev libopenblas-dev libopenblas0-openmp
          libcjson-dev libcurl4-openssl-dev libreadline-dev libpcre2-dev clang libclang-rt-14-dev
          openmpi-bin libopenmpi-dev libmicrohttpd-dev libjs-chart.js wrk chromium curl nodejs)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

log="$build/setup.log"
mkdir -p "$build"
if [ ! -f "$build/CMakeCache.txt" ]; then
  echo "setup: configuring $build"
  if ! "${cc[@]}" cmake -S "$root" -B "$build" "${cmake_args[@]}" >"$log" 2>&1; then
    cat "$log" >&2; exit 1
  fi
fi
if ! cmake --build "$build" -j "$(nproc)" "${targets[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "setup: build failed (log: $log)" >&2
  exit 1
fi
if grep -q "warning:" "$log"; then
  grep -B2 -A3 "warning:" "$log" >&2
  echo "setup: the build has warnings (chai builds with zero warnings)" >&2
  exit 1
fi
echo "setup: built $build"
