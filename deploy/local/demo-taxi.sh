#!/usr/bin/env bash
# `make demo-taxi`: seed 002's flow on the local stack. The Makefile has already run
# stack-up and built the binaries.
#
#   chief-datagen taxi-csv files → chief-agent (the seed's agent.json: CSVTOJSON with its 17
#   field names) → the 1-shard TaxiTrips stream → chiefctl tail --decode prints the first
#   records as the seed's Lambda does → chief-firehose (config/firehose-taxi.toml) →
#   S3 Firehose/YYYY/MM/DD/HH/ objects
#
# and then reads every object this run wrote and checks it exactly against the CSV input,
# converted independently (Python's csv module): every row once, nothing else. Exit 1 if
# anything is missing, doubled or different.
#
# DEMO_TAXI_ROWS (default 4000) rows in DEMO_TAXI_FILES (default 2) files;
# DEMO_TAXI_SIZE_MIB (default 1) the objects' size hint, DEMO_TAXI_INTERVAL (default 10) s.
# Each run has its own stream (TaxiTrips-<seed>, deleted at the end) and lease table, so
# a run checks only its own rows. The agent sends each row as its own Kinesis record, as
# the seed's agent does; kinesis-local takes about 100 of those a second on this stack.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/target/debug}"
LOCAL_CONFIG="$ROOT/config/local.toml"
ROWS="${DEMO_TAXI_ROWS:-4000}"
FILES="${DEMO_TAXI_FILES:-2}"
SIZE_MIB="${DEMO_TAXI_SIZE_MIB:-1}"
INTERVAL="${DEMO_TAXI_INTERVAL:-10}"
SEED="${DEMO_SEED:-$(date +%s)}"
STREAM="TaxiTrips-$SEED"
BUCKET=chief-firehose
WORK="$ROOT/.local/demo-taxi"
PY="$ROOT/.local/venv/bin/python"
cd "$ROOT"
rm -rf "$WORK"
mkdir -p "$WORK/input"
started=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # kinesis-local has a shard limit across streams.
    "$PY" - "$STREAM" <<'PYEOF' >/dev/null 2>&1 || true
import os, sys, boto3
boto3.client("kinesis", endpoint_url=os.environ.get("CHIEF__AWS__KINESIS__ENDPOINT", "http://127.0.0.1:4568"),
             region_name="us-east-1", aws_access_key_id="chief-local",
             aws_secret_access_key="chief-local").delete_stream(StreamName=sys.argv[1])
PYEOF
}
trap cleanup EXIT

step "stream $STREAM (1 shard, this run's) and bucket $BUCKET (chiefctl setup)"
cat >"$WORK/chiefctl.toml" <<EOF
[setup]
bucket = "$BUCKET"

[[setup.streams]]
name = "$STREAM"
shards = 1
EOF
"$BIN/chiefctl" setup --config "$WORK/chiefctl.toml" --config "$LOCAL_CONFIG"

step "the seed's agent.json (its filePattern, stream and endpoint pointed at this run)"
KINESIS_ENDPOINT="${CHIEF__AWS__KINESIS__ENDPOINT:-http://127.0.0.1:4568}"
cat >"$WORK/agent.json" <<EOF
{
    "cloudwatch.emitMetrics": true,
    "kinesis.endpoint": "$KINESIS_ENDPOINT",
    "checkpointFile": "$WORK/agent-checkpoints",
    "flows": [
        {
        "filePattern": "$WORK/input/*.csv*",
        "kinesisStream": "$STREAM",
        "partitionKeyOption": "RANDOM",
        "initialPosition": "START_OF_FILE",
            "dataProcessingOptions": [
                {
                    "optionName": "CSVTOJSON",
                    "customFieldNames": ["VendorID","tpep_pickup_datetime","tpep_dropoff_datetime","passenger_count","trip_distance","RatecodeID","store_and_fwd_flag","PULocationID","DOLocationID","payment_type","fare_amount","extra","mta_tax","tip_amount","tolls_amount","improvement_surcharge","total_amount"],
                    "delimiter": ","
                }
            ]
        }
    ]
}
EOF
cat "$WORK/agent.json"

step "chief-firehose: $STREAM → s3://$BUCKET/Firehose/YYYY/MM/DD/HH/ (objects of ≤ $SIZE_MIB MiB, or after $INTERVAL s)"
CHIEF__S3__BUCKET="$BUCKET" CHIEF__S3__BUFFERING_SIZE_MIB="$SIZE_MIB" \
    CHIEF__S3__BUFFERING_INTERVAL_SECONDS="$INTERVAL" CHIEF__CONSUMER__STREAM="$STREAM" \
    CHIEF__CONSUMER__TABLE="chief-firehose-taxi-trips-$SEED" \
    "$BIN/chief-firehose" --config config/firehose-taxi.toml --config "$LOCAL_CONFIG" \
    >"$WORK/firehose.log" 2>&1 &
pids+=($!)
firehose=$!

