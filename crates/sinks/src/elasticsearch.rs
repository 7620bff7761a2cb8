//! The Elasticsearch sink: the [`SearchIndex`] trait, with [`ElasticsearchIndex`] (the
//! `elasticsearch` crate over rustls; it speaks the same REST calls to OpenSearch with
//! basic auth) and [`MemorySearchIndex`] (tests, benchmarks), and [`index_batch`], which
//! indexes a batch with `_id = orderid` (a replay overwrites, never duplicates),
//! retries only the failed items on 429/5xx with jittered back-off, and hands back the
//! items rejected for good (4xx, e.g. `mapper_parsing_exception`) for the caller to
//! dead-letter ([`crate::dead_letter`]). The caller checkpoints only
//! after every item of the batch is indexed or dead-lettered.
//!
//! Credentials (basic auth or an API key) come from the config, which the config loader
//! overrides from `CHIEF__…` environment variables; they are [`Secret`]s, which never
//! print.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::http::Method;
use elasticsearch::http::Url;
use elasticsearch::http::headers::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use chief_config::secret::Secret;

/// The `[elasticsearch]` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// The cluster's URL. Default `http://127.0.0.1:9200` (the local stand-in).
    pub url: String,
    /// The index, e.g. `orders`. Default empty, which [`validate`](Self::validate)
    /// rejects.
    pub index: String,
    /// Basic-auth user name. Default none.
    pub username: Option<String>,
    /// Basic-auth password (`CHIEF__ELASTICSEARCH__PASSWORD`). Default none.
    pub password: Option<Secret>,
    /// API key, base64 of `id:key` as Elasticsearch hands it out
    /// (`CHIEF__ELASTICSEARCH__API_KEY`); wins over basic auth. Default none.
    pub api_key: Option<Secret>,
    /// Amazon OpenSearch Service with IAM authentication: every request is signed with
    /// AWS Signature Version 4 for this service name (`es`), with the process's AWS
    /// credentials (the `[aws]` section: instance role, `role_arn`) and region. Excludes
    /// basic auth and API keys. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_sigv4_service: Option<String>,
    /// Timeout of one request, in milliseconds. Default 30,000.
    pub timeout_ms: u64,
    /// Back-off between attempts of failed items. Default: 100 ms doubling to 5 s,
    /// giving up after 300 s.
    pub retry: RetryPolicy,
    /// Most documents in one `_bulk` request. Default 1,000.
    pub max_documents: usize,
    /// Most bytes of sources in one `_bulk` request. Default 5 MiB (Elastic suggests
    /// 5–15 MB).
    pub max_bytes: usize,
    /// Longest a document waits for its batch, in milliseconds. Default 1,000 (about
    /// Elasticsearch's refresh interval: documents are searchable a second or two after
    /// they arrive).
    pub max_age_ms: u64,
    /// Documents of a shard the cluster rejects for good in a row (4xx: the mapping
    /// refuses them), with none indexed in between, after which the index is taken to
    /// refuse every document: the executor stops with a fatal error naming the index
    /// instead of dead-lettering the whole stream; the batch that tipped it is kept, not
    /// dead-lettered or checkpointed. Those before it are dead letters already. 0: never.
    /// Default 100.
    pub fatal_after_rejected: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".to_owned(),
            index: String::new(),
            username: None,
            password: None,
            api_key: None,
            aws_sigv4_service: None,
            timeout_ms: 30_000,
            retry: RetryPolicy {
                deadline_ms: 300_000,
                ..RetryPolicy::default()
            },
            max_documents: 1_000,
            max_bytes: 5 * 1024 * 1024,
            max_age_ms: 1_000,
            fatal_after_rejected: 100,
        }
    }
}

