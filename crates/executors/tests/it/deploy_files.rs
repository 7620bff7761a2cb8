//! The shipped config files and systemd units: each config parses into the executor's
//! config and passes its checks; each unit passes `systemd-analyze verify` with no
//! complaint (run against the binary this build made).

use std::path::PathBuf;
use std::process::Command;

use chief_config::local_stack::workspace_root;
use chief_executors::{Executor, ExecutorConfig};

fn short(executor: Executor) -> &'static str {
    executor.name().trim_start_matches("chief-")
}

fn binary(executor: Executor) -> &'static str {
    match executor {
        Executor::OrderFactoryS3 => env!("CARGO_BIN_EXE_chief-order-factory-s3"),
        Executor::OrderEsS3 => env!("CARGO_BIN_EXE_chief-order-es-s3"),
        Executor::JobResultEs => env!("CARGO_BIN_EXE_chief-jobresult-es"),
        Executor::JobResultNotifyS3 => env!("CARGO_BIN_EXE_chief-jobresult-notify-s3"),
    }
}

#[test]
fn every_config_file_loads_and_is_valid_for_its_executor() {
    for executor in Executor::ALL {
        let path = workspace_root().join(format!("config/{}.toml", short(executor)));
        let text = std::fs::read_to_string(&path).expect("config file");
        let config: ExecutorConfig = chief_config::load_str(&text, &[])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        config
            .validate(executor)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            config.consumer.table,
            executor.name(),
            "one lease table each"
        );
        let stream = match executor {
            Executor::OrderFactoryS3 | Executor::OrderEsS3 => "OrdersStream",
            _ => "JobResultsStream",
        };
        assert_eq!(config.consumer.stream, stream);
        assert_eq!(config.archive.bucket, "chief-archive");
        if executor.writes_search() {
            assert!(["orders", "jobresults"].contains(&config.elasticsearch.index.as_str()));
        }
    }
    let prefixes: Vec<String> = Executor::ALL
        .iter()
        .map(|e| {
            let path = workspace_root().join(format!("config/{}.toml", short(*e)));
            let c: ExecutorConfig =
                chief_config::load_str(&std::fs::read_to_string(path).expect("read"), &[])
                    .expect("parse");
            c.archive.prefix
        })
        .collect();
    // chief-jobresult-es writes no batch files: it needs no prefix (its dead letters go
    // under dead_letter_prefix); an executor that writes them cannot do without one.
    assert_eq!(
        prefixes,
        [
            "ChiefOrderS3",
            "ChiefOrderEsS3",
            "",
            "ChiefJobResultNotifyS3"
        ]
    );
    let text = std::fs::read_to_string(workspace_root().join("config/order-factory-s3.toml"))
        .expect("read");
    let mut no_prefix: ExecutorConfig = chief_config::load_str(&text, &[]).expect("parse");
    no_prefix.archive.prefix.clear();
    let err = no_prefix
        .validate(Executor::OrderFactoryS3)
        .expect_err("batch files need a prefix");
    assert!(
        err.to_string().contains("archive.prefix must be set"),
        "{err}"
    );
}

