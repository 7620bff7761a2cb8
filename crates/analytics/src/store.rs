//! Where the two stages meet: one DynamoDB table per application (`pk`, `sk` strings)
//! holding every shard's partials, progress, late and bad records, the windows waiting
//! for their result, and the alerts sent — with an in-memory twin for tests and
//! benchmarks.
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | a shard's partial of a window (first write stays) | `partial#<start>#<end>` | shard |
//! | a window with partials and no result yet | `pending` | `<start>#<end>` |
//! | a window's result written | `result` | `<start>#<end>` |
//! | a shard's progress | `progress` | shard |
//! | a late or bad record (by position: a replay writes the same item) | `late#<shard>` / `bad#<shard>` | `<sequence>#<sub-sequence>` |
//! | an alert sent (conditional: once per window and alert) | `alert` | alert id |

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use serde::{Deserialize, Serialize};

use crate::partial::Partial;
use crate::window::Window;

/// A store call that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("window store {table}: {operation}: {message}")]
pub struct StoreError {
    /// The table.
    pub table: String,
    /// The call.
    pub operation: &'static str,
    /// Why.
    pub message: String,
    /// No retry can help (the table is missing, access is denied).
    pub fatal: bool,
}

/// What a shard's first stage reports to the second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProgress {
    /// The shard.
    pub shard: String,
    /// Its newest record time; the partials of every window it closed are stored.
    pub max_time: Option<i64>,
    /// Read to its end: every partial of it is stored.
    pub finished: bool,
    /// Whether its last read found it caught up with the shard's newest record.
    pub caught_up: bool,
    /// When (wall clock, ms) it last had a record (or its worker started).
    pub last_record_ms: i64,
    /// When (wall clock, ms) its worker last reported.
    pub heartbeat_ms: i64,
    /// The checkpoint last written (`<sequence>#<sub-sequence>`), and the newest record
    /// time at it: restored by the next owner.
    pub resume_position: Option<String>,
    /// The newest record time at `resume_position`.
    pub resume_max_time: Option<i64>,
}

/// A late or bad record, kept by its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The shard.
    pub shard: String,
    /// `<sequence>#<sub-sequence>`.
    pub position: String,
    /// `late` or `bad`.
    pub kind: RejectKind,
    /// Why: the windows it missed, or the parse error.
    pub reason: String,
    /// Its time (late records).
    pub time_ms: Option<i64>,
    /// Its bytes (base64 in the item).
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Why a record was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectKind {
    /// Later than its window allows.
    Late,
    /// Does not parse.
    Bad,
}

impl RejectKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Late => "late",
            Self::Bad => "bad",
        }
    }
}

fn window_key(w: &Window) -> String {
    format!("{}#{}", w.start_ms, w.end_ms)
}

fn parse_window(key: &str) -> Option<Window> {
    let (a, b) = key.split_once('#')?;
    Some(Window {
        start_ms: a.parse().ok()?,
        end_ms: b.parse().ok()?,
    })
}

