#!/usr/bin/env bash
# Starts chief's local stack: Kinesis (npm kinesis-local), DynamoDB + S3 (moto_server),
# MariaDB (Debian mariadb-server, private datadir) and the Elasticsearch stand-in
# (chief-es-standin, a dev-only in-memory server of this workspace: build it first, as
# `make stack-up` does). Installs what is missing, waits until each service answers, and
# records pids under .local/run so stack-down stops only what this script started.
# Idempotent: when everything already answers it returns at once.
#
# Ports: KINESIS_PORT (4568), KINESIS_TLS_PORT (kinesis-local also serves TLS; default
# KINESIS_PORT - 1, so moving KINESIS_PORT moves both), MOTO_PORT (5000), MARIADB_PORT
# (3307), ES_PORT (9200). A run that fails stops what it had started itself.
# ES_STANDIN_BIN overrides the stand-in binary (default target/debug/chief-es-standin,
# under CARGO_TARGET_DIR when that is set).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
RUN="$LOCAL/run"
LOGS="$LOCAL/logs"
KINESIS_PORT="${KINESIS_PORT:-4568}"
KINESIS_TLS_PORT="${KINESIS_TLS_PORT:-$((KINESIS_PORT - 1))}"
MOTO_PORT="${MOTO_PORT:-5000}"
MARIADB_PORT="${MARIADB_PORT:-3307}"
ES_PORT="${ES_PORT:-9200}"
ES_STANDIN_BIN="${ES_STANDIN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/chief-es-standin}"
KINESIS_LOCAL_VERSION="0.6.2"
mkdir -p "$RUN" "$LOGS"

