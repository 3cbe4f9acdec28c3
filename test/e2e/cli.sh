#!/usr/bin/env bash
# The command line: validate (with file:line:col and hints), graph, list, version, help.
source "$(dirname "$0")/lib.bash"

cat > "$WORK/typo.yaml" <<'YAML'
sources:
  in:
    type: stdin
sinks:
  out:
    type: file
    inputs: [in]
    pth: /tmp/out.ndjson
YAML
set +e
"$WEIR" validate -c "$WORK/typo.yaml" >"$WORK/out" 2>"$WORK/err"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "validate of a bad config exited $rc"
grep -qF "$WORK/typo.yaml:8:5: error: unknown key 'pth' in sink 'out' (type file) (did you mean 'path'?)" "$WORK/err" ||
  { cat "$WORK/err"; fail "no file:line:col with hint"; }
grep -qF "$WORK/typo.yaml:5:3: error: sink 'out' (type file) is missing required key 'path'" "$WORK/err" ||
  { cat "$WORK/err"; fail "missing key not reported"; }
pass "validate reports the misspelt key with its position and a hint"

set +e
"$WEIR" run -c "$WORK/typo.yaml" </dev/null >/dev/null 2>"$WORK/err"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "run of a bad config exited $rc"
grep -q "the pipeline was not started" "$WORK/err" || fail "run did not refuse"
pass "run refuses a bad config before starting"

cat > "$WORK/good.yaml" <<'YAML'
sources:
  in: { type: stdin }
  gen: { type: demo, count: 10 }
sinks:
  out: { type: console, inputs: [in, gen] }
  spare: { type: blackhole, inputs: [gen] }
YAML
"$WEIR" validate -c "$WORK/good.yaml" >"$WORK/out"
grep -q "^valid: 2 source(s), 0 transform(s), 2 sink(s), 3 edge(s)" "$WORK/out" || { cat "$WORK/out"; fail "validate summary"; }
"$WEIR" graph -c "$WORK/good.yaml" >"$WORK/dot"
grep -q '"gen" -> "spare";' "$WORK/dot" && grep -q '^digraph weir {' "$WORK/dot" || { cat "$WORK/dot"; fail "graph"; }
pass "validate summary and graph"

"$WEIR" list >"$WORK/list"
for t in "source stdin" "source demo" "sink console" "sink file" "sink blackhole"; do
  grep -q "^$t\$" "$WORK/list" || fail "weir list lacks $t"
done
grep -qE '^ +decoding.codec +json\|text +default json' "$WORK/list" || fail "weir list lacks stdin's options"
grep -qE '^ +path +string +required' "$WORK/list" || fail "weir list lacks file.path"
"$WEIR" --version | grep -qE '^weir [0-9]+\.[0-9]+\.[0-9]+ \(plugin ABI [0-9]+\.[0-9]+\)$' || fail "--version"
"$WEIR" help | grep -q "weir validate" || fail "help"
set +e
"$WEIR" frobnicate >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "unknown verb should exit 2"
set -e
pass "list, version, help"
