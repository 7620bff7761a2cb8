#!/usr/bin/env bash
# `make bench-enrich`: seed 004's latency at 1,000 items/s for 60 s on the local stack —
# 30,000 orders of two items replayed at 5× event time (1,500 events/s, KPL-aggregated by
# the replay) → two chief-join workers → chief-dynamodb-sink — with release binaries, and
# DynamoDB (the table, and the join's and the sink's lease tables) served by dynoxide, the
# Rust DynamoDB emulator of ../shared/reference/local-stack.md: moto's ~280 DynamoDB
# operations a second cannot take 1,000 items a second (it falls ~50 s behind), dynoxide
# takes about ten times that. Kinesis stays kinesis-local and S3 moto. dynoxide is
# installed into .local/dynoxide on first use (cargo install, a few minutes on 2 cores).
#
# BENCH_ENRICH_ORDERS (default 30000) and BENCH_ENRICH_SPEEDUP (default 5) set the run;
# DYNOXIDE_PORT (default 8001). The Makefile has already run stack-up and built the
# release binaries.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
DYNOXIDE_VERSION=3.2.0
DYNOXIDE="$ROOT/.local/dynoxide/bin/dynoxide"
PORT="${DYNOXIDE_PORT:-8001}"
# (cargo install notes what it installed in .crates.toml; the binary says another version.)
if [[ ! -x "$DYNOXIDE" ]] || ! grep -q "dynoxide-rs $DYNOXIDE_VERSION" "$ROOT/.local/dynoxide/.crates.toml" 2>/dev/null; then
    echo "bench-enrich: installing dynoxide $DYNOXIDE_VERSION into .local/dynoxide (cargo install)"
    cargo install dynoxide-rs --version "$DYNOXIDE_VERSION" --root "$ROOT/.local/dynoxide" --locked
fi
mkdir -p "$ROOT/.local/logs"
"$DYNOXIDE" --port "$PORT" >"$ROOT/.local/logs/dynoxide.log" 2>&1 &
dynoxide=$!
trap 'kill -TERM "$dynoxide" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.2
done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || {
    echo "bench-enrich: dynoxide did not listen on $PORT (see .local/logs/dynoxide.log)" >&2
    exit 1
}
echo "bench-enrich: DynamoDB on dynoxide http://127.0.0.1:$PORT (pid $dynoxide)"
CHIEF__AWS__DYNAMODB__ENDPOINT="http://127.0.0.1:$PORT" BIN="$ROOT/target/release" \
    DEMO_ENRICH_ORDERS="${BENCH_ENRICH_ORDERS:-30000}" DEMO_ENRICH_SPEEDUP="${BENCH_ENRICH_SPEEDUP:-5}" \
    DEMO_ENRICH_AGGREGATE=1 bash deploy/local/demo-enrich.sh