/// The store of one application.
pub trait WindowStore: Send + Sync + Clone + 'static {
    /// Creates the table if it does not exist.
    fn ensure(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a shard's partial (a partial already stored for the shard and window stays:
    /// it is the whole one) and marks its window pending.
    fn put_partial(&self, partial: &Partial)
    -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores late and bad records (again: same items).
    fn put_rejected(
        &self,
        records: &[Rejected],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Writes a shard's progress.
    fn put_progress(
        &self,
        progress: &StoredProgress,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every shard's progress.
    fn progress(&self) -> impl Future<Output = Result<Vec<StoredProgress>, StoreError>> + Send;
    /// Windows with partials and no result yet.
    fn pending(&self) -> impl Future<Output = Result<Vec<Window>, StoreError>> + Send;
    /// The partials of a window.
    fn partials(
        &self,
        window: Window,
    ) -> impl Future<Output = Result<Vec<Partial>, StoreError>> + Send;
    /// Whether a window's result was written.
    fn has_result(&self, window: Window) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records that a window's result is written, and that it is no longer pending.
    fn put_result(
        &self,
        window: Window,
        rows: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Drops a window from the pending ones.
    fn clear_pending(&self, window: Window) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Claims an alert id before it is sent: `true` for the first claim only.
    fn claim_alert(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Marks a claimed alert sent.
    fn confirm_alert(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Drops the claim of an alert whose send failed (it is tried again).
    fn release_alert(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Whether an alert is claimed, and then whether it was confirmed sent.
    fn alert_state(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<bool>, StoreError>> + Send;
    /// Every late or bad record stored of `shard`.
    fn rejected(
        &self,
        shard: &str,
        kind: RejectKind,
    ) -> impl Future<Output = Result<Vec<Rejected>, StoreError>> + Send;
}

/// The in-memory twin.
#[derive(Debug, Clone, Default)]
pub struct MemoryWindowStore {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Debug, Default)]
struct Memory {
    partials: BTreeMap<(Window, String), Partial>,
    pending: std::collections::BTreeSet<Window>,
    results: BTreeMap<Window, usize>,
    progress: BTreeMap<String, StoredProgress>,
    rejected: BTreeMap<(String, RejectKind, String), Rejected>,
    alerts: BTreeMap<String, bool>,
    /// `put_result` calls still to fail (a fault of a test: a crash after the outputs).
    fail_put_results: usize,
}

impl MemoryWindowStore {
    /// Fails the next `n` [`WindowStore::put_result`] calls, as a worker that dies after
    /// writing a window's outputs and sending its alerts would leave it.
    pub fn fail_next_put_results(&self, n: usize) {
        self.lock().fail_put_results = n;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl WindowStore for MemoryWindowStore {
    async fn ensure(&self) -> Result<(), StoreError> {
        Ok(())
    }
    async fn put_partial(&self, partial: &Partial) -> Result<(), StoreError> {
        let mut m = self.lock();
        m.partials
            .entry((partial.window, partial.shard.clone()))
            .or_insert_with(|| partial.clone());
        m.pending.insert(partial.window);
        Ok(())
    }
    async fn put_rejected(&self, records: &[Rejected]) -> Result<(), StoreError> {
        let mut m = self.lock();
        for r in records {
            m.rejected
                .insert((r.shard.clone(), r.kind, r.position.clone()), r.clone());
        }
        Ok(())
    }
    async fn put_progress(&self, progress: &StoredProgress) -> Result<(), StoreError> {
        self.lock()
            .progress
            .insert(progress.shard.clone(), progress.clone());
        Ok(())
    }
    async fn progress(&self) -> Result<Vec<StoredProgress>, StoreError> {
        Ok(self.lock().progress.values().cloned().collect())
    }
    async fn pending(&self) -> Result<Vec<Window>, StoreError> {
        Ok(self.lock().pending.iter().copied().collect())
    }
    async fn partials(&self, window: Window) -> Result<Vec<Partial>, StoreError> {
        Ok(self
            .lock()
            .partials
            .iter()
            .filter(|((w, _), _)| *w == window)
            .map(|(_, p)| p.clone())
            .collect())
    }
    async fn has_result(&self, window: Window) -> Result<bool, StoreError> {
        Ok(self.lock().results.contains_key(&window))
    }
    async fn put_result(&self, window: Window, rows: usize) -> Result<(), StoreError> {
        let mut m = self.lock();
        if m.fail_put_results > 0 {
            m.fail_put_results -= 1;
            return Err(StoreError {
                table: "memory".into(),
                operation: "PutItem",
                message: "refused (a fault of the test)".into(),
                fatal: false,
            });
        }
        m.results.insert(window, rows);
        m.pending.remove(&window);
        Ok(())
    }
    async fn clear_pending(&self, window: Window) -> Result<(), StoreError> {
        self.lock().pending.remove(&window);
        Ok(())
    }
    async fn claim_alert(&self, id: &str) -> Result<bool, StoreError> {
        let mut m = self.lock();
        if m.alerts.contains_key(id) {
            return Ok(false);
        }
        m.alerts.insert(id.to_owned(), false);
        Ok(true)
    }
    async fn confirm_alert(&self, id: &str) -> Result<(), StoreError> {
        self.lock().alerts.insert(id.to_owned(), true);
        Ok(())
    }
    async fn release_alert(&self, id: &str) -> Result<(), StoreError> {
        self.lock().alerts.remove(id);
        Ok(())
    }
    async fn alert_state(&self, id: &str) -> Result<Option<bool>, StoreError> {
        Ok(self.lock().alerts.get(id).copied())
    }
    async fn rejected(&self, shard: &str, kind: RejectKind) -> Result<Vec<Rejected>, StoreError> {
        Ok(self
            .lock()
            .rejected
            .iter()
            .filter(|((s, k, _), _)| s == shard && *k == kind)
            .map(|(_, r)| r.clone())
            .collect())
    }
}

/// Creates `table` (on-demand, string keys `keys`) unless it exists, and waits until it
/// is ACTIVE; `true` if this call created it. An error is `(operation, message, fatal)`.
pub(crate) async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    keys: &[(&str, KeyType)],
) -> Result<bool, (&'static str, String, bool)> {
    fn error<E, R>(operation: &'static str, err: &SdkError<E, R>) -> (&'static str, String, bool)
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let message = match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => chief_stream::error_line(err),
        };
        (
            operation,
            message,
            err.code().is_some_and(chief_stream::is_fatal_code),
        )
    }
    let exists = match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e) if e.code() == Some("ResourceNotFoundException") => false,
        Err(e) => return Err(error("DescribeTable", &e)),
    };
    let mut created = false;
    if !exists {
        let schema =
            |why: aws_sdk_dynamodb::error::BuildError| ("CreateTable", why.to_string(), true);
        let mut request = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest);
        for (name, kind) in keys {
            request = request
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(*name)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(schema)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(*name)
                        .key_type(kind.clone())
                        .build()
                        .map_err(schema)?,
                );
        }
        match request.send().await {
            Ok(_) => {
                tracing::info!(table, "created the table");
                created = true;
            }
            // Another worker created it first.
            Err(e) if e.code() == Some("ResourceInUseException") => {}
            Err(e) => return Err(error("CreateTable", &e)),
        }
    }
    for _ in 0..600 {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| error("DescribeTable", &e))?;
        if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(created);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err((
        "DescribeTable",
        "the table did not become ACTIVE within 60 s".to_owned(),
        false,
    ))
}

/// The DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbWindowStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl DynamoDbWindowStore {
    /// The store in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn error<E, R>(&self, operation: &'static str, err: &SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        StoreError {
            table: self.table.clone(),
            operation,
            fatal: err.code().is_some_and(chief_stream::is_fatal_code),
            message: match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => chief_stream::error_line(err),
            },
        }
    }

    fn bad_item(&self, operation: &'static str, why: impl std::fmt::Display) -> StoreError {
        StoreError {
            table: self.table.clone(),
            operation,
            message: format!("unreadable item: {why}"),
            fatal: false,
        }
    }

    async fn put(
        &self,
        operation: &'static str,
        item: HashMap<String, AttributeValue>,
        if_absent: bool,
    ) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        if if_absent {
            request = request.condition_expression("attribute_not_exists(pk)");
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if if_absent && e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.error(operation, &e)),
        }
    }

    /// Every item of partition `pk`, in `sk` order.
    async fn query(&self, pk: &str) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.error("Query", &e))?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    fn json_of<T: serde::de::DeserializeOwned>(
        &self,
        item: &HashMap<String, AttributeValue>,
        operation: &'static str,
    ) -> Result<T, StoreError> {
        let text = item
            .get("body")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| self.bad_item(operation, "no body"))?;
        serde_json::from_str(text).map_err(|e| self.bad_item(operation, e))
    }

    fn item(pk: String, sk: String, body: String) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(sk)),
            ("body".to_owned(), s(body)),
        ])
    }
}

