#!/usr/bin/env bash
# `make demo`: the pipeline on the local stack. The Makefile has already run stack-up and
# built the binaries. The streams (OrdersStream 4 shards, JobResultsStream 2 shards), the
# archive bucket and the database schema are created; chief-datagen writes orders and job
# results with duplicates; chief-producer puts them into the streams (KPL aggregation,
# per-shard rate limits, retries); the four executors run as background processes and
# sink them to S3 and the Elasticsearch stand-in; chief-loader (local mode, as cron would)
# loads the S3 files into MariaDB with LOAD DATA … IGNORE until every unique record is
# there; the executors are stopped with SIGTERM (flush, checkpoint, release) and the counts
# of every sink are compared with what was produced.
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

step "the four executors (background; logs in $WORK/<executor>.log)"
ES_URL="${CHIEF__ELASTICSEARCH__URL:-http://127.0.0.1:9200}"
pids=()
for executor in order-factory-s3 order-es-s3 jobresult-es jobresult-notify-s3; do
    # S3 batches close after 10 s here instead of the production 60 s, to keep the demo short.
    CHIEF__ARCHIVE__MAX_AGE_MS="${DEMO_BATCH_AGE_MS:-10000}" \
        "$BIN/chief-$executor" --config "config/$executor.toml" --config "$LOCAL_CONFIG" \
        --worker-id "demo-$executor" >"$WORK/$executor.log" 2>&1 &
    pids+=($!)
    echo "chief-$executor: pid $!"
done
stop_executors() {
    local status=0
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
    pids=()
    return $status
}
trap 'stop_executors || true' EXIT

sql() { mariadb -h 127.0.0.1 -P "${MARIADB_PORT:-3307}" -u root chief -N -B -e "$1"; }
es_count() { curl -s "$ES_URL/$1/_count" | grep -o '"count":[0-9]*' | cut -d: -f2; }

step "chief-loader run --mode local, every 5 s, until every unique record is in MariaDB and Elasticsearch"
deadline=$(($(date +%s) + ${DEMO_TIMEOUT:-300}))
while :; do
    "$BIN/chief-loader" run --config config/loader.toml --config "$LOCAL_CONFIG" --mode local \
        >>"$WORK/loader.log" 2>&1 || echo "chief-loader run failed (see $WORK/loader.log)"
    db_orders=$(sql 'SELECT COUNT(*) FROM orders')
    db_jobs=$(sql 'SELECT COUNT(*) FROM jobresults')
    es_orders=$(es_count orders || echo 0)
    es_jobs=$(es_count jobresults || echo 0)
    echo "MariaDB orders $db_orders/$orders_unique jobresults $db_jobs/$jobs_unique; Elasticsearch orders ${es_orders:-0}/$orders_unique jobresults ${es_jobs:-0}/$jobs_unique"
    if [[ "$db_orders" -ge "$orders_unique" && "$db_jobs" -ge "$jobs_unique" \
        && "${es_orders:-0}" -ge "$orders_unique" && "${es_jobs:-0}" -ge "$jobs_unique" ]]; then
        break
    fi
    if [[ $(date +%s) -ge $deadline ]]; then
        echo "demo: timed out waiting for the sinks (logs in $WORK)" >&2
        break
    fi
    sleep 5
done

step "stop the executors (SIGTERM: flush, checkpoint, release the leases)"
stopped=ok
stop_executors || stopped=failed
trap - EXIT
echo "executors stopped: $stopped"
dead_letters=$({ grep -h 'dead-lettered' "$WORK"/order-*.log "$WORK"/jobresult-*.log || true; } | wc -l)
seconds=$(($(date +%s) - started))

step "summary"
printf '%-11s %9s %8s %8s %9s %14s\n' stream produced unique put "MariaDB" "Elasticsearch"
printf '%-11s %9s %8s %8s %9s %14s\n' orders "$ORDERS" "$orders_unique" "$orders_put" "$db_orders" "${es_orders:-0}"
printf '%-11s %9s %8s %8s %9s %14s\n' jobresults "$ORDERS" "$jobs_unique" "$jobs_put" "$db_jobs" "${es_jobs:-0}"
printf '{"orders_produced": %s, "orders_unique": %s, "orders_put": %s, "orders_in_mariadb": %s, "orders_in_elasticsearch": %s, "jobresults_produced": %s, "jobresults_unique": %s, "jobresults_put": %s, "jobresults_in_mariadb": %s, "jobresults_in_elasticsearch": %s, "dead_letters": %s, "executors_stopped": "%s", "seconds": %s}\n' \
    "$ORDERS" "$orders_unique" "$orders_put" "$db_orders" "${es_orders:-0}" \
    "$ORDERS" "$jobs_unique" "$jobs_put" "$db_jobs" "${es_jobs:-0}" "$dead_letters" "$stopped" "$seconds"

cat <<EOT

The local stack stays up; look around with:
  mariadb -h 127.0.0.1 -P ${MARIADB_PORT:-3307} -u root chief -e 'SELECT * FROM load_history LIMIT 5'
  curl -s $ES_URL/orders/_count
  $BIN/chiefctl leases --config config/local.toml --table chief-order-factory-s3
Stop it with: make stack-down
EOT
status=0
if [[ "$orders_put" != "$ORDERS" || "$jobs_put" != "$ORDERS" ]]; then
    echo "demo: not every record was put" >&2
    status=1
fi
if [[ "$db_orders" != "$orders_unique" || "$db_jobs" != "$jobs_unique" \
    || "${es_orders:-0}" != "$orders_unique" || "${es_jobs:-0}" != "$jobs_unique" ]]; then
    echo "demo: the sinks do not hold exactly the unique records" >&2
    status=1
fi
if [[ "$stopped" != ok ]]; then
    echo "demo: an executor did not stop cleanly" >&2
    status=1
fi
exit $status
