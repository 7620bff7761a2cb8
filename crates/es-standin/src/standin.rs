//! [`Standin`]: the in-memory indices, documents, faults and counters, and what each REST
//! call does to them. The HTTP layer ([`crate::server`]) and the routing
//! ([`crate::rest`]) are separate; everything here is synchronous and quick (the store is
//! locked briefly; `_bulk` bodies are parsed before it is locked).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::StandinError;
use crate::bulk::{self, Action, Operation, Source};
use crate::faults::{FaultState, Faults, ItemFault};
use crate::wire::{
    Acknowledged, BulkItem, BulkResponse, CountResponse, CreateIndexResponse, ErrorCause,
    ErrorResponse, GetMetadata, ItemBody, ReadShards, RefreshResponse, Shards,
};

/// Settings of a [`Standin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandinConfig {
    /// The largest request body accepted (Elasticsearch's `http.max_content_length`);
    /// larger ones get 413. Default 100 MiB, as in Elasticsearch.
    pub max_body_bytes: usize,
    /// `(user, password)`: every request must carry them as HTTP basic auth, else it gets
    /// Elasticsearch's 401 `security_exception` (as a cluster with security on). Default:
    /// none (no authentication, as the local stack runs it).
    pub basic_auth: Option<(String, String)>,
    /// Every request must be signed with AWS SigV4 with this key, as Amazon OpenSearch
    /// Service with IAM authentication requires; else 403 with AWS's message. Default:
    /// none.
    pub sigv4: Option<crate::sigv4::SigV4Key>,
}

impl Default for StandinConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 100 * 1024 * 1024,
            basic_auth: None,
            sigv4: None,
        }
    }
}

impl StandinConfig {
    /// Whether a request with this `Authorization` header may pass.
    pub(crate) fn authenticates(&self, header: Option<&[u8]>) -> bool {
        let Some((user, password)) = &self.basic_auth else {
            return true;
        };
        use base64::Engine;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        header == Some(expected.as_bytes())
    }
}

/// Counters of one index (kept across `DELETE /{index}`), served by
/// `GET /_standin/stats/{index}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexStats {
    /// `_bulk` requests that touched the index and were processed.
    pub bulk_requests: u64,
    /// `_bulk` items addressed to it (each retry counts again).
    pub bulk_items: u64,
    /// Items (and `_doc` writes) that created a document.
    pub created: u64,
    /// Items (and `_doc` writes) that overwrote one.
    pub updated: u64,
    /// Documents deleted.
    pub deleted: u64,
    /// Items rejected with 429 by fault injection.
    pub rejected_429: u64,
    /// Items rejected with 400 by fault injection.
    pub rejected_400: u64,
    /// Items whose source was not a JSON object (400 `document_parsing_exception`).
    pub invalid_sources: u64,
    /// `create` items whose id existed (409).
    pub conflicts: u64,
    /// `_bulk` requests failed as a whole by fault injection.
    pub failed_requests: u64,
}

/// Which `Authorization` scheme a request carried. The credential itself is never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    None,
    Basic,
    ApiKey,
    Bearer,
    Other,
}

impl AuthScheme {
    pub fn of(header: Option<&[u8]>) -> Self {
        let Some(value) = header else {
            return AuthScheme::None;
        };
        let scheme = value.split(|b| *b == b' ').next().unwrap_or_default();
        if scheme.eq_ignore_ascii_case(b"basic") {
            AuthScheme::Basic
        } else if scheme.eq_ignore_ascii_case(b"apikey") {
            AuthScheme::ApiKey
        } else if scheme.eq_ignore_ascii_case(b"bearer") {
            AuthScheme::Bearer
        } else {
            AuthScheme::Other
        }
    }
}

/// How many requests came with each `Authorization` scheme.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuthCounts {
    /// No `Authorization` header.
    pub none: u64,
    /// `Basic …`.
    pub basic: u64,
    /// `ApiKey …`.
    pub api_key: u64,
    /// `Bearer …`.
    pub bearer: u64,
    /// Anything else.
    pub other: u64,
}

/// An answer: status, JSON body, and how long to hold it back (fault injection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub delay: Duration,
}

