#!/usr/bin/env bash
# The kafka source against librdkafka's mock cluster, fed by kcat (see kafka_source.py).
set -euo pipefail
exec python3 "$(dirname "$0")/kafka_source.py" "$1"