log() { printf 'stack-up: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

answers() { # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

running() { # name: pid file names a live process
    local pidfile="$RUN/$1.pid"
    [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_for() { # name port seconds logfile
    local name=$1 port=$2 seconds=$3 logfile=$4 i
    for ((i = 0; i < seconds * 10; i++)); do
        if answers 127.0.0.1 "$port"; then return 0; fi
        if ! running "$name"; then
            tail -n 30 "$logfile" >&2 || true
            die "$name exited before answering on port $port (log: $logfile)"
        fi
        sleep 0.1
    done
    tail -n 30 "$logfile" >&2 || true
    die "$name did not answer on port $port within ${seconds}s (log: $logfile)"
}

STARTED=()   # what this run started, stopped again if it fails
start() { # name logfile command...
    local name=$1 logfile=$2
    shift 2
    setsid "$@" >"$logfile" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
    STARTED+=("$name")
}

stop_started() { # on failure: stop what this run started, nothing else
    local name pid
    for name in "${STARTED[@]}"; do
        [[ -f "$RUN/$name.pid" ]] || continue
        pid=$(cat "$RUN/$name.pid")
        log "stopping $name (pid $pid): this stack-up failed"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        rm -f "$RUN/$name.pid"
    done
}
trap 'status=$?; if [[ $status -ne 0 ]]; then stop_started; fi' EXIT

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# ---------------------------------------------------------------- Kinesis
start_kinesis() {
    if answers 127.0.0.1 "$KINESIS_PORT"; then return 0; fi
    local dir="$LOCAL/node"
    local main="$dir/node_modules/kinesis-local/main.js"
    if [[ ! -f "$main" ]]; then
        command -v npm >/dev/null || die "npm is needed for kinesis-local (apt-get install nodejs npm)"
        log "installing kinesis-local@$KINESIS_LOCAL_VERSION into $dir"
        mkdir -p "$dir"
        npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
            "kinesis-local@$KINESIS_LOCAL_VERSION" >&2
    fi
    log "starting Kinesis (kinesis-local) on 127.0.0.1:$KINESIS_PORT"
    start kinesis "$LOGS/kinesis.log" env \
        KINESIS_MOCK_CERT_PATH="$dir/node_modules/kinesis-local/server.json" \
        KINESIS_MOCK_PLAIN_PORT="$KINESIS_PORT" KINESIS_MOCK_TLS_PORT="$KINESIS_TLS_PORT" \
        SHOULD_PERSIST_DATA=false LOG_LEVEL=WARN SHARD_LIMIT="${KINESIS_SHARD_LIMIT:-2000}" \
        node "$main"
}

# ---------------------------------------------------------------- moto (DynamoDB + S3)
install_venv() {
    local stamp="$LOCAL/venv/.requirements"
    if [[ -x "$LOCAL/venv/bin/python" ]] && cmp -s "$ROOT/deploy/local/requirements.txt" "$stamp"; then
        return 0
    fi
    log "installing Python tools into $LOCAL/venv (deploy/local/requirements.txt)"
    python3 -m venv "$LOCAL/venv"
    "$LOCAL/venv/bin/pip" install --quiet --disable-pip-version-check \
        -r "$ROOT/deploy/local/requirements.txt" >&2
    cp "$ROOT/deploy/local/requirements.txt" "$stamp"
}

start_moto() {
    if answers 127.0.0.1 "$MOTO_PORT"; then return 0; fi
    log "starting DynamoDB + S3 (moto, one request at a time) on 127.0.0.1:$MOTO_PORT"
    # moto_serialized.py: moto's app behind a lock, so conditional writes are atomic.
    start moto "$LOGS/moto.log" "$LOCAL/venv/bin/python" "$ROOT/deploy/local/moto_serialized.py" \
        127.0.0.1 "$MOTO_PORT"
}

# ---------------------------------------------------------------- MariaDB
find_mariadbd() {
    local p
    for p in "$(command -v mariadbd 2>/dev/null || true)" /usr/sbin/mariadbd /usr/sbin/mysqld; do
        if [[ -n "$p" && -x "$p" ]]; then echo "$p"; return 0; fi
    done
    return 1
}

start_mariadb() {
    if answers 127.0.0.1 "$MARIADB_PORT"; then return 0; fi
    if ! find_mariadbd >/dev/null; then
        log "installing mariadb-server (Debian)"
        # Keep the package's own service from starting: we run a private server.
        as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
        if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                mariadb-server mariadb-client; } >"$LOGS/apt.log" 2>&1; then
            as_root rm -f /usr/sbin/policy-rc.d
            tail -n 30 "$LOGS/apt.log" >&2
            die "installing mariadb-server failed (log: $LOGS/apt.log)"
        fi
        as_root rm -f /usr/sbin/policy-rc.d
    fi
    local mariadbd datadir="$LOCAL/mysql" import="$LOCAL/mysql-import"
    mariadbd=$(find_mariadbd) || die "mariadbd not found after installing mariadb-server"
    mkdir -p "$import" "$LOCAL/mysql-tmp"
    if [[ ! -d "$datadir/mysql" ]]; then
        log "initialising MariaDB datadir $datadir"
        mariadb-install-db --no-defaults --datadir="$datadir" --user="$(id -un)" \
            --auth-root-authentication-method=normal >"$LOGS/mariadb-install.log" 2>&1 \
            || { tail -n 30 "$LOGS/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    log "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
    start mariadb "$LOGS/mariadb.log" "$mariadbd" --no-defaults --datadir="$datadir" \
        --socket="$RUN/mariadb.sock" --pid-file="$RUN/mariadbd.pid" \
        --port="$MARIADB_PORT" --bind-address=127.0.0.1 --user="$(id -un)" \
        --secure-file-priv="$import" --skip-name-resolve --tmpdir="$LOCAL/mysql-tmp" \
        --max-allowed-packet=64M --innodb-buffer-pool-size=128M
}

# ---------------------------------------------------------------- Elasticsearch stand-in
start_es_standin() {
    if answers 127.0.0.1 "$ES_PORT"; then return 0; fi
    if [[ ! -x "$ES_STANDIN_BIN" ]]; then
        die "$ES_STANDIN_BIN is missing; build it with 'cargo build -p chief-es-standin --bin chief-es-standin' (make stack-up does)"
    fi
    log "starting the Elasticsearch stand-in (chief-es-standin, in memory) on 127.0.0.1:$ES_PORT"
    start es-standin "$LOGS/es-standin.log" env NO_COLOR=1 \
        "$ES_STANDIN_BIN" --listen "127.0.0.1:$ES_PORT"
}

# systemd-analyze checks the units in deploy/systemd (crates/executors/tests/it/deploy_files.rs).
install_systemd_analyze() {
    command -v systemd-analyze >/dev/null && return 0
    log "installing systemd (for systemd-analyze verify of deploy/systemd)"
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd; } \
        >"$LOGS/apt-systemd.log" 2>&1; then
        as_root rm -f /usr/sbin/policy-rc.d
        tail -n 30 "$LOGS/apt-systemd.log" >&2
        die "installing systemd failed (log: $LOGS/apt-systemd.log)"
    fi
    as_root rm -f /usr/sbin/policy-rc.d
}

# Debian's logrotate rotates the files chief-agent tails in its tests
# (crates/agent/tests/it/rotation.rs).
has_logrotate() {
    command -v logrotate >/dev/null || [[ -x /usr/sbin/logrotate ]]
}

install_logrotate() {
    has_logrotate && return 0
    log "installing logrotate (for chief-agent's rotation tests)"
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq logrotate; } \
        >"$LOGS/apt-logrotate.log" 2>&1; then
        tail -n 30 "$LOGS/apt-logrotate.log" >&2
        die "installing logrotate failed (log: $LOGS/apt-logrotate.log)"
    fi
}

# Debian's Chromium and ChromeDriver: chief-dashboard's page is tested in a real headless
# browser (crates/dashboard/tests/it/browser.rs).
has_chromium() {
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]
}

install_chromium() {
    has_chromium && return 0
    log "installing chromium and chromium-driver (for chief-dashboard's browser tests)"
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
        >"$LOGS/apt-chromium.log" 2>&1; then
        tail -n 30 "$LOGS/apt-chromium.log" >&2
        die "installing chromium failed (log: $LOGS/apt-chromium.log)"
    fi
}

create_database() {
    local client
    client=$(command -v mariadb || command -v mysql) || die "mariadb client not found"
    local i
    for ((i = 0; i < 100; i++)); do
        if "$client" --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MARIADB_PORT" -u root \
            -e "CREATE DATABASE IF NOT EXISTS chief" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    die "MariaDB answers on $MARIADB_PORT but does not accept root logins (log: $LOGS/mariadb.log)"
}

# Fast path: everything already answers.
if answers 127.0.0.1 "$KINESIS_PORT" && answers 127.0.0.1 "$MOTO_PORT" \
    && answers 127.0.0.1 "$MARIADB_PORT" && answers 127.0.0.1 "$ES_PORT" \
    && [[ -x "$LOCAL/venv/bin/python" ]] && has_logrotate && has_chromium \
    && cmp -s "$ROOT/deploy/local/requirements.txt" "$LOCAL/venv/.requirements"; then
    log "local stack already up (Kinesis :$KINESIS_PORT, DynamoDB+S3 :$MOTO_PORT, MariaDB :$MARIADB_PORT, Elasticsearch stand-in :$ES_PORT)"
    exit 0
fi

install_venv
install_systemd_analyze
install_logrotate
install_chromium
start_es_standin
start_kinesis
start_moto
start_mariadb
for svc in kinesis:$KINESIS_PORT:60 moto:$MOTO_PORT:60 mariadb:$MARIADB_PORT:60 es-standin:$ES_PORT:30; do
    IFS=: read -r name port secs <<<"$svc"
    if ! answers 127.0.0.1 "$port"; then wait_for "$name" "$port" "$secs" "$LOGS/$name.log"; fi
done
create_database
log "local stack up: Kinesis http://127.0.0.1:$KINESIS_PORT, DynamoDB+S3 http://127.0.0.1:$MOTO_PORT, MariaDB 127.0.0.1:$MARIADB_PORT, Elasticsearch stand-in http://127.0.0.1:$ES_PORT (logs in $LOGS)"
