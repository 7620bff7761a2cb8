#!/usr/bin/env bash
# `make bench`: the whole pipeline at a steady rate on the local stack, release builds.
# Fresh streams, lease tables, bucket prefixes and indices per run; chief-producer
# generates orders (BENCH_RATE/s, default 100) and job results (half that) for
# BENCH_SECONDS (default 60) while the four executors (two workers for
# chief-order-factory-s3) run and `chiefctl probe` measures send → Elasticsearch latency.
# Reports: orders/s end to end (unique orders in S3 / time from the first send until S3
# holds every one), latency p50/p99 from send to Elasticsearch (`chiefctl probe`), CPU
# seconds and peak RSS per process, lease table writes per shard per minute (from the
# lease counters: every renewal, take and checkpoint is one conditional UpdateItem).
# and from send to S3 (the LastModified of the object holding each probe, s3_latency.py).
# If a producer could not put every record (the local Kinesis could not keep up with
# BENCH_RATE), the run is void: it says so and exits 1.
# The Makefile has already run stack-up and built the release binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/target/release}"
LOCAL_CONFIG="$ROOT/config/local.toml"
RATE="${BENCH_RATE:-100}"
SECONDS_RUN="${BENCH_SECONDS:-60}"
ID="$(date +%s)"
WORK="$ROOT/.local/bench/$ID"
cd "$ROOT"
mkdir -p "$WORK"
ORDERS="bench-orders-$ID"
JOBS="bench-jobs-$ID"
BUCKET="chief-archive"

step() { printf '\n== %s\n' "$*"; }
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
field() { { grep -o "\"$1\":[0-9.]*" || true; } | head -n1 | cut -d: -f2; }

step "streams $ORDERS (4 shards) and $JOBS (2 shards)"
cat >"$WORK/chiefctl.toml" <<EOF
[setup]
bucket = "$BUCKET"
[[setup.streams]]
name = "$ORDERS"
shards = 4
[[setup.streams]]
name = "$JOBS"
shards = 2
EOF
"$BIN/chiefctl" setup --config config/chiefctl.toml --config "$LOCAL_CONFIG" --config "$WORK/chiefctl.toml"

for executor in order-factory-s3 order-es-s3 jobresult-es jobresult-notify-s3; do
    case $executor in order-*) stream=$ORDERS; kind=orders ;; *) stream=$JOBS; kind=jobresults ;; esac
    prefix=$(grep -o '^prefix = "[^"]*"' "config/$executor.toml" | cut -d'"' -f2)
    cat >"$WORK/$executor.toml" <<EOF
[consumer]
stream = "$stream"
table = "bench-$executor-$ID"
[archive]
bucket = "$BUCKET"
prefix = "bench-$ID/$prefix"
[elasticsearch]
index = "bench-$kind-$ID"
EOF
done

step "the four executors (release; two workers for chief-order-factory-s3)"
declare -A pids
start_executor() { # executor worker
    "$BIN/chief-$1" --config "config/$1.toml" --config "$LOCAL_CONFIG" --config "$WORK/$1.toml" \
        --worker-id "bench-$2" >"$WORK/$2.log" 2>&1 &
    pids[$2]=$!
}
start_executor order-factory-s3 order-factory-s3-a
start_executor order-factory-s3 order-factory-s3-b
start_executor order-es-s3 order-es-s3
start_executor jobresult-es jobresult-es
start_executor jobresult-notify-s3 jobresult-notify-s3
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done' EXIT
sleep 3

RUSAGE="$ROOT/.local/venv/bin/python deploy/local/rusage.py"
# CPU seconds of the local stack's processes (kinesis-local, moto, the ES stand-in) so far.
stack_cpu() {
    local tick pid
    tick=$(getconf CLK_TCK)
    for pattern in kinesis-local/main.js moto_serialized.py chief-es-standin; do
        pid=$(pgrep -f "$pattern" | head -n1 || true)
        [[ -n "$pid" ]] || continue
        read -r -a stat < <(cut -d' ' -f14,15 "/proc/$pid/stat")
        echo "$pattern $(calc "(${stat[0]} + ${stat[1]}) / $tick") $(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")"
    done
}
stack_cpu >"$WORK/stack-before.txt"

step "produce for ${SECONDS_RUN}s: orders at $RATE/s, job results at $((RATE / 2))/s, 10 % duplicates"
started=$(date +%s.%N)
$RUSAGE producer-orders "$WORK/rusage.txt" \
    "$BIN/chief-producer" --config config/producer.toml --config "$LOCAL_CONFIG" --stream "$ORDERS" \
    --generate orders --rate "$RATE" --duration "${SECONDS_RUN}s" --seed "$ID" --duplicate-ratio 0.1 \
    --failed-file "$WORK/orders-failed.jsonl" --progress 10 >"$WORK/producer-orders.txt" 2>&1 &
