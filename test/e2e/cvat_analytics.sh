#!/usr/bin/env bash
# The CVAT analytics pipeline into a real ClickHouse (see cvat_analytics.py).
set -euo pipefail
exec python3 "$(dirname "$0")/cvat_analytics.py" "$1"
