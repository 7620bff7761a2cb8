//! Seed 004's streaming join, per shard: items ⋈ orders on the order id within an
//! interval of event time (an item may come before its order), ⋈ products as reference
//! data, as of the order's arrival.
//!
//! The source is partitioned by the order id (`chiefctl replay --partition-key-attribute
//! orderId`), so an order and its items are on one shard and each shard is joined on its
//! own: the join scales out with the shard leases, nothing is shuffled between workers.
//!
//! - An order is kept until the shard's watermark passes its time + interval + lateness;
//!   an item is joined with its order when it comes, or kept until the order comes or
//!   that deadline passes — then it is **unmatched** (an output of its own, counted).
//! - The watermark is the newest event time seen on the shard; a shard silent for the
//!   idle timeout moves it on with the wall clock, so its last items do not wait forever.
//! - A row is the order's attributes, the item's (its own `orderDateTime` as
//!   `itemDateTime`), the product's (`productName`, `productPrice`) and `ingestionTime`,
//!   the later of the two records'. Rows are emitted again when records are read again
//!   after a fail-over: the sink's writes are idempotent (the key is `orderId`, `itemId`).
//! - [`ShardJoin::checkpoint`] is the last record such that it and every record before it
//!   is released (joined, expired, or bad): whoever takes the shard over reads again every
//!   record still held and rebuilds the same state.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chief_consumer::ExtendedSequenceNumber;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `[join]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JoinSettings {
    /// The attribute both sides are joined on. Default `orderId`.
    pub key: String,
    /// The attribute telling orders from items. Default `recordType`.
    pub type_field: String,
    /// Its value for orders. Default `Order`.
    pub order_type: String,
    /// Its value for items. Default `OrderItem`.
    pub item_type: String,
    /// The event time (RFC 3339). Default `orderDateTime`.
    pub time_field: String,
    /// An item joins its order if their times differ by at most this. Default 60 s.
    pub interval_s: u64,
    /// How far out of order the source may be: an order is kept, an item waits, this much
    /// past the interval. Default 5 s.
    pub lateness_s: u64,
    /// A shard without records this long moves its watermark on with the wall clock.
    /// Default 10 s.
    pub idle_timeout_s: u64,
    /// The item attribute holding the product id. Default `itemId`.
    pub product_field: String,
    /// The attribute with the time a record was sent (`chiefctl replay`'s); the row
    /// carries the later of the two. Default `ingestionTime`.
    pub ingestion_field: String,
}

impl Default for JoinSettings {
    fn default() -> Self {
        Self {
            key: "orderId".to_owned(),
            type_field: "recordType".to_owned(),
            order_type: "Order".to_owned(),
            item_type: "OrderItem".to_owned(),
            time_field: "orderDateTime".to_owned(),
            interval_s: 60,
            lateness_s: 5,
            idle_timeout_s: 10,
            product_field: "itemId".to_owned(),
            ingestion_field: "ingestionTime".to_owned(),
        }
    }
}

/// A product of the reference table.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// `productName`.
    pub name: Value,
    /// `productPrice`.
    pub price: Value,
}

/// The products' versions, each from the time its object was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// `(since, products by id)`, oldest first.
    pub versions: Vec<(i64, HashMap<u64, Product>)>,
}

impl Catalog {
    /// The product `id` as of `at_ms`: from the newest version written at or before it
    /// (the oldest version for earlier times).
    pub fn lookup(&self, id: u64, at_ms: i64) -> Option<&Product> {
        let version = self
            .versions
            .iter()
            .rev()
            .find(|(since, _)| *since <= at_ms)
            .or_else(|| self.versions.first())?;
        version.1.get(&id)
    }

    /// Adds a version in force from `since` and drops every version superseded at or
    /// before `superseded_before` (no record that can still be read arrived that early:
    /// the caller passes now minus the source stream's retention). The newest version
    /// is always kept.
    pub fn add_version(
        &mut self,
        since: i64,
        products: HashMap<u64, Product>,
        superseded_before: i64,
    ) {
        self.versions.push((since, products));
        self.versions.sort_by_key(|(since, _)| *since);
        let unreachable = self
            .versions
            .windows(2)
            .take_while(|w| w[1].0 <= superseded_before)
            .count();
        self.versions.drain(..unreachable);
    }

