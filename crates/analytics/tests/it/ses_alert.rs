//! Alerts through SES on the local stack (`make stack-up`: kinesis-local, moto's DynamoDB,
//! S3 and SES): an email for each window with more than one ERROR, exactly once, across a
//! kill right after the first one was sent, with the window's report as a zip (read by
//! Python's `zipfile`).

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_config::local_stack::LocalStack;
use chief_stream::{KinesisClient, PutEntry, StreamClient};
use support::*;

/// The raw emails moto's SES holds for `recipient`.
fn emails_to(recipient: &str) -> Vec<String> {
    // moto's dump of every backend fails now and then (a key of a bucket another test just
    // deleted): asked again.
    for _ in 0..20 {
        if let Some(emails) = try_emails_to(recipient) {
            return emails;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("moto's /moto-api/data.json kept failing");
}

fn try_emails_to(recipient: &str) -> Option<Vec<String>> {
    use std::io::{Read as _, Write as _};
    let addr = "127.0.0.1:5000";
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to moto");
    write!(
        stream,
        "GET /moto-api/data.json HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    if !response.starts_with(b"HTTP/1.1 200") && !response.starts_with(b"HTTP/1.0 200") {
        return None;
    }
    let data: serde_json::Value = serde_json::from_slice(&response[at..]).ok()?;
    let emails = data["ses"]["RawMessage"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter(|m| {
                    m["destinations"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|a| a.as_str() == Some(recipient)))
                })
                .filter_map(|m| m["raw_data"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some(emails)
}

/// The zip attached to a raw email, unzipped by Python's `zipfile`: `name\ncontent`.
fn attachment(raw: &str) -> String {
    use base64::Engine as _;
    let body = raw
        .split("Content-Transfer-Encoding: base64\r\n\r\n")
        .nth(1)
        .expect("a base64 attachment");
    let b64: String = body.lines().take_while(|l| !l.starts_with("--")).collect();
    let zip = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("base64");
    let path =
        std::env::temp_dir().join(format!("chief-mail-{}.zip", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, zip).expect("zip file");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nfor n in z.namelist():\n    print(n)\n    print(z.read(n).decode(), end='')",
        ])
        .arg(&path)
        .output()
        .expect("python3");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Event time of window `w` (60 s windows from 2026-01-01), plus `ms`.
fn at(w: i64, ms: i64) -> i64 {
    1_767_225_600_000 + w * 60_000 + ms
}

async fn put_events(client: &KinesisClient, stream: &str, events: &[(i64, &str)]) {
    let entries = events
        .iter()
        .enumerate()
        .map(|(i, (time, level))| PutEntry {
            partition_key: format!("host-{i}"),
            explicit_hash_key: None,
            data: Bytes::from(format!(r#"{{"level":"{level}","time":{time}}}"#)),
        })
        .collect();
    let results = client
        .put_records(stream, entries)
        .await
        .expect("PutRecords");
    assert!(results.iter().all(Result::is_ok), "events put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_emailed_once_per_window_with_more_than_one_error_across_a_kill_right_after_sending()
 {
    let stack = LocalStack::require();
    let Run {
        clients,
        kinesis,
        id,
        dir,
        bucket,
        stream,
    } = Run::new("analytics-alerts", 1).await;
    // SES sends only from a verified identity (moto verifies at once).
    let mut ses = aws_sdk_sesv2::config::Builder::from(clients.sdk_config());
    if let Some(url) = &stack.aws.ses.endpoint {
        ses = ses.endpoint_url(url);
    }
    aws_sdk_sesv2::Client::from_conf(ses.build())
        .create_email_identity()
        .email_identity("alerts@chief.example")
        .send()
        .await
        .expect("CreateEmailIdentity");
    let recipient = format!("ops-{id}@chief.example");
    std::fs::write(
        dir.join("alerts.toml"),
        format!(
            r#"
[consumer]
stream = "{stream}"
table = "chief-analytics-alerts-{id}"
initial_position = "TRIM_HORIZON"
failover_time_ms = 3000
lease_taking_interval_ms = 500
poll_interval_ms = 100
[store]
table = "chief-analytics-alerts-windows-{id}"
[merge]
interval_ms = 300
[app]
name = "levels"
group_by = ["level"]
[app.parse]
format = "json"
[app.time]
source = "field"
field = "time"
format = "epoch_millis"
[app.window]
size_s = 60
idle_timeout_s = 2
[[app.aggregate]]
name = "count"
fn = "count"
[output.s3]
bucket = "{bucket}"
prefix = "analytics/"
[[alert]]
name = "errors"
when = "ERROR > 1"
email = {{ from = "alerts@chief.example", to = ["{recipient}"] }}
"#
        ),
    )
    .expect("config");

    // Windows 0-2 with 0, 1 and 2 ERRORs; a record of window 3 closes them.
    let mut first = Worker::start_with(&dir, "alerts.toml", "worker-a");
    put_events(
        &kinesis,
        &stream,
        &[
            (at(0, 1_000), "INFO"),
            (at(0, 2_000), "INFO"),
            (at(1, 1_000), "ERROR"),
            (at(1, 2_000), "INFO"),
            (at(2, 1_000), "ERROR"),
            (at(2, 30_000), "WARN"),
            (at(2, 59_999), "ERROR"),
            (at(3, 0), "INFO"),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while emails_to(&recipient).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no alert emailed within 60 s (logs in {})",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Killed right after the first alert went out.
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");
    assert_eq!(
        emails_to(&recipient).len(),
        1,
        "the kill came after one alert"
    );

    // A second worker: window 3 gets 3 ERRORs; a record of window 4 closes it.
    let second = Worker::start_with(&dir, "alerts.toml", "worker-b");
    put_events(
        &kinesis,
        &stream,
        &[
            (at(3, 1_000), "ERROR"),
            (at(3, 2_000), "ERROR"),
            (at(3, 3_000), "ERROR"),
            (at(4, 0), "DEBUG"),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while written(&clients, &bucket).await.1 < 4 {
        assert!(
            Instant::now() < deadline,
            "not every window written within 90 s (logs in {})",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Rounds after the last window: nothing more is sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let emails = emails_to(&recipient);
    assert_eq!(
        emails.len(),
        2,
        "one email per window with more than one ERROR"
    );
    let w2 = chief_analytics::Window {
        start_ms: at(2, 0),
        end_ms: at(3, 0),
    };
    let w3 = chief_analytics::Window {
        start_ms: at(3, 0),
        end_ms: at(4, 0),
    };
    assert_eq!(
        attachment(&emails[0]),
        format!(
            "levels-errors-{}.csv\nwindow_start,window_end,level,count\n{s},{e},ERROR,2\n{s},{e},WARN,1\n",
            w2.start_ms,
            s = w2.start_text(),
            e = w2.end_text()
        )
    );
    assert_eq!(
        attachment(&emails[1]),
        format!(
            "levels-errors-{}.csv\nwindow_start,window_end,level,count\n{s},{e},ERROR,3\n{s},{e},INFO,1\n",
            w3.start_ms,
            s = w3.start_text(),
            e = w3.end_text()
        )
    );
    assert!(emails[0].contains("Subject: [chief] levels: ERROR > 1 in"));
    drop(second);
}
