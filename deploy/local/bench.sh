#!/usr/bin/env bash
# `make bench`: the whole pipeline at a steady rate on the local stack, release builds.
# `make bench-capacity` (BENCH_MODE=capacity): raises the rate until the pipeline falls
# behind and reports the highest rate it sustained and what limited it (see capacity()).
# Fresh streams, lease tables, bucket prefixes and indices per run; chief-producer
# generates orders (BENCH_RATE/s, default 100) and job results (half that) for
# BENCH_SECONDS (default 60) while the four executors (two workers for
# chief-order-factory-s3) run and `chiefctl probe` measures send → Elasticsearch latency.
# Reports: orders/s end to end (unique orders in S3 / time from the first send until S3
# holds every one), latency p50/p99 from send to Elasticsearch (`chiefctl probe`), CPU
# seconds and peak RSS per process, every DynamoDB call of each executor by operation
# (Scans included: the AwsCalls counter of its /metrics, one count per attempt) per shard
# per minute, and latency from send to S3 (the LastModified of the object holding each
# probe, s3_latency.py).
# If a producer could not put every record (the local Kinesis could not keep up with
# BENCH_RATE), the run is void: it says so and exits 1.
# The Makefile has already run stack-up and built the release binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/target/release}"
LOCAL_CONFIG="$ROOT/config/local.toml"
MODE="${BENCH_MODE:-steady}"
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
declare -A pids ports
SCRAPE="$ROOT/.local/venv/bin/python deploy/local/scrape.py"
next_port=${BENCH_METRICS_PORT:-19300}
start_executor() { # executor worker
    next_port=$((next_port + 1))
    ports[$2]=$next_port
    CHIEF__METRICS__LISTEN="127.0.0.1:$next_port" \
        "$BIN/chief-$1" --config "config/$1.toml" --config "$LOCAL_CONFIG" --config "$WORK/$1.toml" \
        --worker-id "bench-$2" >"$WORK/$2.log" 2>&1 &
    pids[$2]=$!
}
# The /metrics URLs of an executor's workers (order-factory-s3 has two).
metrics_urls() {
    local name
    for name in "${!ports[@]}"; do
        [[ $name == "$1"* ]] && echo "http://127.0.0.1:${ports[$name]}/metrics"
    done
}
exec_started=$(date +%s.%N)
start_executor order-factory-s3 order-factory-s3-a
start_executor order-factory-s3 order-factory-s3-b
start_executor order-es-s3 order-es-s3
start_executor jobresult-es jobresult-es
start_executor jobresult-notify-s3 jobresult-notify-s3
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done' EXIT
sleep 3

RUSAGE="$ROOT/.local/venv/bin/python deploy/local/rusage.py"
# CPU seconds of the local stack's processes (kinesis-local, moto, the ES stand-in) so far.
# CPU seconds (user + system) and peak RSS (MiB) of a process so far.
proc_cpu() {
    local stat
    read -r -a stat < <(cut -d' ' -f14,15 "/proc/$1/stat")
    calc "(${stat[0]} + ${stat[1]}) / $(getconf CLK_TCK)"
}
proc_rss() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
# "pattern pid" of each local stack process (kinesis-local, moto, the ES stand-in) running.
stack_pids() {
    local pattern pid
    for pattern in kinesis-local/main.js moto_serialized.py chief-es-standin; do
        pid=$(pgrep -f "$pattern" | head -n1 || true)
        [[ -n "$pid" ]] && echo "$pattern $pid"
    done
    return 0
}
stack_cpu() {
    local pattern pid
    while read -r pattern pid; do
        echo "$pattern $(proc_cpu "$pid") $(proc_rss "$pid")"
    done < <(stack_pids)
}
stack_cpu >"$WORK/stack-before.txt"

# Every DynamoDB call each executor made since it started, by operation, per shard per
# minute: the AwsCalls counter of its /metrics (one count per attempt, retries included).
dynamodb_calls() {
    local now minutes executor shards total ops
    now=$(date +%s.%N)
    minutes=$(calc "($now - $exec_started) / 60" 4)
    echo "over $(calc "$minutes" 1) minutes since the executors started:"
    for executor in order-factory-s3 order-es-s3 jobresult-es jobresult-notify-s3; do
        "$BIN/chiefctl" leases --config "$LOCAL_CONFIG" --table "bench-$executor-$ID" >"$WORK/leases-$executor.jsonl"
        shards=$(grep -c . "$WORK/leases-$executor.jsonl")
        # shellcheck disable=SC2046 # one URL per worker
        $SCRAPE by AwsCalls operation service=DynamoDB -- $(metrics_urls "$executor") >"$WORK/dynamodb-$executor.txt"
        total=$(awk '{s += $2} END {print s + 0}' "$WORK/dynamodb-$executor.txt")
        ops=$(awk -v m="$minutes" -v n="$shards" '{printf "%s%s %.1f", sep, $1, $2 / n / m; sep = ", "}' "$WORK/dynamodb-$executor.txt")
        printf '  %-22s %s shards, %s calls = %.1f per shard per minute (%s)\n' "$executor" "$shards" \
            "$total" "$(calc "$total / $shards / $minutes")" "$ops"
    done
}

