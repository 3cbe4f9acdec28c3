#!/usr/bin/env bash
# The http_server source and the API, driven by real clients (see http_server.py).
set -euo pipefail
exec python3 "$(dirname "$0")/http_server.py" "$1"
