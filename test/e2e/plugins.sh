#!/usr/bin/env bash
# Transform plugins built out of tree against the installed SDK, loaded and refused (see plugins.py).
set -euo pipefail
exec python3 "$(dirname "$0")/plugins.py" "$1"
