#!/usr/bin/env bash
# `make demo`: the pipeline on the local stack. The Makefile has already run stack-up and
# built the binaries. The streams (OrdersStream 4 shards, JobResultsStream 2 shards), the
# archive bucket and the database schema are created; chief-datagen writes orders and job
# results with duplicates; chief-producer puts them into the streams (KPL aggregation,
# per-shard rate limits, retries); the four executors run as background processes (two
# workers for chief-order-factory-s3) until S3 and the Elasticsearch stand-in hold every
# unique record; `chiefctl probe` measures send → Elasticsearch latency with fresh orders;
# the executors are stopped with SIGTERM (flush, checkpoint, release); chief-loader (local
# mode) loads the S3 files into MariaDB with LOAD DATA … IGNORE; `chiefctl reconcile`
# compares every sink with what was produced. Exit 1 if anything was lost.
#
# DEMO_ORDERS (default 20000) and DEMO_DUPLICATE_RATIO (default 0.1) size the run;
# DEMO_SEED (default: the time) picks the orders; DEMO_PROBES (default 100) latency probes.
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
reconcile() { # field inputs... -- args
    "$BIN/chiefctl" reconcile --config "$LOCAL_CONFIG" "$@" 2>>"$WORK/reconcile.log" || true
}
field() { { grep -o "\"$1\":[0-9]*" || true; } | cut -d: -f2; }

step "streams and bucket (chiefctl setup)"
"$BIN/chiefctl" setup --config config/chiefctl.toml --config "$LOCAL_CONFIG"

# Dead letters of earlier runs stay in the bucket: this run's are the ones it adds.
dead_before=$(reconcile --input /dev/null --dead-letter-prefix errors | field dead_letters)
step "the dashboard (chief-dashboard, left running with the stack)"
# Seed 000's realtime web front-end: reads both streams from their oldest record, so it
# shows every run since the stack started. One at a time: the previous demo's is stopped.
DASHBOARD_PORT="${DASHBOARD_PORT:-8080}"
RUN="$ROOT/.local/run"
mkdir -p "$RUN"
if [[ -f "$RUN/dashboard.pid" ]]; then
    kill -TERM "$(cat "$RUN/dashboard.pid")" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$(cat "$RUN/dashboard.pid")" 2>/dev/null || break; sleep 0.1; done
fi
CHIEF__HTTP__LISTEN="127.0.0.1:$DASHBOARD_PORT" setsid nohup "$BIN/chief-dashboard" \
    --config config/dashboard.toml --config "$LOCAL_CONFIG" --worker-id demo-dashboard \
    >"$ROOT/.local/logs/dashboard.log" 2>&1 </dev/null &
echo $! >"$RUN/dashboard.pid"
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$DASHBOARD_PORT/healthz" >/dev/null && break
    kill -0 "$(cat "$RUN/dashboard.pid")" 2>/dev/null || { tail -n 5 "$ROOT/.local/logs/dashboard.log" >&2; echo "demo: chief-dashboard did not start" >&2; exit 1; }
    sleep 0.2
done
echo "chief-dashboard: http://127.0.0.1:$DASHBOARD_PORT/ (pid $(cat "$RUN/dashboard.pid"), log .local/logs/dashboard.log)"

step "database schema (chief-loader migrate)"
"$BIN/chief-loader" migrate --config config/loader.toml --config "$LOCAL_CONFIG"

step "generate $ORDERS orders and job results, duplicate ratio $RATIO (chief-datagen)"
# A new seed per run (DEMO_SEED to repeat one): a second demo sends new orders, so "caught
# up" means this run's records went through, not an earlier run's.
SEED="${DEMO_SEED:-$(date +%s)}"
echo "seed $SEED"
"$BIN/chief-datagen" orders --count "$ORDERS" --duplicate-ratio "$RATIO" --seed "$SEED" >"$WORK/orders.jsonl"
"$BIN/chief-datagen" jobresults --count "$ORDERS" --duplicate-ratio "$RATIO" --seed "$SEED" >"$WORK/jobresults.jsonl"

