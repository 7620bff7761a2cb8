#!/usr/bin/env bash
# `make demo`: the pipeline on the local stack. The Makefile has already run stack-up and
# built the binaries. Today it prepares everything the pipeline writes to: the streams
# (OrdersStream 4 shards, JobResultsStream 2 shards), the archive bucket and the database
# schema, and says what it did. The producer, executors and loader runs join it as they land.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/target/debug}"
LOCAL_CONFIG="$ROOT/config/local.toml"
cd "$ROOT"

step() { printf '\n== %s\n' "$*"; }

step "streams and bucket (chiefctl setup)"
"$BIN/chiefctl" setup --config config/chiefctl.toml --config "$LOCAL_CONFIG"

step "database schema (chief-loader migrate)"
"$BIN/chief-loader" migrate --config config/loader.toml --config "$LOCAL_CONFIG"

step "aggregation round trip (chiefctl agg pack | chiefctl agg unpack)"
printf '{"partition_key":"%s","data":"%s"}\n' \
    "order-1" "$(printf '{"orderid":"order-1"}' | base64 -w0)" \
    "order-2" "$(printf '{"orderid":"order-2"}' | base64 -w0)" \
    "order-3" "$(printf '{"orderid":"order-3"}' | base64 -w0)" \
    | "$BIN/chiefctl" agg pack \
    | tee /dev/stderr \
    | "$BIN/chiefctl" agg unpack

cat <<EOT

The local stack stays up; look around with:
  aws --endpoint-url http://127.0.0.1:${KINESIS_PORT:-4568} kinesis list-streams
  aws --endpoint-url http://127.0.0.1:${MOTO_PORT:-5000} s3 ls
  mariadb -h 127.0.0.1 -P ${MARIADB_PORT:-3307} -u root chief -e 'SHOW TABLES'
Stop it with: make stack-down
EOT
