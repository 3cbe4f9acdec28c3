#!/usr/bin/env bash
# CVAT analytics past one machine: 3 sidecars, Kafka (mock), 2 aggregators, 2 ClickHouse shards (see kafka_deployment.py).
set -euo pipefail
exec python3 "$(dirname "$0")/kafka_deployment.py" "$1"
