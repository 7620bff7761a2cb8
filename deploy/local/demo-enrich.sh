#!/usr/bin/env bash
# `make demo-enrich`: seed 004's flow on the local stack. The Makefile has already run
# stack-up and built the binaries.
#
#   chief-datagen products + orders-items → S3 → chiefctl replay (paced by orderDateTime,
#   partition key orderId, ingestionTime added) → the orders stream (2 shards) → two
#   chief-join workers (items ⋈ orders within 60 s, ⋈ products from S3) → the enriched
#   stream (2 shards) → chief-dynamodb-sink → DynamoDB OrdersEnriched (orderId N, itemId N)
#
# and then checks the table against a join of the generated files computed here (every
# attribute but ingestionTime), prints the unmatched items and the pipeline's latency
# (ingestionTime → item written: p50/p99/max of chief-dynamodb-sink's
# chief_dynamodb_sink_latency_ms). Exit 1 on any difference.
#
# DEMO_ENRICH_ORDERS (default 2000) orders of two items, DEMO_ENRICH_SPEEDUP (default 2:
# event time runs twice as fast as wall time; 0 sends as fast as possible),
# DEMO_ENRICH_AGGREGATE=1 has the replay KPL-aggregate its events (kinesis-local takes
# ~900 records/s on this machine: 1,000 items/s — 1,500 events/s — need it).
set -euo pipefail

ORDERS="${DEMO_ENRICH_ORDERS:-2000}"
SPEEDUP="${DEMO_ENRICH_SPEEDUP:-2}"
SEED="${DEMO_SEED:-$(date +%s)}"
STREAM="Orders-$SEED"
ENRICHED="OrdersEnriched-$SEED"
BUCKET="chief-enrich-$SEED"
TABLE="OrdersEnriched-$SEED"
SINK_METRICS="127.0.0.1:${DEMO_ENRICH_METRICS_PORT:-9195}"
DEMO_NAME=demo-enrich
# shellcheck source=demo-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/demo-lib.sh"
# DynamoDB may be another emulator than moto's (bench-enrich.sh: dynoxide).
export DYNAMODB="${CHIEF__AWS__DYNAMODB__ENDPOINT:-$MOTO}"
enrich_cleanup() {
    demo_cleanup
    "$PY" - "$ENRICHED" <<'PYEOF' >/dev/null 2>&1 || true
import os, sys, boto3
boto3.client("kinesis", endpoint_url=os.environ["KINESIS"], region_name="us-east-1",
             aws_access_key_id="chief-local", aws_secret_access_key="chief-local").delete_stream(StreamName=sys.argv[1])
PYEOF
}
trap enrich_cleanup EXIT

step "streams $STREAM and $ENRICHED (2 shards each), bucket $BUCKET, table $TABLE (chiefctl setup)"
cat >"$WORK/chiefctl.toml" <<EOF
[setup]
bucket = "$BUCKET"

[[setup.streams]]
name = "$STREAM"
shards = 2

[[setup.streams]]
name = "$ENRICHED"
shards = 2

[[setup.tables]]
name = "$TABLE"
partition_key = "orderId"
partition_key_type = "N"
sort_key = "itemId"
sort_key_type = "N"
EOF
"$BIN/chiefctl" setup --config config/chiefctl.toml --config "$WORK/chiefctl.toml" --config "$LOCAL_CONFIG"

step "data: 1,000 products and $ORDERS orders with two items each (chief-datagen) → s3://$BUCKET/"
"$BIN/chief-datagen" products --count 1000 --seed "$SEED" --output "$WORK/products.json"
"$BIN/chief-datagen" orders-items --orders "$ORDERS" --products 1000 --products-seed "$SEED" \
    --seed "$SEED" --interval-ms 10 --output "$WORK/orders.json"
"$PY" - "$BUCKET" "$WORK" <<'PYEOF'
import os, sys, boto3
bucket, work = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["MOTO"], region_name="us-east-1",
                  aws_access_key_id="chief-local", aws_secret_access_key="chief-local")
s3.upload_file(f"{work}/products.json", bucket, "products/products.json")
s3.upload_file(f"{work}/orders.json", bucket, "events/orders.json")
print(f"s3://{bucket}/products/products.json, s3://{bucket}/events/orders.json")
PYEOF

step "two chief-join workers: $STREAM → $ENRICHED, products from s3://$BUCKET/products/products.json"
cat >"$WORK/join.toml" <<EOF
[consumer]
stream = "$STREAM"
table = "chief-join-$SEED"
fetcher = "polling"     # kinesis-local's SubscribeToShard sends what arrived once a second
poll_interval_ms = 100
idle_time_max_ms = 200

[join]
idle_timeout_s = 3

[products]
bucket = "$BUCKET"

[output]
stream = "$ENRICHED"
bucket = "$BUCKET"
EOF
joins=()
for w in 1 2; do
    "$BIN/chief-join" --config config/join-orders.toml --config "$LOCAL_CONFIG" --config "$WORK/join.toml" \
        --worker-id "join-$w" >"$WORK/join-$w.log" 2>&1 &
    pids+=($!)
    joins+=($!)
