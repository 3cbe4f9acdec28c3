#!/usr/bin/env bash
# weir test fails wrong expectations, each clearly, and passes right ones: conditions,
# counts, match: all, golden files (and --update-golden), no_outputs_from, unknown names;
# a test that asserts nothing is an error.
source "$(dirname "$0")/lib.bash"
fixtures=${WEIR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/test/e2e/fixtures
cp "$fixtures/wrong-expectations.yaml" "$fixtures/golden-two-events.ndjson" "$WORK/"
set +e
out=$("$WEIR" test -c "$WORK/wrong-expectations.yaml" --junit "$WORK/report.xml")
rc=$?
set -e
echo "$out"
[[ $rc -eq 1 ]] || fail "weir test exits 1 when tests fail (got $rc)"
expect() { grep -qF -- "$1" <<< "$out" || fail "the report says: $1"; }
expect "PASS  right"
expect "FAIL  wrong condition"
expect "extract_from only_a: expected at least one event matching (.n == 5); 0 of 1 event(s) matched. Seen:"
expect '{"kind":"a","n":1}'
expect "FAIL  wrong count"
expect "expected exactly 1 event(s) matching (.kind == \"a\"); 2 of 2 event(s) matched"
expect "FAIL  not all match"
expect "expected every event matching (.n > 0); 1 of 2 event(s) matched"
expect "FAIL  golden differs"
expect "first difference at line 2"
expect '- {"kind":"a","n":2}'
expect '+ {"kind":"a","n":3}'
expect "FAIL  something came out"
expect "no_outputs_from only_a: expected no events, got 1"
expect "FAIL  unknown component"
expect "extract_from 'only_b' names no component (did you mean 'only_a'?)"
expect "7 test(s): 1 passed, 6 failed"
pass "each wrong expectation fails, with what was seen"
grep -q 'tests="7" failures="6"' "$WORK/report.xml" || fail "JUnit report: 7 tests, 6 failures"
grep -q '<testcase name="right"[^>]*/>' "$WORK/report.xml" || fail "JUnit: the right test passed"
pass "JUnit report"

# --update-golden writes what was seen; the test then passes.
"$WEIR" test -c "$WORK/wrong-expectations.yaml" --update-golden > "$WORK/update.out" || true
grep -q "wrote .*golden-two-events.ndjson" "$WORK/update.out" || fail "--update-golden writes the golden file"
[[ $(cat "$WORK/golden-two-events.ndjson") == $'{"kind":"a","n":1}\n{"kind":"a","n":3}' ]] || fail "golden file content"
set +e
after=$("$WEIR" test -c "$WORK/wrong-expectations.yaml")
set -e
grep -qF "PASS  golden differs" <<< "$after" || fail "after --update-golden the golden test passes"
pass "--update-golden"

set +e
nothing=$("$WEIR" test -c "$fixtures/asserts-nothing.yaml" 2>&1)
rc=$?
set -e
[[ $rc -ne 0 ]] && grep -qF "asserts nothing" <<< "$nothing" || fail "a test that asserts nothing is an error: $nothing"
grep -qF "asserts-nothing.yaml:6:" <<< "$nothing" || fail "with its file and line: $nothing"
pass "a test asserting nothing is an error, with file:line"
