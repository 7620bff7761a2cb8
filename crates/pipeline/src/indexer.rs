//! The Elasticsearch sink's batching, per shard: records are parsed (dead letter on
//! failure), optionally de-duplicated, and buffered as [`Document`]s with `_id =
//! orderid`; a batch goes out as one [`index_batch`] (one `_bulk`, then only the failed
//! items again on 429/5xx) when it reaches [`SearchConfig::max_documents`],
//! [`SearchConfig::max_bytes`] or [`SearchConfig::max_age_ms`], or when the processor
//! flushes. Items the cluster rejects for good (4xx, e.g. a mapping error) are written
//! as dead letters ([`chief_sinks::dead_letter`]) with the cluster's error.
//!
//! The checkpoint contract is the archive sink's ([`crate::archive`]): every call
//! returns the position the caller may checkpoint now, if it advanced — the last record
//! such that it and everything before it is indexed, dead-lettered or dropped as a
//! duplicate. It never passes a buffered document.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use chief_sinks::dead_letter::{self, DeadLetterError, DeadLetterSettings, Rejected};
use chief_sinks::{Batcher, Limits};

use crate::archive::{ArchiveRecord, Disposition, Processed, RecordPosition, RowKind};
use crate::dedup::DedupWindow;
use crate::model::{JobResult, ModelError, Order, OrderId};
use crate::object_sink::ObjectSink;
use crate::search::{Document, SearchConfig, SearchError, SearchIndex, index_batch};

/// Why the search sink of a shard could not finish a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexerError {
    /// The `_bulk` requests failed (or items still failed at the retry deadline); the
    /// batch is kept and a later [`ShardIndexer::flush`] tries again.
    #[error("indexing a batch of {documents} documents into `{index}` failed: {source}")]
    Index {
        /// The index.
        index: String,
        /// Documents in the batch.
        documents: usize,
        /// What the cluster (or the transport) said.
        #[source]
        source: SearchError,
    },
    /// A dead letter (a record that does not parse, or an item the cluster rejected)
    /// could not be written; nothing is checkpointed past it.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// The index has rejected [`SearchConfig::fatal_after_rejected`] documents in a row
    /// for good and indexed none: its mapping refuses what the stream carries. The
    /// last batch is kept (not dead-lettered, not checkpointed). Not retryable: fix the
    /// mapping (or the index name) and restart.
    #[error(
        "index `{index}` rejected the last {in_a_row} documents of shard {shard_id} and indexed none \
         (last: HTTP {status}: {error}); its mapping refuses this stream's documents"
    )]
    RejectsEverything {
        /// The index.
        index: String,
        /// The shard.
        shard_id: String,
        /// Documents rejected in a row.
        in_a_row: usize,
        /// The last rejection's status.
        status: u16,
        /// The last rejection's `type: reason`.
        error: String,
    },
}

impl IndexerError {
    /// Whether calling again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            IndexerError::Index { source, .. } => source.is_retryable(),
            IndexerError::DeadLetter(e) => e.is_retryable(),
            IndexerError::RejectsEverything { .. } => false,
        }
    }
}

/// The `orderid` of a record of `kind`, checking the record against the contract
/// ([`crate::model`]).
///
/// # Errors
/// Why the record is not a valid order or job result.
pub fn record_id(kind: RowKind, data: &[u8]) -> Result<OrderId, ModelError> {
    match kind {
        RowKind::Orders => Order::parse(data).map(|order| order.orderid),
        RowKind::JobResults => JobResult::parse(data).map(|job| job.orderid),
    }
}

struct Pending {
    document: Document,
    position: RecordPosition,
    arrival: DateTime<Utc>,
}

/// The search sink of one shard. Not shared between shards; the index and the
/// dead-letter sink are.
pub struct ShardIndexer<I, S> {
    index: Arc<I>,
    dead_letters: S,
    config: Arc<SearchConfig>,
    dead_letter_settings: Arc<DeadLetterSettings>,
    kind: RowKind,
    executor: String,
    shard_id: String,
    /// The open batch of documents, and the accepted and durable positions.
    batcher: Batcher<Vec<Pending>>,
    /// Documents rejected for good since the last one indexed.
    rejected_in_a_row: usize,
}

