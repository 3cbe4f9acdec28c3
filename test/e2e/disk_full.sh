#!/usr/bin/env bash
# A disk buffer on a full filesystem (a small tmpfs): see disk_full.py.
set -euo pipefail
exec python3 "$(dirname "$0")/disk_full.py" "$1"
