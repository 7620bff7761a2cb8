//! The shipped configs (`config/analytics-*.toml`, `config/s3-ingest.toml`) and units
//! (`deploy/systemd/chief-analytics@.service`, `deploy/systemd/chief-s3-ingest.service`):
//! each config loads strictly and passes its checks, each unit passes `systemd-analyze
//! verify` and runs its binary with a command line it accepts, logging JSON; a bad config
//! is refused with one line naming the setting.

use std::path::{Path, PathBuf};
use std::process::Command;

use chief_analytics::AnalyticsConfig;
use chief_analytics::ingest::IngestConfig;
use chief_config::local_stack::workspace_root;

const ANALYTICS: &str = env!("CARGO_BIN_EXE_chief-analytics");
const INGEST: &str = env!("CARGO_BIN_EXE_chief-s3-ingest");
const JOIN: &str = env!("CARGO_BIN_EXE_chief-join");

/// `chief-dynamodb-sink`, built by `cargo build --workspace --bins` (`make test` does) next
/// to this test's `deps/` folder.
fn dynamodb_sink() -> String {
    let exe = std::env::current_exe().expect("test executable");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .join("chief-dynamodb-sink");
    assert!(
        path.exists(),
        "{} is missing: `cargo build --workspace --bins` (`make test` builds it)",
        path.display()
    );
    path.display().to_string()
}

fn analyze() -> PathBuf {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("systemd-analyze is needed (apt-get install systemd; `make stack-up` installs it)")
}

/// `(instance, path)` of every shipped application: `config/analytics-<instance>.toml`.
fn applications() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("config")).expect("config/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(instance) = name
            .strip_prefix("analytics-")
            .and_then(|n| n.strip_suffix(".toml"))
        {
            out.push((instance.to_owned(), path));
        }
    }
    out.sort();
    out
}

/// Runs `bin` with the unit's `ExecStart` arguments (`/etc/chief/<from>` → `to`) and
/// `--print-config`, checks it logs JSON, and verifies the unit with `systemd-analyze`.
fn check_unit(bin: &str, unit_file: &str, instance: Option<&str>, from: &str, to: &Path) {
    let unit = std::fs::read_to_string(workspace_root().join("deploy/systemd").join(unit_file))
        .unwrap_or_else(|e| panic!("{unit_file}: {e}"));
    for needed in [
        "Type=notify",
        "Restart=on-failure",
        "EnvironmentFile=-/etc/chief/chief.env",
        "User=chief",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(
            unit.lines().any(|l| l == needed),
            "{unit_file} lacks {needed}"
        );
    }
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let args: Vec<String> = exec
        .split_whitespace()
        .skip(1)
        .map(|a| a.replace(from, &to.to_string_lossy()))
        .collect();
    let out = Command::new(bin)
        .args(&args)
        .arg("--print-config")
        .output()
        .expect("run");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{unit_file}: {exec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("[log]\nfilter = \"info\"\nformat = \"json\""),
        "{unit_file}: does not log JSON:\n{printed}"
    );
    let dir = std::env::temp_dir().join(format!(
        "chief-analytics-units-{}-{}",
        std::process::id(),
        instance.unwrap_or("single")
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let installed = unit.replace(
        &format!(
            "/usr/local/bin/{}",
            Path::new(bin)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        ),
        bin,
    );
    std::fs::write(dir.join(unit_file), installed).expect("write");
    let name = match instance {
        Some(i) => unit_file.replace("@.", &format!("@{i}.")),
        None => unit_file.to_owned(),
    };
    let out = Command::new(analyze())
        .arg("verify")
        .arg(dir.join(&name))
        .output()
        .expect("systemd-analyze");
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "{name}: {complaints}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[metrics] listen` of a config file, read as TOML.
fn metrics_listen_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let table: toml::Table =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    table
        .get("metrics")
        .and_then(|m| m.get("listen"))
        .and_then(|l| l.as_str())
        .map(str::to_owned)
}

#[test]
fn every_shipped_application_is_valid_on_its_own_port_and_its_unit_runs_it() {
    let apps = applications();
    let names: Vec<&str> = apps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["levels", "status"], "the shipped applications");
    let mut ports = Vec::new();
    for (instance, path) in &apps {
        let config: AnalyticsConfig =
            chief_config::load(&[path]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        config
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let listen = config
            .metrics
            .listen
            .clone()
            .expect("[metrics] listen is on");
        let addr: std::net::SocketAddr = listen.parse().expect("host:port");
        assert!(
            addr.ip().is_loopback(),
            "{instance}: {addr} is not localhost"
        );
        ports.push(addr.port());
        check_unit(
            ANALYTICS,
            "chief-analytics@.service",
            Some(instance),
            "/etc/chief/analytics-%i.toml",
            path,
        );
    }
    let ingest_path = workspace_root().join("config/s3-ingest.toml");
    let ingest: IngestConfig = chief_config::load(&[&ingest_path]).expect("config/s3-ingest.toml");
    ingest.validate().expect("config/s3-ingest.toml is valid");
    let listen = ingest
        .metrics
        .listen
        .clone()
        .expect("[metrics] listen is on");
    ports.push(
        listen
            .parse::<std::net::SocketAddr>()
            .expect("host:port")
            .port(),
    );
    check_unit(
        INGEST,
        "chief-s3-ingest.service",
        None,
        "/etc/chief/s3-ingest.toml",
        &ingest_path,
    );
    // Seed 004's two services.
    let join_path = workspace_root().join("config/join-orders.toml");
    let join: chief_analytics::enrich::EnrichConfig =
        chief_config::load(&[&join_path]).expect("config/join-orders.toml");
    join.validate().expect("config/join-orders.toml is valid");
    let sink_path = workspace_root().join("config/dynamodb-sink.toml");
    let sink = dynamodb_sink();
    for (listen, path, bin, unit, installed) in [
        (
            join.metrics.listen.clone(),
            &join_path,
            JOIN,
            "chief-join.service",
            "/etc/chief/join-orders.toml",
        ),
        (
            metrics_listen_of(&sink_path),
            &sink_path,
            sink.as_str(),
            "chief-dynamodb-sink.service",
            "/etc/chief/dynamodb-sink.toml",
        ),
    ] {
        let listen = listen.expect("[metrics] listen is on");
        ports.push(
            listen
                .parse::<std::net::SocketAddr>()
                .expect("host:port")
                .port(),
        );
        check_unit(bin, unit, None, installed, path);
    }
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len(), "one port each: {ports:?}");
}

#[test]
fn a_bad_application_is_refused_with_one_line_naming_it() {
    let out = Command::new(ANALYTICS)
        .current_dir(workspace_root())
        .args(["--config", "config/analytics-levels.toml"])
        .env("CHIEF__APP__WINDOW__SLIDE_S", "7")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`window.slide_s` (7) must divide `window.size_s` (60)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let out = Command::new(INGEST)
        .current_dir(workspace_root())
        .args(["--config", "config/s3-ingest.toml"])
        .env("CHIEF__INGEST__WAIT_TIME_S", "21")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.wait_time_s must be 0–20"), "{err}");
}