impl<I: SearchIndex, S: ObjectSink> ShardIndexer<I, S> {
    /// The search sink of `shard_id` for `executor`: documents of `kind` go to `index`
    /// in batches bounded by `config`; dead letters go to `dead_letters` as
    /// `dead_letter_settings` say (prefix, retry).
    pub fn new(
        index: Arc<I>,
        dead_letters: S,
        config: Arc<SearchConfig>,
        dead_letter_settings: Arc<DeadLetterSettings>,
        kind: RowKind,
        executor: impl Into<String>,
        shard_id: impl Into<String>,
    ) -> Self {
        let executor = executor.into();
        let batcher = Batcher::new(Limits {
            max_records: config.max_documents,
            max_bytes: config.max_bytes,
            max_age: Duration::from_millis(config.max_age_ms),
        });
        Self {
            index,
            dead_letters,
            config,
            dead_letter_settings,
            kind,
            executor,
            shard_id: shard_id.into(),
            batcher,
            rejected_in_a_row: 0,
        }
    }

    /// Handles one record at time `now`: flushes an expired batch first, parses the
    /// record (dead letter on failure), drops it if `dedup` has seen its `orderid`,
    /// otherwise buffers its document and flushes when a bound is reached.
    ///
    /// # Errors
    /// - [`IndexerError::Index`]: the record was accepted (it is in the kept batch, or
    ///   a duplicate); do not offer it again, call [`flush`](Self::flush) until it
    ///   succeeds.
    /// - [`IndexerError::DeadLetter`]: the record may not have been accepted: offer it
    ///   again unless [`accepted`](Self::accepted) is at or past it.
    pub async fn process(
        &mut self,
        record: ArchiveRecord<'_>,
        dedup: Option<&mut DedupWindow>,
        now: Instant,
    ) -> Result<Processed, IndexerError> {
        let before = self.batcher.durable().cloned();
        let expired = self.flush_if_due(now).await.map(|_| ());
        let disposition = match record_id(self.kind, record.data) {
            Err(error) => {
                let key = self.dead_letter(record, &error.to_string()).await?;
                tracing::debug!(key = %key, "unparseable record dead-lettered");
                self.accept(record.position);
                Disposition::DeadLettered
            }
            Ok(id) => {
                if let Some(window) = dedup
                    && window.check(&id, now).is_duplicate()
                {
                    self.accept(record.position);
                    Disposition::Duplicate
                } else {
                    let pending = Pending {
                        document: Document {
                            index: None,
                            id: id.into_string(),
                            source: Bytes::copy_from_slice(record.data),
                        },
                        position: record.position.clone(),
                        arrival: record.arrival,
                    };
                    let full = self.batcher.push(
                        record.position,
                        record.arrival,
                        now,
                        record.data.len(),
                        |batch: &mut Vec<Pending>| batch.push(pending),
                    );
                    if full && expired.is_ok() {
                        self.write_batch().await?;
                    }
                    Disposition::Buffered
                }
            }
        };
        expired?;
        Ok(Processed {
            disposition,
            checkpoint: self.batcher.advanced_since(before.as_ref()),
        })
    }

    async fn dead_letter(
        &self,
        record: ArchiveRecord<'_>,
        error: &str,
    ) -> Result<String, DeadLetterError> {
        dead_letter::write(
            &self.dead_letters,
            &self.dead_letter_settings,
            Rejected {
                application: &self.executor,
                shard_id: &self.shard_id,
                position: record.position,
                arrival: record.arrival,
                data: record.data,
                error,
            },
        )
        .await
    }

    /// Takes note of a record another sink of the same executor has dead-lettered
    /// already (it breaks the record contract): handled, nothing written, not counted
    /// again, so a record is dead-lettered once per executor.
    pub fn pass(&mut self, position: &RecordPosition) {
        self.accept(position);
    }

    fn accept(&mut self, position: &RecordPosition) {
        self.batcher.skip(position);
    }

    /// Sends the batch if it is older than `max_age_ms` at `now`.
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub async fn flush_if_due(
        &mut self,
        now: Instant,
    ) -> Result<Option<RecordPosition>, IndexerError> {
        if self.batcher.is_due(now) {
            self.flush().await
        } else {
            Ok(None)
        }
    }