step "chief-agent --config $WORK/agent.json"
"$BIN/chief-agent" --config "$WORK/agent.json" --settings config/agent.toml --settings "$LOCAL_CONFIG" \
    >"$WORK/agent.log" 2>&1 &
pids+=($!)
agent=$!

# The files appear while the agent runs, as in the seed (copied into /tmp).
step "$ROWS taxi trips in $FILES CSV files with a header line (chief-datagen taxi-csv, seed $SEED)"
per=$((ROWS / FILES))
for ((i = 1; i <= FILES; i++)); do
    n=$per
    ((i == FILES)) && n=$((ROWS - per * (FILES - 1)))
    "$BIN/chief-datagen" taxi-csv --count "$n" --seed "$((SEED + i))" --output "$WORK/input/.trips-$i.tmp"
    mv "$WORK/input/.trips-$i.tmp" "$WORK/input/trips-$i.csv"
done
wc -l "$WORK"/input/*.csv

step "the first records in $STREAM, as the seed's Lambda prints them (chiefctl tail --decode)"
"$BIN/chiefctl" tail --stream "$STREAM" --from trim-horizon --max-records 2 --decode --config "$LOCAL_CONFIG" 2>&1 \
    | sed -n '1,40p' || true

step "waiting for every row in s3://$BUCKET/Firehose/ (at most 300 s)"
export DEMO_START="$started" DEMO_WORK="$WORK" DEMO_BUCKET="$BUCKET"
export S3_ENDPOINT="${CHIEF__AWS__S3__ENDPOINT:-http://127.0.0.1:5000}"
check() {
    "$PY" - "$@" <<'PYEOF'
import csv, glob, json, os, sys
from collections import Counter
import boto3
fields = ["VendorID","tpep_pickup_datetime","tpep_dropoff_datetime","passenger_count","trip_distance","RatecodeID","store_and_fwd_flag","PULocationID","DOLocationID","payment_type","fare_amount","extra","mta_tax","tip_amount","tolls_amount","improvement_surcharge","total_amount"]
expected = Counter()
for path in sorted(glob.glob(os.environ["DEMO_WORK"] + "/input/*.csv")):
    with open(path, newline="") as f:
        for row in csv.reader(f):
            # The seed's config has no skipHeaderLines: the header is a record too, as
            # the Java agent sends it.
            expected[json.dumps(dict(zip(fields, row)), separators=(",", ":"))] += 1
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id="chief-local", aws_secret_access_key="chief-local")
start = int(os.environ["DEMO_START"]) - 1
got, objects = Counter(), []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["DEMO_BUCKET"], Prefix="Firehose/"):
    for o in page.get("Contents", []):
        if o["LastModified"].timestamp() < start:
            continue  # an earlier run's
        body = s3.get_object(Bucket=os.environ["DEMO_BUCKET"], Key=o["Key"])["Body"].read()
        objects.append((o["Key"], len(body)))
        for line in body.decode().splitlines():
            got[line] += 1
done = sum(got.values()) >= sum(expected.values())
if sys.argv[1:] == ["report"] or done:
    missing = expected - got
    surplus = got - expected
    doubled = sum(n for k, n in surplus.items() if k in expected)
    extra = Counter({k: n for k, n in surplus.items() if k not in expected})
    print(f"rows in the CSV files (header lines included): {sum(expected.values())}")
    print(f"records in this run's Firehose/ objects: {sum(got.values())} in {len(objects)} objects")
    for key, size in sorted(objects):
        print(f"  s3://{os.environ['DEMO_BUCKET']}/{key}  {size} bytes")
    print(f"missing: {sum(missing.values())}, not in the input: {sum(extra.values())}, written more often than in the input: {doubled}")
    sys.exit(0 if not missing and not extra and not doubled else 1)
sys.exit(2)
PYEOF
}
deadline=$((SECONDS + 300))
status=2
while ((SECONDS < deadline)); do
    set +e
    check >"$WORK/check.txt" 2>&1
    status=$?
    set -e
    ((status != 2)) && break
    sleep 2
done
if ((status == 2)); then
    check report >"$WORK/check.txt" 2>&1 || true
fi
cat "$WORK/check.txt"

step "stopping chief-agent and chief-firehose (SIGTERM: flush, checkpoint, release)"
kill -TERM "$agent" "$firehose"
agent_exit=0
firehose_exit=0
wait "$agent" || agent_exit=$?
wait "$firehose" || firehose_exit=$?
pids=()
echo "chief-agent exit $agent_exit, chief-firehose exit $firehose_exit (logs: $WORK/agent.log, $WORK/firehose.log)"
grep -h "progress" "$WORK/agent.log" | tail -n 1 || true

elapsed=$(($(date +%s) - started))
if ((status == 0 && agent_exit == 0 && firehose_exit == 0)); then
    echo
    echo "demo-taxi: every CSV row is in S3 exactly once, as JSON ($elapsed s)"
    exit 0
fi
echo
echo "demo-taxi: FAILED (check $status, agent exit $agent_exit, firehose exit $firehose_exit; logs in $WORK)" >&2
exit 1
