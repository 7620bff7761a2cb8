#!/usr/bin/env bash
# `make demo`: the pipeline on the local stack. The Makefile has already run stack-up and
# built the binaries. What runs today: the streams (OrdersStream 4 shards, JobResultsStream
# 2 shards), the archive bucket and the database schema are created; chief-datagen writes
# orders and job results with duplicates; chief-producer puts them into the streams (KPL
# aggregation, per-shard rate limits, retries). The executors and the loader join as they land.
#
# DEMO_ORDERS (default 20000) and DEMO_DUPLICATE_RATIO (default 0.1) size the run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/target/debug}"
LOCAL_CONFIG="$ROOT/config/local.toml"
ORDERS="${DEMO_ORDERS:-20000}"
RATIO="${DEMO_DUPLICATE_RATIO:-0.1}"
WORK="$ROOT/.local/demo"
cd "$ROOT"
mkdir -p "$WORK"
started=$(date +%s)

step() { printf '\n== %s\n' "$*"; }

step "streams and bucket (chiefctl setup)"
"$BIN/chiefctl" setup --config config/chiefctl.toml --config "$LOCAL_CONFIG"

step "database schema (chief-loader migrate)"
"$BIN/chief-loader" migrate --config config/loader.toml --config "$LOCAL_CONFIG"

step "generate $ORDERS orders and job results, duplicate ratio $RATIO (chief-datagen)"
"$BIN/chief-datagen" orders --count "$ORDERS" --duplicate-ratio "$RATIO" --seed 1 >"$WORK/orders.jsonl"
"$BIN/chief-datagen" jobresults --count "$ORDERS" --duplicate-ratio "$RATIO" --seed 1 >"$WORK/jobresults.jsonl"

step "put them into Kinesis (chief-producer)"
produce() { # stream file
    "$BIN/chief-producer" --config config/producer.toml --config "$LOCAL_CONFIG" \
        --stream "$1" --input "$2" --failed-file "$WORK/$1-failed.jsonl" --progress 2
}
produce OrdersStream "$WORK/orders.jsonl" | tee "$WORK/orders-producer.txt"
produce JobResultsStream "$WORK/jobresults.jsonl" | tee "$WORK/jobresults-producer.txt"

unique() { grep -o '"orderid":"[^"]*"' "$1" | sort -u | wc -l; }
put() { grep -o 'put [0-9]*' "$1" | head -n1 | cut -d' ' -f2; }
orders_unique=$(unique "$WORK/orders.jsonl")
jobs_unique=$(unique "$WORK/jobresults.jsonl")
orders_put=$(put "$WORK/orders-producer.txt")
jobs_put=$(put "$WORK/jobresults-producer.txt")
seconds=$(($(date +%s) - started))

step "summary"
printf '%-14s %10s %10s %10s\n' stream produced unique put
printf '%-14s %10s %10s %10s\n' orders "$ORDERS" "$orders_unique" "$orders_put"
printf '%-14s %10s %10s %10s\n' jobresults "$ORDERS" "$jobs_unique" "$jobs_put"
printf '{"orders_produced": %s, "orders_unique": %s, "orders_put": %s, "jobresults_produced": %s, "jobresults_unique": %s, "jobresults_put": %s, "seconds": %s}\n' \
    "$ORDERS" "$orders_unique" "$orders_put" "$ORDERS" "$jobs_unique" "$jobs_put" "$seconds"

cat <<EOT

The local stack stays up; look around with:
  $BIN/chief-datagen orders --count 3 | $BIN/chief-producer --config config/producer.toml --config config/local.toml --stream OrdersStream
  mariadb -h 127.0.0.1 -P ${MARIADB_PORT:-3307} -u root chief -e 'SHOW TABLES'
Stop it with: make stack-down
EOT
if [[ "$orders_put" != "$ORDERS" || "$jobs_put" != "$ORDERS" ]]; then
    echo "demo: not every record was put" >&2
    exit 1
fi
