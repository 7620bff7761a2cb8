//! The second stage as a loop every worker runs: the pending windows no shard can add to
//! any more are merged and written to the outputs, then marked done. Outputs are
//! idempotent (an object per window, documents by id), so two workers finishing the
//! same window at once write the same thing twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use chief_sinks::elasticsearch::{Document, SearchIndex, index_batch};
use chief_sinks::object::ObjectSink;
use chief_stream::{PutEntry, StreamClient};
use tokio_util::sync::CancellationToken;

use crate::alert::{AlertConfig, AlertError, AlertMessage, AlertSender};
use crate::app::App;
use crate::condition::Condition;
use crate::merge::{ShardProgress, WindowResult, complete, merge};
use crate::metrics as m;
use crate::store::{StoreError, WindowStore};

/// Why a round of the second stage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The window store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listing the stream's shards.
    #[error("listing the shards of {stream}: {message}")]
    Stream {
        /// The stream.
        stream: String,
        /// Why.
        message: String,
    },
    /// Writing a result object.
    #[error("writing {key}: {message}")]
    Object {
        /// The object.
        key: String,
        /// Why.
        message: String,
        /// No retry can help.
        fatal: bool,
    },
    /// Indexing a result.
    #[error("indexing window results: {0}")]
    Search(String),
    /// Putting results to the output stream.
    #[error("putting window results to {stream}: {message}")]
    Kinesis {
        /// The output stream.
        stream: String,
        /// Why.
        message: String,
        /// No retry can help.
        fatal: bool,
    },
    /// Sending an alert.
    #[error(transparent)]
    Alert(#[from] AlertError),
}

impl MergeError {
    /// Whether no retry can help.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Store(e) => e.fatal,
            Self::Object { fatal, .. } => *fatal,
            Self::Alert(e) => e.fatal,
            Self::Kinesis { fatal, .. } => *fatal,
            Self::Stream { .. } | Self::Search(_) => false,
        }
    }
}

/// Where window results go.
pub struct Outputs<O, I> {
    /// S3: one object per window, `<prefix><app>/<yyyy-MM-dd>/<window start>.json`, a
    /// JSON document per row and line.
    pub s3: Option<(O, String)>,
    /// Elasticsearch: a document per row, id `<app>-<window start>-<group>`, in the index
    /// `<index>-<yyyy-MM-dd>` of the window's start.
    pub elasticsearch: Option<(Arc<I>, String, RetryPolicy)>,
    /// A Kinesis stream (through the merger's stream client): a record per row, the
    /// row's JSON with its `id`, partition key the id. At least once: a worker that dies
    /// between the put and marking the window done puts it again, with the same ids.
    pub kinesis: Option<String>,
}

/// The second stage of one application.
pub struct Merger<S, C, O, I, A> {
    app: Arc<App>,
    alerts: Vec<(AlertConfig, Condition)>,
    sender: A,
    store: S,
    stream: C,
    stream_name: String,
    outputs: Outputs<O, I>,
}

