//! Seed 004 end to end on the local stack, with the real binaries: `chief-datagen`'s
//! products and orders with their items in S3 → `chiefctl replay` (partition key
//! `orderId`) → a 2-shard stream → `chief-join` workers → the enriched stream →
//! `chief-dynamodb-sink` → DynamoDB `OrdersEnriched` (key `orderId` N, `itemId` N). The rows
//! in DynamoDB are compared, every attribute, with an independent join of the generated
//! events (the test's own, from the generator's types), for one worker and for two with a
//! kill -9 of one that holds leases; and a products object replaced mid-run names the
//! products of the orders sent after it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use chief_datagen::etl::{OrderOrItem, OrdersItems, Product, products};
use chief_e2e::{Proc, bin};
use chief_stream::KinesisClient;
use serde_json::{Map, Value, json};

struct Seed004 {
    clients: AwsClients,
    id: String,
    dir: PathBuf,
    bucket: String,
    source: String,
    enriched: String,
    table: String,
}

impl Seed004 {
    async fn new(test: &str) -> Self {
        let stack = LocalStack::require();
        let clients = AwsClients::new(&stack.aws).await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = workspace_root()
            .join(".local/e2e")
            .join(format!("{test}-{id}"));
        std::fs::create_dir_all(&dir).expect("work dir");
        let run = Self {
            bucket: format!("e2e-enrich-{id}"),
            source: format!("e2e-orders-items-{id}"),
            enriched: format!("e2e-enriched-{id}"),
            table: format!("e2e-OrdersEnriched-{id}"),
            clients,
            id,
            dir,
        };
        let kinesis = KinesisClient::new(run.clients.kinesis());
        for s in [&run.source, &run.enriched] {
            kinesis.create_stream(s, 2).await.expect("CreateStream");
            kinesis
                .wait_until_active(s, Duration::from_secs(60))
                .await
                .expect("ACTIVE");
        }
        run.clients
            .s3()
            .create_bucket()
            .bucket(&run.bucket)
            .send()
            .await
            .expect("CreateBucket");
        // OrdersEnriched's key: orderId N, itemId N.
        let schema = chief_sinks::dynamodb::KeySchema {
            partition: ("orderId".to_owned(), chief_sinks::dynamodb::KeyType::Number),
            sort: Some(("itemId".to_owned(), chief_sinks::dynamodb::KeyType::Number)),
        };
        chief_sinks::dynamodb::ensure_table(&run.clients.dynamodb(), &run.table, &schema)
            .await
            .expect("CreateTable");
        let join = format!(
            "[consumer]\nstream = \"{source}\"\ntable = \"e2e-join-{id}\"\n\
             failover_time_ms = 3000\nlease_taking_interval_ms = 500\n\
             shard_sync_interval_ms = 2000\npoll_interval_ms = 100\nidle_time_max_ms = 200\n\
             [join]\nidle_timeout_s = 3\n\
             [products]\nbucket = \"{bucket}\"\npoll_interval_ms = 500\n\
             [output]\nstream = \"{enriched}\"\nbucket = \"{bucket}\"\n",
            source = run.source,
            enriched = run.enriched,
            bucket = run.bucket,
            id = run.id,
        );
        std::fs::write(run.dir.join("join.toml"), join).expect("overlay");
        let sink = format!(
            "[consumer]\nstream = \"{enriched}\"\ntable = \"e2e-sink-{id}\"\n\
             failover_time_ms = 3000\nlease_taking_interval_ms = 500\n\
             shard_sync_interval_ms = 2000\npoll_interval_ms = 100\n\
             [sink]\ntable = \"{table}\"\nconcurrency = 2\n[dead_letter]\nbucket = \"{bucket}\"\n",
            enriched = run.enriched,
            table = run.table,
            bucket = run.bucket,
            id = run.id,
        );
        std::fs::write(run.dir.join("sink.toml"), sink).expect("overlay");
        run
    }