step "put them into Kinesis (chief-producer)"
produce() { # stream records file
    # The emulator on a busy 2-core machine can be far slower than Kinesis: records get
    # 5 minutes before they count as failed instead of the production 30 s.
    CHIEF__PRODUCER__RECORD_TTL_MS="${DEMO_RECORD_TTL_MS:-300000}" "$BIN/chief-producer" --config config/producer.toml --config "$LOCAL_CONFIG" \
        --stream "$1" --records "$2" --input "$3" --failed-file "$WORK/$1-failed.jsonl" --progress 2
}
produce OrdersStream orders "$WORK/orders.jsonl" | tee "$WORK/orders-producer.txt"
produce JobResultsStream jobresults "$WORK/jobresults.jsonl" | tee "$WORK/jobresults-producer.txt"

unique() { grep -o '"orderid":"[^"]*"' "$1" | sort -u | wc -l; }
put() { grep -o 'put [0-9]*' "$1" | head -n1 | cut -d' ' -f2; }
orders_unique=$(unique "$WORK/orders.jsonl")
jobs_unique=$(unique "$WORK/jobresults.jsonl")
orders_put=$(put "$WORK/orders-producer.txt")
jobs_put=$(put "$WORK/jobresults-producer.txt")

step "the four executors (background, two workers for chief-order-factory-s3; logs in $WORK/)"
ES_URL="${CHIEF__ELASTICSEARCH__URL:-http://127.0.0.1:9200}"
pids=()
start_executor() { # executor worker
    # S3 batches close after 10 s here instead of the production 60 s, to keep the demo short.
    CHIEF__ARCHIVE__MAX_AGE_MS="${DEMO_BATCH_AGE_MS:-10000}" \
        "$BIN/chief-$1" --config "config/$1.toml" --config "$LOCAL_CONFIG" \
        --worker-id "demo-$2" >"$WORK/$2.log" 2>&1 &
    pids+=($!)
    echo "chief-$1 (worker demo-$2): pid $!"
}
start_executor order-factory-s3 order-factory-s3-a
start_executor order-factory-s3 order-factory-s3-b
start_executor order-es-s3 order-es-s3
start_executor jobresult-es jobresult-es
start_executor jobresult-notify-s3 jobresult-notify-s3
stop_executors() {
    local status=0
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
    pids=()
    return $status
}
trap 'stop_executors || true' EXIT