    /// Parses a products object: JSON lines (or one JSON array) of
    /// `{productId, productName, productPrice}`.
    ///
    /// # Errors
    /// A line that is not a product, named by its number.
    pub fn parse(body: &[u8], id_field: &str) -> Result<HashMap<u64, Product>, String> {
        let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
        let values: Vec<Value> = if text.trim_start().starts_with('[') {
            serde_json::from_str(text).map_err(|e| format!("not a JSON array: {e}"))?
        } else {
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
                .collect::<Result<_, _>>()?
        };
        let mut out = HashMap::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let id = v
                .get(id_field)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("product {}: no numeric `{id_field}`", i + 1))?;
            out.insert(
                id,
                Product {
                    name: v.get("productName").cloned().unwrap_or(Value::Null),
                    price: v.get("productPrice").cloned().unwrap_or(Value::Null),
                },
            );
        }
        Ok(out)
    }
}

/// One record of the shard.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Its position.
    pub position: &'a ExtendedSequenceNumber,
    /// When Kinesis took it, ms since the epoch.
    pub arrival_ms: i64,
    /// Its bytes.
    pub data: &'a [u8],
}

/// Kinesis's largest record, data and partition key together.
const MAX_RECORD_BYTES: usize = 1 << 20;

/// Why a record was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// An item that found no order within the interval.
    Unmatched,
    /// A record that is neither an order nor an item.
    Bad,
}

