//! `chief-agent` as a process on the local stack (`make stack-up`: kinesis-local, and
//! Debian's `logrotate`, which the stack's script installs): 100,000 numbered lines are
//! written while `logrotate` rotates the file mid-run — once with `create`, once with
//! `copytruncate` — and the agent is killed with SIGKILL and restarted in the middle.
//! The records in the stream are read back and must be exactly the lines written: none
//! missing, and every duplicate counted by the restarted agent as replayed.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_stream::{IteratorPosition, KinesisClient, StreamClient};

/// The package's own binary, which cargo builds for its integration tests.
const BIN: &str = env!("CARGO_BIN_EXE_chief-agent");

const LINES: usize = 100_000;

fn logrotate() -> PathBuf {
    [
        "/usr/sbin/logrotate",
        "/usr/bin/logrotate",
        "/sbin/logrotate",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("logrotate is needed: `make stack-up` installs it (apt-get install logrotate)")
}

struct Agent {
    child: Child,
    log: PathBuf,
}

fn start_agent(dir: &Path, run: usize, stack: &LocalStack) -> Agent {
    let log = dir.join(format!("agent-{run}.log"));
    let out = std::fs::File::create(&log).expect("log");
    let err = out.try_clone().expect("log");
    let child = Command::new(BIN)
        .current_dir(workspace_root())
        .args(["--config"])
        .arg(dir.join("agent.json"))
        .args([
            "--settings",
            "config/agent.toml",
            "--settings",
            "config/local.toml",
        ])
        .env(
            "CHIEF__AWS__KINESIS__ENDPOINT",
            stack.aws.kinesis.endpoint.clone().unwrap_or_default(),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("spawn chief-agent");
    Agent { child, log }
}

impl Agent {
    fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let file = std::fs::File::open(&self.log).expect("log");
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("health and metrics on http://").nth(1) {
                    return rest.split('/').next().unwrap_or_default().to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no metrics address in {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// Every user record of the stream (deaggregated), as text without its newline; and a
/// listing of the stream's records (shard, sequence number, first and last line) for the
/// log of a failure.
async fn stream_lines(client: &KinesisClient, stream: &str) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut listing = String::new();
    for shard in client.list_shards(stream).await.expect("shards") {
        let mut iterator = client
            .get_shard_iterator(stream, &shard.shard_id, &IteratorPosition::TrimHorizon)
            .await
            .expect("iterator");
        loop {
            let page = client
                .get_records(stream, &iterator, 10_000)
                .await
                .expect("records");
            for record in &page.records {
                let kinesis_record = chief_aggregation::UserRecord {
                    partition_key: record.partition_key.clone(),
                    explicit_hash_key: None,
                    data: record.data.clone(),
                };
                let before = out.len();
                for user in chief_aggregation::deaggregate(kinesis_record) {
                    let text = String::from_utf8_lossy(&user.record.data).into_owned();
                    out.push(text.strip_suffix('\n').unwrap_or(&text).to_owned());
                }
                let first = out.get(before).map(|l| l.get(..11).unwrap_or(l));
                let last = out.last().map(|l| l.get(..11).unwrap_or(l));
                listing.push_str(&format!(
                    "{} {} {:?} {} lines {:?}..{:?}\n",
                    shard.shard_id,
                    record.sequence_number,
                    record
                        .approximate_arrival
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis()),
                    out.len() - before,
                    first,
                    last
                ));
            }
            match page.next_shard_iterator {
                Some(next) if !page.records.is_empty() => iterator = next,
                _ => break,
            }
        }
    }
    (out, listing)
}

/// The runs of numbers in `0..LINES` missing from `lines`, as `from..to` ranges.
fn missing_runs(lines: &[String]) -> String {
    let have: std::collections::HashSet<&str> = lines.iter().map(String::as_str).collect();
    let mut runs = Vec::new();
    let mut start = None;
    for n in 0..=LINES {
        let missing = n < LINES && !have.contains(line(n).as_str());
        match (missing, start) {
            (true, None) => start = Some(n),
            (false, Some(s)) => {
                runs.push(format!("{s}..{n}"));
                start = None;
            }
            _ => {}
        }
    }
    runs.join(", ")
}

fn line(n: usize) -> String {
    format!("line {n:06} {}", "x".repeat(n % 50))
}

async fn rotate_kill_and_count(mode: &str) {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let dir = workspace_root()
        .join(".local/e2e")
        .join(format!("agent-{mode}-{id}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let kinesis = KinesisClient::new(clients.kinesis());
    let stream = format!("agent-{mode}-{id}");
    kinesis
        .create_stream(&stream, 2)
        .await
        .expect("CreateStream");
    kinesis
        .wait_until_active(&stream, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    let log_file = dir.join("app.log");
    std::fs::write(
        dir.join("agent.json"),
        serde_json::json!({
            "checkpointFile": dir.join("checkpoints"),
            "flows": [{
                "filePattern": format!("{}/app.log*", dir.display()),
                "kinesisStream": stream,
                "initialPosition": "START_OF_FILE",
                "maxBufferAgeMillis": 1000,
                "chief.aggregation": true,
            }]
        })
        .to_string(),
    )
    .expect("agent.json");
    let conf = dir.join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n    {mode}\n    rotate 5\n    missingok\n    nocompress\n}}\n",
            log_file.display()
        ),
    )
    .expect("logrotate.conf");
    let state = dir.join("logrotate.state");

    let mut agent = start_agent(&dir, 1, &stack);
    let mut rotations = 0;
    let mut killed = false;
    // The writer: an application appending lines, opening the file per batch (as one that
    // reopens its log on SIGHUP after logrotate's `create`).
    for batch in 0..100 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)
            .expect("open log");
        let mut text = String::new();
        for n in batch * 1_000..(batch + 1) * 1_000 {
            text.push_str(&line(n));
            text.push('\n');
        }
        f.write_all(text.as_bytes()).expect("write");
        drop(f);
        if batch % 30 == 29 {
            // copytruncate loses what is written between its copy and its truncate (its
            // own documented window), so the writer waits for it, as any test of it must.
            let out = Command::new(logrotate())
                .arg("-f")
                .arg("-s")
                .arg(&state)
                .arg(&conf)
                .output()
                .expect("logrotate");
            assert!(
                out.status.success(),
                "logrotate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            rotations += 1;
        }
        if batch == 55 {
            // SIGKILL mid-run: whatever it has read and not had acknowledged is read again.
            agent.child.kill().expect("kill -9");
            agent.child.wait().expect("reaped");
            killed = true;
            agent = start_agent(&dir, 2, &stack);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(killed && rotations == 3, "the faults happened");
    let rotated: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("app.log."))
        .collect();
    assert!(rotated.len() >= 3, "logrotate rotated: {rotated:?}");

    // Wait for every line.
    let deadline = Instant::now() + Duration::from_secs(120);
    let lines = loop {
        let (lines, listing) = stream_lines(&kinesis, &stream).await;
        let distinct: std::collections::BTreeSet<&String> = lines.iter().collect();
        if distinct.len() >= LINES {
            break lines;
        }
        if Instant::now() >= deadline {
            let _ = std::fs::write(dir.join("stream.txt"), listing);
            panic!(
                "{} of {LINES} lines in the stream after 120 s, missing {} (logs and \
                 stream.txt in {})",
                distinct.len(),
                missing_runs(&lines),
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let metrics = http_get(&agent.metrics_addr(), "/metrics");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(agent.child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = agent.child.wait().expect("wait");
    assert!(
        exit.success(),
        "agent exit {exit} (log {})",
        agent.log.display()
    );

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        *counts.entry(l.clone()).or_default() += 1;
    }
    let expected: Vec<String> = (0..LINES).map(line).collect();
    let got: Vec<String> = counts.keys().cloned().collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(got.len(), expected_sorted.len(), "distinct lines");
    assert!(
        got == expected_sorted,
        "the stream holds exactly the lines written"
    );
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    let replayed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("AgentRecordsReplayed"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // The kill interrupted lines read and not yet checkpointed: the restart read them again.
    assert!(
        replayed > 0.0,
        "the restarted agent read nothing again: no fault"
    );
    assert!(
        replayed >= duplicates as f64,
        "{duplicates} lines twice in the stream, {replayed} counted as replayed"
    );
    // Nothing went to the error file: every line was sent as it is.
    assert!(!dir.join("checkpoints.errors").exists());
    let _ = clients
        .kinesis()
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_create_and_a_kill_lose_no_line() {
    rotate_kill_and_count("create").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_copytruncate_and_a_kill_lose_no_line() {
    rotate_kill_and_count("copytruncate").await;
}
