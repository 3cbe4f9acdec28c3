#!/usr/bin/env bash
# request.failover: two ClickHouse servers as replicas, one down, both down (see clickhouse_failover.py).
set -euo pipefail
exec python3 "$(dirname "$0")/clickhouse_failover.py" "$1"