impl SearchConfig {
    /// Checks the URL and the index name.
    ///
    /// # Errors
    /// A sentence naming the field.
    pub fn validate(&self) -> Result<(), String> {
        Url::parse(&self.url).map_err(|e| format!("elasticsearch.url `{}`: {e}", self.url))?;
        if self.index.is_empty() {
            return Err("elasticsearch.index must be set".into());
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("elasticsearch.username and password go together".into());
        }
        if self.aws_sigv4_service.is_some() && (self.password.is_some() || self.api_key.is_some()) {
            return Err(
                "elasticsearch.aws_sigv4_service signs requests with AWS credentials: leave out username, password and api_key".into(),
            );
        }
        if self.aws_sigv4_service.as_deref().is_some_and(str::is_empty) {
            return Err(
                "elasticsearch.aws_sigv4_service is empty (`es` for Amazon OpenSearch Service)"
                    .into(),
            );
        }
        if self.max_documents == 0 || self.max_bytes == 0 || self.max_age_ms == 0 {
            return Err(
                "elasticsearch.max_documents, max_bytes and max_age_ms must be positive".into(),
            );
        }
        Ok(())
    }
}

/// Why a call to the search cluster failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The client could not build its transport (bad URL or TLS set-up).
    #[error("cannot set up the Elasticsearch client for {url}: {reason}")]
    Setup {
        /// The cluster URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No response (connection refused, timeout…).
    #[error("{operation} on index `{index}` got no response: {source}")]
    Transport {
        /// `_bulk`, `exists` or `create`.
        operation: &'static str,
        /// The index.
        index: String,
        /// What the client said.
        #[source]
        source: elasticsearch::Error,
    },
    /// A request could not be signed (no AWS credentials, a bad URL).
    #[error("{operation} on index `{index}`: cannot sign the request: {reason}")]
    Signing {
        /// `_bulk`, `exists` or `create`.
        operation: &'static str,
        /// The index.
        index: String,
        /// Why.
        reason: String,
    },
    /// The cluster answered the request as a whole with an error status.
    #[error("{operation} on index `{index}` failed with HTTP {status}: {body}")]
    Status {
        /// `_bulk`, `exists` or `create`.
        operation: &'static str,
        /// The index.
        index: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The response does not have the documented shape.
    #[error("{operation} on index `{index}`: unexpected response: {reason}")]
    Protocol {
        /// `_bulk`, `exists` or `create`.
        operation: &'static str,
        /// The index.
        index: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Items still failed with retryable errors when the retry deadline passed.
    #[error(
        "{pending} items of the batch still failing after {attempts} attempts (last: HTTP {status} {reason})"
    )]
    GaveUp {
        /// Items not indexed.
        pending: usize,
        /// Attempts made.
        attempts: u32,
        /// The last item status.
        status: u16,
        /// The last item error.
        reason: String,
    },
}

impl SearchError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SearchError::Setup { .. } | SearchError::Protocol { .. } => false,
            // Credentials come and go (an expired role session is renewed).
            SearchError::Transport { .. }
            | SearchError::GaveUp { .. }
            | SearchError::Signing { .. } => true,
            SearchError::Status { status, .. } => is_retryable_status(*status),
        }
    }
}

/// 429 (too many requests) and 5xx are worth retrying; other failures are final.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

/// One document to index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its `_id`.
    pub id: String,
    /// Its `_index` when not the writer's own (time-rotated indices: `logs-2026-12-04`).
    pub index: Option<String>,
    /// Its `_source`: the record's JSON.
    pub source: Bytes,
}

/// What the cluster did with one item of a `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    /// Indexed (201 created, 200 overwritten).
    Indexed {
        /// The item status.
        status: u16,
    },
    /// Not indexed.
    Failed {
        /// The item status (429, 400…).
        status: u16,
        /// `error.type`, e.g. `mapper_parsing_exception`.
        error_type: String,
        /// `error.reason`.
        reason: String,
    },
}

/// A search index that documents are written to by id.
pub trait SearchIndex: Send + Sync {
    /// Creates the index with its mapping if it does not exist; whether it created it.
    fn ensure_index(&self) -> impl Future<Output = Result<bool, SearchError>> + Send;

    /// Indexes `docs` in one `_bulk` request; one result per document, in order.
    fn bulk_index(
        &self,
        docs: &[Document],
    ) -> impl Future<Output = Result<Vec<ItemResult>, SearchError>> + Send;
}

/// A document the cluster rejected for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the batch passed to [`index_batch`].
    pub index: usize,
    /// The item status.
    pub status: u16,
    /// `type: reason`.
    pub error: String,
}

/// The result of [`index_batch`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    /// Documents indexed.
    pub indexed: usize,
    /// Documents rejected for good, to be dead-lettered, in batch order.
    pub rejected: Vec<Rejected>,
    /// `_bulk` requests made.
    pub attempts: u32,
}