    fn spawn(&self, name: &str, binary: &str, config: &str, overlay: &str) -> Proc {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log");
        let child = Command::new(bin(binary))
            .args([
                "--config",
                config,
                "--config",
                "config/local.toml",
                "--config",
                &self.dir.join(overlay).display().to_string(),
                "--worker-id",
                &format!("{name}-{}", self.id),
            ])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("spawn");
        Proc {
            name: name.to_owned(),
            child,
            log,
        }
    }

    fn join_worker(&self, name: &str) -> Proc {
        self.spawn(name, "chief-join", "config/join-orders.toml", "join.toml")
    }

    fn sink(&self) -> Proc {
        self.spawn(
            "sink",
            "chief-dynamodb-sink",
            "config/dynamodb-sink.toml",
            "sink.toml",
        )
    }

    async fn put_object(&self, key: &str, body: Vec<u8>) {
        self.clients
            .s3()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("PutObject");
    }

    async fn upload_products(&self, products: &[Product]) {
        let body: Vec<u8> = products
            .iter()
            .flat_map(|p| {
                let mut line = serde_json::to_vec(p).expect("json");
                line.push(b'\n');
                line
            })
            .collect();
        self.put_object("products/products.json", body).await;
    }

    async fn upload_events(&self, prefix: &str, events: &[OrderOrItem]) {
        let body: Vec<u8> = events
            .iter()
            .flat_map(|e| {
                let mut line = serde_json::to_vec(e).expect("json");
                line.push(b'\n');
                line
            })
            .collect();
        self.put_object(&format!("{prefix}events.json"), body).await;
    }

