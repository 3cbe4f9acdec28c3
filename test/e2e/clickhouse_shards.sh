#!/usr/bin/env bash
# The shard transform against a real 2-shard ClickHouse (see clickhouse_shards.py).
set -euo pipefail
exec python3 "$(dirname "$0")/clickhouse_shards.py" "$1"
