//! The item writer: JSON records as DynamoDB items, written with `BatchWriteItem`.
//!
//! - [`Item::from_json`]: a JSON object → an item (numbers `N` exactly as written, strings
//!   `S`, booleans, null, lists and maps), its key attributes checked against the table's
//!   [`KeySchema`] — a record without them is an error for its caller to dead-letter.
//! - [`ItemTable`]: `BatchWriteItem` of up to 25 items, returning what the table left
//!   unprocessed; over DynamoDB ([`DynamoDbItemTable`]) or memory ([`MemoryItemTable`]);
//!   [`FaultyItemTable`] wraps either and refuses calls (`ProvisionedThroughputExceeded`)
//!   or leaves items unprocessed, as DynamoDB does under load — for tests.
//! - [`write_all`]: every item written or an error: batches of 25 (the last write of a key
//!   wins within a call: `BatchWriteItem` refuses duplicate keys in one request), several
//!   requests at once, `UnprocessedItems` and throttling retried with the shared back-off
//!   until the policy's deadline. A caller checkpoints only after it returns `Ok`.
//!
//! Writes are puts of whole items: the same record written twice leaves the same item.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chief_config::retry::RetryPolicy;

/// Most items in one `BatchWriteItem` request.
pub const MAX_BATCH_ITEMS: usize = 25;

/// The type of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyType {
    /// `N`.
    #[serde(rename = "N")]
    Number,
    /// `S`.
    #[serde(rename = "S")]
    String,
}

/// A table's primary key: partition key and optional sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    /// The partition key's name and type.
    pub partition: (String, KeyType),
    /// The sort key's, if the table has one.
    pub sort: Option<(String, KeyType)>,
}

/// Why a record is not an item of the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ItemError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A key attribute is missing or of the wrong type.
    #[error("key attribute `{name}`: {reason}")]
    Key {
        /// The attribute.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// An item with its key (`N`/`S` values as text), for de-duplication and for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The key attributes' values, partition first.
    pub key: Vec<String>,
    /// The attributes.
    pub attributes: HashMap<String, AttributeValue>,
}

/// A JSON value as an attribute value.
pub fn attribute(value: &serde_json::Value) -> AttributeValue {
    use serde_json::Value;
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        // As written: 12.30 stays 12.30 (arbitrary_precision is not on, so serde_json keeps
        // f64s; their shortest representation round-trips).
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(values) => AttributeValue::L(values.iter().map(attribute).collect()),
        Value::Object(map) => {
            AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect())
        }
    }
}

/// An attribute value as JSON: the inverse of [`attribute`] (numbers as written); `None`
/// for the types a JSON record never becomes (binary, sets).
pub fn json_of(value: &AttributeValue) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => serde_json::from_str(n).ok()?,
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(values) => {
            Value::Array(values.iter().map(json_of).collect::<Option<_>>()?)
        }
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| json_of(v).map(|v| (k.clone(), v)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

impl Item {
    /// The item of a record: a JSON object with the key attributes of `schema`.
    ///
    /// # Errors
    /// [`ItemError`] naming what is wrong.
    pub fn from_json(data: &[u8], schema: &KeySchema) -> Result<Self, ItemError> {
        let value: serde_json::Value =
            serde_json::from_slice(data).map_err(|e| ItemError::NotJson(e.to_string()))?;
        let serde_json::Value::Object(map) = value else {
            return Err(ItemError::NotAnObject);
        };
        let mut key = Vec::with_capacity(2);
        for (name, kind) in std::iter::once(&schema.partition).chain(schema.sort.as_ref()) {
            let err = |reason: &str| ItemError::Key {
                name: name.clone(),
                reason: reason.to_owned(),
            };
            match (map.get(name), kind) {
                (None, _) => return Err(err("missing")),
                (Some(serde_json::Value::Number(n)), KeyType::Number) => key.push(n.to_string()),
                (Some(serde_json::Value::String(s)), KeyType::String) if !s.is_empty() => {
                    key.push(s.clone());
                }
                (Some(_), KeyType::Number) => return Err(err("not a number")),
                (Some(_), KeyType::String) => return Err(err("not a non-empty string")),
            }
        }
        let attributes = map.iter().map(|(k, v)| (k.clone(), attribute(v))).collect();
        Ok(Self { key, attributes })
    }
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on table `{table}` failed: {message}")]
pub struct ItemTableError {
    /// `BatchWriteItem`.
    pub operation: &'static str,
    /// The table.
    pub table: String,
    /// What the service said.
    pub message: String,
    /// Whether trying again may succeed (throttling, 5xx, timeouts).
    pub retryable: bool,
}

/// Whether a DynamoDB error code is worth retrying.
pub fn is_retryable_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "LimitExceededException"
    )
}

