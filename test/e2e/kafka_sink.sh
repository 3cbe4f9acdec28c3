#!/usr/bin/env bash
# The kafka sink against librdkafka's mock cluster, read back with kcat (see kafka_sink.py).
set -euo pipefail
exec python3 "$(dirname "$0")/kafka_sink.py" "$1"
