#!/usr/bin/env bash
# The influxdb sink against a real InfluxDB, and the LUNA monitoring pipeline (see influxdb.py).
set -euo pipefail
exec python3 "$(dirname "$0")/influxdb.py" "$1"