/// A table that takes batches of puts.
pub trait ItemTable: Send + Sync {
    /// Puts `items` (at most [`MAX_BATCH_ITEMS`], distinct keys): those the table did
    /// not process, to be sent again.
    fn batch_write(
        &self,
        items: Vec<Item>,
    ) -> impl Future<Output = Result<Vec<Item>, ItemTableError>> + Send;

    /// The table's name, for errors and logs.
    fn name(&self) -> &str;
}

impl<T: ItemTable> ItemTable for Arc<T> {
    fn batch_write(
        &self,
        items: Vec<Item>,
    ) -> impl Future<Output = Result<Vec<Item>, ItemTableError>> + Send {
        (**self).batch_write(items)
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

/// A DynamoDB table, through the SDK client of `chief_config::aws::AwsClients::dynamodb`.
#[derive(Debug, Clone)]
pub struct DynamoDbItemTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    schema: KeySchema,
}

impl DynamoDbItemTable {
    /// Writes to `table`, whose key is `schema`.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        schema: KeySchema,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            schema,
        }
    }

    fn key_of(&self, attributes: &HashMap<String, AttributeValue>) -> Vec<String> {
        std::iter::once(&self.schema.partition)
            .chain(self.schema.sort.as_ref())
            .map(|(name, _)| match attributes.get(name) {
                Some(AttributeValue::N(v) | AttributeValue::S(v)) => v.clone(),
                _ => String::new(),
            })
            .collect()
    }
}

impl ItemTable for DynamoDbItemTable {
    async fn batch_write(&self, items: Vec<Item>) -> Result<Vec<Item>, ItemTableError> {
        let error = |message: String, retryable: bool| ItemTableError {
            operation: "BatchWriteItem",
            table: self.table.clone(),
            message,
            retryable,
        };
        let requests = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item.attributes))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| error(e.to_string(), false))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .batch_write_item()
            .request_items(&self.table, requests)
            .send()
            .await
            .map_err(|e| {
                let retryable = match &e {
                    aws_sdk_dynamodb::error::SdkError::ServiceError(s) => {
                        s.err().code().is_some_and(is_retryable_code)
                            || s.raw().status().as_u16() >= 500
                    }
                    aws_sdk_dynamodb::error::SdkError::TimeoutError(_)
                    | aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)
                    | aws_sdk_dynamodb::error::SdkError::ResponseError(_) => true,
                    _ => false,
                };
                error(DisplayErrorContext(&e).to_string(), retryable)
            })?;
        let unprocessed = out
            .unprocessed_items()
            .and_then(|by_table| by_table.get(&self.table))
            .map(|requests| {
                requests
                    .iter()
                    .filter_map(|r| r.put_request())
                    .map(|put| Item {
                        key: self.key_of(put.item()),
                        attributes: put.item().clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(unprocessed)
    }

    fn name(&self) -> &str {
        &self.table
    }
}

/// Creates `table` (on demand) with the key `schema` if it does not exist, and waits until
/// it is `ACTIVE` (at most 60 s): whether it was created.
///
/// # Errors
/// [`ItemTableError`] when the table cannot be created or described, or does not become
/// active.
pub async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    schema: &KeySchema,
) -> Result<bool, ItemTableError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType as DdbKeyType,
        ScalarAttributeType, TableStatus,
    };
    let error = |operation: &'static str, message: String| ItemTableError {
        operation,
        table: table.to_owned(),
        message,
        retryable: false,
    };
    let keys = std::iter::once((&schema.partition, DdbKeyType::Hash))
        .chain(schema.sort.as_ref().map(|k| (k, DdbKeyType::Range)));
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest);
    for ((name, kind), key_type) in keys {
        let scalar = match kind {
            KeyType::Number => ScalarAttributeType::N,
            KeyType::String => ScalarAttributeType::S,
        };
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(scalar)
                    .build()
                    .map_err(|e| error("CreateTable", e.to_string()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(key_type)
                    .build()
                    .map_err(|e| error("CreateTable", e.to_string()))?,
            );
    }
    let created = match request.send().await {
        Ok(_) => true,
        Err(e) if e.code() == Some("ResourceInUseException") => false,
        Err(e) => return Err(error("CreateTable", DisplayErrorContext(&e).to_string())),
    };
    for _ in 0..600 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| error("DescribeTable", DisplayErrorContext(&e).to_string()))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(created);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(error("DescribeTable", "not ACTIVE after 60 s".to_owned()))
}

