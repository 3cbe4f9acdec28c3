#!/usr/bin/env bash
# crash_clickhouse.py on the file source without the rotation: kill -9 x10, ClickHouse away 20 s;
# every line written arrives, and working time (run where the file source decodes, ADR 015)
# equals the uninterrupted computation to the ms.
set -euo pipefail
CRASH_SOURCE=file CRASH_NO_ROTATION=1 CRASH_OUTAGE_SECONDS=${CRASH_OUTAGE_SECONDS:-20} \
  exec python3 "$(dirname "$0")/crash_clickhouse.py" "$1"
