#!/usr/bin/env bash
# The analytics API (CVAT's events export, the measures query) against a private ClickHouse
# 18.16 holding a deterministic fixture (see analytics.py).
set -euo pipefail
exec python3 "$(dirname "$0")/analytics.py" "$1"
