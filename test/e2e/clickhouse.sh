#!/usr/bin/env bash
# The clickhouse sink against a real ClickHouse (see clickhouse.py).
set -euo pipefail
exec python3 "$(dirname "$0")/clickhouse.py" "$1"
