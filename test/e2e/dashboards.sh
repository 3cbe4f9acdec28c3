#!/usr/bin/env bash
# The dashboards in headless Chromium (see dashboards.py).
set -euo pipefail
exec python3 "$(dirname "$0")/dashboards.py" "$1"
