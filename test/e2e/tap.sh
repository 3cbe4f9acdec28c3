#!/usr/bin/env bash
# weir tap on a pipeline under load (see tap.py).
set -euo pipefail
exec python3 "$(dirname "$0")/tap.py" "$1"
