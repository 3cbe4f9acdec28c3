#!/usr/bin/env bash
# The file sink reopens its path after logrotate moves or removes the file (see file_rotation.py).
set -euo pipefail
exec python3 "$(dirname "$0")/file_rotation.py" "$1"