/// Indexes every document of `docs`: sends them in one `_bulk`, then re-sends only the
/// items that failed with 429/5xx (and the whole remainder after a retryable error of
/// the request), with `retry`'s jittered back-off, until none is left or the deadline
/// passes.
///
/// # Errors
/// A fatal error of the request as a whole, or [`SearchError::GaveUp`] at the deadline;
/// the caller must not checkpoint the batch then.
pub async fn index_batch<I: SearchIndex>(
    index: &I,
    docs: &[Document],
    retry: &RetryPolicy,
) -> Result<BatchOutcome, SearchError> {
    index_until(index, docs, retry, false).await
}

/// [`index_batch`] as Firehose does it: at the deadline the documents still failing
/// (429/5xx, or the whole remainder after a retryable error of the request) are
/// rejected with their last error, for the caller to back up, instead of failing the
/// batch.
///
/// # Errors
/// A fatal error of the request as a whole (credentials refused, index unusable).
pub async fn index_batch_or_reject<I: SearchIndex>(
    index: &I,
    docs: &[Document],
    retry: &RetryPolicy,
) -> Result<BatchOutcome, SearchError> {
    index_until(index, docs, retry, true).await
}

async fn index_until<I: SearchIndex>(
    index: &I,
    docs: &[Document],
    retry: &RetryPolicy,
    reject_at_deadline: bool,
) -> Result<BatchOutcome, SearchError> {
    let started = Instant::now();
    let mut outcome = BatchOutcome::default();
    let mut pending: Vec<usize> = (0..docs.len()).collect();
    while !pending.is_empty() {
        outcome.attempts += 1;
        let batch: Vec<Document> = pending.iter().map(|i| docs[*i].clone()).collect();
        let (still, last) = match index.bulk_index(&batch).await {
            Ok(results) if results.len() == batch.len() => {
                let mut still = Vec::new();
                let mut last = None;
                for (i, result) in pending.iter().zip(results) {
                    match result {
                        ItemResult::Indexed { .. } => outcome.indexed += 1,
                        ItemResult::Failed {
                            status,
                            error_type,
                            reason,
                        } if is_retryable_status(status) => {
                            still.push(*i);
                            last = Some((status, format!("{error_type}: {reason}")));
                        }
                        ItemResult::Failed {
                            status,
                            error_type,
                            reason,
                        } => outcome.rejected.push(Rejected {
                            index: *i,
                            status,
                            error: format!("{error_type}: {reason}"),
                        }),
                    }
                }
                (still, last)
            }
            Ok(results) => {
                return Err(SearchError::Protocol {
                    operation: "_bulk",
                    index: String::new(),
                    reason: format!("{} items for {} documents", results.len(), batch.len()),
                });
            }
            Err(error) if error.is_retryable() => {
                let status = match &error {
                    SearchError::Status { status, .. } => *status,
                    _ => 0,
                };
                (pending.clone(), Some((status, error.to_string())))
            }
            Err(error) => return Err(error),
        };
        pending = still;
        if let Some((status, reason)) = last.filter(|_| !pending.is_empty()) {
            if !retry.allows(started.elapsed()) && reject_at_deadline {
                outcome
                    .rejected
                    .extend(pending.drain(..).map(|index| Rejected {
                        index,
                        status,
                        error: reason.clone(),
                    }));
                break;
            }
            if !retry.allows(started.elapsed()) {
                return Err(SearchError::GaveUp {
                    pending: pending.len(),
                    attempts: outcome.attempts,
                    status,
                    reason,
                });
            }
            let delay = retry.jittered(outcome.attempts);
            metrics::counter!("SearchBulkRetries").increment(1);
            tracing::warn!(
                pending = pending.len(),
                attempts = outcome.attempts,
                status,
                reason = %reason,
                delay_ms = delay.as_millis() as u64,
                "bulk items failed, retrying them"
            );
            tokio::time::sleep(delay).await;
        }
    }
    outcome.rejected.sort_by_key(|r| r.index);
    metrics::counter!("SearchDocumentsIndexed").increment(outcome.indexed as u64);
    Ok(outcome)
}

