# Sourced by the seed demos (demo-logs.sh, demo-alerts.sh, demo-enrich.sh) after they set STREAM (this
# run's stream) and DEMO_NAME (its directory, .local/$DEMO_NAME, emptied): the paths and
# endpoints they share, `step`, `setup_stream_and_bucket` and `wait_for_check`; on exit
# the run's background processes (`pids`) get SIGTERM and its stream is deleted
# (kinesis-local has a shard limit across streams).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/target/debug}"
LOCAL_CONFIG="$ROOT/config/local.toml"
PY="$ROOT/.local/venv/bin/python"
export MOTO="${CHIEF__AWS__S3__ENDPOINT:-http://127.0.0.1:5000}"
export KINESIS="${CHIEF__AWS__KINESIS__ENDPOINT:-http://127.0.0.1:4568}"
WORK="$ROOT/.local/$DEMO_NAME"
cd "$ROOT"
rm -rf "$WORK"
mkdir -p "$WORK"
started=$(date +%s)

step() { printf '\n== %s\n' "$*"; }

pids=()
demo_cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    "$PY" - "$STREAM" <<'PYEOF' >/dev/null 2>&1 || true
import os, sys, boto3
boto3.client("kinesis", endpoint_url=os.environ["KINESIS"], region_name="us-east-1",
             aws_access_key_id="chief-local", aws_secret_access_key="chief-local").delete_stream(StreamName=sys.argv[1])
PYEOF
}
trap demo_cleanup EXIT

# setup_stream_and_bucket SHARDS BUCKET: this run's stream and a bucket (chiefctl setup).
setup_stream_and_bucket() {
    step "stream $STREAM ($1 shards) and bucket $2 (chiefctl setup)"
    cat >"$WORK/chiefctl.toml" <<SETUP
[setup]
bucket = "$2"

[[setup.streams]]
name = "$STREAM"
shards = $1
SETUP
    "$BIN/chiefctl" setup --config "$WORK/chiefctl.toml" --config "$LOCAL_CONFIG"
}

# wait_for_check SECONDS: runs the demo's `check` (exit 0: done and right, 1: done and
# wrong, 2: not yet) every 2 s until it is done or SECONDS pass, then — still not done —
# once more as `check report`; prints its output and leaves its exit status in `status`.
wait_for_check() {
    local deadline=$((SECONDS + $1))
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
}
