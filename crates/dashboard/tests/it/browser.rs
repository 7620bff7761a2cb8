//! `chief-dashboard`'s page in a real browser: Debian's Chromium, headless, driven over
//! WebDriver by Debian's ChromeDriver (`make stack-up` installs both), the dashboard on
//! the local stack (kinesis-local, moto's DynamoDB).
//!
//! The page is opened before the first record; orders and job results with duplicates
//! and malformed records go in through chief's producer; the numbers the page shows
//! (read from its DOM) must reach exactly the unique counts, revenue, statuses and
//! malformed records computed here from the input. The server closes every event stream
//! after 2 s (`sse_max_age_s`): the page must have reconnected several times and missed
//! no event (`Last-Event-ID`). Then the dashboard is stopped — the page must show its
//! banner — and started again on the same port: the page reconnects by itself and ends
//! with the same exact numbers, and with those of the records sent after the restart.

use crate::support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::webdriver::{Browser, free_port};
use support::{Expected, Stack, input, send};
use tokio_util::sync::CancellationToken;

/// What the page shows, read from its DOM.
const READ_PAGE: &str = r#"
    const v = (id) => Number(document.getElementById(id).dataset.value);
    const statuses = {};
    for (const tr of document.querySelectorAll('#statuses tr')) {
        statuses[tr.dataset.status] = Number(tr.querySelector('td.num').dataset.value);
    }
    const b = document.body.dataset;
    return {
        totals: {
            orders: v('orders'), jobresults: v('jobresults'), revenue_cents: v('revenue'),
            duplicates: v('duplicates'), bad: v('bad'), statuses,
        },
        latest: document.querySelectorAll('#latest tbody tr').length,
        shards: document.querySelectorAll('#shards tbody tr').length,
        banner: document.getElementById('banner').classList.contains('shown'),
        connects: Number(b.connects || 0), updates: Number(b.updates || 0), gaps: Number(b.gaps || 0),
        lastBad: document.getElementById('last-bad').textContent,
    };
"#;

async fn page(browser: &Browser) -> Value {
    browser.execute(READ_PAGE).await
}

/// Waits until the page shows `expected`.
async fn until_page_shows(browser: &Browser, expected: &Expected) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let shown = page(browser).await;
        if Expected::of(&shown["totals"]) == *expected {
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "the page shows {shown}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_exact_counts_reconnects_without_missing_an_event_and_survives_a_restart() {
    let stack = Stack::new().await;
    let dir = chief_config::local_stack::workspace_root()
        .join(".local/e2e")
        .join(format!("dashboard-browser-{}", stack.id));
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let tweak = |config: &mut chief_dashboard::DashboardConfig| {
        config.http.listen.clone_from(&listen);
        // The server ends every event stream after 2 s: the browser must resume.
        config.http.sse_max_age_s = 2;
    };
    let token = CancellationToken::new();
    let (addr, task) = stack.start_with(token.clone(), tweak).await;
    assert_eq!(addr.port(), port);
    let browser = Browser::start(&dir).await;
    browser.navigate(&format!("http://{addr}/")).await;
    let (orders, jobs) = stack.producers().await;
    let mut expected = Expected::default();
    let mut seen = (BTreeSet::new(), BTreeSet::new());

    // In five parts a second apart, so the page's per-second chart has something to draw.
    let wave = input(11, 500, &mut expected, &mut seen);
    for (orders_part, jobs_part) in wave
        .orders
        .chunks(wave.orders.len().div_ceil(5))
        .zip(wave.jobs.chunks(wave.jobs.len().div_ceil(5)))
    {
        send(&orders, orders_part).await;
        send(&jobs, jobs_part).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    until_page_shows(&browser, &expected).await;
    // Let a few more server-side closes happen, then check none lost an event.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let shown = until_page_shows(&browser, &expected).await;
    assert!(
        shown["connects"].as_u64().unwrap_or_default() >= 3,
        "the server closed the event stream and the page reconnected: {shown}"
    );
    assert_eq!(
        shown["gaps"], 0,
        "no event missed across reconnections: {shown}"
    );
    assert!(shown["updates"].as_u64().unwrap_or_default() > 0, "{shown}");
    assert_eq!(shown["latest"], 20, "the latest 20 orders: {shown}");
    assert_eq!(
        shown["shards"], 3,
        "every shard with its lag and owner: {shown}"
    );
    assert!(
        shown["lastBad"]
            .as_str()
            .unwrap_or_default()
            .contains("last bad record"),
        "the page says what was wrong with the last bad record: {shown}"
    );
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join("dashboard.png"), &png).expect("screenshot");
    if std::env::var_os("CHIEF_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(
            chief_config::local_stack::workspace_root().join("docs/dashboard.png"),
            &png,
        )
        .expect("docs/dashboard.png");
    }

    // Stopped: the page says the stream is lost.
    token.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the dashboard stops")
        .expect("join");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = page(&browser).await;
        if shown["banner"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no banner while the server is down: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Started again on the same port: the page comes back by itself, with the same
    // numbers, then those of what is sent after the restart.
    let token = CancellationToken::new();
    let (_, task) = stack.start_with(token.clone(), tweak).await;
    let shown = until_page_shows(&browser, &expected).await;
    let wave = input(12, 200, &mut expected, &mut seen);
    send(&orders, &wave.orders).await;
    send(&jobs, &wave.jobs).await;
    let shown_after = until_page_shows(&browser, &expected).await;
    assert_eq!(shown_after["banner"], false, "{shown_after}");
    assert_eq!(shown_after["gaps"], 0, "{shown} then {shown_after}");

    browser.quit().await;
    token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    orders.shutdown().await;
    jobs.shutdown().await;
    stack.delete().await;
}
