#!/usr/bin/env bash
# Stops what deploy/local/stack-up.sh started (by its pid files) and nothing else.
# Data under .local/ stays; `rm -rf .local` removes installs and data too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN="$ROOT/.local/run"

stop() { # name
    local pidfile="$RUN/$1.pid" pid i
    [[ -f "$pidfile" ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        printf 'stack-down: stopping %s (pid %s)\n' "$1" "$pid" >&2
        # The process leads its own session (setsid): signal the whole group.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# The dashboard `make demo` leaves running with the stack, then the stack itself.
for name in dashboard kinesis moto mariadb es-standin; do
    stop "$name"
done
printf 'stack-down: local stack stopped\n' >&2
