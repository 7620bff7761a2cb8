//! The queue of S3 notifications (`[loader] queue_url`): the archive bucket sends an
//! `s3:ObjectCreated:*` event for every object the executors write under the tables'
//! prefixes; a run drains the queue and loads every object it names, whatever its hour,
//! so an object written into an old hour (a shard stalled for a day) is not skipped the
//! way a look-back window would skip it.
//!
//! A message is deleted only once the database holds every object it names (loaded with
//! that ETag, or held in `load_rejects`), or the object is gone or is no executor object:
//! a load that fails leaves its messages, and SQS shows them again after
//! `queue_visibility_timeout_s`. The periodic whole listing (`full_listing_hours`) is the
//! safety net for anything the queue never said (notifications set up late, a message
//! that expired).
//!
//! Event format: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>
//! (the key URL-encoded, `+` for a space); S3's `s3:TestEvent`; and the same event wrapped
//! in an SNS notification (bucket → SNS topic → queue).

use std::collections::{BTreeMap, HashSet};

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use serde::Serialize;

use crate::LoaderError;

pub use chief_config::s3_event::{NotAnEvent, Notified, parse};

struct Message {
    id: String,
    receipt: String,
    keys: Vec<String>,
}

/// What one run took from the queue.
pub struct Inbox {
    url: String,
    messages: Vec<Message>,
    objects: BTreeMap<String, Notified>,
    settled: HashSet<String>,
}

/// What a run did with the queue, for its report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueReport {
    /// Messages received.
    pub received: u64,
    /// Distinct objects they named.
    pub objects: u64,
    /// Messages deleted (every object they name is in the database, gone or no executor
    /// object).
    pub deleted: u64,
    /// Messages left to come back (an object not loaded yet).
    pub kept: u64,
    /// Messages that were not S3 events (deleted, logged).
    pub not_events: u64,
}

fn sqs_error<E>(operation: &'static str, queue: &str, err: SdkError<E>) -> LoaderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let text = match &err {
        SdkError::ServiceError(service) => format!(
            "{}: {}",
            service.err().code().unwrap_or("unknown error"),
            service.err().message().unwrap_or("no message")
        ),
        _ => DisplayErrorContext(&err).to_string(),
    };
    LoaderError::Sqs {
        operation,
        queue: queue.to_owned(),
        source: text.into(),
    }
}

impl Inbox {
    /// Receives up to `max` messages from `url` (long polls of 1 s until one comes back
    /// empty), each hidden from other receivers for `visibility_s`.
    ///
    /// # Errors
    /// [`LoaderError::Sqs`] when SQS refuses or cannot be reached.
    pub async fn receive(
        sqs: &aws_sdk_sqs::Client,
        url: &str,
        max: usize,
        visibility_s: u32,
        report: &mut QueueReport,
    ) -> Result<Self, LoaderError> {
        let mut inbox = Inbox {
            url: url.to_owned(),
            messages: Vec::new(),
            objects: BTreeMap::new(),
            settled: HashSet::new(),
        };
        let visibility = i32::try_from(visibility_s).unwrap_or(i32::MAX);
        while inbox.messages.len() < max {
            let batch = i32::try_from((max - inbox.messages.len()).min(10)).unwrap_or(10);
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(batch)
                .visibility_timeout(visibility)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| sqs_error("ReceiveMessage", url, e))?;
            let messages = out.messages();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                    continue;
                };
                report.received += 1;
                let keys = match parse(m.body().unwrap_or_default()) {
                    Ok(objects) => objects
                        .into_iter()
                        .map(|o| {
                            let key = o.key.clone();
                            inbox.objects.insert(key.clone(), o);
                            key
                        })
                        .collect(),
                    Err(e) => {
                        // Nothing to load can come of it; the whole listing is the net.
                        report.not_events += 1;
                        tracing::warn!(queue = url, message_id = id, error = %e,
                            body = %m.body().unwrap_or_default().chars().take(200).collect::<String>(),
                            "a queue message that is not an S3 event; deleted");
                        Vec::new()
                    }
                };
                inbox.messages.push(Message {
                    id: id.to_owned(),
                    receipt: receipt.to_owned(),
                    keys,
                });
            }
        }
        report.objects = inbox.objects.len() as u64;
        Ok(inbox)
    }

    /// The objects named under `prefix/`.
    pub fn under(&self, prefix: &str) -> Vec<Notified> {
        let start = format!("{prefix}/");
        self.objects
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Marks `key` as handled: the database holds it, it is gone, or it is no executor
    /// object.
    pub fn settle(&mut self, key: &str) {
        self.settled.insert(key.to_owned());
    }

    /// Marks every object no table's prefix covers as handled (nothing will load them).
    pub fn settle_outside(&mut self, prefixes: &[&str]) {
        let outside: Vec<String> = self
            .objects
            .keys()
            .filter(|k| !prefixes.iter().any(|p| k.starts_with(&format!("{p}/"))))
            .cloned()
            .collect();
        for key in outside {
            tracing::warn!(queue = %self.url, key = %key,
                "the queue names an object under no table's prefix; not loaded");
            self.settled.insert(key);
        }
    }

    /// Deletes the messages whose objects are all handled; the others come back after
    /// their visibility timeout.
    ///
    /// # Errors
    /// [`LoaderError::Sqs`] when a delete request fails (those messages come back and
    /// are handled again: their objects are in `load_history` by then).
    pub async fn delete_settled(
        &self,
        sqs: &aws_sdk_sqs::Client,
        report: &mut QueueReport,
    ) -> Result<(), LoaderError> {
        let (done, kept): (Vec<&Message>, Vec<&Message>) = self
            .messages
            .iter()
            .partition(|m| m.keys.iter().all(|k| self.settled.contains(k)));
        report.kept = kept.len() as u64;
        for chunk in done.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt)
                        .build()
                        .ok()
                })
                .collect();
            let out = sqs
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sqs_error("DeleteMessageBatch", &self.url, e))?;
            report.deleted += out.successful().len() as u64;
            if let Some(failed) = out.failed().first() {
                let which = failed
                    .id()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| chunk.get(i))
                    .map_or("?", |m| m.id.as_str());
                return Err(LoaderError::Sqs {
                    operation: "DeleteMessageBatch",
                    queue: self.url.clone(),
                    source: format!(
                        "{} of {} not deleted, first {which}: {}: {}",
                        out.failed().len(),
                        chunk.len(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    )
                    .into(),
                });
            }
        }
        Ok(())
    }
}
