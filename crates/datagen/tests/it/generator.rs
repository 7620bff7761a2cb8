//! The generator library: determinism, counts, duplicates, id shapes, and that every
//! line parses back with `chief_pipeline::model`.

use std::collections::{HashMap, HashSet};

use chief_datagen::{FakeRecord, Generator, Stats, write_json_lines};
use chief_pipeline::model::{JobResult, JobStatus, ORDER_ID_MAX_LEN, Order};

fn lines<R: FakeRecord + serde::Serialize>(seed: u64, ratio: f64, count: u64) -> (Vec<u8>, Stats) {
    let mut generator = Generator::<R>::new(seed, ratio).expect("valid ratio");
    let mut out = Vec::new();
    let stats = write_json_lines(&mut generator, count, &mut out).expect("Vec never fails");
    (out, stats)
}

fn split(bytes: &[u8]) -> Vec<&[u8]> {
    assert_eq!(bytes.last(), Some(&b'\n'), "output ends with a newline");
    bytes[..bytes.len() - 1].split(|b| *b == b'\n').collect()
}

fn is_uuid_v4(text: &str) -> bool {
    uuid::Uuid::try_parse(text)
        .map(|u| u.get_version_num() == 4 && u.hyphenated().to_string() == text)
        .unwrap_or(false)
}

