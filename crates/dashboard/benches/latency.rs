//! Dashboard latency (`make stack-up`, then `cargo bench -p chief-dashboard`): an order
//! sent through chief's producer → kinesis-local → chief-dashboard → SSE → shown in the
//! DOM of Debian's headless Chromium. `CHIEF_BENCH_RATE` orders a second (default 100)
//! for `CHIEF_BENCH_SECONDS` (default 30); each order's send time is taken just before
//! `Producer::send`, and the page records when it first rendered each order
//! (`chief.track`). Prints p50, p99 and max of the difference (one machine, one clock).

#[path = "../tests/it/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chief_datagen::Generator;
use chief_pipeline::model::Order;
use chief_producer::UserRecord;
use support::Stack;
use support::webdriver::{Browser, free_port};
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = env("CHIEF_BENCH_RATE", 100);
    let seconds = env("CHIEF_BENCH_SECONDS", 30);
    let stack = Stack::new().await;
    let dir = chief_config::local_stack::workspace_root()
        .join(".local/e2e")
        .join(format!("dashboard-latency-{}", stack.id));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_port();
    let token = CancellationToken::new();
    let (addr, task) = stack
        .start_with(token.clone(), |c| {
            c.http.listen = format!("127.0.0.1:{port}")
        })
        .await;
    let browser = Browser::start(&dir).await;
    browser.navigate(&format!("http://{addr}/")).await;
    browser
        .execute("window.chief.track = true; return true;")
        .await;
    let (orders, jobs) = stack.producers().await;
    let mut generator = Generator::<Order>::new(42, 0.0).expect("generator");
    let mut sent: HashMap<String, f64> = HashMap::new();
    let mut receipts = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let total = rate * seconds;
    for i in 0..total {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let (order, _) = generator.next_record();
        let data = Bytes::from(serde_json::to_vec(&order).expect("JSON"));
        sent.insert(order.orderid.as_str().to_owned(), now_ms());
        receipts.push(
            orders
                .send(UserRecord {
                    partition_key: order.orderid.as_str().to_owned(),
                    explicit_hash_key: None,
                    data,
                })
                .await
                .expect("send"),
        );
    }
    for receipt in receipts {
        receipt.await.expect("put");
    }
    // Every order shown, then the page's times.
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = browser.execute("return window.chief.seen;").await;
        let n = seen.as_object().map_or(0, serde_json::Map::len);
        if n >= sent.len() {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {} orders shown",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut latencies: Vec<f64> = sent
        .iter()
        .map(|(id, at)| seen[id].as_f64().expect("shown") - at)
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "dashboard latency, send → shown in the DOM, {total} orders at {rate}/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (min {:.0} ms)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.first().copied().unwrap_or_default(),
    );
    browser.quit().await;
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    orders.shutdown().await;
    jobs.shutdown().await;
    stack.delete().await;
}
