# Shared helpers for the end-to-end tests: each test gets its own temp dir, removed at exit.
set -euo pipefail
WEIR=${1:?usage: test.sh path/to/weir}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/weir-e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# Writes $WORK/p.yaml: NDJSON on stdin -> $WORK/out.ndjson, dead letters in $WORK/data.
write_stdin_to_file_config() {
  cat > "$WORK/p.yaml" <<YAML
data_dir: $WORK/data
sources:
  in: { type: stdin }
sinks:
  out: { type: file, inputs: [in], path: "$WORK/out.ndjson" }
YAML
}