/// Signs requests with AWS Signature Version 4 (Amazon OpenSearch Service with IAM
/// authentication): the credentials of the process's provider chain, a region and a
/// service name (`es`). The canonical request covers the method, the URL, `host`,
/// `x-amz-date`, `x-amz-content-sha256` (the body's SHA-256) and, for temporary
/// credentials, `x-amz-security-token`.
#[derive(Clone)]
pub struct AwsSigner {
    credentials: SharedCredentialsProvider,
    region: String,
    service: String,
}

impl fmt::Debug for AwsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSigner")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl AwsSigner {
    /// A signer with `credentials` for `service` in `region`.
    pub fn new(
        credentials: SharedCredentialsProvider,
        region: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        Self {
            credentials,
            region: region.into(),
            service: service.into(),
        }
    }

    /// The headers that sign `method url` with `body`, at `time`.
    ///
    /// # Errors
    /// No credentials, or a request the signer cannot canonicalize.
    pub async fn headers(
        &self,
        method: &str,
        url: &str,
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(String, String)>, String> {
        use aws_credential_types::provider::ProvideCredentials;
        use aws_sigv4::http_request::{
            PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
        };
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("no AWS credentials to sign with: {e}"))?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| format!("signing parameters: {e}"))?
            .into();
        let signable =
            SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(body))
                .map_err(|e| format!("signing {method} {url}: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("signing {method} {url}: {e}"))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

/// An index in an Elasticsearch or OpenSearch cluster: basic auth, an API key, or AWS
/// SigV4 ([`AwsSigner`], Amazon OpenSearch Service with IAM).
#[derive(Debug, Clone)]
pub struct ElasticsearchIndex {
    client: Elasticsearch,
    base: Url,
    signer: Option<AwsSigner>,
    index: String,
    mapping: Value,
}

impl ElasticsearchIndex {
    /// A client for `config.index` at `config.url`, creating the index with `mapping`
    /// (see [`orders_mapping`], [`job_results_mapping`]) when asked to.
    ///
    /// # Errors
    /// [`SearchError::Setup`] for a bad URL or TLS set-up.
    pub fn new(config: &SearchConfig, mapping: Value) -> Result<Self, SearchError> {
        let setup = |reason: String| SearchError::Setup {
            url: config.url.clone(),
            reason,
        };
        let url = Url::parse(&config.url).map_err(|e| setup(e.to_string()))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url.clone()))
            .timeout(Duration::from_millis(config.timeout_ms))
            .disable_proxy();
        if let Some(key) = &config.api_key {
            builder = builder.auth(Credentials::EncodedApiKey(key.expose().to_owned()));
        } else if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.auth(Credentials::Basic(
                user.clone(),
                password.expose().to_owned(),
            ));
        }
        let transport = builder.build().map_err(|e| setup(e.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            base: url,
            signer: None,
            index: config.index.clone(),
            mapping,
        })
    }

    /// [`new`](Self::new), signed with `credentials` (the process's AWS credentials, its
    /// role) for `region` when `config.aws_sigv4_service` is set (Amazon OpenSearch
    /// Service with IAM).
    ///
    /// # Errors
    /// As [`new`](Self::new); [`SearchError::Setup`] when signing is asked for and there
    /// are no credentials.
    pub fn with_aws_credentials(
        config: &SearchConfig,
        mapping: Value,
        credentials: Option<SharedCredentialsProvider>,
        region: &str,
    ) -> Result<Self, SearchError> {
        let index = Self::new(config, mapping)?;
        let Some(service) = &config.aws_sigv4_service else {
            return Ok(index);
        };
        let credentials = credentials.ok_or_else(|| SearchError::Setup {
            url: config.url.clone(),
            reason: "elasticsearch.aws_sigv4_service needs AWS credentials".into(),
        })?;
        Ok(index.signed_with(AwsSigner::new(credentials, region, service.clone())))
    }

    /// Signs every request with `signer` (`[elasticsearch] aws_sigv4_service`).
    #[must_use]
    pub fn signed_with(mut self, signer: AwsSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Sends `method path` with `body` (JSON content type), signed when there is a signer.
    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<elasticsearch::http::response::Response, SearchError> {
        let mut headers = HeaderMap::new();
        if let Some(signer) = &self.signer {
            let url = self
                .base
                .join(path.trim_start_matches('/'))
                .map_err(|e| self.signing(operation, e.to_string()))?;
            let verb = match method {
                Method::Head => "HEAD",
                Method::Put => "PUT",
                Method::Post => "POST",
                Method::Delete => "DELETE",
                _ => "GET",
            };
            let signed = signer
                .headers(
                    verb,
                    url.as_str(),
                    body.as_deref().unwrap_or_default(),
                    SystemTime::now(),
                )
                .await
                .map_err(|reason| self.signing(operation, reason))?;
            for (name, value) in signed {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| self.signing(operation, e.to_string()))?;
                let mut value = HeaderValue::from_str(&value)
                    .map_err(|e| self.signing(operation, e.to_string()))?;
                value.set_sensitive(name == AUTHORIZATION);
                headers.insert(name, value);
            }
        }
        self.client
            .transport()
            .send(method, path, headers, None::<&()>, body, None)
            .await
            .map_err(|e| self.transport(operation, e))
    }

    fn signing(&self, operation: &'static str, reason: String) -> SearchError {
        SearchError::Signing {
            operation,
            index: self.index.clone(),
            reason,
        }
    }

    /// The index name.
    pub fn index(&self) -> &str {
        &self.index
    }

    fn transport(&self, operation: &'static str, source: elasticsearch::Error) -> SearchError {
        SearchError::Transport {
            operation,
            index: self.index.clone(),
            source,
        }
    }

    async fn status_error(
        &self,
        operation: &'static str,
        response: elasticsearch::http::response::Response,
    ) -> SearchError {
        let status = response.status_code().as_u16();
        let mut body = response.text().await.unwrap_or_default();
        body.truncate(body.floor_char_boundary(1_000));
        if body.is_empty() {
            body = match status {
                401 | 403 => "no body (a HEAD answer has none): the cluster refused these credentials or this signature".to_owned(),
                _ => "no body".to_owned(),
            };
        }
        SearchError::Status {
            operation,
            index: self.index.clone(),
            status,
            body,
        }
    }
}

