#!/usr/bin/env bash
# working_time against an independent implementation (see working_time_check.py).
set -euo pipefail
exec python3 "$(dirname "$0")/working_time_check.py" "$1"