/// What the join hands on.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An enriched row (JSON), to the output stream with its partition key.
    Row {
        /// The order id, the partition key.
        key: u64,
        /// The row.
        json: Vec<u8>,
    },
    /// A record set aside, with why (one object each, under the prefix of its kind).
    Rejected {
        /// Which kind.
        kind: Rejection,
        /// Its position.
        position: ExtendedSequenceNumber,
        /// When it arrived, ms.
        arrival_ms: i64,
        /// Its bytes.
        data: Vec<u8>,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Held {
    ordinal: u64,
    position: ExtendedSequenceNumber,
    time_ms: i64,
    arrival_ms: i64,
    fields: Map<String, Value>,
    data: Vec<u8>,
}

/// The join of one shard.
#[derive(Debug)]
pub struct ShardJoin {
    settings: JoinSettings,
    next_ordinal: u64,
    /// Records pushed and not yet below a checkpoint, in order.
    positions: VecDeque<(u64, ExtendedSequenceNumber)>,
    /// Ordinals of the records still held.
    held: BTreeSet<u64>,
    orders: HashMap<u64, Held>,
    items: HashMap<u64, Vec<Held>>,
    /// (deadline, ordinal) → order id, of held orders and items.
    order_deadlines: BTreeMap<(i64, u64), u64>,
    item_deadlines: BTreeMap<(i64, u64), u64>,
    newest_ms: Option<i64>,
    last_record_wall_ms: Option<i64>,
}

fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl ShardJoin {
    /// An empty join.
    pub fn new(settings: JoinSettings) -> Self {
        Self {
            settings,
            next_ordinal: 0,
            positions: VecDeque::new(),
            held: BTreeSet::new(),
            orders: HashMap::new(),
            items: HashMap::new(),
            order_deadlines: BTreeMap::new(),
            item_deadlines: BTreeMap::new(),
            newest_ms: None,
            last_record_wall_ms: None,
        }
    }

    fn span_ms(&self) -> i64 {
        i64::try_from((self.settings.interval_s + self.settings.lateness_s) * 1_000)
            .unwrap_or(i64::MAX)
    }

    /// Orders and items held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes one record at wall time `now_ms`; what it releases.
    pub fn push(&mut self, input: Input<'_>, catalog: &Catalog, now_ms: i64) -> Vec<Output> {
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        self.positions.push_back((ordinal, input.position.clone()));
        self.last_record_wall_ms = Some(now_ms);
        let bad = |reason: String| Output::Rejected {
            kind: Rejection::Bad,
            position: input.position.clone(),
            arrival_ms: input.arrival_ms,
            data: input.data.to_vec(),
            reason,
        };
        let fields: Map<String, Value> = match serde_json::from_slice(input.data) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return vec![bad("not a JSON object".into())],
            Err(e) => return vec![bad(format!("not JSON: {e}"))],
        };
        let s = &self.settings;
        let Some(key) = fields.get(&s.key).and_then(Value::as_u64) else {
            return vec![bad(format!("no numeric `{}`", s.key))];
        };
        let Some(time_ms) = fields
            .get(&s.time_field)
            .and_then(Value::as_str)
            .and_then(parse_time)
        else {
            return vec![bad(format!("no RFC 3339 `{}`", s.time_field))];
        };
        let kind = fields.get(&s.type_field).and_then(Value::as_str);
        let is_order = kind == Some(s.order_type.as_str());
        let is_item = kind == Some(s.item_type.as_str());
        if !is_order && !is_item {
            return vec![bad(format!(
                "`{}` is neither `{}` nor `{}`",
                s.type_field, s.order_type, s.item_type
            ))];
        }
        let held = Held {
            ordinal,
            position: input.position.clone(),
            time_ms,
            arrival_ms: input.arrival_ms,
            fields,
            data: input.data.to_vec(),
        };
        let mut out = Vec::new();
        if is_order {
            // Items that came first.
            if let Some(waiting) = self.items.remove(&key) {
                let mut still = Vec::new();
                for item in waiting {
                    if (item.time_ms - time_ms).abs() <= self.interval_ms() {
                        out.push(self.row(key, &held, &item, catalog));
                        self.release(item.ordinal);
                        self.item_deadlines
                            .remove(&(item.time_ms + self.span_ms(), item.ordinal));
                    } else {
                        still.push(item);
                    }
                }
                if !still.is_empty() {
                    self.items.insert(key, still);
                }
            }
            if let Some(previous) = self.orders.remove(&key) {
                // The same order again (read twice): the newer copy stays.
                self.release(previous.ordinal);
                self.order_deadlines
                    .remove(&(previous.time_ms + self.span_ms(), previous.ordinal));
            }
            self.held.insert(ordinal);
            self.order_deadlines
                .insert((time_ms + self.span_ms(), ordinal), key);
            self.orders.insert(key, held);
        } else {
            match self.orders.get(&key) {
                Some(order) if (time_ms - order.time_ms).abs() <= self.interval_ms() => {
                    let row = self.row(key, order, &held, catalog);
                    out.push(row);
                }
                _ => {
                    self.held.insert(ordinal);
                    self.item_deadlines
                        .insert((time_ms + self.span_ms(), ordinal), key);
                    self.items.entry(key).or_default().push(held);
                }
            }
        }
        self.newest_ms = Some(self.newest_ms.map_or(time_ms, |n| n.max(time_ms)));
        out.extend(self.expire(self.newest_ms.unwrap_or(i64::MIN)));
        out
    }

    fn interval_ms(&self) -> i64 {
        i64::try_from(self.settings.interval_s * 1_000).unwrap_or(i64::MAX)
    }

    /// At wall time `now_ms`, after a call without records: a shard silent for the idle
    /// timeout moves its watermark on by the silence beyond it.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Output> {
        let (Some(newest), Some(last)) = (self.newest_ms, self.last_record_wall_ms) else {
            return Vec::new();
        };
        let idle = i64::try_from(self.settings.idle_timeout_s * 1_000).unwrap_or(i64::MAX);
        let silence = now_ms - last;
        if silence <= idle {
            return Vec::new();
        }
        self.expire(newest + (silence - idle))
    }

    /// Releases what the watermark `watermark` is past.
    fn expire(&mut self, watermark: i64) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some((&(deadline, ordinal), &key)) = self.order_deadlines.first_key_value() {
            if deadline >= watermark {
                break;
            }
            self.order_deadlines.remove(&(deadline, ordinal));
            if self.orders.get(&key).is_some_and(|o| o.ordinal == ordinal) {
                self.orders.remove(&key);
            }
            self.release(ordinal);
        }
        while let Some((&(deadline, ordinal), &key)) = self.item_deadlines.first_key_value() {
            if deadline >= watermark {
                break;
            }
            self.item_deadlines.remove(&(deadline, ordinal));
            if let Some(waiting) = self.items.get_mut(&key)
                && let Some(i) = waiting.iter().position(|h| h.ordinal == ordinal)
            {
                let item = waiting.remove(i);
                if waiting.is_empty() {
                    self.items.remove(&key);
                }
                out.push(Output::Rejected {
                    kind: Rejection::Unmatched,
                    position: item.position,
                    arrival_ms: item.arrival_ms,
                    data: item.data,
                    reason: format!(
                        "no order {key} within {} s of the item",
                        self.settings.interval_s
                    ),
                });
            }
            self.release(ordinal);
        }
        out
    }

    fn release(&mut self, ordinal: u64) {
        self.held.remove(&ordinal);
    }

    fn row(&self, key: u64, order: &Held, item: &Held, catalog: &Catalog) -> Output {
        let s = &self.settings;
        let mut row = Map::new();
        for (k, v) in &order.fields {
            if *k != s.type_field && *k != s.ingestion_field {
                row.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &item.fields {
            if *k == s.type_field || *k == s.ingestion_field {
                continue;
            }
            if *k == s.time_field {
                row.insert("itemDateTime".to_owned(), v.clone());
            } else {
                row.insert(k.clone(), v.clone());
            }
        }
        let product = item
            .fields
            .get(&s.product_field)
            .and_then(Value::as_u64)
            .and_then(|id| catalog.lookup(id, order.arrival_ms));
        if let Some(p) = product {
            row.insert("productName".to_owned(), p.name.clone());
            row.insert("productPrice".to_owned(), p.price.clone());
        }
        let ingestion = [&order.fields, &item.fields]
            .iter()
            .filter_map(|f| f.get(&s.ingestion_field).and_then(Value::as_str))
            .filter_map(|t| parse_time(t).map(|ms| (ms, t)))
            .max_by_key(|(ms, _)| *ms);
        if let Some((_, text)) = ingestion {
            row.insert(s.ingestion_field.clone(), Value::String(text.to_owned()));
        }
        let json = serde_json::to_vec(&Value::Object(row)).unwrap_or_default();
        // Kinesis takes a record of at most 1 MiB, partition key included: a bigger row
        // (an order and an item near the limit each) is set aside with the item, not
        // refused by the stream over and over.
        let limit = MAX_RECORD_BYTES - key.to_string().len();
        if json.len() > limit {
            return Output::Rejected {
                kind: Rejection::Bad,
                position: item.position.clone(),
                arrival_ms: item.arrival_ms,
                data: item.data.clone(),
                reason: format!(
                    "the enriched row of order {key} is {} bytes, over Kinesis's record limit of {limit}",
                    json.len()
                ),
            };
        }
        Output::Row { key, json }
    }

    /// The last record such that it and every record before it is released: what the
    /// shard may be checkpointed at once the outputs so far are written. Positions up to
    /// it are forgotten.
    pub fn checkpoint(&mut self) -> Option<ExtendedSequenceNumber> {
        let first_held = self.held.first().copied().unwrap_or(u64::MAX);
        let mut last = None;
        while let Some((ordinal, _)) = self.positions.front() {
            if *ordinal >= first_held {
                break;
            }
            last = self.positions.pop_front().map(|(_, p)| p);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(i: u64) -> ExtendedSequenceNumber {
        ExtendedSequenceNumber::new(format!("{:056}", i + 1), 0)
    }

    fn order(id: u64, t: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"orderId": id, "orderAmount": 10.5, "orderDateTime": t, "recordType": "Order", "ingestionTime": "2026-12-05T00:00:01.000Z"})).unwrap_or_default()
    }

    fn item(id: u64, product: u64, t: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"orderId": id, "itemId": product, "itemQuantity": 2, "orderDateTime": t, "recordType": "OrderItem", "ingestionTime": "2026-12-05T00:00:02.000Z"})).unwrap_or_default()
    }

    fn catalog() -> Catalog {
        let body = br#"{"productId": 7, "productName": "Hat", "productPrice": 5.25}
{"productId": 8, "productName": "Lamp", "productPrice": 12}"#;
        Catalog {
            versions: vec![(0, Catalog::parse(body, "productId").unwrap_or_default())],
        }
    }

    fn rows(out: &[Output]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Output::Row { json, .. } => serde_json::from_slice(json).ok(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn items_before_and_after_their_order_join_and_late_ones_are_unmatched() {
        let mut j = ShardJoin::new(JoinSettings::default());
        let c = catalog();
        let records = [
            item(1, 7, "2026-01-01T00:00:00.000Z"), // before its order
            order(1, "2026-01-01T00:00:00.500Z"),
            item(1, 8, "2026-01-01T00:00:01.000Z"), // after it
            item(2, 7, "2026-01-01T00:00:02.000Z"), // order 2 never comes
            b"garbage".to_vec(),
            order(3, "2026-01-01T00:00:03.000Z"),
            item(3, 7, "2026-01-01T00:01:10.000Z"), // 67 s after its order: too late
            order(4, "2026-01-01T00:02:30.000Z"),   // moves the watermark past everything
        ];
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let p = pos(i as u64);
            out.extend(j.push(
                Input {
                    position: &p,
                    arrival_ms: 1_000 + i as i64,
                    data: r,
                },
                &c,
                0,
            ));
        }
        let rows = rows(&out);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0]["itemId"], 7);
        assert_eq!(rows[0]["productName"], "Hat");
        assert_eq!(rows[0]["orderAmount"], 10.5);
        assert_eq!(rows[0]["orderDateTime"], "2026-01-01T00:00:00.500Z");
        assert_eq!(rows[0]["itemDateTime"], "2026-01-01T00:00:00.000Z");
        assert_eq!(rows[0]["ingestionTime"], "2026-12-05T00:00:02.000Z");
        assert!(rows[0].get("recordType").is_none());
        assert_eq!(rows[1]["productName"], "Lamp");
        let unmatched: Vec<&Output> = out
            .iter()
            .filter(|o| {
                matches!(
                    o,
                    Output::Rejected {
                        kind: Rejection::Unmatched,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(
            unmatched.len(),
            2,
            "item of order 2 and the late item of order 3"
        );
        assert_eq!(
            out.iter()
                .filter(|o| {
                    matches!(
                        o,
                        Output::Rejected {
                            kind: Rejection::Bad,
                            ..
                        }
                    )
                })
                .count(),
            1
        );
        // Everything but order 4 is released: checkpoint at the record before it.
        assert_eq!(j.held(), 1);
        assert_eq!(j.checkpoint(), Some(pos(6)));
    }

    #[test]
    fn the_checkpoint_stays_before_the_oldest_held_record_and_idle_shards_release() {
        let mut j = ShardJoin::new(JoinSettings::default());
        let c = catalog();
        let a = order(1, "2026-01-01T00:00:00.000Z");
        let b = item(1, 7, "2026-01-01T00:00:01.000Z");
        let p0 = pos(0);
        let p1 = pos(1);
        assert!(
            j.push(
                Input {
                    position: &p0,
                    arrival_ms: 0,
                    data: &a
                },
                &c,
                0
            )
            .is_empty()
        );
        assert_eq!(
            rows(&j.push(
                Input {
                    position: &p1,
                    arrival_ms: 0,
                    data: &b
                },
                &c,
                0
            ))
            .len(),
            1
        );
        // The order is held (more items may come): nothing may be checkpointed.
        assert_eq!(j.checkpoint(), None);
        // Silent for 10 s + 65 s: the watermark passes the order's deadline.
        assert!(j.tick(74_000).is_empty());
        assert_eq!(j.held(), 1);
        assert!(j.tick(76_000).is_empty());
        assert_eq!(j.held(), 0);
        assert_eq!(j.checkpoint(), Some(pos(1)));
    }

    #[test]
    fn products_are_joined_as_of_the_orders_arrival() {
        let mut c = catalog();
        let newer = br#"{"productId": 7, "productName": "New Hat", "productPrice": 6}"#;
        c.versions.push((
            5_000,
            Catalog::parse(newer, "productId").unwrap_or_default(),
        ));
        assert_eq!(
            c.lookup(7, 4_999).map(|p| p.name.clone()),
            Some(Value::from("Hat"))
        );
        assert_eq!(
            c.lookup(7, 5_000).map(|p| p.name.clone()),
            Some(Value::from("New Hat"))
        );
        assert_eq!(c.lookup(8, 6_000), None, "not in the newer version");
        assert!(Catalog::parse(b"{\"productName\": 1}", "productId").is_err());
    }

    #[test]
    fn a_row_over_the_kinesis_record_limit_is_set_aside_with_its_item() {
        let mut j = ShardJoin::new(JoinSettings::default());
        let c = catalog();
        let big = serde_json::to_vec(&serde_json::json!({"orderId": 1, "itemId": 7, "note": "x".repeat(1 << 20), "orderDateTime": "2026-01-01T00:00:01.000Z", "recordType": "OrderItem"})).unwrap_or_default();
        let mut out = Vec::new();
        for (i, data) in [order(1, "2026-01-01T00:00:00.000Z"), big.clone()]
            .iter()
            .enumerate()
        {
            out.extend(j.push(
                Input {
                    position: &pos(i as u64),
                    arrival_ms: 0,
                    data,
                },
                &c,
                0,
            ));
        }
        assert!(rows(&out).is_empty());
        match out.as_slice() {
            [
                Output::Rejected {
                    kind: Rejection::Bad,
                    position,
                    data,
                    reason,
                    ..
                },
            ] => {
                assert_eq!(position, &pos(1));
                assert_eq!(data, &big, "the item itself, to the errors prefix");
                assert!(reason.contains("record limit"), "{reason}");
            }
            other => panic!("expected the item set aside, got {other:?}"),
        }
    }

    #[test]
    fn versions_superseded_before_the_retention_are_dropped() {
        let mut c = catalog();
        let named = |name: &str| {
            let body = format!(r#"{{"productId": 7, "productName": "{name}", "productPrice": 6}}"#);
            Catalog::parse(body.as_bytes(), "productId").unwrap_or_default()
        };
        // Nothing that can still be read arrived before 1,000: every version stays.
        c.add_version(5_000, named("v2"), 1_000);
        c.add_version(9_000, named("v3"), 1_000);
        assert_eq!(c.versions.len(), 3);
        assert_eq!(
            c.lookup(7, 4_999).map(|p| p.name.clone()),
            Some(Value::from("Hat"))
        );
        // Now nothing arrived before 9,500: v1 (superseded at 5,000) and v2 (at 9,000)
        // can no longer be asked for; v3 answers from 9,500 on, as it did.
        c.add_version(20_000, named("v4"), 9_500);
        let since: Vec<i64> = c.versions.iter().map(|(s, _)| *s).collect();
        assert_eq!(since, vec![9_000, 20_000]);
        assert_eq!(
            c.lookup(7, 9_500).map(|p| p.name.clone()),
            Some(Value::from("v3"))
        );
        // The newest is kept however old.
        c.add_version(21_000, named("v5"), i64::MAX);
        assert_eq!(c.versions.len(), 1);
        assert_eq!(
            c.lookup(7, 0).map(|p| p.name.clone()),
            Some(Value::from("v5"))
        );
    }
}