/// The parts of a `_bulk` response we read.
#[derive(Deserialize)]
struct BulkResponse {
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<BulkItemError>,
}

#[derive(Deserialize)]
struct BulkItemError {
    #[serde(rename = "type", default)]
    error_type: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The NDJSON lines of a `_bulk` index request: an action line with `_id`, then the
/// source on one line (JSON allows newlines only as whitespace, so they become spaces).
fn bulk_lines(docs: &[Document]) -> Vec<Bytes> {
    let mut lines = Vec::with_capacity(docs.len() * 2);
    for doc in docs {
        let action = match &doc.index {
            Some(index) => json!({"index": {"_index": index, "_id": doc.id.as_str()}}),
            None => json!({"index": {"_id": doc.id.as_str()}}),
        };
        lines.push(Bytes::from(action.to_string()));
        if doc.source.iter().any(|b| *b == b'\n' || *b == b'\r') {
            let flat: Vec<u8> = doc
                .source
                .iter()
                .map(|b| if *b == b'\n' || *b == b'\r' { b' ' } else { *b })
                .collect();
            lines.push(Bytes::from(flat));
        } else {
            lines.push(doc.source.clone());
        }
    }
    lines
}

impl SearchIndex for ElasticsearchIndex {
    async fn ensure_index(&self) -> Result<bool, SearchError> {
        let path = format!("/{}", self.index);
        let exists = self.send("exists", Method::Head, &path, None).await?;
        match exists.status_code().as_u16() {
            200 => return Ok(false),
            404 => {}
            _ => return Err(self.status_error("exists", exists).await),
        }
        let body = serde_json::to_vec(&json!({"mappings": self.mapping}))
            .map_err(|e| self.signing("create", e.to_string()))?;
        let created = self
            .send("create", Method::Put, &path, Some(Bytes::from(body)))
            .await?;
        if created.status_code().is_success() {
            tracing::info!(index = %self.index, "index created");
            return Ok(true);
        }
        let error = self.status_error("create", created).await;
        // Another worker created it in between.
        match &error {
            SearchError::Status {
                status: 400, body, ..
            } if body.contains("resource_already_exists_exception") => Ok(false),
            _ => Err(error),
        }
    }