/// Items in memory, by key (tests, benchmarks).
#[derive(Debug, Default)]
pub struct MemoryItemTable {
    items: Mutex<BTreeMap<Vec<String>, HashMap<String, AttributeValue>>>,
    calls: AtomicU64,
}

impl MemoryItemTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every item, by key.
    pub fn items(&self) -> BTreeMap<Vec<String>, HashMap<String, AttributeValue>> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// `BatchWriteItem` calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

impl ItemTable for MemoryItemTable {
    async fn batch_write(&self, items: Vec<Item>) -> Result<Vec<Item>, ItemTableError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut stored = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for item in items {
            stored.insert(item.key, item.attributes);
        }
        Ok(Vec::new())
    }

    fn name(&self) -> &str {
        "memory"
    }
}

/// Wraps a table and misbehaves as DynamoDB does under load: refuses whole calls with
/// `ProvisionedThroughputExceededException`, or writes only the first half of a call's
/// items and hands the rest back as unprocessed. Counts what it did, so that a test can
/// prove its faults happened.
#[derive(Debug)]
pub struct FaultyItemTable<T> {
    inner: T,
    throttle_every: u64,
    unprocess_every: u64,
    calls: AtomicU64,
    throttled: AtomicU64,
    unprocessed: AtomicU64,
}

impl<T> FaultyItemTable<T> {
    /// Every `throttle_every`-th call is refused and every `unprocess_every`-th call
    /// leaves half its items unprocessed (0: never).
    pub fn new(inner: T, throttle_every: u64, unprocess_every: u64) -> Self {
        Self {
            inner,
            throttle_every,
            unprocess_every,
            calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            unprocessed: AtomicU64::new(0),
        }
    }

