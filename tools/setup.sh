#!/usr/bin/env bash
# Installs what weir needs to build and test on Debian 12, and nothing that is already there.
# Idempotent: a second run does no apt work at all.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ccache
  libuv1-dev libyaml-cpp-dev libsimdjson-dev libcurl4-openssl-dev libfmt-dev catch2
  libhttp-parser-dev zlib1g-dev libzstd-dev libre2-dev libisal-dev
  librdkafka-dev  # the kafka sink and source; its rdkafka_mock.h is the tests' Kafka cluster
  libssl-dev  # libcrypto: base64 for basic auth, the pseudonymise example plugin's HMAC-SHA256
  clang libclang-rt-14-dev  # libFuzzer and its sanitizers: the fuzz targets (test/fuzz/)
  python3 curl zstd
  kcat  # a Kafka client apart from weir: the kafka tests read back what the sink produced
  tmux  # weir top is tested in a terminal (test/e2e/top.sh)
  chromium chromium-driver  # the dashboards are tested in headless Chromium (test/e2e/dashboards.py)
  libjs-chart.js  # Chart.js for the dashboards' charts, served from /usr/share/javascript
  clickhouse-server clickhouse-client  # the clickhouse sink's tests and the main job
  zookeeper  # ReplicatedMergeTree replicas for the failover test (test/e2e/clickhouse_failover.py)
  influxdb influxdb-client             # the influxdb sink's tests (InfluxDB 1.6)
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
