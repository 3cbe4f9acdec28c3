#!/usr/bin/env bash
# README's first command: install what is missing, build, and run weir's main job.
# For now the main job is pipelines/demo.yaml (generated CVAT-like events to the console).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/build.sh
exec build/weir run -c pipelines/demo.yaml
