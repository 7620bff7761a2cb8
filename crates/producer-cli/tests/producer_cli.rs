//! The `chief-producer` binary against the local stack (`make stack-up`).

#[path = "../../producer/tests/it/support/mod.rs"]
mod support;

use std::process::Command;

use chief_config::local_stack::workspace_root;
use support::{create_stream, kinesis, read_all};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chief-producer"))
        .current_dir(workspace_root())
        .args([
            "--config",
            "config/producer.toml",
            "--config",
            "config/local.toml",
        ])
        .args(args)
        .output()
        .expect("run chief-producer")
}

#[tokio::test]
async fn sends_an_input_file_and_writes_malformed_lines_to_the_failed_file() {
    let k = kinesis().await;
    let stream = create_stream(&k, 2).await;
    let dir = std::env::temp_dir().join(format!("chief-producer-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("orders.jsonl");
    let failed = dir.join("failed.jsonl");
    let order = |id: &str, name: &str| {
        format!(
            r#"{{"orderid":"{id}","user":{{"userid":"user-1","name":"{name}"}},"factoryid":"factory-01","items":[],"timestamp":"2024-01-01T00:00:00Z"}}"#
        )
        .into_bytes()
    };
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for i in 0..500 {
        lines.push(order(&format!("order-{i:04}"), "Ada"));
        if i == 100 {
            lines.push(b"this is not json".to_vec());
        }
        if i == 200 {
            lines.push(b"{\"no_orderid\":1}".to_vec());
        }
        if i == 300 {
            // The record contract: a valid id is not enough.
            let mut bad = order("bad-utf8", "Ada");
            let at = bad.windows(3).position(|w| w == b"Ada").expect("name");
            bad[at..at + 2].copy_from_slice(b"\xff\xfe");
            lines.push(bad);
            lines.push(br#"["x"]"#.to_vec());
        }
    }
    let mut text = lines.join(&b'\n');
    text.push(b'\n');
    std::fs::write(&input, text).expect("write input");

    let out = run(&[
        "--stream",
        &stream,
        "--records",
        "orders",
        "--input",
        input.to_str().expect("utf-8 path"),
        "--failed-file",
        failed.to_str().expect("utf-8 path"),
        "--progress",
        "0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "malformed lines make the exit code non-zero: {stdout}"
    );
    assert!(
        stdout.contains("sent 500 put 500 failed 0 malformed 4"),
        "{stdout}"
    );

    let failed_lines: Vec<serde_json::Value> = std::fs::read_to_string(&failed)
        .expect("failed file written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(failed_lines.len(), 4);
    assert_eq!(failed_lines[0]["line"], 102);
    assert_eq!(failed_lines[0]["input"], "this is not json");
    assert_eq!(failed_lines[1]["line"], 203);
    let error = |n: usize| {
        failed_lines[n]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(error(1).contains("missing field"), "{}", error(1));
    assert_eq!(failed_lines[2]["line"], 304);
    assert!(error(2).contains("not valid UTF-8"), "{}", error(2));
    assert_eq!(failed_lines[3]["line"], 305);
    assert!(error(3).contains("not an object"), "{}", error(3));

    let users: Vec<_> = read_all(&k, &stream)
        .await
        .into_iter()
        .flat_map(|r| r.users)
        .collect();
    assert_eq!(users.len(), 500);
    let mut keys: Vec<String> = users.iter().map(|u| u.partition_key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 500, "partition key = orderid");
    assert!(users.iter().all(|u| {
        u.data
            .starts_with(format!("{{\"orderid\":\"{}\"", u.partition_key).as_bytes())
    }));
    std::fs::remove_dir_all(&dir).ok();
    k.delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
}

#[tokio::test]
async fn generates_job_results_and_exits_zero_when_all_are_put() {
    let k = kinesis().await;
    let stream = create_stream(&k, 2).await;
    let dir = std::env::temp_dir().join(format!("chief-producer-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let failed = dir.join("failed.jsonl");
    let out = run(&[
        "--stream",
        &stream,
        "--generate",
        "jobresults",
        "--count",
        "2000",
        "--rate",
        "0",
        "--duplicate-ratio",
        "0.1",
        "--failed-file",
        failed.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("sent 2000 put 2000 failed 0 malformed 0"),
        "{stdout}"
    );
    assert!(!failed.exists(), "no failed file when nothing failed");
    let users: Vec<_> = read_all(&k, &stream)
        .await
        .into_iter()
        .flat_map(|r| r.users)
        .collect();
    assert_eq!(users.len(), 2000);
    for u in &users {
        let v: serde_json::Value = serde_json::from_slice(&u.data).expect("JSON job result");
        assert_eq!(v["orderid"], u.partition_key.as_str());
        assert!(v["robotid"].is_string() && v["jobstatus"].is_string());
    }
    std::fs::remove_dir_all(&dir).ok();
    k.delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
}

#[test]
fn bad_arguments_are_refused_with_a_clear_message() {
    let out = run(&["--generate", "orders"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--count or --duration"));
    let out = run(&[
        "--generate",
        "orders",
        "--count",
        "1",
        "--duplicate-ratio",
        "1.5",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("duplicate-ratio"));
    // Input lines are checked against one kind of record, which must be named.
    let out = run(&["--input", "-"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--records"));
}

#[tokio::test]
async fn sigterm_stops_generating_and_flushes_what_was_sent() {
    let k = kinesis().await;
    let stream = create_stream(&k, 2).await;
    let dir = std::env::temp_dir().join(format!("chief-producer-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = generating(&stream, "500", "10m", &dir, &addr)
        .spawn()
        .expect("spawn chief-producer");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // Its records are put: ready (the control of the test below).
    assert_eq!(
        get(&addr, "/readyz"),
        Some((200, "ready\n".to_owned())),
        "a producer putting its records is ready"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "exits promptly after SIGTERM"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("interrupted"), "{stdout}");
    let sent: u64 = stdout
        .split("sent ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("sent count in the summary");
    assert!(sent > 100, "it was producing for 3 s at 500/s: {sent}");
    assert!(
        stdout.contains(&format!("sent {sent} put {sent} failed 0")),
        "{stdout}"
    );
    let users: usize = read_all(&k, &stream)
        .await
        .iter()
        .map(|r| r.users.len())
        .sum();
    assert_eq!(
        users as u64, sent,
        "everything sent before SIGTERM is in the stream"
    );
    std::fs::remove_dir_all(&dir).ok();
    k.delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
}

/// `chief-producer` generating orders into `stream` at `rate` for `duration`, its failed
/// file in `dir`, health and metrics on `addr`; output piped.
fn generating(
    stream: &str,
    rate: &str,
    duration: &str,
    dir: &std::path::Path,
    addr: &str,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chief-producer"));
    command
        .current_dir(workspace_root())
        .args([
            "--config",
            "config/producer.toml",
            "--config",
            "config/local.toml",
        ])
        .args([
            "--stream",
            stream,
            "--generate",
            "orders",
            "--rate",
            rate,
            "--duration",
            duration,
        ])
        .arg("--failed-file")
        .arg(dir.join("failed.jsonl"))
        .env("CHIEF__METRICS__LISTEN", addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET path` on `addr`: (status, body), or None while nothing listens.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned(),
    ))
}

#[tokio::test]
async fn is_not_ready_while_its_records_fail_and_says_why() {
    let k = kinesis().await;
    let stream = create_stream(&k, 1).await;
    let dir = std::env::temp_dir().join(format!("chief-producer-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let addr = format!("127.0.0.1:{}", free_port());
    // Every record outlives a 1 ms time to live before it can be sent: each one fails.
    let child = generating(&stream, "50", "6s", &dir, &addr)
        .env("CHIEF__PRODUCER__RECORD_TTL_MS", "1")
        .spawn()
        .expect("spawn chief-producer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        if let Some((503, body)) = get(&addr, "/readyz") {
            seen = Some(body);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The fault happened: records failed as expired (the failed file says so).
    let failed = std::fs::read_to_string(dir.join("failed.jsonl")).unwrap_or_default();
    assert!(
        failed.lines().count() > 0 && failed.lines().all(|l| l.contains("Expired")),
        "{stdout}{failed}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let body = seen.expect("/readyz never answered 503 while every record failed");
    assert!(
        body.contains("kinesis: ")
            && body.contains("records failed since the last one put (Expired"),
        "{body}"
    );
    std::fs::remove_dir_all(&dir).ok();
    k.delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
}