impl WindowStore for DynamoDbWindowStore {
    async fn ensure(&self) -> Result<(), StoreError> {
        ensure_table(
            &self.client,
            &self.table,
            &[("pk", KeyType::Hash), ("sk", KeyType::Range)],
        )
        .await
        .map_err(|(operation, message, fatal)| StoreError {
            table: self.table.clone(),
            operation,
            message,
            fatal,
        })?;
        Ok(())
    }

    async fn put_partial(&self, partial: &Partial) -> Result<(), StoreError> {
        let body = serde_json::to_string(partial).map_err(|e| self.bad_item("PutItem", e))?;
        let key = window_key(&partial.window);
        self.put(
            "PutItem",
            Self::item(format!("partial#{key}"), partial.shard.clone(), body),
            true,
        )
        .await?;
        self.put(
            "PutItem",
            Self::item("pending".into(), key, String::new()),
            false,
        )
        .await?;
        Ok(())
    }

    async fn put_rejected(&self, records: &[Rejected]) -> Result<(), StoreError> {
        for r in records {
            let body = serde_json::to_string(r).map_err(|e| self.bad_item("PutItem", e))?;
            self.put(
                "PutItem",
                Self::item(
                    format!("{}#{}", r.kind.as_str(), r.shard),
                    r.position.clone(),
                    body,
                ),
                false,
            )
            .await?;
        }
        Ok(())
    }