impl<S, C, O, I, A> Merger<S, C, O, I, A>
where
    S: WindowStore,
    C: StreamClient,
    O: ObjectSink,
    I: SearchIndex,
    A: AlertSender,
{
    /// The second stage of `app` on `stream_name`; `alerts` (checked by
    /// [`AlertConfig::validate`]) are sent through `sender`.
    pub fn new(
        app: Arc<App>,
        store: S,
        stream: C,
        stream_name: &str,
        outputs: Outputs<O, I>,
        alerts: Vec<(AlertConfig, Condition)>,
        sender: A,
    ) -> Self {
        Self {
            app,
            alerts,
            sender,
            store,
            stream,
            stream_name: stream_name.to_owned(),
            outputs,
        }
    }

    /// What is known of every shard of the stream (one not yet started holds every
    /// window open).
    async fn shards(&self) -> Result<Vec<ShardProgress>, MergeError> {
        let shards = self
            .stream
            .list_shards(&self.stream_name)
            .await
            .map_err(|e| MergeError::Stream {
                stream: self.stream_name.clone(),
                message: e.to_string(),
            })?;
        let stored: HashMap<String, _> = self
            .store
            .progress()
            .await?
            .into_iter()
            .map(|p| (p.shard.clone(), p))
            .collect();
        // An idle shard is not guessed at here (a dead worker would look idle until its
        // heartbeat went stale): its live worker moves the shard's time on itself once it
        // has been caught up and without records for the idle timeout, and reports it.
        Ok(shards
            .iter()
            .map(|shard| {
                let p = stored.get(&shard.shard_id);
                ShardProgress {
                    shard: shard.shard_id.clone(),
                    max_time: p.and_then(|p| p.max_time),
                    finished: p.is_some_and(|p| p.finished),
                    idle: false,
                }
            })
            .collect())
    }

    /// One round: every pending window that is complete is merged, written and marked
    /// done. Returns the windows written.
    ///
    /// # Errors
    /// The store, the stream or an output failed; the round is tried again later.
    pub async fn round(&self) -> Result<Vec<WindowResult>, MergeError> {
        let pending = self.store.pending().await?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let shards = self.shards().await?;
        let mut done = Vec::new();
        for window in pending {
            if self.store.has_result(window).await? {
                // A partial stored after its window's result (a shard that was idle, or
                // a record later than every shard's progress): its records are late.
                let late: u64 = self
                    .store
                    .partials(window)
                    .await?
                    .iter()
                    .map(|p| p.records)
                    .sum();
                tracing::warn!(app = %self.app.name, window = %window.start_text(), records = late, "partials after the window's result: not in it");
                metrics::counter!(m::LATE_PARTIALS, m::APP => self.app.name.clone()).increment(1);
                self.store.clear_pending(window).await?;
                continue;
            }
            if !complete(&self.app, &window, &shards) {
                continue;
            }
            let partials = self.store.partials(window).await?;
            let result = merge(&self.app, window, &partials);
            self.write(&result).await?;
            self.alert(&result).await?;
            self.store.put_result(window, result.rows.len()).await?;
            metrics::counter!(m::WINDOWS, m::APP => self.app.name.clone()).increment(1);
            tracing::info!(app = %self.app.name, window = %window.start_text(), records = result.records, rows = result.rows.len(), shards = partials.len(), "window result written");
            done.push(result);
        }
        Ok(done)
    }

    /// Sends the alerts whose condition holds on `result`, each once (see [`crate::alert`]).
    async fn alert(&self, result: &WindowResult) -> Result<(), MergeError> {
        for (alert, condition) in &self.alerts {
            let value = result.subject_value(&self.app, &condition.subject);
            if !condition.holds(value) {
                continue;
            }
            let message = AlertMessage::new(&self.app, alert, result, value);
            if !self.store.claim_alert(&message.id).await? {
                if self.store.alert_state(&message.id).await? == Some(false) {
                    tracing::warn!(app = %self.app.name, alert = %message.id, "an alert was claimed and never confirmed sent (a crash between the two); not sent again");
                    metrics::counter!(m::ALERTS_UNCONFIRMED, m::APP => self.app.name.clone())
                        .increment(1);
                }
                continue;
            }
            match self.sender.send(alert, &message).await {
                Ok(()) => {
                    self.store.confirm_alert(&message.id).await?;
                    metrics::counter!(m::ALERTS, m::APP => self.app.name.clone()).increment(1);
                    tracing::info!(app = %self.app.name, alert = %message.id, when = %alert.when, value, "alert sent");
                }
                Err(e) => {
                    self.store.release_alert(&message.id).await?;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    async fn write(&self, result: &WindowResult) -> Result<(), MergeError> {
        let documents = result.documents(&self.app);
        let day = result
            .window
            .start_text()
            .get(..10)
            .unwrap_or_default()
            .to_owned();
        if let Some(stream) = &self.outputs.kinesis {
            let entries: Vec<PutEntry> = documents
                .iter()
                .map(|(id, doc)| {
                    let mut doc = doc.clone();
                    if let Some(map) = doc.as_object_mut() {
                        map.insert("id".into(), id.clone().into());
                    }
                    PutEntry {
                        partition_key: id.chars().take(256).collect(),
                        explicit_hash_key: None,
                        data: Bytes::from(doc.to_string()),
                    }
                })
                .collect();
            crate::put::put_all(&self.stream, stream, entries)
                .await
                .map_err(|e| MergeError::Kinesis {
                    stream: stream.clone(),
                    message: e.message,
                    fatal: e.fatal,
                })?;
        }
        if let Some((index, name, retry)) = &self.outputs.elasticsearch {
            let docs: Vec<Document> = documents
                .iter()
                .map(|(id, doc)| Document {
                    id: id.clone(),
                    index: Some(format!("{name}-{day}")),
                    source: Bytes::from(doc.to_string()),
                })
                .collect();
            let outcome = index_batch(index.as_ref(), &docs, retry)
                .await
                .map_err(|e| MergeError::Search(e.to_string()))?;
            if !outcome.rejected.is_empty() {
                return Err(MergeError::Search(format!(
                    "{} documents rejected: {}",
                    outcome.rejected.len(),
                    outcome.rejected[0].error
                )));
            }
        }
        if let Some((objects, prefix)) = &self.outputs.s3 {
            let key = format!(
                "{prefix}{}/{day}/{}.json",
                self.app.name,
                result.window.start_text()
            );
            let mut body = String::new();
            for (id, doc) in &documents {
                let mut doc = doc.clone();
                if let Some(map) = doc.as_object_mut() {
                    map.insert("id".into(), id.clone().into());
                }
                body.push_str(&doc.to_string());
                body.push('\n');
            }
            objects
                .put(&key, Bytes::from(body), "application/x-ndjson")
                .await
                .map_err(|e| MergeError::Object {
                    key: key.clone(),
                    fatal: !e.is_retryable(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Runs rounds every `interval` until `shutdown`; a fatal error stops it.
    ///
    /// # Errors
    /// A fatal store or output error.
    pub async fn run(
        self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), MergeError> {
        loop {
            match self.round().await {
                Ok(_) => {}
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    tracing::warn!(app = %self.app.name, error = %e, "merge round failed; tried again")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