done

step "chief-dynamodb-sink: $ENRICHED → DynamoDB $TABLE (metrics on http://$SINK_METRICS/metrics)"
cat >"$WORK/sink.toml" <<EOF
[metrics]
listen = "$SINK_METRICS"

[consumer]
stream = "$ENRICHED"
table = "chief-dynamodb-sink-$SEED"
fetcher = "polling"     # as the join's
poll_interval_ms = 100
idle_time_max_ms = 200

[sink]
table = "$TABLE"
concurrency = 4

[dead_letter]
bucket = "$BUCKET"
EOF
"$BIN/chief-dynamodb-sink" --config config/dynamodb-sink.toml --config "$LOCAL_CONFIG" --config "$WORK/sink.toml" \
    >"$WORK/sink.log" 2>&1 &
pids+=($!)
sink=$!

step "waiting for the two join workers to hold a shard each (a lease moving mid-run makes its new owner read again what was not checkpointed: rows written twice, their latency counted twice)"
"$PY" - "chief-join-$SEED" <<'PYEOF'
import os, sys, time, boto3
ddb = boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB"], region_name="us-east-1",
                   aws_access_key_id="chief-local", aws_secret_access_key="chief-local")
deadline = time.time() + 60
while time.time() < deadline:
    try:
        items = ddb.scan(TableName=sys.argv[1])["Items"]
    except Exception:
        items = []
    owners = {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S") for i in items}
    if len(owners) == 2 and len(set(owners.values())) == 2 and None not in owners.values():
        print("leases:", ", ".join(f"{k} → {v}" for k, v in sorted(owners.items())))
        sys.exit(0)
    time.sleep(0.5)
sys.exit("the join workers did not share the shards within 60 s")
PYEOF

# The sink's latency is a Prometheus summary over a rolling 60 s window: scraped every 10 s
# (and once more by each check), every row is in some scrape's window, so the worst
# window's maximum is the run's maximum. scrape-latency.py METRICS FILE once|loop appends
# the summary's quantiles to FILE.
cat >"$WORK/scrape-latency.py" <<'PYEOF'
import json, sys, time, urllib.request
metrics, out, mode = sys.argv[1:4]
while True:
    try:
        q = {}
        for line in urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode().splitlines():
            if line.startswith("chief_dynamodb_sink_latency_ms{") and "quantile=" in line:
                q[line.split('quantile="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
        if q:
            with open(out, "a") as f:
                f.write(json.dumps(q) + "\n")
    except OSError as e:
        if mode == "once":
            print(f"latency: cannot read {metrics}/metrics: {e}")
    if mode == "once":
        break
    time.sleep(10)
PYEOF
"$PY" "$WORK/scrape-latency.py" "$SINK_METRICS" "$WORK/latency-scrapes.jsonl" loop &
pids+=($!)
scraper=$!

step "chiefctl replay: s3://$BUCKET/events/ → $STREAM, paced by orderDateTime × $SPEEDUP, partition key orderId"
"$BIN/chiefctl" replay --config config/chiefctl.toml --config "$LOCAL_CONFIG" --bucket "$BUCKET" --prefix events/ \
    --stream "$STREAM" --partition-key-attribute orderId --speedup "$SPEEDUP" --failed "$WORK/replay-failed.jsonl" \
    ${DEMO_ENRICH_AGGREGATE:+--aggregate}

step "waiting for every row in DynamoDB (at most 180 s)"
check() {
    "$PY" "$WORK/scrape-latency.py" "$SINK_METRICS" "$WORK/latency-scrapes.jsonl" once
    BIN="$BIN" "$PY" - "$BUCKET" "$TABLE" "$WORK" "$SINK_METRICS" "$ENRICHED" "$@" <<'PYEOF'
import json, os, sys, urllib.request
from decimal import Decimal
import boto3
bucket, table, work, metrics, enriched = sys.argv[1:6]
report = sys.argv[6:] == ["report"]
kw = dict(endpoint_url=os.environ["MOTO"], region_name="us-east-1",
          aws_access_key_id="chief-local", aws_secret_access_key="chief-local")
# The join, computed here from the generated files.
products = {p["productId"]: p for p in map(json.loads, open(f"{work}/products.json"))}
events = [json.loads(l, parse_float=Decimal) for l in open(f"{work}/orders.json")]
orders = {e["orderId"]: e for e in events if e["recordType"] == "Order"}
want = {}
for e in events:
    if e["recordType"] != "OrderItem":
        continue
    row = {k: v for k, v in orders[e["orderId"]].items() if k != "recordType"}
    for k, v in e.items():
        if k == "orderDateTime":
            row["itemDateTime"] = v
        elif k != "recordType":
            row[k] = v
    p = products[e["itemId"]]
    row["productName"] = p["productName"]
    row["productPrice"] = Decimal(str(p["productPrice"]))
    want[(e["orderId"], e["itemId"])] = row
# Counted first (moto serves one request at a time: a scan of the whole table every two
# seconds would slow the pipeline it measures).
ddb_kw = dict(kw, endpoint_url=os.environ["DYNAMODB"])
if boto3.client("dynamodb", **ddb_kw).describe_table(TableName=table)["Table"].get("ItemCount", 0) < len(want) and not report:
    sys.exit(2)
ddb = boto3.resource("dynamodb", **ddb_kw).Table(table)
got, start = {}, None
while True:
    page = ddb.scan(**({"ExclusiveStartKey": start} if start else {}))
    for item in page["Items"]:
        got[(int(item["orderId"]), int(item["itemId"]))] = item
    start = page.get("LastEvaluatedKey")
    if not start:
        break
if len(got) < len(want) and not report:
    sys.exit(2)
s3 = boto3.client("s3", **kw)
unmatched = sum(len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="unmatched/"))
errors = sum(len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="errors/"))
no_ingestion = sum(1 for item in got.values() if "ingestionTime" not in item)
differ = [k for k in want if k not in got or {a: v for a, v in got[k].items() if a != "ingestionTime"} != want[k]]
extra = [k for k in got if k not in want]
print(f"orders: {len(orders)}; items: {len(want)}; rows in DynamoDB {table}: {len(got)}, expected {len(want)}")
print(f"rows different from the join computed here: {len(differ)}; rows not expected: {len(extra)}; rows without ingestionTime: {no_ingestion}")
print(f"unmatched items: {unmatched}; bad records: {errors}")
for k in differ[:5]:
    print(f"  {k}: got {got.get(k)}\n  {' ' * len(str(k))}  want {want[k]}")
# Latency: the sink's summary of ingestionTime → item written (60 s rolling windows, scraped
# every 10 s during the run and once just now): the worst window's quantiles.
windows = []
try:
    windows = [json.loads(l) for l in open(f"{work}/latency-scrapes.jsonl")]
except OSError:
    pass
if windows:
    worst = lambda k: max(w.get(k, 0) for w in windows)
    print(f"latency ingestion → DynamoDB (ms, worst of {len(windows)} 60 s windows): p50 {worst('0.5'):.0f}, p99 {worst('0.99'):.0f}, max {worst('1'):.0f}")
# The first stages, from the enriched stream itself: ingestionTime → the row's arrival in
# the enriched stream (replay's producer, the orders stream, the join).
kinesis = boto3.client("kinesis", endpoint_url=os.environ["KINESIS"], region_name="us-east-1",
                       aws_access_key_id="chief-local", aws_secret_access_key="chief-local")
import base64, subprocess
from datetime import datetime
records = []
for shard in kinesis.list_shards(StreamName=enriched)["Shards"]:
    it = kinesis.get_shard_iterator(StreamName=enriched, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        page = kinesis.get_records(ShardIterator=it, Limit=10000)
        records += page["Records"]
        it = page.get("NextShardIterator") if page["Records"] else None
# The join KPL-aggregates its rows: chiefctl agg unpack gives each record's rows in order,
# the first of each with sub-sequence number 0.
unpacked = subprocess.run([os.environ["BIN"] + "/chiefctl", "agg", "unpack"], check=True, capture_output=True, text=True,
                          input="".join(json.dumps({"partition_key": r["PartitionKey"], "data": base64.b64encode(r["Data"]).decode()}) + "\n" for r in records)).stdout
stage, at = [], -1
for line in unpacked.splitlines():
    row = json.loads(line)
    at += row["sub_sequence_number"] == 0
    ingested = datetime.fromisoformat(json.loads(base64.b64decode(row["data"]))["ingestionTime"].replace("Z", "+00:00"))
    stage.append((records[at]["ApproximateArrivalTimestamp"] - ingested).total_seconds() * 1000)
if stage:
    stage.sort()
    pick = lambda q: stage[min(len(stage) - 1, int(q * len(stage)))]
    print(f"  of which ingestion → enriched stream (replay, orders stream, join; {len(stage)} rows): p50 {pick(0.5):.0f}, p99 {pick(0.99):.0f}, max {stage[-1]:.0f}")
sys.exit(0 if not differ and not extra and not no_ingestion and unmatched == 0 and errors == 0 else 1)
PYEOF
}
wait_for_check 180

step "stopping the join workers and the sink (SIGTERM)"
kill -TERM "$scraper" 2>/dev/null || true
kill -TERM "${joins[@]}" "$sink"
exits=()
for pid in "${joins[@]}" "$sink"; do
    code=0
    wait "$pid" || code=$?
    exits+=("$code")
done
pids=()
echo "chief-join exits ${exits[0]} ${exits[1]}, chief-dynamodb-sink exit ${exits[2]} (logs in $WORK)"

elapsed=$(($(date +%s) - started))
if ((status == 0 && exits[0] == 0 && exits[1] == 0 && exits[2] == 0)); then
    echo
    echo "demo-enrich: every item is in DynamoDB once, enriched with its order and product exactly as the join computed here ($elapsed s)"
    exit 0
fi
echo
echo "demo-enrich: FAILED (check $status, exits ${exits[*]}; logs in $WORK)" >&2
exit 1