    fn replay(&self, prefix: &str) {
        let out = Command::new(bin("chiefctl"))
            .args([
                "replay",
                "--config",
                "config/chiefctl.toml",
                "--config",
                "config/local.toml",
                "--bucket",
                &self.bucket,
                "--prefix",
                prefix,
                "--stream",
                &self.source,
                "--partition-key-attribute",
                "orderId",
                "--speedup",
                "0",
                "--failed",
                &self.dir.join("replay-failed.jsonl").display().to_string(),
            ])
            .current_dir(workspace_root())
            .output()
            .expect("chiefctl replay");
        assert!(
            out.status.success(),
            "chiefctl replay: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn rows(&self) -> BTreeMap<(u64, u64), Value> {
        let mut out = BTreeMap::new();
        let mut start = None;
        loop {
            let page = self
                .clients
                .dynamodb()
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Scan");
            for item in page.items() {
                let row = chief_sinks::dynamodb::json_of(&AttributeValue::M(item.clone()))
                    .expect("an item of JSON attributes");
                let key = (
                    row["orderId"].as_u64().expect("orderId"),
                    row["itemId"].as_u64().expect("itemId"),
                );
                out.insert(key, row);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out
    }

    async fn count(&self) -> usize {
        let mut total = 0;
        let mut start = None;
        loop {
            let Ok(page) = self
                .clients
                .dynamodb()
                .scan()
                .table_name(&self.table)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
            else {
                return total;
            };
            total += usize::try_from(page.count()).unwrap_or(0);
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return total,
            }
        }
    }

    /// Waits until the table holds `count` rows (at most `secs`), showing the logs if not.
    async fn wait_rows(
        &self,
        count: usize,
        secs: u64,
        procs: &[&Proc],
    ) -> BTreeMap<(u64, u64), Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            // Counted, not read, while waiting: moto serves one request at a time and the
            // workers' lease renewals share it.
            let counted = self.count().await;
            if counted >= count {
                return self.rows().await;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = procs
                    .iter()
                    .map(|p| {
                        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(15).collect();
                        format!(
                            "--- {} ---\n{}",
                            p.name,
                            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                        )
                    })
                    .collect();
                panic!(
                    "{counted} rows of {count} in DynamoDB after {secs} s\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(1_500)).await;
        }
    }

    async fn lease_owners(&self) -> BTreeMap<String, String> {
        DynamoDbLeaseStore::new(self.clients.dynamodb(), format!("e2e-join-{}", self.id))
            .list_leases()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| l.lease_owner.map(|o| (l.lease_key, o)))
            .collect()
    }

    async fn cleanup(&self) {
        for s in [&self.source, &self.enriched] {
            let _ = self
                .clients
                .kinesis()
                .delete_stream()
                .stream_name(s)
                .send()
                .await;
        }
        let _ = self
            .clients
            .dynamodb()
            .delete_table()
            .table_name(&self.table)
            .send()
            .await;
    }
}

/// The join computed here, from the generator's events: for each item, its order's
/// attributes, its own (its time as `itemDateTime`), its product's name and price. The
/// generated items are all within a second of their order, so every item has a row.
fn expected_rows(
    events: &[OrderOrItem],
    products_of: &dyn Fn(u64) -> (String, f64),
) -> BTreeMap<(u64, u64), Value> {
    let orders: HashMap<u64, Value> = events
        .iter()
        .filter_map(|e| match e {
            OrderOrItem::Order(o) => Some((o.order_id, serde_json::to_value(o).expect("json"))),
            OrderOrItem::Item(_) => None,
        })
        .collect();
    let mut out = BTreeMap::new();
    for e in events {
        let OrderOrItem::Item(item) = e else { continue };
        let mut row: Map<String, Value> = orders[&item.order_id]
            .as_object()
            .expect("order object")
            .clone();
        row.remove("recordType");
        row.insert("itemId".into(), json!(item.item_id));
        row.insert("itemQuantity".into(), json!(item.item_quantity));
        row.insert("itemAmount".into(), json!(item.item_amount));
        row.insert("itemStatus".into(), json!(item.item_status));
        row.insert("itemDateTime".into(), json!(item.order_date_time));
        let (name, price) = products_of(item.item_id);
        row.insert("productName".into(), json!(name));
        row.insert("productPrice".into(), json!(price));
        out.insert((item.order_id, item.item_id), Value::Object(row));
    }
    out
}

/// Compares every attribute but `ingestionTime` (the time the replay sent the later of the
/// two records: not in the input), which must be there.
fn assert_rows_equal(got: &BTreeMap<(u64, u64), Value>, expected: &BTreeMap<(u64, u64), Value>) {
    assert_eq!(got.len(), expected.len(), "rows in DynamoDB");
    for (key, want) in expected {
        let mut row = got
            .get(key)
            .unwrap_or_else(|| panic!("row {key:?} missing"))
            .clone();
        let ingestion = row.as_object_mut().and_then(|r| r.remove("ingestionTime"));
        assert!(
            ingestion.as_ref().and_then(Value::as_str).is_some(),
            "row {key:?} has no ingestionTime"
        );
        assert_eq!(&row, want, "row {key:?}");
    }
}

fn generate(orders: usize, seed: u64) -> (Vec<Product>, Vec<OrderOrItem>) {
    let catalog = products(seed, 50);
    let events: Vec<OrderOrItem> = OrdersItems::new(seed, catalog.clone(), 1_767_225_600_000, 20)
        .take(orders * 3)
        .collect();
    (catalog, events)
}

fn lookup(catalog: &[Product]) -> impl Fn(u64) -> (String, f64) + '_ {
    move |id| {
        catalog
            .iter()
            .find(|p| p.product_id == id)
            .map(|p| (p.product_name.clone(), p.product_price))
            .expect("product")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_join_worker_stores_exactly_the_independent_join() {
    let run = Seed004::new("enrich-one").await;
    let (catalog, events) = generate(1_000, 41);
    run.upload_products(&catalog).await;
    run.upload_events("events/", &events).await;
    let join = run.join_worker("join-1");
    let sink = run.sink();
    run.replay("events/");
    let expected = expected_rows(&events, &lookup(&catalog));
    let rows = run.wait_rows(expected.len(), 120, &[&join, &sink]).await;
    assert_rows_equal(&rows, &expected);
    for p in [join, sink] {
        let name = p.name.clone();
        assert!(p.terminate().success(), "{name} exits 0 on SIGTERM");
    }
    run.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_join_workers_and_a_kill_9_of_one_store_exactly_the_independent_join() {
    let run = Seed004::new("enrich-kill").await;
    let (catalog, events) = generate(3_000, 42);
    run.upload_products(&catalog).await;
    let half = events.len() / 2 / 3 * 3;
    run.upload_events("events/a/", &events[..half]).await;
    run.upload_events("events/b/", &events[half..]).await;
    let first = run.join_worker("join-1");
    let second = run.join_worker("join-2");
    let sink = run.sink();
    // Both hold a shard before the first half is sent.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owners = run.lease_owners().await;
        let distinct: std::collections::BTreeSet<&String> = owners.values().collect();
        if owners.len() == 2 && distinct.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two workers did not share the shards: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    run.replay("events/a/");
    // The fault: kill -9 of join-1 while it holds a lease and orders in its join.
    let owners = run.lease_owners().await;
    let victim = format!("join-1-{}", run.id);
    assert!(
        owners.values().any(|o| *o == victim),
        "join-1 holds no lease before the kill: {owners:?}"
    );
    // …and has not checkpointed its shard's last record (orders are held for their
    // items for 65 s of event time, or 3 s of silence): its successor must read again.
    let kinesis = KinesisClient::new(run.clients.kinesis());
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (shard, record) in chief_stream::read_all(&kinesis, &run.source)
        .await
        .expect("read the source")
    {
        last.insert(shard, record.sequence_number);
    }
    let leases = DynamoDbLeaseStore::new(run.clients.dynamodb(), format!("e2e-join-{}", run.id))
        .list_leases()
        .await
        .expect("leases");
    let behind = leases.iter().any(|l| {
        l.lease_owner.as_deref() == Some(victim.as_str())
            && last.get(&l.lease_key) != Some(&l.checkpoint.sequence_number)
    });
    first.kill();
    assert!(
        behind,
        "join-1's shard was checkpointed at its last record before the kill: nothing to recover ({leases:?})"
    );
    run.replay("events/b/");
    let expected = expected_rows(&events, &lookup(&catalog));
    let rows = run.wait_rows(expected.len(), 180, &[&second, &sink]).await;
    assert_rows_equal(&rows, &expected);
    // join-2 took over the killed worker's shard.
    let owners = run.lease_owners().await;
    assert!(
        owners.values().all(|o| *o == format!("join-2-{}", run.id)),
        "{owners:?}"
    );
    for p in [second, sink] {
        let name = p.name.clone();
        assert!(p.terminate().success(), "{name} exits 0 on SIGTERM");
    }
    run.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_replaced_mid_run_name_the_products_of_later_orders() {
    let run = Seed004::new("enrich-products").await;
    let (catalog, events) = generate(600, 43);
    let half = events.len() / 2 / 3 * 3;
    run.upload_products(&catalog).await;
    run.upload_events("events/a/", &events[..half]).await;
    run.upload_events("events/b/", &events[half..]).await;
    let join = run.join_worker("join-1");
    let sink = run.sink();
    run.replay("events/a/");
    let before = expected_rows(&events[..half], &lookup(&catalog));
    run.wait_rows(before.len(), 120, &[&join, &sink]).await;
    // The new products object: every name changed.
    let renamed: Vec<Product> = catalog
        .iter()
        .map(|p| Product {
            product_name: format!("{} v2", p.product_name),
            ..p.clone()
        })
        .collect();
    run.upload_products(&renamed).await;
    // Its poll interval (500 ms) and S3's one-second last-modified time, then the rest.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    run.replay("events/b/");
    let mut expected = before;
    expected.extend(expected_rows(&events[half..], &lookup(&renamed)));
    let rows = run.wait_rows(expected.len(), 120, &[&join, &sink]).await;
    assert_rows_equal(&rows, &expected);
    let log = std::fs::read_to_string(&join.log).unwrap_or_default();
    assert!(
        log.contains("products changed: new version loaded"),
        "the join did not load the new products:\n{log}"
    );
    for p in [join, sink] {
        let name = p.name.clone();
        assert!(p.terminate().success(), "{name} exits 0 on SIGTERM");
    }
    run.cleanup().await;
}
