//! The shipped settings (`config/agent.toml`) and unit (`deploy/systemd/chief-agent.service`):
//! the settings load strictly, the unit passes `systemd-analyze verify` and runs the binary
//! with a command line it accepts, logging JSON for the journal shipper.

use std::path::PathBuf;
use std::process::Command;

use chief_config::local_stack::workspace_root;

/// The package's own binary, which cargo builds for its integration tests.
const BIN: &str = env!("CARGO_BIN_EXE_chief-agent");

#[test]
fn the_unit_runs_the_agent_with_its_settings_and_passes_systemd_analyze() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("systemd-analyze is needed (apt-get install systemd; `make stack-up` installs it)");
    let root = workspace_root();
    let settings: chief_agent::AgentSettings =
        chief_config::load(&[root.join("config/agent.toml")]).expect("config/agent.toml");
    let listen = settings.metrics.listen.expect("[metrics] listen is on");
    assert!(listen.starts_with("127.0.0.1:"), "{listen}");
    let unit =
        std::fs::read_to_string(root.join("deploy/systemd/chief-agent.service")).expect("unit");
    for needed in [
        "Type=notify",
        "Restart=on-failure",
        "User=chief",
        "StateDirectory=aws-kinesis-agent",
        "ExecStart=/usr/local/bin/chief-agent --config /etc/aws-kinesis/agent.json --settings /etc/chief/agent.toml --log-format json",
    ] {
        assert!(unit.lines().any(|l| l == needed), "the unit lacks {needed}");
    }
    // The unit's command line, with the repository's files in place of /etc's.
    let dir = std::env::temp_dir().join(format!("chief-agent-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let agent_json = dir.join("agent.json");
    std::fs::write(
        &agent_json,
        r#"{"flows":[{"filePattern":"/var/log/app/*.log","kinesisStream":"s"}]}"#,
    )
    .expect("agent.json");
    let out = Command::new(BIN)
        .args(["--config"])
        .arg(&agent_json)
        .args(["--settings"])
        .arg(root.join("config/agent.toml"))
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
    let unit_path = dir.join("chief-agent.service");
    std::fs::write(&unit_path, unit.replace("/usr/local/bin/chief-agent", BIN)).expect("unit");
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
fn a_bad_agent_json_is_refused_with_one_line_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("chief-agent-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("agent.json");
    std::fs::write(
        &path,
        r#"{"flows":[{"filePattern":"/tmp/x.log","kinesisStream":"s","maxBufferAgeMilis":1000}]}"#,
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("maxBufferAgeMilis"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