impl Reply {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::raw(status, Bytes::from(body)),
            Err(e) => Self::raw(
                500,
                Bytes::from(format!(
                    "{{\"error\":\"chief-es-standin cannot serialize its answer\",\"reason\":{:?}}}",
                    e.to_string()
                )),
            ),
        }
    }

    pub fn raw(status: u16, body: Bytes) -> Self {
        Self {
            status,
            body,
            delay: Duration::ZERO,
        }
    }

    pub fn empty(status: u16) -> Self {
        Self::raw(status, Bytes::new())
    }

    pub fn error(status: u16, cause: ErrorCause) -> Self {
        Self::json(status, &ErrorResponse::new(status, cause))
    }

    fn delayed(mut self, delay_ms: u64) -> Self {
        self.delay = Duration::from_millis(delay_ms);
        self
    }
}

#[derive(Debug)]
struct Doc {
    source: Bytes,
    version: u64,
    seq_no: u64,
}

#[derive(Debug)]
struct Index {
    uuid: String,
    created_ms: u64,
    mappings: Value,
    settings: Value,
    aliases: Value,
    docs: HashMap<String, Doc>,
    next_seq_no: u64,
}

enum Put {
    Created { version: u64, seq_no: u64 },
    Updated { version: u64, seq_no: u64 },
    Exists { version: u64 },
}

impl Index {
    fn put(&mut self, id: &str, source: Bytes, only_create: bool) -> Put {
        let seq_no = self.next_seq_no;
        match self.docs.get_mut(id) {
            Some(doc) if only_create => Put::Exists {
                version: doc.version,
            },
            Some(doc) => {
                self.next_seq_no += 1;
                doc.source = source;
                doc.version += 1;
                doc.seq_no = seq_no;
                Put::Updated {
                    version: doc.version,
                    seq_no,
                }
            }
            None => {
                self.next_seq_no += 1;
                self.docs.insert(
                    id.to_owned(),
                    Doc {
                        source,
                        version: 1,
                        seq_no,
                    },
                );
                Put::Created { version: 1, seq_no }
            }
        }
    }

    /// `(version, seq_no, found)`.
    fn delete(&mut self, id: &str) -> (u64, u64, bool) {
        let seq_no = self.next_seq_no;
        self.next_seq_no += 1;
        match self.docs.remove(id) {
            Some(doc) => (doc.version + 1, seq_no, true),
            None => (1, seq_no, false),
        }
    }
}

#[derive(Debug, Default)]
struct Store {
    indices: BTreeMap<String, Index>,
    faults: HashMap<String, FaultState>,
    stats: BTreeMap<String, IndexStats>,
    auth: AuthCounts,
    requests: u64,
    ids: u64,
}

impl Store {
    fn stats(&mut self, index: &str) -> &mut IndexStats {
        self.stats.entry(index.to_owned()).or_default()
    }

    fn next_random(&mut self) -> u64 {
        self.ids += 1;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        splitmix64(nanos ^ self.ids.rotate_left(40))
    }