fn assert_uuid_pair(orderid: &str) {
    assert_eq!(orderid.len(), ORDER_ID_MAX_LEN, "{orderid}");
    assert_eq!(&orderid[36..37], "-", "{orderid}");
    assert!(is_uuid_v4(&orderid[..36]), "{orderid}");
    assert!(is_uuid_v4(&orderid[37..]), "{orderid}");
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let (a, _) = lines::<Order>(42, 0.3, 2_000);
    let (b, _) = lines::<Order>(42, 0.3, 2_000);
    let (c, _) = lines::<Order>(43, 0.3, 2_000);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let (a, _) = lines::<JobResult>(42, 0.3, 2_000);
    let (b, _) = lines::<JobResult>(42, 0.3, 2_000);
    let (c, _) = lines::<JobResult>(43, 0.3, 2_000);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn a_shorter_run_is_a_prefix_of_a_longer_one() {
    let (short, _) = lines::<Order>(5, 0.2, 100);
    let (long, _) = lines::<Order>(5, 0.2, 1_000);
    assert!(long.starts_with(&short));
}

/// Checks counts and duplicates of one run; returns (distinct, duplicates).
fn check_counts(bytes: &[u8], stats: Stats, count: u64) -> (u64, u64) {
    let lines = split(bytes);
    assert_eq!(lines.len() as u64, count);
    let mut first_line: HashMap<String, &[u8]> = HashMap::new();
    let mut duplicates = 0u64;
    for line in &lines {
        let id = chief_pipeline::model::OrderId::from_json(line).expect("has an orderid");
        match first_line.get(id.as_str()) {
            Some(original) => {
                assert_eq!(
                    original, line,
                    "a duplicate is byte-identical to its original"
                );
                duplicates += 1;
            }
            None => {
                first_line.insert(id.into_string(), line);
            }
        }
    }
    let distinct = first_line.len() as u64;
    assert_eq!(distinct + duplicates, count);
    assert_eq!(
        stats,
        Stats {
            total: count,
            distinct,
            duplicates
        }
    );
    (distinct, duplicates)
}

#[test]
fn exact_counts_without_duplicates() {
    let (bytes, stats) = lines::<Order>(1, 0.0, 5_000);
    assert_eq!(check_counts(&bytes, stats, 5_000), (5_000, 0));
    let (bytes, stats) = lines::<JobResult>(1, 0.0, 5_000);
    assert_eq!(check_counts(&bytes, stats, 5_000), (5_000, 0));
}

#[test]
fn half_duplicates_over_ten_thousand_lines() {
    for seed in [1, 2, 3] {
        let (bytes, stats) = lines::<Order>(seed, 0.5, 10_000);
        let (_, duplicates) = check_counts(&bytes, stats, 10_000);
        // Binomial(10000, 0.5): sd = 50, so ±500 is ten standard deviations.
        assert!((4_500..=5_500).contains(&duplicates), "{duplicates}");
        let (bytes, stats) = lines::<JobResult>(seed, 0.5, 10_000);
        let (_, duplicates) = check_counts(&bytes, stats, 10_000);
        assert!((4_500..=5_500).contains(&duplicates), "{duplicates}");
    }
}

#[test]
fn zero_count_writes_nothing() {
    let (bytes, stats) = lines::<Order>(1, 0.5, 0);
    assert!(bytes.is_empty());
    assert_eq!(stats, Stats::default());
}

#[test]
fn every_order_line_parses_back_and_has_plausible_fields() {
    let (bytes, _) = lines::<Order>(9, 0.1, 3_000);
    let mut names: HashMap<String, String> = HashMap::new();
    for line in split(&bytes) {
        let order = Order::parse(line).expect("parses");
        assert_uuid_pair(order.orderid.as_str());
        assert_eq!(
            serde_json::to_vec(&order).expect("serialises"),
            line,
            "canonical"
        );
        assert!(
            order.factoryid.starts_with("factory-0"),
            "{}",
            order.factoryid
        );
        assert!((1..=4).contains(&order.items.len()));
        assert!(order.items.iter().all(|i| (1..=10).contains(&i.quantity)));
        assert!(order.total_cents().is_some());
        assert!(!order.user.name.is_empty());
        // A user has one name.
        let name = names
            .entry(order.user.userid.clone())
            .or_insert_with(|| order.user.name.clone());
        assert_eq!(name, &order.user.name);
    }
}

#[test]
fn every_job_result_line_parses_back_and_has_plausible_fields() {
    let (bytes, _) = lines::<JobResult>(9, 0.1, 3_000);
    let mut statuses: HashMap<JobStatus, u32> = HashMap::new();
    let mut factories = HashSet::new();
    for line in split(&bytes) {
        let result = JobResult::parse(line).expect("parses");
        assert_uuid_pair(result.orderid.as_str());
        assert_eq!(
            serde_json::to_vec(&result).expect("serialises"),
            line,
            "canonical"
        );
        let factory: u32 = result.factoryid["factory-".len()..]
            .parse()
            .expect("numbered");
        let robot: u32 = result.robotid["robot-".len()..].parse().expect("numbered");
        assert!((1..=8).contains(&factory));
        assert!(
            ((factory - 1) * 15 + 1..=factory * 15).contains(&robot),
            "{robot} in {factory}"
        );
        assert_eq!(result.mysql_timestamp().len(), "YYYY-MM-DD HH:MM:SS".len());
        *statuses.entry(result.jobstatus).or_default() += 1;
        factories.insert(factory);
    }
    assert_eq!(factories.len(), 8);
    let completed = statuses[&JobStatus::Completed];
    assert!(completed > 2_400, "mostly completed: {statuses:?}");
    assert!(statuses[&JobStatus::Failed] > 0 && statuses[&JobStatus::Cancelled] > 0);
}

#[test]
fn job_results_are_the_outcomes_of_the_orders_of_the_same_seed() {
    let orders: Vec<Order> = Generator::<Order>::new(11, 0.0)
        .expect("valid")
        .take(500)
        .collect();
    // Duplicates do not shift the fresh records.
    let results: Vec<JobResult> = Generator::<JobResult>::new(11, 0.4)
        .expect("valid")
        .take(2_000)
        .collect();
    let mut seen = HashSet::new();
    let fresh: Vec<&JobResult> = results
        .iter()
        .filter(|r| seen.insert(r.orderid.clone()))
        .collect();
    assert!(fresh.len() >= 500);
    for (order, result) in orders.iter().zip(fresh) {
        assert_eq!(order.orderid, result.orderid);
        assert_eq!(order.user.userid, result.userid);
        assert_eq!(order.factoryid, result.factoryid);
        assert!(result.timestamp > order.timestamp);
    }
}

#[test]
fn timestamps_of_fresh_records_never_go_back() {
    let mut generator = Generator::<Order>::new(4, 0.3).expect("valid");
    let mut last = None;
    for _ in 0..2_000 {
        let (order, duplicate) = generator.next_record();
        if !duplicate {
            assert!(last <= Some(order.timestamp));
            last = Some(order.timestamp);
        }
    }
}

#[test]
fn duplicates_come_from_a_bounded_window() {
    let mut generator = Generator::<Order>::new(8, 0.5)
        .expect("valid")
        .with_pool_capacity(10)
        .expect("valid");
    let mut fresh: Vec<Order> = Vec::new();
    for _ in 0..2_000 {
        let (order, duplicate) = generator.next_record();
        if duplicate {
            let window = &fresh[fresh.len().saturating_sub(10)..];
            assert!(
                window.contains(&order),
                "repeats one of the last 10 distinct"
            );
        } else {
            fresh.push(order);
        }
    }
}
