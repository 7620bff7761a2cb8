//! Alerts exactly once per window: for windows with 0, 1, 2 and 3 ERRORs and
//! `when = "ERROR > 1"`, an alert for the windows with 2 and 3 only — also when the
//! worker dies right after sending (before the window is marked done), when a send fails
//! once, and when another worker (a restart) runs the same round again. The report
//! attached is a zip whose CSV holds the window's rows, read back with Python's `zipfile`
//! (an independent reader).

use std::collections::BTreeMap;
use std::sync::Arc;

use chief_analytics::aggregate::Acc;
use chief_analytics::alert::{AlertConfig, EmailConfig, MemoryAlertSender};
use chief_analytics::merger::{Merger, Outputs};
use chief_analytics::store::{MemoryWindowStore, StoredProgress, WindowStore};
use chief_analytics::{App, Partial, Window};
use chief_sinks::elasticsearch::MemorySearchIndex;
use chief_sinks::object::MemoryObjectSink;
use chief_stream::{MemoryStreams, StreamClient};

fn app() -> Arc<App> {
    Arc::new(
        App::from_toml(
            "name = \"levels\"\ngroup_by = [\"level\"]\n[parse]\nformat = \"json\"\n[window]\nsize_s = 60\n[[aggregate]]\nname = \"count\"\nfn = \"count\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn alert() -> AlertConfig {
    AlertConfig {
        name: "errors".into(),
        when: "ERROR > 1".into(),
        email: Some(EmailConfig {
            from: "alerts@chief.example".into(),
            to: vec!["ops@chief.example".into()],
        }),
        sns: None,
    }
}

fn window(i: i64) -> Window {
    Window {
        start_ms: 1_796_428_800_000 + i * 60_000,
        end_ms: 1_796_428_800_000 + (i + 1) * 60_000,
    }
}

/// Window `i`'s partial of `shard`: `errors` ERRORs and 5 INFOs.
fn partial(shard: &str, i: i64, errors: u64) -> Partial {
    let mut rows = BTreeMap::new();
    rows.insert("INFO".to_owned(), vec![Acc::Count(5)]);
    if errors > 0 {
        rows.insert("ERROR".to_owned(), vec![Acc::Count(errors)]);
    }
    Partial {
        shard: shard.to_owned(),
        window: window(i),
        records: 5 + errors,
        rows,
    }
}

type TestMerger = Merger<
    MemoryWindowStore,
    MemoryStreams,
    MemoryObjectSink,
    MemorySearchIndex,
    MemoryAlertSender,
>;

fn merger(
    app: &Arc<App>,
    store: &MemoryWindowStore,
    streams: &MemoryStreams,
    sender: &MemoryAlertSender,
) -> TestMerger {
    let alert = alert();
    let condition = alert.validate().unwrap_or_else(|e| panic!("{e}"));
    Merger::new(
        app.clone(),
        store.clone(),
        streams.clone(),
        "AppLogs",
        Outputs {
            s3: None,
            elasticsearch: None,
            kinesis: None,
        },
        vec![(alert, condition)],
        sender.clone(),
    )
}

#[tokio::test]
async fn one_alert_per_window_whose_errors_pass_the_threshold_whatever_fails() {
    let app = app();
    let streams = MemoryStreams::new(7);
    streams.create_stream("AppLogs", 2);
    let shards: Vec<String> = streams
        .list_shards("AppLogs")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|s| s.shard_id)
        .collect();
    let store = MemoryWindowStore::default();
    // Windows 0..4 with 0, 1, 2, 3 ERRORs over the whole stream, split across the shards
    // (window 3: 2 on one shard and 1 on the other, so only the merge passes 1).
    for (i, (a, b)) in [(0, 0), (1, 0), (1, 1), (2, 1)].into_iter().enumerate() {
        let i = i64::try_from(i).unwrap_or_default();
        store
            .put_partial(&partial(&shards[0], i, a))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .put_partial(&partial(&shards[1], i, b))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for shard in &shards {
        store
            .put_progress(&StoredProgress {
                shard: shard.clone(),
                max_time: Some(window(4).end_ms),
                finished: false,
                caught_up: true,
                last_record_ms: 0,
                heartbeat_ms: 0,
                resume_position: None,
                resume_max_time: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let sender = MemoryAlertSender::default();
    // The first send fails (transient): the round fails, the claim is released.
    sender.fail_next(1);
    let first = merger(&app, &store, &streams, &sender);
    assert!(
        first.round().await.is_err(),
        "the failed send fails the round"
    );
    assert!(sender.sent().is_empty());
    // Then the worker "dies" right after sending for window 2: its outputs and alert are
    // out, the window is not marked done.
    store.fail_next_put_results(1);
    let done = first.round().await;
    assert!(done.is_err(), "the fault happened");
    let after_crash = sender.sent();
    // A restarted worker (and then another one) runs the rounds again.
    let second = merger(&app, &store, &streams, &sender);
    let mut written = 0;
    for _ in 0..3 {
        written += second.round().await.unwrap_or_else(|e| panic!("{e}")).len();
    }
    let third = merger(&app, &store, &streams, &sender);
    written += third.round().await.unwrap_or_else(|e| panic!("{e}")).len();
    assert_eq!(written, 2, "windows 2 and 3 were written after the faults");
    for i in 0..4 {
        assert!(
            store.has_result(window(i)).await.unwrap_or_default(),
            "window {i} done"
        );
    }
    assert!(
        store.pending().await.unwrap_or_default().is_empty(),
        "every window done"
    );

    let sent = sender.sent();
    let ids: Vec<&str> = sent.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            format!("levels-errors-{}", window(2).start_ms),
            format!("levels-errors-{}", window(3).start_ms)
        ],
        "windows with 2 and 3 ERRORs, once each (sent before the crash: {})",
        after_crash.len()
    );
    assert!(
        !after_crash.is_empty(),
        "an alert was sent before the crash"
    );

    // The attachment, read by Python's zipfile.
    let zip = sent[1].zip();
    let path = std::env::temp_dir().join(format!("chief-alert-{}.zip", std::process::id()));
    std::fs::write(&path, &zip).unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nfor n in z.namelist():\n    print(n)\n    print(z.read(n).decode(), end='')",
        ])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let start = window(3).start_text();
    let end = window(3).end_text();
    assert_eq!(
        text,
        format!(
            "levels-errors-{}.csv\nwindow_start,window_end,level,count\n{start},{end},ERROR,3\n{start},{end},INFO,10\n",
            window(3).start_ms
        )
    );
    let mime = String::from_utf8_lossy(
        &sent[1].mime("alerts@chief.example", &["ops@chief.example".into()]),
    )
    .into_owned();
    assert!(mime.contains("Content-Type: application/zip"), "{mime}");
    assert!(
        mime.contains("Subject: [chief] levels: ERROR > 1 in"),
        "{mime}"
    );
}