    /// A random URL-safe base64 id of `len` characters (index uuids are 22, document
    /// ids 20, as in Elasticsearch).
    fn random_id(&mut self, len: usize) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(len);
        let mut bits = 0u64;
        let mut left = 0;
        for _ in 0..len {
            if left < 6 {
                bits = self.next_random();
                left = 64;
            }
            out.push(char::from(ALPHABET[(bits & 63) as usize]));
            bits >>= 6;
            left -= 6;
        }
        out
    }

    /// Creates `index` (already validated) with an empty mapping if it is missing, as
    /// Elasticsearch does for a write to a missing index.
    fn auto_create(&mut self, index: &str) -> &mut Index {
        let uuid = (!self.indices.contains_key(index)).then(|| self.random_id(22));
        self.indices.entry(index.to_owned()).or_insert_with(|| {
            tracing::info!(index, "index created by a write (auto-create)");
            new_index(uuid.unwrap_or_default(), json!({}), json!({}), json!({}))
        })
    }

    fn bulk_item(&mut self, op: Operation, index: &str) -> BulkItem {
        let wrap = match op.action {
            Action::Index => BulkItem::Index,
            Action::Create => BulkItem::Create,
            Action::Update => BulkItem::Update,
            Action::Delete => BulkItem::Delete,
        };
        let id = op.id.as_deref();
        if let Err(why) = validate_index_name(index) {
            return wrap(ItemBody::failed(
                index,
                id,
                400,
                ErrorCause::invalid_index_name(index, why),
            ));
        }
        if op.action == Action::Delete && !self.indices.contains_key(index) {
            return wrap(ItemBody::failed(
                index,
                id,
                404,
                ErrorCause::index_not_found(index),
            ));
        }
        self.auto_create(index);
        self.stats(index).bulk_items += 1;
        let fault = self.faults.get_mut(index).and_then(|f| {
            let fault = f.next_item()?;
            Some((fault, f.ratio(fault)))
        });
        match fault {
            Some((ItemFault::Reject429, ratio)) => {
                self.stats(index).rejected_429 += 1;
                return wrap(ItemBody::failed(index, id, 429, rejected_429(ratio)));
            }
            Some((ItemFault::Reject400, ratio)) => {
                self.stats(index).rejected_400 += 1;
                return wrap(ItemBody::failed(
                    index,
                    id,
                    400,
                    rejected_400(ratio, id.unwrap_or("")),
                ));
            }
            None => {}
        }
        match (op.action, op.source) {
            (Action::Index | Action::Create, Some(Source::Valid(source))) => {
                let id = match op.id {
                    Some(id) => id,
                    None => self.random_id(20),
                };
                let body = match self.write(index, &id, source, op.action == Action::Create) {
                    Ok(body) => body,
                    Err((status, cause)) => ItemBody::failed(index, Some(&id), status, cause),
                };
                wrap(body)
            }
            (_, Some(Source::Invalid(cause))) => {
                self.stats(index).invalid_sources += 1;
                wrap(ItemBody::failed(index, id, 400, cause))
            }
            (Action::Delete, _) => {
                let id = id.unwrap_or_default();
                let (version, seq_no, found) = self.auto_create(index).delete(id);
                if found {
                    self.stats(index).deleted += 1;
                    wrap(ItemBody::written(
                        index, id, version, "deleted", seq_no, 200,
                    ))
                } else {
                    wrap(ItemBody::written(
                        index,
                        id,
                        version,
                        "not_found",
                        seq_no,
                        404,
                    ))
                }
            }
            (Action::Update, _) | (_, None) => wrap(ItemBody::failed(
                index,
                id,
                400,
                ErrorCause::new(
                    "illegal_argument_exception",
                    "chief-es-standin does not implement the bulk update action",
                ),
            )),
        }
    }

    /// Writes a document; the item body of the write, or the status and error.
    fn write(
        &mut self,
        index: &str,
        id: &str,
        source: Bytes,
        only_create: bool,
    ) -> Result<ItemBody, (u16, ErrorCause)> {
        let target = self.auto_create(index);
        let uuid = target.uuid.clone();
        // The source parsed when the request was read; here it meets the mapping.
        let checked = crate::document::parse(&source)
            .and_then(|doc| crate::document::check_mapping(&target.mappings, &doc, id));
        if let Err(cause) = checked {
            self.stats(index).invalid_sources += 1;
            return Err((400, cause));
        }
        let target = self.auto_create(index);
        match target.put(id, source, only_create) {
            Put::Created { version, seq_no } => {
                self.stats(index).created += 1;
                Ok(ItemBody::written(
                    index, id, version, "created", seq_no, 201,
                ))
            }
            Put::Updated { version, seq_no } => {
                self.stats(index).updated += 1;
                Ok(ItemBody::written(
                    index, id, version, "updated", seq_no, 200,
                ))
            }
            Put::Exists { version } => {
                self.stats(index).conflicts += 1;
                Err((409, ErrorCause::document_exists(index, &uuid, id, version)))
            }
        }
    }
}

