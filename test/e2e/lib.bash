# Shared helpers for the end-to-end tests: each test gets its own temp dir, removed at exit.
set -euo pipefail
WEIR=${1:?usage: test.sh path/to/weir}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/weir-e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