    async fn put_progress(&self, progress: &StoredProgress) -> Result<(), StoreError> {
        let body = serde_json::to_string(progress).map_err(|e| self.bad_item("PutItem", e))?;
        let mut item = Self::item("progress".into(), progress.shard.clone(), body);
        item.insert("heartbeat_ms".into(), n(progress.heartbeat_ms));
        self.put("PutItem", item, false).await?;
        Ok(())
    }

    async fn progress(&self) -> Result<Vec<StoredProgress>, StoreError> {
        self.query("progress")
            .await?
            .iter()
            .map(|item| self.json_of(item, "Query"))
            .collect()
    }

    async fn pending(&self) -> Result<Vec<Window>, StoreError> {
        Ok(self
            .query("pending")
            .await?
            .iter()
            .filter_map(|item| item.get("sk").and_then(|v| v.as_s().ok()))
            .filter_map(|k| parse_window(k))
            .collect())
    }

    async fn partials(&self, window: Window) -> Result<Vec<Partial>, StoreError> {
        self.query(&format!("partial#{}", window_key(&window)))
            .await?
            .iter()
            .map(|item| self.json_of(item, "Query"))
            .collect()
    }

    async fn has_result(&self, window: Window) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("result"))
            .key("sk", s(window_key(&window)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        Ok(out.item.is_some())
    }

    async fn put_result(&self, window: Window, rows: usize) -> Result<(), StoreError> {
        let mut item = Self::item("result".into(), window_key(&window), String::new());
        item.insert("rows".into(), n(rows));
        self.put("PutItem", item, false).await?;
        self.clear_pending(window).await
    }

    async fn clear_pending(&self, window: Window) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s("pending"))
            .key("sk", s(window_key(&window)))
            .send()
            .await
            .map_err(|e| self.error("DeleteItem", &e))?;
        Ok(())
    }

    async fn claim_alert(&self, id: &str) -> Result<bool, StoreError> {
        let mut item = Self::item("alert".into(), id.to_owned(), String::new());
        item.insert("sent".into(), AttributeValue::Bool(false));
        self.put("PutItem", item, true).await
    }

    async fn confirm_alert(&self, id: &str) -> Result<(), StoreError> {
        let mut item = Self::item("alert".into(), id.to_owned(), String::new());
        item.insert("sent".into(), AttributeValue::Bool(true));
        self.put("PutItem", item, false).await?;
        Ok(())
    }

    async fn release_alert(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s("alert"))
            .key("sk", s(id))
            .send()
            .await
            .map_err(|e| self.error("DeleteItem", &e))?;
        Ok(())
    }

    async fn alert_state(&self, id: &str) -> Result<Option<bool>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s("alert"))
            .key("sk", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error("GetItem", &e))?;
        Ok(out.item.map(|item| {
            item.get("sent")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false)
        }))
    }

    async fn rejected(&self, shard: &str, kind: RejectKind) -> Result<Vec<Rejected>, StoreError> {
        self.query(&format!("{}#{shard}", kind.as_str()))
            .await?
            .iter()
            .map(|item| self.json_of(item, "Query"))
            .collect()
    }
}