    async fn bulk_index(&self, docs: &[Document]) -> Result<Vec<ItemResult>, SearchError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let mut body = Vec::new();
        for line in bulk_lines(docs) {
            body.extend_from_slice(&line);
            body.push(b'\n');
        }
        let path = format!("/{}/_bulk", self.index);
        let response = self
            .send("_bulk", Method::Post, &path, Some(Bytes::from(body)))
            .await?;
        if !response.status_code().is_success() {
            return Err(self.status_error("_bulk", response).await);
        }
        let protocol = |reason: String| SearchError::Protocol {
            operation: "_bulk",
            index: self.index.clone(),
            reason,
        };
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport("_bulk", e))?;
        let parsed: BulkResponse =
            serde_json::from_slice(&body).map_err(|e| protocol(e.to_string()))?;
        if parsed.items.len() != docs.len() {
            return Err(protocol(format!(
                "{} items for {} documents",
                parsed.items.len(),
                docs.len()
            )));
        }
        parsed
            .items
            .into_iter()
            .map(|item| {
                let item = item
                    .into_values()
                    .next()
                    .ok_or_else(|| protocol("an empty item".to_owned()))?;
                Ok(match item.error {
                    None if (200..300).contains(&item.status) => ItemResult::Indexed {
                        status: item.status,
                    },
                    None => ItemResult::Failed {
                        status: item.status,
                        error_type: String::new(),
                        reason: String::new(),
                    },
                    Some(error) => ItemResult::Failed {
                        status: item.status,
                        error_type: error.error_type,
                        reason: error.reason.unwrap_or_default(),
                    },
                })
            })
            .collect()
    }
}

/// An index in memory, with fault injection: the next items can be made to fail with
/// a given status.
#[derive(Debug, Default)]
pub struct MemorySearchIndex {
    state: Mutex<MemoryIndexState>,
}

#[derive(Debug, Default)]
struct MemoryIndexState {
    exists: bool,
    /// By (`_index` if not the default, `_id`).
    docs: HashMap<(String, String), Bytes>,
    failures: Vec<u16>,
    requests: u32,
}

impl MemorySearchIndex {
    /// An index that does not exist yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next items (across requests) fail with these statuses, one each.
    pub fn fail_next_items(&self, statuses: impl IntoIterator<Item = u16>) {
        self.lock().failures.extend(statuses);
    }

    /// Forgets the failures still queued by [`fail_next_items`](Self::fail_next_items).
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// The source stored under `id` (in the default index).
    pub fn get(&self, id: &str) -> Option<Bytes> {
        self.get_in("", id)
    }

    /// The source stored under `id` in `index` (a document's own `_index`; `""` for the
    /// default).
    pub fn get_in(&self, index: &str, id: &str) -> Option<Bytes> {
        self.lock()
            .docs
            .get(&(index.to_owned(), id.to_owned()))
            .cloned()
    }

    /// How many documents it holds.
    pub fn count(&self) -> usize {
        self.lock().docs.len()
    }

    /// How many `_bulk` requests it received.
    pub fn bulk_requests(&self) -> u32 {
        self.lock().requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryIndexState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SearchIndex for MemorySearchIndex {
    async fn ensure_index(&self) -> Result<bool, SearchError> {
        let mut state = self.lock();
        let created = !state.exists;
        state.exists = true;
        Ok(created)
    }

    async fn bulk_index(&self, docs: &[Document]) -> Result<Vec<ItemResult>, SearchError> {
        let mut state = self.lock();
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        state.requests += 1;
        // Like Elasticsearch, a bulk request creates a missing index.
        state.exists = true;
        let mut results = Vec::with_capacity(docs.len());
        for doc in docs {
            if !state.failures.is_empty() {
                let status = state.failures.remove(0);
                let error_type = if status == 429 {
                    "es_rejected_execution_exception"
                } else {
                    "mapper_parsing_exception"
                };
                results.push(ItemResult::Failed {
                    status,
                    error_type: error_type.to_owned(),
                    reason: "injected failure".to_owned(),
                });
                continue;
            }
            let replaced = state
                .docs
                .insert(
                    (doc.index.clone().unwrap_or_default(), doc.id.clone()),
                    doc.source.clone(),
                )
                .is_some();
            results.push(ItemResult::Indexed {
                status: if replaced { 200 } else { 201 },
            });
        }
        Ok(results)
    }
}