fn new_index(uuid: String, mappings: Value, settings: Value, aliases: Value) -> Index {
    Index {
        uuid,
        created_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        mappings,
        settings,
        aliases,
        docs: HashMap::new(),
        next_seq_no: 0,
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rejected_429(ratio: f64) -> ErrorCause {
    ErrorCause::new(
        "es_rejected_execution_exception",
        format!(
            "rejected execution of primary operation [shard_detail=[0][P]] (chief-es-standin fault injection, reject_429_ratio={ratio})"
        ),
    )
}

fn rejected_400(ratio: f64, id: &str) -> ErrorCause {
    ErrorCause::new(
        "document_parsing_exception",
        format!(
            "[1:1] failed to parse: document with id '{id}' rejected (chief-es-standin fault injection, reject_400_ratio={ratio})"
        ),
    )
    .caused_by(ErrorCause::new(
        "illegal_argument_exception",
        "injected by chief-es-standin",
    ))
}

/// The error of a `_bulk` request failed as a whole by `fail_requests`.
fn request_failure(status: u16, index: &str, body_bytes: usize) -> ErrorCause {
    let note = format!("(chief-es-standin fault injection, fail_requests on [{index}])");
    match status {
        429 => ErrorCause::new(
            "es_rejected_execution_exception",
            format!(
                "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes={body_bytes}, coordinating_operation_bytes={body_bytes}, max_coordinating_and_primary_bytes=0] {note}"
            ),
        ),
        503 => ErrorCause::new(
            "cluster_block_exception",
            format!(
                "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized]; {note}"
            ),
        ),
        500..=599 => ErrorCause::new("illegal_state_exception", format!("internal error {note}")),
        _ => ErrorCause::new("illegal_argument_exception", format!("rejected {note}")),
    }
}

/// Elasticsearch's rules for index names (`MetadataCreateIndexService`); the reason is
/// the text Elasticsearch gives.
pub(crate) fn validate_index_name(name: &str) -> Result<(), &'static str> {
    const FORBIDDEN: &[char] = &['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.contains(FORBIDDEN) {
        return Err(
            "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?, #, :]",
        );
    }
    if name.starts_with(['_', '-', '+']) {
        return Err("must not start with '_', '-', or '+'");
    }
    if name != name.to_lowercase() {
        return Err("must be lowercase");
    }
    if name == "." || name == ".." {
        return Err("must not be '.' or '..'");
    }
    if name.len() > 255 {
        return Err("index name is too long, (more than 255 bytes)");
    }
    Ok(())
}

/// A dev-only, in-memory stand-in for the Elasticsearch REST calls chief makes. Cheap to
/// clone (shared state); serve it with [`crate::serve`].
#[derive(Debug, Clone)]
pub struct Standin {
    store: Arc<Mutex<Store>>,
    config: StandinConfig,
}

impl Default for Standin {
    fn default() -> Self {
        Self::new(StandinConfig::default())
    }
}

impl Standin {
    /// An empty stand-in: no indices, no faults.
    pub fn new(config: StandinConfig) -> Self {
        Self {
            store: Arc::default(),
            config,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &StandinConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the faults of `index` (what `PUT /_standin/faults/{index}` does); the item
    /// counting starts afresh.
    ///
    /// # Errors
    /// [`StandinError::InvalidFaults`] when a ratio or the status is out of range.
    pub fn set_faults(&self, index: &str, faults: Faults) -> Result<(), StandinError> {
        faults.validate().map_err(StandinError::InvalidFaults)?;
        tracing::info!(index, ?faults, "faults set");
        self.lock()
            .faults
            .insert(index.to_owned(), FaultState::new(faults));
        Ok(())
    }

    /// Removes the faults of `index`.
    pub fn clear_faults(&self, index: &str) {
        if self.lock().faults.remove(index).is_some() {
            tracing::info!(index, "faults cleared");
        }
    }

    /// The faults of `index` (with `fail_requests` counting down), if any are set.
    pub fn faults(&self, index: &str) -> Option<Faults> {
        self.lock().faults.get(index).map(FaultState::current)
    }

    /// Whether `index` exists.
    pub fn index_exists(&self, index: &str) -> bool {
        self.lock().indices.contains_key(index)
    }

    /// The mapping `index` was created with.
    pub fn mappings(&self, index: &str) -> Option<Value> {
        self.lock().indices.get(index).map(|i| i.mappings.clone())
    }

    /// How many documents `index` holds; `None` when it does not exist.
    pub fn count(&self, index: &str) -> Option<usize> {
        self.lock().indices.get(index).map(|i| i.docs.len())
    }

    /// The source stored under `id`, exactly as it was sent.
    pub fn source(&self, index: &str, id: &str) -> Option<Bytes> {
        self.lock()
            .indices
            .get(index)
            .and_then(|i| i.docs.get(id))
            .map(|d| d.source.clone())
    }

    /// The ids `index` holds, sorted.
    pub fn ids(&self, index: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .lock()
            .indices
            .get(index)
            .map(|i| i.docs.keys().cloned().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// The counters of `index` (zero when nothing touched it).
    pub fn stats(&self, index: &str) -> IndexStats {
        self.lock().stats.get(index).cloned().unwrap_or_default()
    }

    /// How many requests came with each `Authorization` scheme.
    pub fn auth_counts(&self) -> AuthCounts {
        self.lock().auth.clone()
    }

    pub(crate) fn record_request(&self, auth: AuthScheme) {
        let mut store = self.lock();
        store.requests += 1;
        let counts = &mut store.auth;
        match auth {
            AuthScheme::None => counts.none += 1,
            AuthScheme::Basic => counts.basic += 1,
            AuthScheme::ApiKey => counts.api_key += 1,
            AuthScheme::Bearer => counts.bearer += 1,
            AuthScheme::Other => counts.other += 1,
        }
    }

    // ------------------------------------------------------------------ indices

    pub(crate) fn index_exists_reply(&self, index: &str) -> Reply {
        Reply::empty(if self.index_exists(index) { 200 } else { 404 })
    }

    pub(crate) fn create_index(&self, index: &str, body: &[u8]) -> Reply {
        if let Err(why) = validate_index_name(index) {
            return Reply::error(400, ErrorCause::invalid_index_name(index, why));
        }
        if let Some(existing) = self.lock().indices.get(index) {
            return Reply::error(400, ErrorCause::index_already_exists(index, &existing.uuid));
        }
        let mut spec = match parse_object_body(body) {
            Ok(spec) => spec,
            Err(reply) => return reply,
        };
        if let Some(key) = spec
            .keys()
            .find(|k| !matches!(k.as_str(), "mappings" | "settings" | "aliases"))
        {
            return Reply::error(
                400,
                ErrorCause::new(
                    "parse_exception",
                    format!("unknown key [{key}] for create index"),
                ),
            );
        }
        let mut part = |key: &str| spec.remove(key).unwrap_or_else(|| json!({}));
        let (mappings, settings, aliases) = (part("mappings"), part("settings"), part("aliases"));
        if !mappings.is_object() {
            return Reply::error(
                400,
                ErrorCause::new(
                    "mapper_parsing_exception",
                    "Failed to parse mapping: mappings must be a JSON object",
                ),
            );
        }
        let mut store = self.lock();
        // Checked again under the lock: another request may have created it meanwhile.
        if let Some(existing) = store.indices.get(index) {
            return Reply::error(400, ErrorCause::index_already_exists(index, &existing.uuid));
        }
        let uuid = store.random_id(22);
        store.indices.insert(
            index.to_owned(),
            new_index(uuid, mappings, settings, aliases),
        );
        tracing::info!(index, "index created");
        Reply::json(
            200,
            &CreateIndexResponse {
                acknowledged: true,
                shards_acknowledged: true,
                index,
            },
        )
    }

    pub(crate) fn get_index(&self, index: &str) -> Reply {
        let store = self.lock();
        let Some(found) = store.indices.get(index) else {
            return Reply::error(404, ErrorCause::index_not_found(index));
        };
        let settings = json!({
            "index": {
                "creation_date": found.created_ms.to_string(),
                "number_of_shards": "1",
                "number_of_replicas": "1",
                "uuid": found.uuid,
                "provided_name": index,
                "chief_es_standin": "in-memory stand-in, settings are not applied",
                "given": found.settings,
            }
        });
        Reply::json(
            200,
            &json!({ index: {
                "aliases": found.aliases,
                "mappings": found.mappings,
                "settings": settings,
            }}),
        )
    }

    pub(crate) fn delete_index(&self, index: &str) -> Reply {
        if self.lock().indices.remove(index).is_none() {
            return Reply::error(404, ErrorCause::index_not_found(index));
        }
        tracing::info!(index, "index deleted");
        Reply::json(200, &Acknowledged { acknowledged: true })
    }

    pub(crate) fn refresh(&self, index: Option<&str>) -> Reply {
        if let Some(index) = index
            && !self.index_exists(index)
        {
            return Reply::error(404, ErrorCause::index_not_found(index));
        }
        Reply::json(
            200,
            &RefreshResponse {
                shards: Shards::WRITE,
            },
        )
    }

    pub(crate) fn count_reply(&self, index: Option<&str>, q: Option<&str>, body: &[u8]) -> Reply {
        if q.is_some() {
            return Reply::error(400, unsupported_query());
        }
        let spec = match parse_object_body(body) {
            Ok(spec) => spec,
            Err(reply) => return reply,
        };
        let match_all = json!({"match_all": {}});
        if spec
            .iter()
            .any(|(k, v)| k != "query" || (*v != match_all && !v.is_null()))
        {
            return Reply::error(400, unsupported_query());
        }
        let store = self.lock();
        let count = match index {
            Some(index) => match store.indices.get(index) {
                Some(i) => i.docs.len(),
                None => return Reply::error(404, ErrorCause::index_not_found(index)),
            },
            None => store.indices.values().map(|i| i.docs.len()).sum(),
        };
        Reply::json(
            200,
            &CountResponse {
                count,
                shards: ReadShards {
                    total: 1,
                    successful: 1,
                    skipped: 0,
                    failed: 0,
                },
            },
        )
    }

    // ------------------------------------------------------------------ documents

    /// `GET /{index}/_doc/{id}`, or with `source_only` `GET /{index}/_source/{id}`.
    pub(crate) fn get_doc(&self, index: &str, id: &str, source_only: bool) -> Reply {
        let store = self.lock();
        let Some(found) = store.indices.get(index) else {
            return Reply::error(404, ErrorCause::index_not_found(index));
        };
        let Some(doc) = found.docs.get(id) else {
            if source_only {
                return Reply::error(
                    404,
                    ErrorCause::new(
                        "resource_not_found_exception",
                        format!("Document not found [{index}]/[{id}]"),
                    ),
                );
            }
            return Reply::json(
                404,
                &GetMetadata {
                    index,
                    id,
                    version: None,
                    seq_no: None,
                    primary_term: None,
                    found: false,
                },
            );
        };
        if source_only {
            return Reply::raw(200, doc.source.clone());
        }
        let head = Reply::json(
            200,
            &GetMetadata {
                index,
                id,
                version: Some(doc.version),
                seq_no: Some(doc.seq_no),
                primary_term: Some(1),
                found: true,
            },
        );
        // `{…,"found":true}` → `{…,"found":true,"_source":<the bytes as indexed>}`.
        let mut body = head.body.to_vec();
        if body.pop() != Some(b'}') {
            return head;
        }
        body.extend_from_slice(b",\"_source\":");
        body.extend_from_slice(&doc.source);
        body.push(b'}');
        Reply::raw(200, Bytes::from(body))
    }

    /// `PUT|POST /{index}/_doc/{id}` (`only_create` for `_create` or `op_type=create`),
    /// `POST /{index}/_doc` (`id` none: a generated id).
    pub(crate) fn put_doc(
        &self,
        index: &str,
        id: Option<&str>,
        body: Bytes,
        only_create: bool,
    ) -> Reply {
        if let Err(why) = validate_index_name(index) {
            return Reply::error(400, ErrorCause::invalid_index_name(index, why));
        }
        if let Some(id) = id
            && id.len() > bulk::MAX_ID_BYTES
        {
            return Reply::error(
                400,
                ErrorCause::new(
                    "action_request_validation_exception",
                    format!(
                        "Validation Failed: 1: id [{id}] is too long, must be no longer than {} bytes but was: {};",
                        bulk::MAX_ID_BYTES,
                        id.len()
                    ),
                ),
            );
        }
        let source = match bulk::check_source(body) {
            Source::Valid(source) => source,
            Source::Invalid(cause) => return Reply::error(400, cause),
        };
        let mut store = self.lock();
        let id = match id {
            Some(id) => id.to_owned(),
            None => store.random_id(20),
        };
        match store.write(index, &id, source, only_create) {
            Ok(mut body) => {
                let status = body.status.take().unwrap_or(200);
                Reply::json(status, &body)
            }
            Err((status, cause)) => Reply::error(status, cause),
        }
    }

    pub(crate) fn delete_doc(&self, index: &str, id: &str) -> Reply {
        let mut store = self.lock();
        let Some(found) = store.indices.get_mut(index) else {
            return Reply::error(404, ErrorCause::index_not_found(index));
        };
        let (version, seq_no, deleted) = found.delete(id);
        let (result, status) = if deleted {
            store.stats(index).deleted += 1;
            ("deleted", 200)
        } else {
            ("not_found", 404)
        };
        let mut body = ItemBody::written(index, id, version, result, seq_no, status);
        body.status = None;
        Reply::json(status, &body)
    }

    // ------------------------------------------------------------------ _bulk

    /// `POST /_bulk`, `POST /{index}/_bulk`.
    pub(crate) fn bulk(&self, path_index: Option<&str>, body: &Bytes) -> Reply {
        let started = Instant::now();
        let operations = match bulk::parse(body) {
            Ok(operations) => operations,
            Err(cause) => return Reply::error(400, cause),
        };
        let mut targets = Vec::with_capacity(operations.len());
        let mut missing = String::new();
        for (n, op) in operations.iter().enumerate() {
            match op.index.as_deref().or(path_index) {
                Some(index) => targets.push(index.to_owned()),
                None => missing.push_str(&format!("{}: index is missing;", n + 1)),
            }
        }
        if !missing.is_empty() {
            return Reply::error(
                400,
                ErrorCause::new(
                    "action_request_validation_exception",
                    format!("Validation Failed: {missing}"),
                ),
            );
        }
        let mut touched: Vec<String> = Vec::new();
        for target in &targets {
            if !touched.contains(target) {
                touched.push(target.clone());
            }
        }
        let mut store = self.lock();
        let delay_ms = touched
            .iter()
            .filter_map(|i| store.faults.get(i).map(FaultState::delay_ms))
            .max()
            .unwrap_or(0);
        for index in &touched {
            let failure = store
                .faults
                .get_mut(index)
                .and_then(FaultState::take_request_failure);
            if let Some(status) = failure {
                store.stats(index).failed_requests += 1;
                tracing::debug!(index, status, "bulk request failed by fault injection");
                return Reply::error(status, request_failure(status, index, body.len()))
                    .delayed(delay_ms);
            }
        }
        for index in &touched {
            store.stats(index).bulk_requests += 1;
        }
        let items: Vec<BulkItem> = operations
            .into_iter()
            .zip(&targets)
            .map(|(op, index)| store.bulk_item(op, index))
            .collect();
        drop(store);
        let errors = items.iter().any(|item| item.body().is_error());
        Reply::json(
            200,
            &BulkResponse {
                took: started.elapsed().as_millis() as u64,
                errors,
                items,
            },
        )
        .delayed(delay_ms)
    }

    // ------------------------------------------------------------------ /_standin

    pub(crate) fn put_faults_reply(&self, index: &str, body: &[u8]) -> Reply {
        let faults: Faults = if body.iter().all(u8::is_ascii_whitespace) {
            Faults::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(faults) => faults,
                Err(e) => {
                    return Reply::error(
                        400,
                        ErrorCause::new("parse_exception", format!("faults: {e}")),
                    );
                }
            }
        };
        match self.set_faults(index, faults) {
            Ok(()) => self.faults_reply(index),
            Err(e) => Reply::error(
                400,
                ErrorCause::new("illegal_argument_exception", e.to_string()),
            ),
        }
    }

    pub(crate) fn faults_reply(&self, index: &str) -> Reply {
        Reply::json(200, &json!({"index": index, "faults": self.faults(index)}))
    }

    pub(crate) fn clear_faults_reply(&self, index: &str) -> Reply {
        self.clear_faults(index);
        Reply::json(200, &Acknowledged { acknowledged: true })
    }

    fn index_report(store: &Store, index: &str) -> Value {
        json!({
            "index": index,
            "exists": store.indices.contains_key(index),
            "docs": store.indices.get(index).map_or(0, |i| i.docs.len()),
            "stats": store.stats.get(index).cloned().unwrap_or_default(),
            "faults": store.faults.get(index).map(FaultState::current),
        })
    }

    pub(crate) fn stats_reply(&self, index: Option<&str>) -> Reply {
        let store = self.lock();
        if let Some(index) = index {
            return Reply::json(200, &Self::index_report(&store, index));
        }
        let mut names: Vec<&String> = store.indices.keys().collect();
        names.extend(store.stats.keys());
        names.extend(store.faults.keys());
        names.sort_unstable();
        names.dedup();
        let indices: Map<String, Value> = names
            .into_iter()
            .map(|name| (name.clone(), Self::index_report(&store, name)))
            .collect();
        Reply::json(
            200,
            &json!({
                "requests": store.requests,
                "authorization": store.auth,
                "indices": indices,
            }),
        )
    }

    pub(crate) fn cluster_health(&self) -> Reply {
        let shards = self.lock().indices.len();
        Reply::json(
            200,
            &json!({
                "cluster_name": "chief-es-standin",
                "status": "green",
                "timed_out": false,
                "number_of_nodes": 1,
                "number_of_data_nodes": 1,
                "active_primary_shards": shards,
                "active_shards": shards,
                "relocating_shards": 0,
                "initializing_shards": 0,
                "unassigned_shards": 0,
                "delayed_unassigned_shards": 0,
                "number_of_pending_tasks": 0,
                "number_of_in_flight_fetch": 0,
                "task_max_waiting_in_queue_millis": 0,
                "active_shards_percent_as_number": 100.0
            }),
        )
    }
}

fn unsupported_query() -> ErrorCause {
    ErrorCause::new(
        "illegal_argument_exception",
        "chief-es-standin counts all documents of an index: no query other than match_all is supported",
    )
}

/// An optional JSON object body (empty = `{}`).
fn parse_object_body(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Reply::error(
            400,
            ErrorCause::new("parse_exception", "request body must be a JSON object"),
        )),
        Err(e) => Err(Reply::error(
            400,
            ErrorCause::new(
                "parse_exception",
                format!("Failed to parse content to map: {e}"),
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).expect("json body")
    }

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        assert_eq!(validate_index_name("orders"), Ok(()));
        assert_eq!(validate_index_name("orders-2024.01"), Ok(()));
        for bad in [
            "Orders", "_x", "-x", "+x", "a b", "a,b", "a*", "a:b", ".", "..", "",
        ] {
            assert!(validate_index_name(bad).is_err(), "{bad}");
        }
        assert!(validate_index_name(&"a".repeat(256)).is_err());
    }

    #[test]
    fn auth_schemes() {
        assert_eq!(AuthScheme::of(None), AuthScheme::None);
        assert_eq!(AuthScheme::of(Some(b"Basic abc")), AuthScheme::Basic);
        assert_eq!(AuthScheme::of(Some(b"ApiKey abc")), AuthScheme::ApiKey);
        assert_eq!(AuthScheme::of(Some(b"bearer abc")), AuthScheme::Bearer);
        assert_eq!(AuthScheme::of(Some(b"Negotiate x")), AuthScheme::Other);
    }

    #[test]
    fn bulk_writes_versions_and_conflicts() {
        let standin = Standin::default();
        let reply = standin.bulk(
            Some("orders"),
            &Bytes::from_static(
                b"{\"index\":{\"_id\":\"a\"}}\n{\"n\":1}\n{\"index\":{\"_id\":\"a\"}}\n{\"n\":2}\n{\"create\":{\"_id\":\"a\"}}\n{\"n\":3}\n{\"delete\":{\"_index\":\"other\",\"_id\":\"a\"}}\n",
            ),
        );
        assert_eq!(reply.status, 200);
        let value = body(&reply);
        assert_eq!(value["errors"], json!(true));
        let items = value["items"].as_array().expect("items");
        assert_eq!(items[0]["index"]["result"], json!("created"));
        assert_eq!(items[0]["index"]["status"], json!(201));
        assert_eq!(items[1]["index"]["result"], json!("updated"));
        assert_eq!(items[1]["index"]["_version"], json!(2));
        assert_eq!(items[1]["index"]["_seq_no"], json!(1));
        assert_eq!(items[2]["create"]["status"], json!(409));
        assert_eq!(
            items[2]["create"]["error"]["type"],
            json!("version_conflict_engine_exception")
        );
        assert_eq!(items[3]["delete"]["status"], json!(404));
        assert_eq!(
            items[3]["delete"]["error"]["type"],
            json!("index_not_found_exception")
        );
        assert_eq!(
            standin.source("orders", "a"),
            Some(Bytes::from_static(b"{\"n\":2}"))
        );
        assert_eq!(
            standin.stats("orders"),
            IndexStats {
                bulk_requests: 1,
                bulk_items: 3,
                created: 1,
                updated: 1,
                conflicts: 1,
                ..IndexStats::default()
            }
        );
    }

    #[test]
    fn whole_request_failures_then_success() {
        let standin = Standin::default();
        standin
            .set_faults(
                "orders",
                Faults {
                    fail_requests: 1,
                    fail_status: 429,
                    ..Faults::default()
                },
            )
            .expect("faults");
        let request = Bytes::from_static(b"{\"index\":{\"_id\":\"a\"}}\n{}\n");
        let failed = standin.bulk(Some("orders"), &request);
        assert_eq!(failed.status, 429);
        assert_eq!(
            body(&failed)["error"]["type"],
            json!("es_rejected_execution_exception")
        );
        assert_eq!(body(&failed)["status"], json!(429));
        assert_eq!(standin.bulk(Some("orders"), &request).status, 200);
        assert_eq!(standin.count("orders"), Some(1));
    }
}
