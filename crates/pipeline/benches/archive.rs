//! Archive path benchmark (`cargo bench -p chief-pipeline`), on one core (a
//! current-thread runtime): orders/s through parse (`orderid`) → de-duplication window →
//! `LOAD DATA` encoding → batching into an in-memory object sink, with 10 % duplicates
//! and orders shaped like `chief-datagen`'s (about 370 bytes of JSON each); then the gate
//! alone: the id-only read against the whole record contract, on the same orders.

use std::sync::Arc;
use std::time::Instant;

use chief_pipeline::archive::{
    ArchiveConfig, ArchiveRecord, RecordPosition, RowKind, ShardArchiver,
};
use chief_pipeline::dedup::{DedupConfig, DedupWindow};
use chief_pipeline::model::{Order, OrderId};
use chief_pipeline::object_sink::MemoryObjectSink;
use chrono::{DateTime, Utc};

const ORDERS: u64 = 500_000;

fn order(i: u64) -> Vec<u8> {
    let a = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = i.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    format!(
        "{{\"orderid\":\"{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}-{:08x}-{:04x}-4{:03x}-b{:03x}-{:012x}\",\
         \"user\":{{\"userid\":\"user-{:06}\",\"name\":\"Ada Lovelace\"}},\"factoryid\":\"factory-{:02}\",\
         \"items\":[{{\"sku\":\"SKU-{:04}\",\"product\":\"Servo motor\",\"quantity\":{},\"unit_price_cents\":4999}},\
         {{\"sku\":\"SKU-1002\",\"product\":\"Gear\\tbox\",\"quantity\":1,\"unit_price_cents\":1250}}],\
         \"timestamp\":\"2024-01-01T00:00:00.123Z\"}}",
        a as u32,
        (a >> 32) as u16,
        (a >> 48) & 0xFFF,
        (a >> 20) & 0xFFF,
        a & 0xFFFF_FFFF_FFFF,
        b as u32,
        (b >> 32) as u16,
        (b >> 48) & 0xFFF,
        (b >> 20) & 0xFFF,
        b & 0xFFFF_FFFF_FFFF,
        i % 1_000_000,
        i % 10,
        1000 + i % 100,
        1 + i % 5
    )
    .into_bytes()
}

fn main() {
    // Every tenth record repeats the one 5 records before it (a producer retry).
    let records: Vec<Vec<u8>> = (0..ORDERS)
        .map(|i| if i % 10 == 9 { order(i - 5) } else { order(i) })
        .collect();
    let positions: Vec<RecordPosition> = (0..ORDERS)
        .map(|i| RecordPosition {
            sequence_number: format!("4959000000000000000000{i:012}"),
            sub_sequence_number: 0,
        })
        .collect();
    let bytes: usize = records.iter().map(Vec::len).sum();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let sink = Arc::new(MemoryObjectSink::new());
    let config = ArchiveConfig {
        bucket: "bench".into(),
        prefix: "ChiefOrderS3".into(),
        ..ArchiveConfig::default()
    };
    let mut archiver = ShardArchiver::new(
        Arc::clone(&sink),
        Arc::new(config),
        RowKind::Orders,
        "bench",
        "shardId-000000000000",
    );
    let mut dedup = DedupWindow::new(&DedupConfig::default(), "bench");
    let arrival = DateTime::<Utc>::from_timestamp(1_704_067_200, 0).expect("time");
    let started = Instant::now();
    runtime.block_on(async {
        for (data, position) in records.iter().zip(&positions) {
            archiver
                .process(
                    ArchiveRecord {
                        data,
                        position,
                        arrival,
                    },
                    Some(&mut dedup),
                    started,
                )
                .await
                .expect("process");
        }
        archiver.flush().await.expect("flush");
    });
    let elapsed = started.elapsed();
    let rate = ORDERS as f64 / elapsed.as_secs_f64();
    println!(
        "archive path, 1 core: {ORDERS} orders ({:.1} MiB, {} duplicates dropped) in {:.2} s = {:.0} orders/s, {:.1} MiB/s; {} objects",
        bytes as f64 / (1024.0 * 1024.0),
        dedup.hits(),
        elapsed.as_secs_f64(),
        rate,
        bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64(),
        sink.keys().len()
    );
    assert_eq!(dedup.hits(), ORDERS / 10);

    // The gate alone, same records, same run: reading only `orderid` (what the executors
    // did before the record contract) against the whole contract (`Order::parse`: UTF-8,
    // one object, no field twice, the fields and their ranges).
    let gate = |name: &str, check: &dyn Fn(&[u8]) -> bool| {
        let started = Instant::now();
        let valid = records.iter().filter(|r| check(r)).count();
        let elapsed = started.elapsed();
        assert_eq!(valid, records.len(), "{name}: every order is valid");
        let rate = ORDERS as f64 / elapsed.as_secs_f64();
        println!(
            "gate {name}, 1 core: {rate:.0} orders/s ({:.2} s)",
            elapsed.as_secs_f64()
        );
        rate
    };
    let id_only = gate("OrderId::from_json", &|r| OrderId::from_json(r).is_ok());
    let contract = gate("Order::parse (the record contract)", &|r| {
        Order::parse(r).is_ok()
    });
    println!(
        "the contract costs {:.2}x the id-only read per order",
        id_only / contract
    );
}
