#!/usr/bin/env bash
# Memory through a sink outage, memory and disk buffers: see memory_outage.py.
set -euo pipefail
exec python3 "$(dirname "$0")/memory_outage.py" "$1"
