#!/usr/bin/env bash
# Every pipeline in pipelines/ has its tests in pipelines/tests/<name>.yaml, and they pass.
# A file of APIs alone (no sources: nothing for `weir test` to feed) is validated instead;
# its API is tested end to end (test/e2e/analytics.py).
source "$(dirname "$0")/lib.bash"
root=${WEIR_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
count=0
for pipeline in "$root"/pipelines/*.yaml; do
  name=$(basename "$pipeline")
  if ! grep -q '^sources:' "$pipeline"; then
    WEIR_ANALYTICS_TOKEN=t "$WEIR" validate -c "$pipeline" >/dev/null || fail "$name (APIs alone) does not validate"
    pass "$name: APIs alone, valid"
    continue
  fi
  tests="$root/pipelines/tests/$name"
  [[ -f $tests ]] || fail "$name has no tests (pipelines/tests/$name)"
  out=$("$WEIR" test -c "$pipeline" -c "$tests" --junit "$WORK/$name.xml") || { echo "$out"; fail "weir test of $name"; }
  grep -q 'failures="0"' "$WORK/$name.xml" || fail "$name: the JUnit report counts failures"
  count=$((count + 1))
  pass "$name: $(echo "$out" | tail -1)"
done
[[ $count -ge 6 ]] || fail "only $count pipelines found"
pass "all $count pipelines tested"
