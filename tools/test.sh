#!/usr/bin/env bash
# README's second command (and .ci/run): install what is missing, build, and run every
# test: the unit tests and end-to-end tests of the Release build, the unit tests again
# under AddressSanitizer + UndefinedBehaviorSanitizer and again under ThreadSanitizer, and
# the fuzz targets (clang) for a short fixed number of executions each. Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh || exit 1
jobs=$(nproc 2>/dev/null || echo 2)

echo "== build (Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
cmake --build build -j"$jobs" || exit 1
echo "== build (ASan+UBSan, unit tests)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEIR_SANITIZE=ON -DWEIR_ONLY_UNIT_TESTS=ON >/dev/null || exit 1
cmake --build build-asan -j"$jobs" || exit 1
echo "== build (ThreadSanitizer, unit tests)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEIR_TSAN=ON -DWEIR_ONLY_UNIT_TESTS=ON >/dev/null || exit 1
cmake --build build-tsan -j"$jobs" || exit 1
echo "== build (clang, libFuzzer targets with ASan+UBSan)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEIR_FUZZ=ON -DWEIR_BUILD_TESTS=OFF \
  -DWEIR_BUILD_BENCH=OFF -DWEIR_ONLY_UNIT_TESTS=ON >/dev/null || exit 1
cmake --build build-fuzz -j"$jobs" || exit 1

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
passed=0
failed=0
status=0
run_ctest() {
  local dir=$1 log
  log=$(mktemp)
  echo "== ctest ($dir)"
  ctest --test-dir "$dir" -j"$jobs" --output-on-failure 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  [[ $rc -eq 0 ]] || status=1
  local line
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
  if [[ -n $line ]]; then
    local bad total
    bad=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
    total=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
    passed=$((passed + total - bad))
    failed=$((failed + bad))
  else
    status=1
  fi
  rm -f "$log"
}
run_ctest build-asan
run_ctest build-tsan  # decoding and encoding on the thread pool, the dead-letter writer, shared arenas
run_ctest build-fuzz  # each target a fixed 20,000 executions from its corpus; long runs: tools/fuzz.sh
run_ctest build
echo
echo "$passed passed, $failed failed"
exit $status
