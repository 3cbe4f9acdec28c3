#!/usr/bin/env bash
# request.failover on two ReplicatedMergeTree replicas and a private ZooKeeper (see clickhouse_failover.py).
set -euo pipefail
exec python3 "$(dirname "$0")/clickhouse_failover.py" "$1"
