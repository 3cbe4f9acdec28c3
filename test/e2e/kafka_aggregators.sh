#!/usr/bin/env bash
# Working time after Kafka: two aggregators, one killed, state per partition in Kafka (see kafka_aggregators.py).
set -euo pipefail
exec python3 "$(dirname "$0")/kafka_aggregators.py" "$1"
