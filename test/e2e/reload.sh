#!/usr/bin/env bash
# Reload while events flow: see reload.py.
set -euo pipefail
exec python3 "$(dirname "$0")/reload.py" "$1"
