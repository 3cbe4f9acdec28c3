#!/usr/bin/env bash
# The influxdb sink's v2 requests and fault handling, against a fake server (see influxdb_faults.py).
set -euo pipefail
exec python3 "$(dirname "$0")/influxdb_faults.py" "$1"
