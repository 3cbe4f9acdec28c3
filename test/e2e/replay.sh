#!/usr/bin/env bash
# weir replay: deterministic captures, compressed logs, the live equivalence of working time
# (see replay.py).
set -euo pipefail
exec python3 "$(dirname "$0")/replay.py" "$1"