#[test]
fn print_config_shows_the_effective_config_and_no_secret() {
    let out = Command::new(binary(Executor::OrderEsS3))
        .args(["--config"])
        .arg(workspace_root().join("config/order-es-s3.toml"))
        .args(["--worker-id", "w-7", "--print-config"])
        .env("CHIEF__ELASTICSEARCH__PASSWORD", "hunter2-secret")
        .env("CHIEF__ELASTICSEARCH__USERNAME", "chief")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(text.contains("worker_id = \"w-7\""), "{text}");
    assert!(text.contains("index = \"orders\""), "{text}");
    assert!(!text.contains("hunter2-secret"), "{text}");
    let bad = Command::new(binary(Executor::OrderEsS3))
        .arg("--no-such-flag")
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn an_invalid_config_is_refused_with_the_field_named() {
    let dir = std::env::temp_dir().join(format!("chief-exec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[consumer]\nstream = \"OrdersStream\"\n").expect("write");
    let out = Command::new(binary(Executor::OrderFactoryS3))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("archive.bucket must be set"), "{err}");
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("systemd-analyze is needed (apt-get install systemd; `make stack-up` installs it)");
    let dir = std::env::temp_dir().join(format!("chief-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for executor in Executor::ALL {
        let name = format!("{}.service", executor.name());
        let unit = std::fs::read_to_string(workspace_root().join("deploy/systemd").join(&name))
            .expect("unit file");
        let installed = format!("/usr/local/bin/{}", executor.name());
        assert!(unit.contains(&format!(
            "ExecStart={installed} --config /etc/chief/{}.toml",
            short(executor)
        )));
        for needed in [
            "Restart=on-failure",
            "EnvironmentFile=-/etc/chief/chief.env",
            "User=chief",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
        ] {
            assert!(unit.contains(needed), "{name} lacks {needed}");
        }
        // The binary accepts the unit's command line and logs JSON lines for the journal
        // shipper (deploy/aws/ship-journal.sh).
        let exec = unit_setting(&unit, "ExecStart").expect("ExecStart");
        let args: Vec<String> = exec
            .split_whitespace()
            .skip(1)
            .map(|a| {
                a.replace(
                    &format!("/etc/chief/{}.toml", short(executor)),
                    &workspace_root()
                        .join(format!("config/{}.toml", short(executor)))
                        .to_string_lossy(),
                )
            })
            .collect();
        let out = Command::new(binary(executor))
            .args(&args)
            .arg("--print-config")
            .output()
            .expect("run");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {exec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            printed.contains("[log]\nfilter = \"info\"\nformat = \"json\""),
            "{name}: {exec} does not log JSON:\n{printed}"
        );
        // Verify against the binary this build made (verify checks it is executable).
        let path = dir.join(&name);
        std::fs::write(&path, unit.replace(&installed, binary(executor))).expect("write");
        let out = Command::new(&analyze)
            .arg("verify")
            .arg(&path)
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
    }
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
fn units_notify_systemd_keep_a_watchdog_and_wait_out_the_worst_flush() {
    for executor in Executor::ALL {
        let name = short(executor);
        let unit = std::fs::read_to_string(
            workspace_root().join(format!("deploy/systemd/chief-{name}.service")),
        )
        .expect("unit");
        assert_eq!(
            unit_setting(&unit, "Type").as_deref(),
            Some("notify"),
            "{name}"
        );
        assert_eq!(
            unit_setting(&unit, "NotifyAccess").as_deref(),
            Some("main"),
            "{name}"
        );
        let watchdog: u64 = unit_setting(&unit, "WatchdogSec")
            .and_then(|v| v.parse().ok())
            .expect("WatchdogSec in seconds");
        assert!(
            (10..=120).contains(&watchdog),
            "{name}: WatchdogSec={watchdog}"
        );
        // A graceful stop flushes every sink the executor writes, one after the other,
        // each retrying up to its deadline; then it checkpoints and releases.
        let config: ExecutorConfig = chief_config::load_str(
            &std::fs::read_to_string(workspace_root().join(format!("config/{name}.toml")))
                .expect("config"),
            &[],
        )
        .expect("parse");
        let mut worst_ms = 0;
        if executor.writes_archive() {
            worst_ms += config.archive.retry.deadline_ms;
        }
        if executor.writes_search() {
            worst_ms += config.elasticsearch.retry.deadline_ms;
        }
        let stop: u64 = unit_setting(&unit, "TimeoutStopSec")
            .and_then(|v| v.parse().ok())
            .expect("TimeoutStopSec in seconds");
        assert!(
            stop * 1000 >= worst_ms + 30_000,
            "{name}: TimeoutStopSec={stop} s but the sinks may retry for {worst_ms} ms"
        );
    }
}

#[test]
fn each_config_serves_health_on_its_own_localhost_port() {
    let mut ports = Vec::new();
    for executor in Executor::ALL {
        let name = short(executor);
        let config: ExecutorConfig = chief_config::load_str(
            &std::fs::read_to_string(workspace_root().join(format!("config/{name}.toml")))
                .expect("config"),
            &[],
        )
        .expect("parse");
        let listen = config.metrics.listen.expect("[metrics] listen is on");
        let addr: std::net::SocketAddr = listen.parse().expect("host:port");
        assert!(addr.ip().is_loopback(), "{name}: {addr} is not localhost");
        ports.push(addr.port());
    }
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ports.len(),
        "one port per executor: {ports:?}"
    );
}
