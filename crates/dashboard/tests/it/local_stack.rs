//! `chief-dashboard` on the local stack (`make stack-up`: kinesis-local, moto's DynamoDB),
//! read through its own HTTP endpoints as a browser's `EventSource` reads them (a raw
//! HTTP/1.1 client that decodes the chunked `text/event-stream`): orders and job results
//! with duplicates and malformed records go in through chief's producer; the events'
//! totals must reach exactly the unique counts, revenue and statuses computed here from
//! the generated records; a client that reconnects with `Last-Event-ID` gets exactly the
//! events after it; a restarted dashboard ends with the same exact numbers.

use crate::support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Expected, Stack, http_get_json, input, send};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

/// One server-sent event.
#[derive(Debug, Clone)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// A `GET /events` connection.
struct EventStream {
    reader: BufReader<tokio::net::TcpStream>,
    buffer: String,
}

impl EventStream {
    async fn open(addr: SocketAddr, last_event_id: Option<u64>) -> Self {
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        socket
            .write_all(
                format!(
                    "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
                )
                .as_bytes(),
            )
            .await
            .expect("request");
        let mut reader = BufReader::new(socket);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        Self {
            reader,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the server closed the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("event:") {
                        v.trim().clone_into(&mut event);
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(Sse { id, event, data });
            }
            // One chunk: its size in hex, CRLF, the bytes, CRLF.
            let mut size = String::new();
            if self.reader.read_line(&mut size).await.ok()? == 0 {
                return None;
            }
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if size == 0 {
                return None;
            }
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await.ok()?;
            chunk.truncate(size);
            self.buffer.push_str(
                &String::from_utf8(chunk)
                    .expect("UTF-8")
                    .replace("\r\n", "\n"),
            );
        }
    }
}

/// Reads events until the totals equal `expected`; every event's id follows the last.
async fn until(events: &mut EventStream, expected: &Expected, mut last: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .unwrap_or_else(|_| panic!("the totals did not reach {expected:?}"))
            .expect("the stream stays open");
        let id = event.id.expect("every event has an id");
        let totals = match event.event.as_str() {
            "snapshot" => &event.data["totals"],
            "update" => {
                if let Some(last) = last {
                    assert_eq!(id, last + 1, "no event missed or repeated");
                }
                &event.data["totals"]
            }
            other => panic!("unexpected event {other}: {:?}", event.data),
        };
        last = Some(id);
        let got = Expected::of(totals);
        if got == *expected {
            return id;
        }
        assert!(
            got.orders <= expected.orders
                && got.jobresults <= expected.jobresults
                && got.bad <= expected.bad,
            "counted more than sent: {got:?} > {expected:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_reach_exactly_the_unique_counts_resume_after_last_event_id_and_survive_a_restart()
 {
    let stack = Stack::new().await;
    let token = CancellationToken::new();
    let (addr, task) = stack.start(token.clone()).await;
    let (orders, jobs) = stack.producers().await;
    let mut expected = Expected::default();
    let mut seen = (BTreeSet::new(), BTreeSet::new());

    // A browser opens the page before the first record.
    let mut events = EventStream::open(addr, None).await;
    let first = events.next().await.expect("a first event");
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["totals"]["orders"], 0);

    let wave = input(7, 400, &mut expected, &mut seen);
    send(&orders, &wave.orders).await;
    send(&jobs, &wave.jobs).await;
    assert!(
        expected.duplicates > 30 && expected.bad == 8,
        "{expected:?}"
    );
    let last = until(&mut events, &expected, first.id).await;
    drop(events);

    // The browser is away while more records arrive; it comes back with Last-Event-ID and
    // is sent exactly the events after it, the first of which follows its last.
    let wave = input(8, 300, &mut expected, &mut seen);
    send(&orders, &wave.orders).await;
    send(&jobs, &wave.jobs).await;
    let summary_deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let summary = http_get_json(addr, "/api/summary").await;
        if Expected::of(&summary["totals"]) == expected {
            assert!(
                summary["id"].as_u64().expect("id") > last,
                "events were made meanwhile"
            );
            break;
        }
        assert!(Instant::now() < summary_deadline, "summary {summary}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut events = EventStream::open(addr, Some(last)).await;
    let replayed = events.next().await.expect("replayed events");
    assert_eq!(
        replayed.event, "update",
        "a resumed browser gets updates, not a snapshot"
    );
    assert_eq!(
        replayed.id,
        Some(last + 1),
        "the first event after its last one"
    );
    until(&mut events, &expected, replayed.id).await;
    // Shards: three, each owned by this instance, with a lag.
    let summary = http_get_json(addr, "/api/summary").await;
    let shards = summary["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 3, "{summary}");
    for shard in shards {
        assert_eq!(shard["owner"], summary["worker_id"], "{shard}");
        assert!(shard["millis_behind_latest"].is_u64(), "{shard}");
    }
    assert!(summary["bad_record"]["error"].is_string(), "{summary}");
    drop(events);

    // Restart: the new process reads both streams again and ends with the same numbers;
    // an old Last-Event-ID gets a snapshot.
    token.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the dashboard stops")
        .expect("join");
    let token = CancellationToken::new();
    let (addr, task) = stack.start(token.clone()).await;
    let mut events = EventStream::open(addr, Some(last)).await;
    let first = events.next().await.expect("first event");
    assert_eq!(
        first.event, "snapshot",
        "an id of the last run gets a snapshot"
    );
    until(&mut events, &expected, first.id).await;
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    orders.shutdown().await;
    jobs.shutdown().await;
    stack.delete().await;
}
