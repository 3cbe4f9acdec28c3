#!/usr/bin/env bash
# weir SIGKILLed at random moments, ClickHouse away mid-run: nothing answered 200 is lost (see crash_clickhouse.py).
set -euo pipefail
exec python3 "$(dirname "$0")/crash_clickhouse.py" "$1"
