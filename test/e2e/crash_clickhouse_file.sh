#!/usr/bin/env bash
# crash_clickhouse.py on the file source: kill -9 x10, ClickHouse away 60 s, the log files rotated; every line written arrives.
set -euo pipefail
CRASH_SOURCE=file exec python3 "$(dirname "$0")/crash_clickhouse.py" "$1"
