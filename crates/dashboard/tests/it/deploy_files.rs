//! The shipped config (`config/dashboard.toml`) and unit
//! (`deploy/systemd/chief-dashboard.service`): the config loads strictly and is valid, the
//! unit passes `systemd-analyze verify` and runs the binary with a command line it
//! accepts; a missing stream fails loudly with one line.

use std::path::PathBuf;
use std::process::Command;

use chief_config::local_stack::workspace_root;

/// The package's own binary, which cargo builds for its integration tests.
const BIN: &str = env!("CARGO_BIN_EXE_chief-dashboard");

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
    let out = Command::new(BIN)
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
        unit.replace("/usr/local/bin/chief-dashboard", BIN),
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
    let out = Command::new(BIN)
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

/// GET `path` from `addr` over a fresh connection: (status line, body).
fn get(addr: &str, path: &str) -> Option<(String, String)> {
    use std::io::{Read as _, Write as _};
    let mut socket = std::net::TcpStream::connect(addr).ok()?;
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    socket.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_page_its_script_and_metrics_on_its_port_and_stops_cleanly() {
    let stack = chief_config::local_stack::LocalStack::require();
    let clients = chief_config::aws::AwsClients::new(&stack.aws).await;
    let kinesis = chief_stream::KinesisClient::new(clients.kinesis());
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let (orders, jobs) = (format!("dash-bin-o-{id}"), format!("dash-bin-j-{id}"));
    for stream in [&orders, &jobs] {
        kinesis
            .create_stream(stream, 1)
            .await
            .expect("CreateStream");
        kinesis
            .wait_until_active(stream, std::time::Duration::from_secs(60))
            .await
            .expect("ACTIVE");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .current_dir(workspace_root())
        .args([
            "--config",
            "config/dashboard.toml",
            "--config",
            "config/local.toml",
        ])
        .env("CHIEF__HTTP__LISTEN", &addr)
        .env("CHIEF__ORDERS__STREAM", &orders)
        .env("CHIEF__ORDERS__TABLE", &orders)
        .env("CHIEF__JOBRESULTS__STREAM", &jobs)
        .env("CHIEF__JOBRESULTS__TABLE", &jobs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn chief-dashboard");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        if let Some(page) = get(&addr, "/") {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page is not served on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(page.0, "HTTP/1.1 200 OK");
    assert!(
        page.1.contains("<script src=\"/app.js\"></script>"),
        "{}",
        page.1
    );
    let script = get(&addr, "/app.js").expect("/app.js");
    assert!(script.0.ends_with("200 OK") && script.1.contains("new EventSource(\"/events\")"));
    let health = get(&addr, "/healthz").expect("/healthz");
    assert!(health.0.ends_with("200 OK"), "{health:?}");
    // Ready once both consumers have synced their shards.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ready = get(&addr, "/readyz").expect("/readyz");
        if ready.0.ends_with("200 OK") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ready: {ready:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let metrics = get(&addr, "/metrics").expect("/metrics");
    assert!(metrics.0.ends_with("200 OK"), "{metrics:?}");
    assert!(metrics.1.contains("AwsCalls"), "{}", metrics.1);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success(), "exit 0 on SIGTERM");
    for stream in [&orders, &jobs] {
        let _ = clients
            .kinesis()
            .delete_stream()
            .stream_name(stream)
            .send()
            .await;
    }
}
