#!/usr/bin/env bash
# The file source: globs, rotation, truncation, checkpoints, kill -9 (see file_source.py).
set -euo pipefail
exec python3 "$(dirname "$0")/file_source.py" "$1"
