#!/usr/bin/env bash
# The http_server source's bounds against hostile clients (see intake_limits.py).
set -euo pipefail
exec python3 "$(dirname "$0")/intake_limits.py" "$1"
