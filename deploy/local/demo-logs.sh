#!/usr/bin/env bash
# `make demo-logs`: seed 001's flow on the local stack. The Makefile has already run
# stack-up and built the binaries.
#
#   chief-datagen apache-log files (access_log-*, written at a steady rate) → chief-agent
#   (LOGTOJSON, COMBINEDAPACHELOG) → the WebLogs stream (2 shards) → chief-firehose: the raw
#   records to S3 raw/YYYY/MM/DD/HH/ → and chief-analytics (config/analytics-status.toml:
#   HTTP status codes per window) → Elasticsearch analysed-logs-…-YYYY-MM-DD (the stack's
#   Elasticsearch stand-in)
#
# and then checks both against the stream's records as read back (`chiefctl tail`): the raw
# copy holds every record once, and every window's status counts — recomputed from the
# records' arrival times and `response` fields — are the documents in the index (by their
# ids), nothing more. Exit 1 on any difference.
#
# DEMO_LOGS_LINES (default 400) lines in two files at DEMO_LOGS_RATE (default 10) lines a
# second each; DEMO_LOGS_WINDOW_S (default 10: the seed's minute would make the demo minutes
# long) the window. Each run has its own stream, bucket, tables and index.
set -euo pipefail

LINES="${DEMO_LOGS_LINES:-400}"
RATE="${DEMO_LOGS_RATE:-10}"
WINDOW_S="${DEMO_LOGS_WINDOW_S:-10}"
SEED="${DEMO_SEED:-$(date +%s)}"
STREAM="WebLogs-$SEED"
BUCKET="chief-weblogs-$SEED"
INDEX="analysed-logs-$SEED"
DEMO_NAME=demo-logs
export ES="${CHIEF__ELASTICSEARCH__URL:-http://127.0.0.1:9200}"
# shellcheck source=demo-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/demo-lib.sh"
mkdir -p "$WORK/logs"

setup_stream_and_bucket 2 "$BUCKET"

step "chief-firehose: $STREAM → s3://$BUCKET/raw/YYYY/MM/DD/HH/ (the seed's log ingestor delivery)"
CHIEF__DELIVERY__NAME="weblogs-$SEED" CHIEF__CONSUMER__STREAM="$STREAM" \
    CHIEF__CONSUMER__TABLE="chief-firehose-weblogs-$SEED" CHIEF__S3__BUCKET="$BUCKET" \
    CHIEF__S3__PREFIX="raw/" CHIEF__S3__BUFFERING_INTERVAL_SECONDS=5 \
    "$BIN/chief-firehose" --config config/firehose-taxi.toml --config "$LOCAL_CONFIG" \
    >"$WORK/firehose.log" 2>&1 &
pids+=($!)
firehose=$!

step "chief-analytics (config/analytics-status.toml, ${WINDOW_S} s windows for the demo) → $ES $INDEX-YYYY-MM-DD"
cat >"$WORK/analytics.toml" <<EOF
[consumer]
stream = "$STREAM"
table = "chief-analytics-status-$SEED"
failover_time_ms = 3000
poll_interval_ms = 200

[store]
table = "chief-analytics-status-windows-$SEED"

[merge]
interval_ms = 300

[app.window]
size_s = $WINDOW_S
allowed_lateness_s = 0
idle_timeout_s = 3

[output.elasticsearch]
url = "$ES"
index = "$INDEX"
EOF
"$BIN/chief-analytics" --config config/analytics-status.toml --config "$LOCAL_CONFIG" --config "$WORK/analytics.toml" \
    >"$WORK/analytics.log" 2>&1 &
pids+=($!)
analytics=$!

step "chief-agent: access_log-* → LOGTOJSON (COMBINEDAPACHELOG) → $STREAM"
cat >"$WORK/agent.json" <<EOF
{
    "kinesis.endpoint": "$KINESIS",
    "checkpointFile": "$WORK/agent-checkpoints",
    "flows": [
        {
            "filePattern": "$WORK/logs/access_log*",
            "kinesisStream": "$STREAM",
            "initialPosition": "START_OF_FILE",
            "dataProcessingOptions": [
                { "optionName": "LOGTOJSON", "logFormat": "COMBINEDAPACHELOG" }
            ]
        }
    ]
}
EOF
"$BIN/chief-agent" --config "$WORK/agent.json" --settings config/agent.toml --settings "$LOCAL_CONFIG" \
    >"$WORK/agent.log" 2>&1 &
pids+=($!)
agent=$!