    /// Calls refused so far.
    pub fn throttled_calls(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Items handed back unprocessed so far.
    pub fn unprocessed_items(&self) -> u64 {
        self.unprocessed.load(Ordering::Relaxed)
    }

    /// The wrapped table.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: ItemTable> ItemTable for FaultyItemTable<T> {
    async fn batch_write(&self, mut items: Vec<Item>) -> Result<Vec<Item>, ItemTableError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.throttle_every > 0 && call.is_multiple_of(self.throttle_every) {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(ItemTableError {
                operation: "BatchWriteItem",
                table: self.inner.name().to_owned(),
                message: "ProvisionedThroughputExceededException: injected by FaultyItemTable"
                    .to_owned(),
                retryable: true,
            });
        }
        let mut left = Vec::new();
        if self.unprocess_every > 0 && call.is_multiple_of(self.unprocess_every) && items.len() > 1
        {
            left = items.split_off(items.len() / 2);
            self.unprocessed
                .fetch_add(left.len() as u64, Ordering::Relaxed);
        }
        let mut unprocessed = self.inner.batch_write(items).await?;
        unprocessed.extend(left);
        Ok(unprocessed)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

/// What [`write_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Items written (after de-duplication by key).
    pub items: usize,
    /// `BatchWriteItem` requests sent.
    pub requests: usize,
    /// Items sent again because they came back unprocessed.
    pub retried_items: usize,
    /// Requests refused and sent again (throttling, 5xx).
    pub retried_requests: usize,
}

/// Writes every item of `items` to `table`: de-duplicated by key (the last wins),
/// `concurrency` requests of up to 25 items at once, unprocessed items and refused
/// requests sent again with `retry`'s back-off.
///
/// # Errors
/// [`ItemTableError`] when a request fails for good, or still fails when the policy's
/// deadline has passed (nothing is dropped: the caller keeps the records and does not
/// checkpoint them).
pub async fn write_all<T: ItemTable>(
    table: &T,
    items: Vec<Item>,
    retry: &RetryPolicy,
    concurrency: usize,
) -> Result<WriteOutcome, ItemTableError> {
    let mut by_key: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let mut unique: Vec<Option<Item>> = Vec::with_capacity(items.len());
    for item in items {
        match by_key.get(&item.key) {
            Some(&i) => unique[i] = Some(item),
            None => {
                by_key.insert(item.key.clone(), unique.len());
                unique.push(Some(item));
            }
        }
    }
    let unique: Vec<Item> = unique.into_iter().flatten().collect();
    let mut outcome = WriteOutcome {
        items: unique.len(),
        ..WriteOutcome::default()
    };
    let mut chunks: Vec<Vec<Item>> = Vec::new();
    let mut rest = unique;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(MAX_BATCH_ITEMS));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let concurrency = concurrency.max(1);
    let started = Instant::now();
    let mut pending: std::collections::VecDeque<(Vec<Item>, u32)> =
        chunks.into_iter().map(|c| (c, 0)).collect();
    while !pending.is_empty() {
        let round: Vec<(Vec<Item>, u32)> = (0..concurrency.min(pending.len()))
            .filter_map(|_| pending.pop_front())
            .collect();
        let results =
            futures_util::future::join_all(round.into_iter().map(|(chunk, attempt)| async move {
                if attempt > 0 {
                    tokio::time::sleep(retry.jittered(attempt)).await;
                }
                let sent = chunk.clone();
                (table.batch_write(chunk).await, sent, attempt)
            }))
            .await;
        for (result, sent, attempt) in results {
            outcome.requests += 1;
            match result {
                Ok(unprocessed) if unprocessed.is_empty() => {}
                Ok(unprocessed) => {
                    outcome.retried_items += unprocessed.len();
                    if !retry.allows(started.elapsed()) {
                        return Err(ItemTableError {
                            operation: "BatchWriteItem",
                            table: table.name().to_owned(),
                            message: format!(
                                "{} items still unprocessed after {:?}",
                                unprocessed.len(),
                                started.elapsed()
                            ),
                            retryable: true,
                        });
                    }
                    tracing::debug!(
                        table = table.name(),
                        unprocessed = unprocessed.len(),
                        "unprocessed items; sending them again"
                    );
                    pending.push_back((unprocessed, attempt + 1));
                }
                Err(e) if e.retryable && retry.allows(started.elapsed()) => {
                    outcome.retried_requests += 1;
                    tracing::debug!(table = table.name(), error = %e, "request refused; sending it again");
                    pending.push_back((sent, attempt + 1));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> KeySchema {
        KeySchema {
            partition: ("orderId".into(), KeyType::Number),
            sort: Some(("itemId".into(), KeyType::Number)),
        }
    }

    fn item(order: u64, item: u64, name: &str) -> Item {
        Item::from_json(
            format!(r#"{{"orderId":{order},"itemId":{item},"productName":"{name}","price":12.30,"tags":["a",1],"m":{{"x":null,"ok":true}}}}"#)
                .as_bytes(),
            &schema(),
        )
        .expect("item")
    }

    #[test]
    fn json_becomes_an_item_with_exact_numbers_and_checked_keys() {
        let i = item(10000001, 999900001, "Sleek Silk Hat");
        assert_eq!(i.key, vec!["10000001".to_owned(), "999900001".to_owned()]);
        assert_eq!(
            i.attributes["orderId"],
            AttributeValue::N("10000001".into())
        );
        assert_eq!(i.attributes["price"], AttributeValue::N("12.3".into()));
        assert_eq!(
            i.attributes["tags"],
            AttributeValue::L(vec![
                AttributeValue::S("a".into()),
                AttributeValue::N("1".into())
            ])
        );
        // And back: the record's JSON, attribute by attribute.
        for (k, v) in &i.attributes {
            let back = json_of(v).expect("a JSON type");
            assert_eq!(attribute(&back), *v, "{k}");
        }
        let AttributeValue::M(m) = &i.attributes["m"] else {
            panic!("a map");
        };
        assert_eq!(m["x"], AttributeValue::Null(true));
        assert_eq!(m["ok"], AttributeValue::Bool(true));
        for (bad, why) in [
            (&b"nope"[..], "not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"itemId":1}"#, "key attribute `orderId`: missing"),
            (
                br#"{"orderId":"1","itemId":1}"#,
                "key attribute `orderId`: not a number",
            ),
        ] {
            let e = Item::from_json(bad, &schema()).expect_err("refused");
            assert!(e.to_string().starts_with(why), "{e}");
        }
    }

    #[test]
    fn retryable_codes() {
        assert!(is_retryable_code("ProvisionedThroughputExceededException"));
        assert!(is_retryable_code("ThrottlingException"));
        assert!(!is_retryable_code("ResourceNotFoundException"));
        assert!(!is_retryable_code("ValidationException"));
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial_backoff_ms: 1,
            max_backoff_ms: 5,
            multiplier: 2.0,
            deadline_ms: 10_000,
        }
    }

    #[tokio::test]
    async fn throttled_calls_and_unprocessed_items_are_sent_again_until_every_item_is_in() {
        let table = FaultyItemTable::new(MemoryItemTable::new(), 3, 2);
        let items: Vec<Item> = (0..1_000).map(|i| item(i / 2, i % 2, "x")).collect();
        let outcome = write_all(&table, items, &fast(), 4).await.expect("written");
        assert!(table.throttled_calls() > 0, "no call was throttled");
        assert!(
            table.unprocessed_items() > 0,
            "no item came back unprocessed"
        );
        assert_eq!(outcome.items, 1_000);
        assert_eq!(outcome.retried_requests as u64, table.throttled_calls());
        assert_eq!(outcome.retried_items as u64, table.unprocessed_items());
        let stored = table.inner().items();
        assert_eq!(stored.len(), 1_000);
        for i in 0..1_000u64 {
            assert!(
                stored.contains_key(&vec![(i / 2).to_string(), (i % 2).to_string()]),
                "{i}"
            );
        }
    }

    #[tokio::test]
    async fn the_last_write_of_a_key_wins_and_a_deadline_ends_the_retries() {
        let table = MemoryItemTable::new();
        let items = vec![item(1, 1, "old"), item(1, 2, "b"), item(1, 1, "new")];
        let outcome = write_all(&table, items, &fast(), 2).await.expect("written");
        assert_eq!(outcome.items, 2);
        assert_eq!(
            table.items()[&vec!["1".to_owned(), "1".to_owned()]]["productName"],
            AttributeValue::S("new".into())
        );
        // Every call refused: an error once the deadline passes, never a silent drop.
        let refusing = FaultyItemTable::new(MemoryItemTable::new(), 1, 0);
        let policy = RetryPolicy {
            deadline_ms: 50,
            ..fast()
        };
        let e = write_all(&refusing, vec![item(1, 1, "x")], &policy, 1)
            .await
            .expect_err("refused for good");
        assert!(e.retryable, "{e}");
        assert!(refusing.inner().items().is_empty());
    }
}
