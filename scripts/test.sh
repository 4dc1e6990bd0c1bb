#!/usr/bin/env bash
# Build and run the whole test suite, as CI does:
#   1. release build with -Werror, all tests;
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build, all tests;
#   3. libFuzzer targets, each for a bounded time (HALO_FUZZ_SECONDS, default 25).
# Tests that need ../shared/fixtures report "skipped" when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
jobs=$(nproc)
fuzz_seconds=${HALO_FUZZ_SECONDS:-25}

echo "== release build (-Werror) =="
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DHALO_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== sanitizer build (ASan + UBSan) =="
# -O1: the optimisation AddressSanitizer's documentation recommends (asserts stay on); at -O0
# this stage's tests took 683 s of the suite's 21.5 minutes, at -O1 356 s on a busy machine
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHALO_WERROR=ON -DHALO_SANITIZE=ON -DHALO_CUDA=OFF \
  -DCMAKE_C_COMPILER=clang "-DCMAKE_C_FLAGS_DEBUG=-O1 -g" >/dev/null
cmake --build build-asan -j "$jobs"
# HALO_TEST_QUICK: tests that repeat one code path many times (whole-file CLI loops) do
# fewer repetitions here; the release stage runs them in full.
HALO_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== fuzzing (${fuzz_seconds}s per target) =="
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHALO_FUZZ=ON -DHALO_SANITIZE=ON -DHALO_CUDA=OFF \
  -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build-fuzz -j "$jobs"
# the targets run $jobs at a time (each is one process on one core); a target that fails
# (a crash, a leak, a timeout) fails the stage with its log
fuzz_one() {
  local target=$1 name corpus
  name=$(basename "$target")
  corpus=build-fuzz/corpus-$name
  mkdir -p "$corpus"
  local seeds=()
  [ -d "fuzz/seeds/$name" ] && seeds+=("fuzz/seeds/$name")
  "$target" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    "$corpus" "${seeds[@]}" > "build-fuzz/$name.log" 2>&1
}
pids=() names=()
fuzz_fail=0
for target in build-fuzz/fuzz_*; do
  [ -x "$target" ] || continue
  fuzz_one "$target" &
  pids+=($!) names+=("$(basename "$target")")
  if [ ${#pids[@]} -ge "$jobs" ]; then
    for i in "${!pids[@]}"; do
      wait "${pids[$i]}" || fuzz_fail=1
      echo "-- ${names[$i]}"; tail -n 12 "build-fuzz/${names[$i]}.log"
    done
    pids=() names=()
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || fuzz_fail=1
  echo "-- ${names[$i]}"; tail -n 12 "build-fuzz/${names[$i]}.log"
done
[ $fuzz_fail = 0 ] || { echo "a fuzz target failed (its log above)"; exit 1; }
echo "all test stages passed"