bar() { # done total
    local width=30 filled=$(( $2 > 0 ? $1 * 30 / $2 : 30 ))
    (( filled > width )) && filled=$width
    printf '[%s%s] %3d%%' "$(printf '%*s' "$filled" '' | tr ' ' '#')" \
        "$(printf '%*s' $((width - filled)) '' | tr ' ' '.')" $(( $2 > 0 ? $1 * 100 / $2 : 100 ))
}
# Waits until the S3 prefixes and the indices hold every unique id of the inputs.
wait_caught_up() { # label orders-inputs... (jobresults input is fixed)
    local label=$1; shift
    local deadline=$(($(date +%s) + ${DEMO_TIMEOUT:-300}))
    local order_inputs=() f
    for f in "$@"; do order_inputs+=(--input "$f"); done
    while :; do
        local o_s3 o_es j_s3 j_es want_o want_j
        want_o=$(cat "$@" | grep -o '"orderid":"[^"]*"' | sort -u | wc -l)
        want_j=$jobs_unique
        o_s3=$(reconcile "${order_inputs[@]}" --s3-prefix ChiefOrderS3 --s3-prefix ChiefOrderEsS3 | field in_s3_unique)
        j_s3=$(reconcile --input "$WORK/jobresults.jsonl" --s3-prefix ChiefJobResultNotifyS3 | field in_s3_unique)
        o_es=0; j_es=0
        # Elasticsearch is looked up id by id (the indices hold earlier runs too), so only
        # once S3, whose batches close last, has caught up.
        if (( ${o_s3:-0} >= want_o && ${j_s3:-0} >= want_j )); then
            o_es=$(reconcile "${order_inputs[@]}" --index orders | field in_es)
            j_es=$(reconcile --input "$WORK/jobresults.jsonl" --index jobresults | field in_es)
        fi
        local done=$(( ${o_s3:-0} + ${o_es:-0} + ${j_s3:-0} + ${j_es:-0} ))
        local total=$(( 2 * want_o + 2 * want_j ))
        (( done > total )) && done=$total
        printf '\r%s %s orders S3 %s/%s ES %s/%s, jobresults S3 %s/%s ES %s/%s ' "$label" \
            "$(bar "$done" "$total")" "${o_s3:-0}" "$want_o" "${o_es:-0}" "$want_o" \
            "${j_s3:-0}" "$want_j" "${j_es:-0}" "$want_j"
        if (( ${o_s3:-0} >= want_o && ${o_es:-0} >= want_o && ${j_s3:-0} >= want_j && ${j_es:-0} >= want_j )); then
            echo; return 0
        fi
        if (( $(date +%s) >= deadline )); then
            echo; echo "demo: timed out waiting for the executors (logs in $WORK)" >&2; return 1
        fi
        sleep 2
    done
}

step "wait until every executor has caught up"
caught_up=ok
wait_caught_up "backlog" "$WORK/orders.jsonl" || caught_up=failed

step "latency probe: 100 fresh orders, send → visible in Elasticsearch (chiefctl probe)"
"$BIN/chiefctl" probe --config "$LOCAL_CONFIG" --stream OrdersStream --index orders \
    --count "${DEMO_PROBES:-100}" --seed "$(date +%s%N)" --out "$WORK/probe-orders.jsonl" \
    | tee "$WORK/probe.json" || caught_up=failed
latency_p50=$(field latency_ms_p50 <"$WORK/probe.json"); latency_p99=$(field latency_ms_p99 <"$WORK/probe.json")
wait_caught_up "probes " "$WORK/orders.jsonl" "$WORK/probe-orders.jsonl" || caught_up=failed

step "stop the executors (SIGTERM: flush, checkpoint, release the leases)"
stopped=ok
stop_executors || stopped=failed
trap - EXIT
echo "executors stopped: $stopped"

step "load S3 into MariaDB (chief-loader run --mode local)"
"$BIN/chief-loader" run --config config/loader.toml --config "$LOCAL_CONFIG" --mode local \
    | tee "$WORK/loader.txt" || echo "chief-loader run failed" >&2

step "reconcile every sink with what was produced (chiefctl reconcile)"
# Every sink of every executor: both executors that archive orders, the table, the index.
orders_report=$(reconcile --input "$WORK/orders.jsonl" --input "$WORK/probe-orders.jsonl" \
    --s3-prefix ChiefOrderS3 --s3-prefix ChiefOrderEsS3 --table orders --index orders)
jobs_report=$(reconcile --input "$WORK/jobresults.jsonl" \
    --s3-prefix ChiefJobResultNotifyS3 --table jobresults --index jobresults)
echo "orders:     $orders_report"
echo "jobresults: $jobs_report"
# Dead letters are objects in S3 (errors/<executor>/…): this run's are the ones added.
dead_after=$(reconcile --input /dev/null --dead-letter-prefix errors | field dead_letters)
dead_letters=$(( ${dead_after:-0} - ${dead_before:-0} ))
seconds=$(($(date +%s) - started))
get() { echo "$1" | field "$2"; }
o_prod=$(get "$orders_report" produced); o_uniq=$(get "$orders_report" unique)
o_s3=$(get "$orders_report" in_s3_unique); o_db=$(get "$orders_report" in_db); o_es=$(get "$orders_report" in_es)
j_prod=$(get "$jobs_report" produced); j_uniq=$(get "$jobs_report" unique)
j_s3=$(get "$jobs_report" in_s3_unique); j_db=$(get "$jobs_report" in_db); j_es=$(get "$jobs_report" in_es)
o_lost=$(get "$orders_report" lost); j_lost=$(get "$jobs_report" lost)
lost=$(( ${o_lost:-1} + ${j_lost:-1} ))   # no report counts as a loss