step "the web server's logs: $LINES lines in two access_log files, $RATE lines a second each (chief-datagen apache-log)"
half=$((LINES / 2))
"$BIN/chief-datagen" apache-log --count "$half" --rate "$RATE" --seed "$((SEED + 1))" --output "$WORK/logs/access_log-1" &
w1=$!
"$BIN/chief-datagen" apache-log --count "$((LINES - half))" --rate "$RATE" --seed "$((SEED + 2))" --output "$WORK/logs/access_log-2" &
w2=$!
wait "$w1" "$w2"
wc -l "$WORK"/logs/access_log-*

step "waiting for the raw copy and every window's documents (at most 120 s)"
check() {
    "$BIN/chiefctl" tail --stream "$STREAM" --max-records "$LINES" --config "$LOCAL_CONFIG" >"$WORK/stream.jsonl" 2>"$WORK/tail.err" || true
    "$PY" - "$BUCKET" "$INDEX" "$LINES" "$WINDOW_S" "$WORK/stream.jsonl" "$@" <<'PYEOF'
import base64, json, os, sys, urllib.error, urllib.request
from collections import Counter
from datetime import datetime, timezone
import boto3
bucket, index, total, window_s, stream_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
report = sys.argv[6:] == ["report"]
size = window_s * 1000
records = [json.loads(l) for l in open(stream_file) if l.strip()]
# The recomputation: per shard, in order; late when an earlier record of the shard arrived
# at or after the window's end.
newest, want, late, data = {}, Counter(), 0, Counter()
for r in records:
    raw = base64.b64decode(r["data"])
    data[raw] += 1
    t = r["approximate_arrival_ms"]
    start = t // size * size
    if newest.get(r["shard"], -1) >= start + size:
        late += 1
    else:
        want[(start, json.loads(raw)["response"])] += 1
    newest[r["shard"]] = max(newest.get(r["shard"], t), t)
# The raw copy.
s3 = boto3.client("s3", endpoint_url=os.environ["MOTO"], region_name="us-east-1",
                  aws_access_key_id="chief-local", aws_secret_access_key="chief-local")
raw_copy = Counter()
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
    for o in page.get("Contents", []):
        for line in s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().splitlines(keepends=True):
            raw_copy[line] += 1
# The documents, by their ids.
def get(url):
    try:
        return json.load(urllib.request.urlopen(url))
    except urllib.error.HTTPError as e:
        return json.load(e)
got, days = Counter(), set()
for (start, status), n in want.items():
    day = datetime.fromtimestamp(start / 1000, timezone.utc).strftime("%Y-%m-%d")
    days.add(day)
    doc = get(f"{os.environ['ES']}/{index}-{day}/_doc/status-per-minute-{start}-{status}")
    if doc.get("found"):
        got[(start, status)] = doc["_source"]["count"]
indexed = sum(get(f"{os.environ['ES']}/{index}-{day}/_count").get("count", 0) for day in days)
done = len(records) >= total and got == want and sum(raw_copy.values()) >= total
if not (done or report):
    sys.exit(2)
print(f"lines written: {total}; records in the stream: {len(records)}; late: {late}")
print(f"raw copy in s3://{bucket}/raw/: {sum(raw_copy.values())} records, equal to the stream's: {raw_copy == data}")
windows = sorted({w for w, _ in want})
print(f"windows: {len(windows)} of {window_s} s; documents in {index}-*: {indexed}, expected {len(want)}")
for w in windows:
    row = {s: want[(w, s)] for (x, s) in sorted(want) if x == w}
    print(f"  {datetime.fromtimestamp(w / 1000, timezone.utc).isoformat()}  {row}")
ok = raw_copy == data and got == want and indexed == len(want)
if not ok:
    for k in sorted(set(got) | set(want)):
        if got[k] != want[k]:
            print(f"  window {k[0]} status {k[1]}: indexed {got.get(k)}, recomputed {want[k]}")
sys.exit(0 if ok else 1)
PYEOF
}
wait_for_check 120

step "stopping chief-agent, chief-firehose and chief-analytics (SIGTERM)"
kill -TERM "$agent" "$firehose" "$analytics"
exits=()
for pid in "$agent" "$firehose" "$analytics"; do
    code=0
    wait "$pid" || code=$?
    exits+=("$code")
done
pids=()
echo "chief-agent exit ${exits[0]}, chief-firehose exit ${exits[1]}, chief-analytics exit ${exits[2]} (logs in $WORK)"

elapsed=$(($(date +%s) - started))
if ((status == 0 && exits[0] == 0 && exits[1] == 0 && exits[2] == 0)); then
    echo
    echo "demo-logs: the raw copy holds every record once; every window's status counts are in Elasticsearch, equal to the recomputation ($elapsed s)"
    exit 0
fi
echo
echo "demo-logs: FAILED (check $status, exits ${exits[*]}; logs in $WORK)" >&2
exit 1
