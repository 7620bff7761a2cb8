//! First-stage benchmark (`cargo bench -p chief-analytics`): events per second on one
//! core through parse → window → partial aggregate, in memory, for seed 001's count of
//! HTTP status codes per minute (a count by one key) over the JSON records
//! `chief-agent`'s `LOGTOJSON` sends for combined Apache log lines, and the same with a
//! sum and a distinct count added. The partials' record counts are checked against the
//! number of events, so a benchmark that skipped work would fail.
//!
//! `CHIEF_BENCH_EVENTS` events (default 2,000,000) are built before the clock starts;
//! each configuration runs three times and the best run is reported.

use std::sync::Arc;
use std::time::Instant;

use chief_analytics::{App, Input, Parser, Resume, ShardAggregator, Step};

const STATUSES: [&str; 4] = ["200", "404", "500", "301"];

fn events(n: usize) -> Vec<(i64, Vec<u8>)> {
    let mut state = 7u64;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = usize::try_from(state >> 40).unwrap_or(0);
            let status = STATUSES[r % 4];
            // One event per 0.1 ms of arrival time: 600,000 per one-minute window.
            let arrival = 1_796_428_800_000 + i64::try_from(i / 10).unwrap_or(0);
            let line = format!(
                r#"{{"host":"10.0.{}.{}","ident":"-","authuser":"-","datetime":"04/Dec/2026:10:00:00 +0000","request":"GET /app/main/posts HTTP/1.0","response":"{status}","bytes":"{}","referer":"http://www.example.com/","agent":"Mozilla/5.0 (Windows NT 10.0)"}}"#,
                r % 256,
                (r / 256) % 256,
                r % 5000
            );
            (arrival, line.into_bytes())
        })
        .collect()
}

fn app(extra: &str) -> Arc<App> {
    Arc::new(
        App::from_toml(&format!(
            "name = \"status-per-minute\"\ngroup_by = [\"response\"]\n[parse]\nformat = \"json\"\n[window]\nsize_s = 60\n[[aggregate]]\nname = \"count\"\nfn = \"count\"\n{extra}"
        ))
        .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn run(app: &Arc<App>, events: &[(i64, Vec<u8>)]) -> f64 {
    let parser = Arc::new(Parser::new(app).unwrap_or_else(|e| panic!("{e}")));
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut shard = ShardAggregator::new(
            app.clone(),
            parser.clone(),
            "shardId-000000000000",
            Resume {
                position: 0u64,
                max_time: None,
            },
        );
        let mut steps = Vec::new();
        let mut counted = 0;
        let started = Instant::now();
        for (i, (arrival_ms, data)) in events.iter().enumerate() {
            let position = i as u64;
            shard.push(
                Input {
                    data,
                    arrival_ms: *arrival_ms,
                    position: &position,
                },
                &mut steps,
            );
            for step in steps.drain(..) {
                if let Step::Partial(p) = step {
                    counted += p.records;
                }
            }
        }
        shard.finish(&mut steps);
        let elapsed = started.elapsed().as_secs_f64();
        for step in steps.drain(..) {
            if let Step::Partial(p) = step {
                counted += p.records;
            }
        }
        assert_eq!(counted, events.len() as u64, "every event counted once");
        best = best.min(elapsed);
    }
    events.len() as f64 / best
}

fn main() {
    let n = std::env::var("CHIEF_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let events = events(n);
    let bytes: usize = events.iter().map(|(_, d)| d.len()).sum();
    println!(
        "{n} events, {:.0} bytes each on average, one core",
        bytes as f64 / n as f64
    );
    let count = run(&app(""), &events);
    println!("count by response:                       {count:>12.0} events/s");
    let more = run(
        &app(
            "[[aggregate]]\nname = \"bytes\"\nfn = \"sum\"\nfield = \"bytes\"\n[[aggregate]]\nname = \"hosts\"\nfn = \"count_distinct\"\nfield = \"host\"\n",
        ),
        &events,
    );
    println!("count, sum(bytes), count_distinct(host): {more:>12.0} events/s");
}