producer_orders=$!
$RUSAGE producer-jobs "$WORK/rusage.txt" \
    "$BIN/chief-producer" --config config/producer.toml --config "$LOCAL_CONFIG" --stream "$JOBS" \
    --generate jobresults --rate $((RATE / 2)) --duration "${SECONDS_RUN}s" --seed "$ID" --duplicate-ratio 0.1 \
    --failed-file "$WORK/jobs-failed.jsonl" --progress 10 >"$WORK/producer-jobs.txt" 2>&1 &
producer_jobs=$!
sleep 5
"$BIN/chiefctl" probe --config "$LOCAL_CONFIG" --stream "$ORDERS" --index "bench-orders-$ID" \
    --count $(( (SECONDS_RUN - 10) * 5 )) --interval-ms 200 --seed "$((ID + 1))" \
    --out "$WORK/probes.jsonl" --sent-log "$WORK/probes-sent.jsonl" >"$WORK/probe.json" || true
producers_ok=true
wait "$producer_orders" || producers_ok=false
wait "$producer_jobs" || producers_ok=false
cat "$WORK/producer-orders.txt" "$WORK/producer-jobs.txt" | grep -v '^\s*$' | grep -v 'in flight' | tail -n 4
if ! $producers_ok; then
    echo "bench: a producer could not put every record at $RATE orders/s (failed records in $WORK/*-failed.jsonl):" >&2
    echo "bench: the local stack cannot sustain this rate on this machine; run again with a lower BENCH_RATE" >&2
    exit 1
fi

step "wait until S3 holds every unique order (probes included)"
# What was produced: chief-producer --generate uses chief-datagen's generator, so the same
# seed gives the same records.
"$BIN/chief-datagen" orders --count "$(grep -o 'sent [0-9]*' "$WORK/producer-orders.txt" | tail -n1 | cut -d' ' -f2)" \
    --seed "$ID" --duplicate-ratio 0.1 >"$WORK/orders.jsonl" 2>/dev/null
deadline=$(( $(date +%s) + 600 ))
while :; do
    report=$("$BIN/chiefctl" reconcile --config "$LOCAL_CONFIG" --input "$WORK/orders.jsonl" \
        --input "$WORK/probes.jsonl" --bucket "$BUCKET" --s3-prefix "bench-$ID/ChiefOrderS3" 2>/dev/null || true)
    lost=$(echo "$report" | field lost)
    [[ "${lost:-1}" == 0 ]] && break
    (( $(date +%s) > deadline )) && { echo "bench: not caught up: $report" >&2; break; }
    sleep 2
done
finished=$(date +%s.%N)
unique=$(echo "$report" | field unique)

step "resources per process (before SIGTERM)"
tick=$(getconf CLK_TCK)
printf '%-26s %12s %14s\n' process cpu_seconds peak_rss_mib
for name in "${!pids[@]}"; do
    pid=${pids[$name]}
    read -r -a stat < <(cut -d' ' -f14,15 "/proc/$pid/stat")
    cpu=$(calc "(${stat[0]} + ${stat[1]}) / $tick")
    hwm=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    printf '%-26s %12s %14s\n' "$name" "$cpu" "$hwm"
done | sort
sort "$WORK/rusage.txt"
stack_cpu >"$WORK/stack-after.txt"
echo "local stack during the run (CPU seconds used since the producers started, peak RSS MiB):"
paste -d' ' "$WORK/stack-before.txt" "$WORK/stack-after.txt" | while read -r name before _ _ after rss; do
    printf '  %-24s %12s %14s\n' "$name" "$(calc "$after - $before")" "$rss"
done

step "lease table writes (renewals, takes, checkpoints) per shard per minute"
minutes=$(calc "($finished - $started) / 60" 4)
for executor in order-factory-s3 order-es-s3 jobresult-es jobresult-notify-s3; do
    "$BIN/chiefctl" leases --config "$LOCAL_CONFIG" --table "bench-$executor-$ID" >"$WORK/leases-$executor.jsonl"
    shards=$(grep -c . "$WORK/leases-$executor.jsonl")
    writes=$(grep -o '"counter":[0-9]*' "$WORK/leases-$executor.jsonl" | cut -d: -f2 | awk '{s += $1} END {print s + 0}')
    printf '%-22s %s leases, %s writes, %.1f per shard per minute\n' "$executor" "$shards" "$writes" \
        "$(calc "$writes / $shards / $minutes")"
done

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" || true; done
trap - EXIT

step "result"
elapsed=$(calc "$finished - $started")
echo "unique orders in S3: $unique in ${elapsed}s = $(calc "$unique / $elapsed" 0) orders/s end to end"
echo "send → Elasticsearch: $(cat "$WORK/probe.json")"
echo "send → S3: $("$ROOT/.local/venv/bin/python" deploy/local/s3_latency.py "http://127.0.0.1:${MOTO_PORT:-5000}" \
    "$BUCKET" "bench-$ID/ChiefOrderS3/" "$WORK/probes-sent.jsonl" || true)"
echo "work folder: $WORK"
