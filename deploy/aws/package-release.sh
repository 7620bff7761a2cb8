#!/usr/bin/env bash
# Packs the release tarball that the launch templates of deploy/aws/chief.yaml install:
#
#   chief-<version>/bin/       chief-producer, the four executors, chief-firehose, chief-agent, chief-dashboard,
#                              chief-analytics, chief-s3-ingest,
#                              chief-loader, chiefctl
#   chief-<version>/config/    config/*.toml (every key with its default; the stack's
#                              settings come from CHIEF__ variables the user data writes)
#   chief-<version>/systemd/   deploy/systemd/*.service, chief.env.example
#   chief-<version>/cron/      deploy/cron/chief-loader
#   chief-<version>/sql/       sql/ (the loader's migrations, for reference)
#   chief-<version>/setup/     deploy/aws/ship-journal.sh (the journal to CloudWatch Logs)
#
# Usage:
#   deploy/aws/package-release.sh [--bin-dir DIR] [--out FILE]   # pack (default target/release)
#   deploy/aws/package-release.sh --list                          # print the paths it packs
#
# Build the binaries first, for the instances' glibc (Amazon Linux 2023 has 2.34: build on
# AL2023, e.g. in an amazonlinux:2023 container, or with cargo-zigbuild for
# x86_64-unknown-linux-gnu.2.34):
#   cargo build --release --locked --bins
# then upload: aws s3 cp chief-<version>-x86_64-linux.tar.gz s3://<release-bucket>/releases/
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BINARIES=(chief-producer chief-order-factory-s3 chief-order-es-s3 chief-jobresult-es chief-firehose chief-agent chief-dashboard
    chief-analytics chief-s3-ingest
    chief-jobresult-notify-s3 chief-loader chiefctl)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n 1)
TOP="chief-$VERSION"
BIN_DIR="$ROOT/target/release"
OUT=""
LIST=false

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin-dir) BIN_DIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --list) LIST=true; shift ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "package-release: unknown argument $1" >&2; exit 2 ;;
    esac
done

# "<path in the tarball> <source>" lines.
contents() {
    local b f
    for b in "${BINARIES[@]}"; do echo "bin/$b $BIN_DIR/$b"; done
    for f in "$ROOT"/config/*.toml; do
        [[ $(basename "$f") == local.toml ]] && continue # the local stack's settings
        echo "config/$(basename "$f") $f"
    done
    for f in "$ROOT"/deploy/systemd/*; do echo "systemd/$(basename "$f") $f"; done
    echo "cron/chief-loader $ROOT/deploy/cron/chief-loader"
    for f in "$ROOT"/sql/*; do echo "sql/$(basename "$f") $f"; done
    echo "setup/ship-journal.sh $ROOT/deploy/aws/ship-journal.sh"
}

if $LIST; then
    contents | while read -r path _; do echo "$TOP/$path"; done
    exit 0
fi

arch=$(uname -m)
OUT=${OUT:-$ROOT/$TOP-$arch-linux.tar.gz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
while read -r path src; do
    [[ -f "$src" ]] || { echo "package-release: missing $src (build with: cargo build --release --locked --bins)" >&2; exit 1; }
    mode=0644
    [[ $path == bin/* || $path == setup/* ]] && mode=0755
    install -D -m "$mode" "$src" "$stage/$TOP/$path"
done < <(contents)
tar -czf "$OUT" -C "$stage" "$TOP"
echo "$OUT"
