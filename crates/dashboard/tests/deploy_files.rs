//! The shipped config (`config/dashboard.toml`) and unit
//! (`deploy/systemd/chief-dashboard.service`): the config loads strictly and is valid, the
//! unit passes `systemd-analyze verify` and runs the binary with a command line it
//! accepts; a missing stream fails loudly with one line.

use std::path::{Path, PathBuf};
use std::process::Command;

use chief_config::local_stack::workspace_root;

fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .join("chief-dashboard");
    assert!(
        path.exists(),
        "{} is missing: `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

#[test]
fn the_unit_runs_the_dashboard_with_its_config_and_passes_systemd_analyze() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("systemd-analyze is needed (apt-get install systemd; `make stack-up` installs it)");
    let root = workspace_root();
    let config: chief_dashboard::DashboardConfig =
        chief_config::load(&[root.join("config/dashboard.toml")]).expect("config/dashboard.toml");
    config.validate().expect("the shipped config is valid");
    assert_eq!(config.orders.stream, "OrdersStream");
    assert_eq!(config.jobresults.stream, "JobResultsStream");
    let unit =
        std::fs::read_to_string(root.join("deploy/systemd/chief-dashboard.service")).expect("unit");
    for needed in [
        "Type=notify",
        "Restart=on-failure",
        "User=chief",
        "ExecStart=/usr/local/bin/chief-dashboard --config /etc/chief/dashboard.toml --log-format json",
    ] {
        assert!(unit.lines().any(|l| l == needed), "the unit lacks {needed}");
    }
    let out = Command::new(binary())
        .arg("--config")
        .arg(root.join("config/dashboard.toml"))
        .args(["--log-format", "json", "--print-config"])
        .output()
        .expect("run");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("[log]\nfilter = \"info\"\nformat = \"json\""),
        "{printed}"
    );
    let dir = std::env::temp_dir().join(format!("chief-dashboard-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let unit_path = dir.join("chief-dashboard.service");
    std::fs::write(
        &unit_path,
        unit.replace(
            "/usr/local/bin/chief-dashboard",
            &binary().to_string_lossy(),
        ),
    )
    .expect("unit");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit_path)
        .output()
        .expect("systemd-analyze");
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_stream_exits_non_zero_with_one_line_naming_it() {
    let stack = chief_config::local_stack::LocalStack::require();
    let _ = stack;
    let root = workspace_root();
    let out = Command::new(binary())
        .current_dir(&root)
        .args([
            "--config",
            "config/dashboard.toml",
            "--config",
            "config/local.toml",
        ])
        .env("CHIEF__ORDERS__STREAM", "no-such-orders-stream")
        .env("CHIEF__HTTP__LISTEN", "127.0.0.1:0")
        .env(
            "CHIEF__ORDERS__TABLE",
            format!("dash-missing-{}", std::process::id()),
        )
        .env(
            "CHIEF__JOBRESULTS__TABLE",
            format!("dash-missing-j-{}", std::process::id()),
        )
        .env("CHIEF__JOBRESULTS__STREAM", "no-such-jobs-stream")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("chief-dashboard: ") && last.contains("no-such-"),
        "{err}"
    );
}
