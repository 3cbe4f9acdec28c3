#!/usr/bin/env bash
# tools/fuzz.sh TARGET SECONDS: runs one libFuzzer target of test/fuzz/ (answers, json_lines,
# timestamp, condition, config, http_body, http_request, lookup_table, line_protocol) for SECONDS, from its committed corpus. The
# targets are built with clang, ASan and UBSan in build-fuzz/. New inputs libFuzzer finds go
# to build-fuzz/found/TARGET (copy the interesting ones to test/fuzz/corpus/TARGET/); a
# crash is written as build-fuzz/crash-* and the run exits non-zero: make it a unit test.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: tools/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: tools/fuzz.sh TARGET SECONDS}
[[ -f test/fuzz/fuzz_$target.cpp ]] || { echo "no target '$target': $(ls test/fuzz/fuzz_*.cpp | sed 's|.*/fuzz_||; s|\.cpp||' | tr '\n' ' ')" >&2; exit 2; }
if [[ ! -f build-fuzz/CMakeCache.txt ]]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEIR_FUZZ=ON \
    -DWEIR_BUILD_TESTS=OFF -DWEIR_BUILD_BENCH=OFF -DWEIR_ONLY_UNIT_TESTS=ON >/dev/null
fi
cmake --build build-fuzz -j"$(nproc)" --target "fuzz_$target" >/dev/null
mkdir -p "build-fuzz/found/$target"
cd build-fuzz
exec "./fuzz/fuzz_$target" -max_total_time="$seconds" -max_len=8192 -timeout=10 -print_final_stats=1 \
  "found/$target" "../test/fuzz/corpus/$target"
