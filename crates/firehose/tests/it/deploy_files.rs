//! The shipped delivery configs (`config/firehose-*.toml`) and the unit template
//! (`deploy/systemd/chief-firehose@.service`): each config loads strictly and passes its
//! checks, each unit instance passes `systemd-analyze verify`, runs the binary with the
//! config the instance names, and waits out the worst flush on stop.

use crate::support;

use std::path::PathBuf;

use std::process::Command;
use support::BIN;

use chief_config::local_stack::workspace_root;
use chief_firehose::{DestinationKind, FirehoseConfig};

/// `(instance, config)` of every shipped delivery: `config/firehose-<instance>.toml`.
fn deliveries() -> Vec<(String, FirehoseConfig)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("config")).expect("config/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(instance) = name
            .strip_prefix("firehose-")
            .and_then(|n| n.strip_suffix(".toml"))
        else {
            continue;
        };
        let config: FirehoseConfig =
            chief_config::load(&[&path]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        out.push((instance.to_owned(), config));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["analysed-logs", "taxi"],
        "the shipped deliveries"
    );
    out
}

fn unit() -> String {
    std::fs::read_to_string(workspace_root().join("deploy/systemd/chief-firehose@.service"))
        .expect("deploy/systemd/chief-firehose@.service")
}

/// `key=value` settings of a unit file (the last one wins).
fn unit_setting(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .filter_map(|l| l.trim().split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
}

#[test]
fn every_delivery_config_is_valid_and_serves_health_on_its_own_port() {
    let mut ports = Vec::new();
    for (instance, config) in deliveries() {
        assert_eq!(
            config.consumer.table,
            format!("chief-firehose-{}", config.delivery.name),
            "{instance}: one lease table per delivery"
        );
        let listen = config.metrics.listen.expect("[metrics] listen is on");
        let addr: std::net::SocketAddr = listen.parse().expect("host:port");
        assert!(
            addr.ip().is_loopback(),
            "{instance}: {addr} is not localhost"
        );
        // The executors and the producer use 9100–9104.
        assert!(!(9100..=9104).contains(&addr.port()), "{instance}: {addr}");
        ports.push(addr.port());
    }
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ports.len(),
        "one port per delivery: {ports:?}"
    );
}

#[test]
fn an_invalid_config_is_refused_with_the_field_named() {
    let out = Command::new(BIN)
        .current_dir(workspace_root())
        .args(["--config", "config/firehose-taxi.toml"])
        .env("CHIEF__S3__BUFFERING_SIZE_MIB", "129")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3.buffering_size_mib: 129 is not in 1–128"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn the_unit_template_runs_each_delivery_and_waits_out_its_worst_flush() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("systemd-analyze is needed (apt-get install systemd; `make stack-up` installs it)");
    let unit = unit();
    for needed in [
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "EnvironmentFile=-/etc/chief/chief.env",
        "User=chief",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecStart=/usr/local/bin/chief-firehose --config /etc/chief/firehose-%i.toml --log-format json",
    ] {
        assert!(unit.lines().any(|l| l == needed), "the unit lacks {needed}");
    }
    let stop: u64 = unit_setting(&unit, "TimeoutStopSec")
        .and_then(|v| v.parse().ok())
        .expect("TimeoutStopSec in seconds");
    let dir = std::env::temp_dir().join(format!("chief-firehose-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("chief-firehose@.service"),
        unit.replace("/usr/local/bin/chief-firehose", BIN),
    )
    .expect("write");
    for (instance, config) in deliveries() {
        // A graceful stop writes the buffers: S3 retries up to its deadline; Elasticsearch
        // for its retry duration, then the failed documents and backups go to S3.
        let mut worst_ms = config.s3.retry.deadline_ms;
        if config.delivery.destination == DestinationKind::Elasticsearch {
            worst_ms +=
                config.elasticsearch.retry_duration_seconds * 1_000 + config.s3.retry.deadline_ms;
        }
        assert!(
            stop * 1_000 >= worst_ms + 30_000,
            "{instance}: TimeoutStopSec={stop} s but a flush may take {worst_ms} ms"
        );
        // The instance's command line, with the shipped config in place of /etc/chief's.
        let exec = unit_setting(&unit, "ExecStart").expect("ExecStart");
        let args: Vec<String> = exec
            .split_whitespace()
            .skip(1)
            .map(|a| {
                a.replace(
                    "/etc/chief/firehose-%i.toml",
                    &workspace_root()
                        .join(format!("config/firehose-{instance}.toml"))
                        .to_string_lossy(),
                )
            })
            .collect();
        let out = Command::new(BIN)
            .args(&args)
            .arg("--print-config")
            .output()
            .expect("run");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{instance}: {exec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            printed.contains("[log]\nfilter = \"info\"\nformat = \"json\""),
            "{instance}: does not log JSON:\n{printed}"
        );
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(dir.join(format!("chief-firehose@{instance}.service")))
            .output()
            .expect("systemd-analyze");
        let complaints = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && complaints.trim().is_empty(),
            "chief-firehose@{instance}: {complaints}"
        );
    }
}
