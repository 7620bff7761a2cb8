//! `chief-analytics` as processes on the local stack (`make stack-up`: kinesis-local,
//! moto's DynamoDB and S3): two workers share a 2-shard stream by leases; one of them is
//! killed with SIGKILL while it holds a lease and open windows, and the other takes its
//! shard over from the checkpoint; and three workers through a SplitShard with an idle
//! child. Every window's result in S3 must equal a computation of the same records read
//! back from the stream (their arrival times, per window and level) — nothing counted
//! twice from the replay, nothing missing; records that do not parse are stored, each once.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chief_analytics::store::{DynamoDbWindowStore, RejectKind, WindowStore};
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use chief_stream::{PutEntry, StreamClient, read_all};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_and_a_kill_9_give_every_window_exactly() {
    let run = Run::new("analytics", 2).await;
    run.write_config(&format!(
        "[output.kinesis]\nstream = \"{}-results\"",
        run.stream
    ));
    let lease_table = run.lease_table();
    let Run {
        clients,
        kinesis,
        id,
        dir,
        bucket,
        stream,
    } = run;
    create_stream(&kinesis, &format!("{stream}-results"), 1).await;
    let leases = DynamoDbLeaseStore::new(clients.dynamodb(), &lease_table);

    let mut a = Worker::start(&dir, "worker-a");
    let b = Worker::start(&dir, "worker-b");
    // Both workers hold a shard before the records come.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owners: Vec<Option<String>> = leases
            .list_leases()
            .await
            .unwrap_or_default()
            .iter()
            .map(|l| l.lease_owner.clone())
            .collect();
        if owners.contains(&Some("worker-a".into())) && owners.contains(&Some("worker-b".into())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the workers did not share the shards within 60 s: {owners:?} (logs in {})",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    put_spread(&kinesis, &stream, 0, 500).await;
    // A first window written: the stages work before the fault.
    let deadline = Instant::now() + Duration::from_secs(60);
    while written(&clients, &bucket).await.1 == 0 {
        assert!(
            Instant::now() < deadline,
            "no window written within 60 s (logs in {})",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    put_spread(&kinesis, &stream, 500, 150).await;
    // Records that do not parse: stored by position as bad, never counted or dropped.
    let bad_entries = (0..5)
        .map(|i| PutEntry {
            partition_key: format!("bad-{i}"),
            explicit_hash_key: None,
            data: Bytes::from(format!("not json {i}")),
        })
        .collect();
    let results = kinesis
        .put_records(&stream, bad_entries)
        .await
        .expect("PutRecords");
    assert!(results.iter().all(Result::is_ok), "bad records put");
    let held: Vec<String> = leases
        .list_leases()
        .await
        .expect("leases")
        .iter()
        .filter(|l| l.lease_owner.as_deref() == Some("worker-a"))
        .map(|l| l.lease_key.clone())
        .collect();
    assert!(!held.is_empty(), "the kill hits a lease holder");
    a.child.kill().expect("kill -9");
    a.child.wait().expect("reaped");
    put_spread(&kinesis, &stream, 650, 500).await;

    // worker-b takes the shard over and every window is written (the last once both
    // shards are idle for 2 s).
    let Expected {
        counts: want,
        late,
        total,
        bad,
    } = expected(&kinesis, &stream).await;
    assert_eq!(total, 1_155, "every record is in the stream");
    assert_eq!(bad.len(), 5);
    let got = counted(&clients, &bucket, &dir, 1_150, late).await;
    let owners: Vec<Option<String>> = leases
        .list_leases()
        .await
        .expect("leases")
        .iter()
        .map(|l| l.lease_owner.clone())
        .collect();
    assert_eq!(
        owners,
        vec![Some("worker-b".to_owned()); 2],
        "worker-b took the shard over"
    );
    assert!(want.len() > 8, "the records span several windows: {want:?}");
    assert_eq!(got, want, "every window's counts, exactly");
    // The same rows in the output stream (at least once: a row put twice has one id).
    let mut by_id: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (_, record) in read_all(&kinesis, &format!("{stream}-results"))
        .await
        .expect("the output stream")
    {
        let doc: serde_json::Value = serde_json::from_slice(&record.data).expect("a row");
        let id = doc["id"].as_str().unwrap_or_default().to_owned();
        if let Some(before) = by_id.insert(id.clone(), doc.clone()) {
            assert_eq!(before, doc, "{id} put twice with different values");
        }
    }
    let streamed: BTreeMap<(i64, String), u64> = by_id
        .values()
        .map(|doc| {
            let start = chrono::DateTime::parse_from_rfc3339(
                doc["window_start"].as_str().unwrap_or_default(),
            )
            .expect("window_start")
            .timestamp_millis();
            (
                (start, doc["level"].as_str().unwrap_or_default().to_owned()),
                doc["count"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(streamed, want, "the output stream's rows");
    let store =
        DynamoDbWindowStore::new(clients.dynamodb(), format!("chief-analytics-windows-{id}"));
    let (mut stored_bad, mut stored_late) = (Vec::new(), 0);
    for shard in kinesis.list_shards(&stream).await.expect("shards") {
        for r in store
            .rejected(&shard.shard_id, RejectKind::Bad)
            .await
            .expect("bad")
        {
            stored_bad.push(String::from_utf8_lossy(&r.data).into_owned());
        }
        stored_late += store
            .rejected(&shard.shard_id, RejectKind::Late)
            .await
            .expect("late")
            .len() as u64;
    }
    stored_bad.sort();
    assert_eq!(stored_bad, bad, "every bad record stored, once, as it was");
    assert_eq!(stored_late, late, "every late record stored");
    // SIGTERM: a graceful stop, exit 0.
    let mut b = b;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(b.child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = b.child.wait().expect("wait");
    assert!(
        exit.success(),
        "worker-b exit {exit} (log {})",
        b.log.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_a_split_mid_run_and_an_idle_shard_give_every_window_exactly() {
    let run = Run::new("analytics-split", 2).await;
    run.write_config("");
    let lease_table = run.lease_table();
    let Run {
        clients,
        kinesis,
        id,
        dir,
        bucket,
        stream,
    } = run;
    let leases = DynamoDbLeaseStore::new(clients.dynamodb(), &lease_table);
    let _workers: Vec<Worker> = ["worker-a", "worker-b", "worker-c"]
        .iter()
        .map(|w| Worker::start(&dir, w))
        .collect();
    put_spread(&kinesis, &stream, 0, 300).await;
    // The split: shard 0's records stop, its two children carry on.
    let shards = kinesis.list_shards(&stream).await.expect("shards");
    let parent = shards[0].clone();
    let mid =
        parent.starting_hash_key + (parent.ending_hash_key - parent.starting_hash_key) / 2 + 1;
    clients
        .kinesis()
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(&parent.shard_id)
        .new_starting_hash_key(mid.to_string())
        .send()
        .await
        .expect("SplitShard");
    kinesis
        .wait_until_active(&stream, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    // After it, records go to the first child and to shard 1 only: the second child stays
    // idle, and must not hold the windows open.
    let shard1 = shards[1].starting_hash_key + 5;
    for start in (300..600).step_by(25) {
        put_to(
            &kinesis,
            &stream,
            start,
            25,
            &[parent.starting_hash_key + 1, shard1],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = kinesis.list_shards(&stream).await.expect("shards");
    assert_eq!(after.len(), 4, "the parent and its two children: {after:?}");
    let Expected {
        counts: want,
        late,
        total,
        ..
    } = expected(&kinesis, &stream).await;
    assert_eq!(total, 600, "every record is in the stream");
    let got = counted(&clients, &bucket, &dir, 600, late).await;
    assert_eq!(
        got, want,
        "every window's counts, exactly, across the split"
    );
    let parent_lease = leases
        .list_leases()
        .await
        .expect("leases")
        .into_iter()
        .find(|l| l.lease_key == parent.shard_id)
        .expect("the parent's lease");
    assert!(
        parent_lease.checkpoint.is_shard_end(),
        "the parent was read to its end: {parent_lease:?}"
    );
    let idle_child = after
        .iter()
        .find(|s| {
            s.parent_shard_id.as_deref() == Some(parent.shard_id.as_str())
                && s.starting_hash_key == mid
        })
        .expect("the second child");
    let store =
        DynamoDbWindowStore::new(clients.dynamodb(), format!("chief-analytics-windows-{id}"));
    let progress = store.progress().await.expect("progress");
    let idle = progress
        .iter()
        .find(|p| p.shard == idle_child.shard_id)
        .expect("the idle child reports");
    assert!(
        idle.max_time.is_some(),
        "the idle child's time moved on: {idle:?}"
    );
    let in_idle_child = read_all(&kinesis, &stream)
        .await
        .expect("the stream")
        .iter()
        .filter(|(shard, _)| *shard == idle_child.shard_id)
        .count();
    assert_eq!(in_idle_child, 0, "the second child got no record");
}
