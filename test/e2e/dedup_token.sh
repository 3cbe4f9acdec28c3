#!/usr/bin/env bash
# Inserts re-sent from a disk buffer after kill -9 carry the same deduplication token: see dedup_token.py.
set -euo pipefail
exec python3 "$(dirname "$0")/dedup_token.py" "$1"