    /// Sends the batch, if any, and returns the position to checkpoint if it advanced.
    ///
    /// # Errors
    /// [`IndexerError::Index`] (the batch is kept) or [`IndexerError::DeadLetter`] (the
    /// batch is kept; items already indexed are indexed again next time, which
    /// overwrites them).
    pub async fn flush(&mut self) -> Result<Option<RecordPosition>, IndexerError> {
        let before = self.batcher.durable().cloned();
        self.write_batch().await?;
        Ok(self.batcher.advanced_since(before.as_ref()))
    }

    /// When the open batch reaches its age bound, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.batcher.deadline()
    }

    /// The last position such that it and everything before it is durable.
    pub fn durable(&self) -> Option<&RecordPosition> {
        self.batcher.durable()
    }

    /// The last record handled (buffered, dead-lettered or dropped).
    pub fn accepted(&self) -> Option<&RecordPosition> {
        self.batcher.accepted()
    }

    /// Documents waiting in the open batch.
    pub fn buffered_documents(&self) -> usize {
        self.batcher.buffered_records()
    }

    async fn write_batch(&mut self) -> Result<(), IndexerError> {
        let Some(batch) = self.batcher.batch() else {
            return Ok(());
        };
        let documents: Vec<Document> = batch.body.iter().map(|p| p.document.clone()).collect();
        let outcome = index_batch(self.index.as_ref(), &documents, &self.config.retry)
            .await
            .map_err(|source| IndexerError::Index {
                index: self.config.index.clone(),
                documents: documents.len(),
                source,
            })?;
        if outcome.indexed > 0 {
            self.rejected_in_a_row = 0;
        }
        let in_a_row = self.rejected_in_a_row + outcome.rejected.len();
        if let Some(last) = outcome.rejected.last()
            && outcome.indexed == 0
            && self.config.fatal_after_rejected > 0
            && in_a_row >= self.config.fatal_after_rejected
        {
            return Err(IndexerError::RejectsEverything {
                index: self.config.index.clone(),
                shard_id: self.shard_id.clone(),
                in_a_row,
                status: last.status,
                error: last.error.clone(),
            });
        }
        for rejected in &outcome.rejected {
            let Some(item) = batch.body.get(rejected.index) else {
                continue;
            };
            let error = format!(
                "rejected by index `{}` with HTTP {}: {}",
                self.config.index, rejected.status, rejected.error
            );
            let record = ArchiveRecord {
                data: &item.document.source,
                position: &item.position,
                arrival: item.arrival,
            };
            self.dead_letter(record, &error).await?;
            self.rejected_in_a_row += 1;
        }
        tracing::info!(
            executor = %self.executor,
            shard_id = %self.shard_id,
            index = %self.config.index,
            documents = documents.len(),
            indexed = outcome.indexed,
            rejected = outcome.rejected.len(),
            attempts = outcome.attempts,
            "batch indexed"
        );
        self.batcher.written();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::dedup::DedupConfig;
    use crate::object_sink::MemoryObjectSink;
    use crate::search::MemorySearchIndex;

    const SHARD: &str = "shardId-000000000003";

    /// A valid order (the record contract) with id `id`.
    fn order(id: &str) -> Vec<u8> {
        format!(
            r#"{{"orderid":"{id}","user":{{"userid":"u","name":"x"}},"factoryid":"f","items":[{{"sku":"s","product":"p","quantity":1,"unit_price_cents":1}}],"timestamp":"2017-10-18T16:00:00Z"}}"#
        )
        .into_bytes()
    }

    fn pos(seq: u64) -> RecordPosition {
        RecordPosition {
            sequence_number: format!("4959{seq:020}"),
            sub_sequence_number: 0,
        }
    }

    fn indexer(
        index: &Arc<MemorySearchIndex>,
        sink: &Arc<MemoryObjectSink>,
        max_documents: usize,
    ) -> ShardIndexer<MemorySearchIndex, Arc<MemoryObjectSink>> {
        indexer_with(index, sink, max_documents, 100)
    }

    fn indexer_with(
        index: &Arc<MemorySearchIndex>,
        sink: &Arc<MemoryObjectSink>,
        max_documents: usize,
        fatal_after_rejected: usize,
    ) -> ShardIndexer<MemorySearchIndex, Arc<MemoryObjectSink>> {
        let config = SearchConfig {
            index: "orders".into(),
            max_documents,
            fatal_after_rejected,
            retry: chief_config::retry::RetryPolicy {
                initial_backoff_ms: 1,
                max_backoff_ms: 2,
                multiplier: 2.0,
                deadline_ms: 200,
            },
            ..SearchConfig::default()
        };
        ShardIndexer::new(
            Arc::clone(index),
            Arc::clone(sink),
            Arc::new(config),
            Arc::new(crate::archive::ArchiveConfig::default().dead_letters()),
            RowKind::Orders,
            "chief-order-es-s3",
            SHARD,
        )
    }

    fn arrival() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 7, 5, 0)
            .single()
            .expect("time")
    }

    fn id(n: u32) -> String {
        format!("{n:08}-0000-4000-8000-000000000000")
    }

    #[tokio::test]
    async fn a_full_batch_is_indexed_and_checkpoints_its_last_record() {
        let index = Arc::new(MemorySearchIndex::new());
        let sink = Arc::new(MemoryObjectSink::default());
        let mut ix = indexer(&index, &sink, 3);
        let now = Instant::now();
        let mut checkpoints = Vec::new();
        for n in 0..3u32 {
            let data = order(&id(n));
            let p = pos(u64::from(n));
            let out = ix
                .process(
                    ArchiveRecord {
                        data: &data,
                        position: &p,
                        arrival: arrival(),
                    },
                    None,
                    now,
                )
                .await
                .expect("process");
            assert_eq!(out.disposition, Disposition::Buffered);
            checkpoints.push(out.checkpoint);
        }
        assert_eq!(checkpoints, vec![None, None, Some(pos(2))]);
        assert_eq!(index.count(), 3);
        assert_eq!(index.get(&id(1)).as_deref(), Some(order(&id(1)).as_slice()));
        assert_eq!(ix.buffered_documents(), 0);
    }

    #[tokio::test]
    async fn bad_records_and_rejected_items_become_dead_letters_and_duplicates_are_dropped() {
        let index = Arc::new(MemorySearchIndex::new());
        let sink = Arc::new(MemoryObjectSink::default());
        let mut ix = indexer(&index, &sink, 100);
        let mut window = DedupWindow::new(&DedupConfig::default(), "test");
        let now = Instant::now();
        let records: Vec<Vec<u8>> = vec![
            order(&id(1)),
            b"not json".to_vec(),
            order(&id(1)),
            order(&id(2)),
        ];
        let mut dispositions = Vec::new();
        for (n, data) in records.iter().enumerate() {
            let p = pos(n as u64);
            let out = ix
                .process(
                    ArchiveRecord {
                        data,
                        position: &p,
                        arrival: arrival(),
                    },
                    Some(&mut window),
                    now,
                )
                .await
                .expect("process");
            dispositions.push(out.disposition);
            assert_eq!(
                out.checkpoint, None,
                "nothing durable past a buffered document"
            );
        }
        assert_eq!(
            dispositions,
            vec![
                Disposition::Buffered,
                Disposition::DeadLettered,
                Disposition::Duplicate,
                Disposition::Buffered
            ]
        );
        // The cluster rejects the first document of the batch for good.
        index.fail_next_items([400]);
        assert_eq!(ix.flush().await.expect("flush"), Some(pos(3)));
        assert_eq!(index.count(), 1);
        assert!(index.get(&id(2)).is_some());
        let letters = sink
            .list("errors/chief-order-es-s3/2026/11/24/07/")
            .await
            .expect("list");
        assert_eq!(letters.len(), 2, "{letters:?}");
        let rejected = sink
            .get(&format!(
                "errors/chief-order-es-s3/2026/11/24/07/{SHARD}-{}-0",
                pos(0).sequence_number
            ))
            .await
            .expect("dead letter of the rejected item");
        let letter: crate::archive::DeadLetter =
            serde_json::from_slice(&rejected.body).expect("json");
        assert!(letter.error.contains("HTTP 400"), "{}", letter.error);
        assert_eq!(letter.data.as_bytes(), order(&id(1)).as_slice());
    }

    #[tokio::test]
    async fn an_index_rejecting_every_document_is_fatal_and_keeps_the_batch_that_showed_it() {
        let index = Arc::new(MemorySearchIndex::new());
        let sink = Arc::new(MemoryObjectSink::default());
        let mut ix = indexer_with(&index, &sink, 2, 5);
        let now = Instant::now();
        let offer = async |ix: &mut ShardIndexer<_, _>, n: u32| {
            let data = order(&id(n));
            let p = pos(u64::from(n));
            ix.process(
                ArchiveRecord {
                    data: &data,
                    position: &p,
                    arrival: arrival(),
                },
                None,
                now,
            )
            .await
        };
        // Batches of two; the cluster rejects: both, the first only, both, both.
        index.fail_next_items([400, 400]);
        offer(&mut ix, 1).await.expect("1");
        assert_eq!(offer(&mut ix, 2).await.expect("2").checkpoint, Some(pos(2)));
        index.fail_next_items([400]);
        offer(&mut ix, 3).await.expect("3");
        assert_eq!(offer(&mut ix, 4).await.expect("4").checkpoint, Some(pos(4)));
        index.fail_next_items([400, 400]);
        offer(&mut ix, 5).await.expect("5");
        assert_eq!(offer(&mut ix, 6).await.expect("6").checkpoint, Some(pos(6)));
        // 1 (3) + 2 (5, 6) in a row so far: 3 < 5, dead letters. Two more make 5.
        assert_eq!(sink.keys().len(), 5, "dead letters of 1, 2, 3, 5, 6");
        index.fail_next_items([400, 400]);
        offer(&mut ix, 7).await.expect("7");
        let err = offer(&mut ix, 8)
            .await
            .expect_err("the fifth in a row is fatal");
        assert!(!err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("index `orders` rejected the last 5 documents") && text.contains(SHARD),
            "{text}"
        );
        assert_eq!(
            sink.keys().len(),
            5,
            "the batch that tipped it is not dead-lettered"
        );
        assert_eq!(ix.buffered_documents(), 2, "it is kept");
        assert_eq!(ix.durable(), Some(&pos(6)), "nothing checkpointed past it");
        assert_eq!(index.count(), 1, "only 4 was indexed");

        // 0 turns the check off: every rejection is a dead letter.
        let index = Arc::new(MemorySearchIndex::new());
        let sink = Arc::new(MemoryObjectSink::default());
        let mut ix = indexer_with(&index, &sink, 2, 0);
        index.fail_next_items([400; 10]);
        for n in 1..=10 {
            offer(&mut ix, n).await.expect("dead-lettered");
        }
        assert_eq!(sink.keys().len(), 10);
    }

    #[tokio::test]
    async fn a_batch_that_keeps_failing_is_kept_and_not_checkpointed() {
        let index = Arc::new(MemorySearchIndex::new());
        let sink = Arc::new(MemoryObjectSink::default());
        let mut ix = indexer(&index, &sink, 100);
        let now = Instant::now();
        let data = order(&id(7));
        let p = pos(7);
        ix.process(
            ArchiveRecord {
                data: &data,
                position: &p,
                arrival: arrival(),
            },
            None,
            now,
        )
        .await
        .expect("process");
        index.fail_next_items(std::iter::repeat_n(429, 10_000));
        let err = ix.flush().await.expect_err("gives up at the deadline");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(ix.durable(), None);
        assert_eq!(ix.buffered_documents(), 1);
        index.clear_failures();
        assert_eq!(ix.flush().await.expect("flush"), Some(pos(7)));
        assert_eq!(index.count(), 1);
    }

    #[tokio::test]
    async fn an_old_batch_is_sent_when_its_age_is_reached() {
        let index = Arc::new(MemorySearchIndex::new());
        let sink = Arc::new(MemoryObjectSink::default());
        let mut ix = indexer(&index, &sink, 100);
        let now = Instant::now();
        let data = order(&id(9));
        let p = pos(9);
        ix.process(
            ArchiveRecord {
                data: &data,
                position: &p,
                arrival: arrival(),
            },
            None,
            now,
        )
        .await
        .expect("process");
        assert_eq!(ix.flush_if_due(now).await.expect("not due"), None);
        let later = now + Duration::from_millis(1_000);
        assert_eq!(ix.deadline(), Some(later));
        assert_eq!(ix.flush_if_due(later).await.expect("due"), Some(pos(9)));
    }
}