step "summary"
printf '%-11s %9s %8s %8s %9s %9s %14s\n' stream produced unique put "S3 unique" MariaDB Elasticsearch
printf '%-11s %9s %8s %8s %9s %9s %14s\n' orders "$o_prod" "$o_uniq" "$orders_put" "$o_s3" "$o_db" "$o_es"
printf '%-11s %9s %8s %8s %9s %9s %14s\n' jobresults "$j_prod" "$j_uniq" "$jobs_put" "$j_s3" "$j_db" "$j_es"
printf 'lost %s, dead letters %s, latency send → Elasticsearch p50 %s ms p99 %s ms, %s s\n' \
    "$lost" "$dead_letters" "${latency_p50:-?}" "${latency_p99:-?}" "$seconds"
printf '{"orders_produced": %s, "orders_unique": %s, "orders_in_s3_unique": %s, "orders_in_db": %s, "orders_in_es": %s, "jobresults_produced": %s, "jobresults_unique": %s, "jobresults_in_s3_unique": %s, "jobresults_in_db": %s, "jobresults_in_es": %s, "dead_letters": %s, "lost": %s, "seconds": %s, "latency_ms_p50": %s, "latency_ms_p99": %s}\n' \
    "${o_prod:-0}" "${o_uniq:-0}" "${o_s3:-0}" "${o_db:-0}" "${o_es:-0}" \
    "${j_prod:-0}" "${j_uniq:-0}" "${j_s3:-0}" "${j_db:-0}" "${j_es:-0}" \
    "$dead_letters" "$lost" "$seconds" "${latency_p50:-null}" "${latency_p99:-null}"

dashboard=$(curl -sf "http://127.0.0.1:$DASHBOARD_PORT/api/summary" || echo '{}')
d_orders=$(echo "$dashboard" | field orders); d_jobs=$(echo "$dashboard" | field jobresults)
printf 'dashboard http://127.0.0.1:%s/ shows %s unique orders and %s job results (every run since the stack started)\n' \
    "$DASHBOARD_PORT" "${d_orders:-?}" "${d_jobs:-?}"

cat <<EOT

The local stack stays up; look around with:
  open http://127.0.0.1:$DASHBOARD_PORT/   (chief-dashboard: live over SSE, still running)
  $BIN/chiefctl leases --config config/local.toml --table chief-order-factory-s3
  $BIN/chiefctl tail --config config/local.toml --stream OrdersStream --max-records 3
  mariadb -h 127.0.0.1 -P ${MARIADB_PORT:-3307} -u root chief -e 'SELECT * FROM load_history LIMIT 5'
  curl -s $ES_URL/orders/_count
Stop it with: make stack-down
EOT
status=0
if [[ "$orders_put" != "$ORDERS" || "$jobs_put" != "$ORDERS" ]]; then
    echo "demo: not every record was put" >&2
    status=1
fi
if [[ "$lost" != 0 ]]; then
    echo "demo: $lost unique records are missing from a sink" >&2
    status=1
fi
if [[ -z "${d_orders:-}" ]] || (( d_orders < o_uniq )); then
    echo "demo: the dashboard does not show this run's orders" >&2
    status=1
fi
if [[ "$stopped" != ok || "$caught_up" != ok ]]; then
    echo "demo: an executor did not catch up or did not stop cleanly" >&2
    status=1
fi
exit $status