# CPU seconds so far of each executor and of the local stack: "name seconds" lines.
cpu_snapshot() {
    local name pattern pid
    for name in "${!pids[@]}"; do
        echo "$name $(proc_cpu "${pids[$name]}")"
    done
    while read -r pattern pid; do
        echo "$(basename "${pattern%%/*}" .py) $(proc_cpu "$pid")"
    done < <(stack_pids)
}

# Busy CPU seconds of the whole machine so far (all cores).
machine_cpu() {
    awk -v t="$(getconf CLK_TCK)" '/^cpu / {print ($2 + $3 + $4 + $7 + $8) / t}' /proc/stat
}

# User records the executors processed, summed over the workers of each: "executor n".
processed() {
    local executor
    for executor in order-factory-s3 order-es-s3 jobresult-es jobresult-notify-s3; do
        # shellcheck disable=SC2046
        echo "$executor $($SCRAPE sum RecordsProcessed -- $(metrics_urls "$executor"))"
    done
}

# Capacity: steps of BENCH_STEP_SECONDS (20) at BENCH_START_RATE orders/s (200, plus half
# as many job results), doubling up to BENCH_MAX_RATE (12800). A step is sustained when
# both producers put every record at >= 95 % of the rate asked and every executor has
# processed everything put so far within BENCH_DRAIN_SECONDS (10) of the producers'
# end. The first step that is not names what limited it, with the CPU each process used
# during it (percent of one core; the machine has $(nproc) cores).
capacity() {
    local rate=${BENCH_START_RATE:-200} max=${BENCH_MAX_RATE:-12800} secs=${BENCH_STEP_SECONDS:-20}
    local drain_max=${BENCH_DRAIN_SECONDS:-10} best=0 n=0 total_orders=0 total_jobs=0
    local verdict="" t0 t1 t2 m0 m1 ok put_o put_j failed drained busiest achieved top top_cpu
    printf '%8s %10s %10s %8s %6s  %s\n' orders/s "put o/s" "put j/s" drain_s "cpu%" "busiest processes (% of one core)"
    while (( rate <= max )); do
        n=$((n + 1))
        cpu_snapshot | sort >"$WORK/cap-$n-before.txt"
        m0=$(machine_cpu)
        t0=$(date +%s.%N)
        ok=true
        $RUSAGE producer-orders "$WORK/cap-$n-rusage.txt" \
            "$BIN/chief-producer" --config config/producer.toml --config "$LOCAL_CONFIG" --stream "$ORDERS" \
            --generate orders --rate "$rate" --duration "${secs}s" --seed "$((ID + n))" --duplicate-ratio 0.1 \
            --failed-file "$WORK/cap-$n-orders-failed.jsonl" >"$WORK/cap-$n-orders.txt" 2>&1 &
        local po=$!
        $RUSAGE producer-jobs "$WORK/cap-$n-rusage.txt" \
            "$BIN/chief-producer" --config config/producer.toml --config "$LOCAL_CONFIG" --stream "$JOBS" \
            --generate jobresults --rate $((rate / 2)) --duration "${secs}s" --seed "$((ID + n))" --duplicate-ratio 0.1 \
            --failed-file "$WORK/cap-$n-jobs-failed.jsonl" >"$WORK/cap-$n-jobs.txt" 2>&1 &
        local pj=$!
        wait "$po" || ok=false
        wait "$pj" || ok=false
        t1=$(date +%s.%N)
        put_o=$(grep -o ' put [0-9]*' "$WORK/cap-$n-orders.txt" | tail -n1 | awk '{print $2 + 0}')
        put_j=$(grep -o ' put [0-9]*' "$WORK/cap-$n-jobs.txt" | tail -n1 | awk '{print $2 + 0}')
        failed=$(cat "$WORK/cap-$n-orders.txt" "$WORK/cap-$n-jobs.txt" | grep -o ' failed [0-9]*' | awk '{s += $2} END {print s + 0}')
        total_orders=$((total_orders + ${put_o:-0}))
        total_jobs=$((total_jobs + ${put_j:-0}))
        # Drain: every executor has processed what its stream was given so far.
        drained=""
        while :; do
            t2=$(date +%s.%N)
            if processed | awk -v o="$total_orders" -v j="$total_jobs" \
                '{want = ($1 ~ /^order/) ? o : j; if ($2 < want) behind = 1} END {exit behind}'; then
                drained=$(calc "$t2 - $t1" 1)
                break
            fi
            (( $(calc "$t2 - $t1 > $drain_max" 0) )) && break
            sleep 0.5
        done
        m1=$(machine_cpu)
        cpu_snapshot | sort >"$WORK/cap-$n-after.txt"
        busiest=$( { join "$WORK/cap-$n-before.txt" "$WORK/cap-$n-after.txt" |
                awk -v d="$(calc "$t2 - $t0" 3)" '{printf "%s %.0f\n", $1, ($3 - $2) / d * 100}'
            awk -v d="$(calc "$t1 - $t0" 3)" '{printf "%s %.0f\n", $1, $2 / d * 100}' "$WORK/cap-$n-rusage.txt"
        } | sort -k2 -nr | tee "$WORK/cap-$n-cpu.txt" | head -n 3 | awk '{printf "%s%s %s", sep, $1, $2; sep = ", "}')
        achieved=$(calc "${put_o:-0} / ($t1 - $t0)" 0)
        printf '%8s %10s %10s %8s %6s  %s\n' "$rate" "$achieved" "$(calc "${put_j:-0} / ($t1 - $t0)" 0)" \
            "${drained:->$drain_max}" "$(calc "($m1 - $m0) / ($t2 - $t0) * 100" 0)" "$busiest"
        if ! $ok || (( failed > 0 )); then
            verdict="the producers could not put every record ($failed failed: Kinesis refused or throttled them; see $WORK/cap-$n-*-failed.jsonl)"
        elif (( $(calc "$achieved < 0.95 * $rate" 0) )); then
            verdict="the producers put $achieved orders/s of the $rate asked (chief-producer generating and sending, or kinesis-local accepting)"
        elif [[ -z $drained ]]; then
            verdict="the executors fell behind: not drained $drain_max s after the producers stopped ($(processed | tr '\n' ' ')of $total_orders orders, $total_jobs job results)"
        fi
        [[ -n $verdict ]] && break
        best=$rate
        rate=$((rate * 2))
    done
    echo
    echo "highest sustained rate: $best orders/s + $((best / 2)) job results/s (steps of ${secs}s, drained within ${drain_max}s)"
    if [[ -n $verdict ]]; then
        echo "at $rate orders/s: $verdict"
        echo "CPU during that step, percent of one core ($(nproc) cores, machine busy $(calc "($m1 - $m0) / ($t2 - $t0) * 100" 0) % of one core):"
        sed 's/^/  /' "$WORK/cap-$n-cpu.txt"
        # A process near 100 % of one core is the limit (kinesis-local and moto are
        # single-threaded); otherwise the machine's cores are.
        read -r top top_cpu < <(head -n 1 "$WORK/cap-$n-cpu.txt")
        if (( top_cpu >= 90 )); then
            echo "bottleneck: $top at $top_cpu % of one core (saturated)"
        elif (( $(calc "($m1 - $m0) / ($t2 - $t0) * 100 >= 90 * $(nproc)" 0) )); then
            echo "bottleneck: the machine's $(nproc) cores (busiest: $top at $top_cpu %)"
        else
            echo "bottleneck: no process saturated a core; see the verdict above"
        fi
    else
        echo "not limited up to BENCH_MAX_RATE=$max"
    fi
}

if [[ $MODE == capacity ]]; then
    step "capacity: raising the rate until the pipeline falls behind"
    capacity
    step "DynamoDB calls per executor (every attempt, by operation)"
    dynamodb_calls
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" || true; done
    trap - EXIT
    echo "work folder: $WORK"
    exit 0
fi

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
printf '%-26s %12s %14s\n' process cpu_seconds peak_rss_mib
for name in "${!pids[@]}"; do
    pid=${pids[$name]}
    printf '%-26s %12s %14s\n' "$name" "$(proc_cpu "$pid")" "$(proc_rss "$pid")"
done | sort
sort "$WORK/rusage.txt"
stack_cpu >"$WORK/stack-after.txt"
echo "local stack during the run (CPU seconds used since the producers started, peak RSS MiB):"
paste -d' ' "$WORK/stack-before.txt" "$WORK/stack-after.txt" | while read -r name before _ _ after rss; do
    printf '  %-24s %12s %14s\n' "$name" "$(calc "$after - $before")" "$rss"
done

step "DynamoDB calls per executor (every attempt, by operation)"
dynamodb_calls

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
