//! [`StreamClient`] over the AWS SDK Kinesis client.

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{
    ConsumerStatus, PutRecordsRequestEntry, ShardIteratorType, StartingPosition,
    SubscribeToShardEventStream,
};
use chief_aggregation::parse_hash_key;

use crate::{
    ChildShard, GetRecordsOutput, IteratorPosition, PutEntry, PutEntryError, PutEntryResult,
    PutSuccess, ReceivedRecord, Shard, StreamClient, StreamError, Subscription, SubscriptionEvent,
};

/// Kinesis through the AWS SDK (build the SDK client with `chief_config::aws::AwsClients`).
#[derive(Debug, Clone)]
pub struct KinesisClient {
    client: aws_sdk_kinesis::Client,
}

impl KinesisClient {
    /// Wraps an SDK client.
    pub fn new(client: aws_sdk_kinesis::Client) -> Self {
        Self { client }
    }

    /// The SDK client, for calls the trait does not cover.
    pub fn sdk(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }

    /// CreateStream with `shards` shards. `Ok(true)` if it was created, `Ok(false)` if a
    /// stream of that name already exists (its shard count is left as it is).
    pub async fn create_stream(&self, stream: &str, shards: i32) -> Result<bool, StreamError> {
        match self
            .client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(classify("CreateStream", stream, e)),
        }
    }

    /// DescribeStreamSummary.
    async fn summary(
        &self,
        stream: &str,
    ) -> Result<aws_sdk_kinesis::types::StreamDescriptionSummary, StreamError> {
        self.client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| classify("DescribeStreamSummary", stream, e))?
            .stream_description_summary
            .ok_or_else(|| malformed("DescribeStreamSummary", stream, "no stream summary"))
    }

    /// Polls DescribeStreamSummary every 100 ms until the stream is ACTIVE (after a create,
    /// split or merge); returns its open shard count. Gives up after `timeout`.
    pub async fn wait_until_active(
        &self,
        stream: &str,
        timeout: std::time::Duration,
    ) -> Result<i32, StreamError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let d = self.summary(stream).await?;
            if d.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active {
                return Ok(d.open_shard_count());
            }
            if std::time::Instant::now() >= deadline {
                return Err(StreamError::Timeout {
                    operation: "DescribeStreamSummary",
                    stream: stream.to_owned(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Turns an SDK error into a [`StreamError`], classifying it once.
fn classify<E>(operation: &'static str, stream: &str, err: SdkError<E, HttpResponse>) -> StreamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let stream = stream.to_owned();
    // One readable line with every cause (a Debug dump would spell out the whole
    // credential chain or connector state).
    let context = crate::error_line(&err);
    match err {
        SdkError::TimeoutError(_) => StreamError::Timeout { operation, stream },
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => StreamError::Transport {
            operation,
            stream,
            message: context,
        },
        SdkError::ServiceError(e) => {
            let server_fault = e.raw().status().as_u16() >= 500;
            let code = match e.err().code() {
                Some(code) => code.to_owned(),
                None => format!("HTTP {}", e.raw().status().as_u16()),
            };
            let message = e.err().message().unwrap_or_default().to_owned();
            service_error(operation, stream, code, message, server_fault)
        }
        other => {
            let code = other.code().unwrap_or("Unknown").to_owned();
            let message = other
                .message()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{other:?}"));
            service_error(operation, stream, code, message, false)
        }
    }
}

fn service_error(
    operation: &'static str,
    stream: String,
    code: String,
    message: String,
    server_fault: bool,
) -> StreamError {
    match code.as_str() {
        "ExpiredIteratorException" => StreamError::ExpiredIterator {
            operation,
            stream,
            message,
        },
        "ResourceNotFoundException" => StreamError::StreamNotFound {
            operation,
            stream,
            message,
        },
        "ProvisionedThroughputExceededException"
        | "LimitExceededException"
        | "ThrottlingException"
        | "KMSThrottlingException" => StreamError::Throttled {
            operation,
            stream,
            code,
            message,
        },
        _ => {
            let retryable = server_fault
                || matches!(
                    code.as_str(),
                    "InternalFailure" | "InternalFailureException" | "ServiceUnavailable"
                );
            StreamError::Service {
                operation,
                stream,
                code,
                message,
                retryable,
            }
        }
    }
}

fn invalid_shard(stream: &str, what: String) -> StreamError {
    StreamError::Service {
        operation: "ListShards",
        stream: stream.to_owned(),
        code: "InvalidShardDescription".to_owned(),
        message: what,
        retryable: false,
    }
}

impl StreamClient for KinesisClient {
    async fn list_shards(&self, stream: &str) -> Result<Vec<Shard>, StreamError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            // With a NextToken, Kinesis refuses the stream name.
            let request = match &next_token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(stream),
            };
            let page = request
                .send()
                .await
                .map_err(|e| classify("ListShards", stream, e))?;
            for s in page.shards() {
                let range = s.hash_key_range().ok_or_else(|| {
                    invalid_shard(
                        stream,
                        format!("shard {} has no hash key range", s.shard_id()),
                    )
                })?;
                let parse = |v: &str| {
                    parse_hash_key(v)
                        .map_err(|e| invalid_shard(stream, format!("shard {}: {e}", s.shard_id())))
                };
                let seq = s.sequence_number_range().ok_or_else(|| {
                    invalid_shard(
                        stream,
                        format!("shard {} has no sequence range", s.shard_id()),
                    )
                })?;
                shards.push(Shard {
                    shard_id: s.shard_id().to_owned(),
                    parent_shard_id: s.parent_shard_id().map(str::to_owned),
                    adjacent_parent_shard_id: s.adjacent_parent_shard_id().map(str::to_owned),
                    starting_hash_key: parse(range.starting_hash_key())?,
                    ending_hash_key: parse(range.ending_hash_key())?,
                    starting_sequence_number: seq.starting_sequence_number().to_owned(),
                    ending_sequence_number: seq.ending_sequence_number().map(str::to_owned),
                });
            }
            next_token = page.next_token().map(str::to_owned);
            if next_token.is_none() {
                return Ok(shards);
            }
        }
    }

    async fn put_records(
        &self,
        stream: &str,
        entries: Vec<PutEntry>,
    ) -> Result<Vec<PutEntryResult>, StreamError> {
        let count = entries.len();
        let mut request = self.client.put_records().stream_name(stream);
        for e in entries {
            let mut b = PutRecordsRequestEntry::builder()
                .partition_key(e.partition_key)
                .data(Blob::new(e.data));
            if let Some(ehk) = e.explicit_hash_key {
                b = b.explicit_hash_key(ehk);
            }
            let entry = b.build().map_err(|err| StreamError::Service {
                operation: "PutRecords",
                stream: stream.to_owned(),
                code: "InvalidArgumentException".to_owned(),
                message: err.to_string(),
                retryable: false,
            })?;
            request = request.records(entry);
        }
        let out = request
            .send()
            .await
            .map_err(|e| classify("PutRecords", stream, e))?;
        let results: Vec<PutEntryResult> = out
            .records()
            .iter()
            .map(
                |r| match (r.shard_id(), r.sequence_number(), r.error_code()) {
                    (Some(shard), Some(seq), None) => Ok(PutSuccess {
                        shard_id: shard.to_owned(),
                        sequence_number: seq.to_owned(),
                    }),
                    (_, _, code) => Err(PutEntryError {
                        code: code.unwrap_or("Unknown").to_owned(),
                        message: r.error_message().unwrap_or_default().to_owned(),
                    }),
                },
            )
            .collect();
        if results.len() != count {
            return Err(StreamError::Service {
                operation: "PutRecords",
                stream: stream.to_owned(),
                code: "MalformedResponse".to_owned(),
                message: format!("{} results for {count} entries", results.len()),
                retryable: true,
            });
        }
        Ok(results)
    }

    async fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<String, StreamError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard_id);
        let (kind, sequence_number, timestamp) = api_position(position);
        let request = request
            .shard_iterator_type(kind)
            .set_starting_sequence_number(sequence_number)
            .set_timestamp(timestamp);
        let out = request
            .send()
            .await
            .map_err(|e| classify("GetShardIterator", stream, e))?;
        out.shard_iterator.ok_or_else(|| StreamError::Service {
            operation: "GetShardIterator",
            stream: stream.to_owned(),
            code: "MalformedResponse".to_owned(),
            message: format!("no shard iterator for {shard_id}"),
            retryable: true,
        })
    }

    async fn get_records(
        &self,
        stream: &str,
        iterator: &str,
        limit: u32,
    ) -> Result<GetRecordsOutput, StreamError> {
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit.clamp(1, 10_000) as i32)
            .send()
            .await
            .map_err(|e| classify("GetRecords", stream, e))?;
        let records = out.records.into_iter().map(received).collect();
        let child_shards =
            child_shards("GetRecords", stream, out.child_shards.unwrap_or_default())?;
        Ok(GetRecordsOutput {
            records,
            next_shard_iterator: out.next_shard_iterator,
            millis_behind_latest: out.millis_behind_latest.map(|m| m.max(0) as u64),
            child_shards,
        })
    }

    async fn register_consumer(
        &self,
        stream: &str,
        consumer_name: &str,
    ) -> Result<String, StreamError> {
        let stream_arn = self.summary(stream).await?.stream_arn().to_owned();
        let registered = self
            .client
            .register_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(consumer_name)
            .send()
            .await;
        let consumer_arn = match registered {
            Ok(out) => out.consumer().map(|c| c.consumer_arn().to_owned()),
            // Registered already (by this application's other workers, or an earlier run).
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                None
            }
            Err(e) => return Err(classify("RegisterStreamConsumer", stream, e)),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let request = self.client.describe_stream_consumer();
            let request = match &consumer_arn {
                Some(arn) => request.consumer_arn(arn),
                None => request.stream_arn(&stream_arn).consumer_name(consumer_name),
            };
            let out = request
                .send()
                .await
                .map_err(|e| classify("DescribeStreamConsumer", stream, e))?;
            let description = out.consumer_description().ok_or_else(|| {
                malformed("DescribeStreamConsumer", stream, "no consumer description")
            })?;
            if description.consumer_status() == &ConsumerStatus::Active {
                return Ok(description.consumer_arn().to_owned());
            }
            if std::time::Instant::now() >= deadline {
                return Err(StreamError::Timeout {
                    operation: "DescribeStreamConsumer",
                    stream: stream.to_owned(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn subscribe_to_shard(
        &self,
        stream: &str,
        consumer_arn: &str,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<Subscription, StreamError> {
        const OP: &str = "SubscribeToShard";
        let (kind, sequence_number, timestamp) = api_position(position);
        let start = StartingPosition::builder()
            .r#type(kind)
            .set_sequence_number(sequence_number)
            .set_timestamp(timestamp)
            .build()
            .map_err(|e| StreamError::Service {
                operation: OP,
                stream: stream.to_owned(),
                code: "InvalidArgumentException".to_owned(),
                message: e.to_string(),
                retryable: false,
            })?;
        let mut out = self
            .client
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard_id)
            .starting_position(start)
            .send()
            .await
            .map_err(|e| classify(OP, stream, e))?;
        let stream = stream.to_owned();
        Ok(Subscription::spawn(move |tx| async move {
            loop {
                let event = match out.event_stream.recv().await {
                    Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(e))) => e,
                    Ok(Some(other)) => {
                        tracing::debug!(event = ?other, "unknown SubscribeToShard event ignored");
                        continue;
                    }
                    Ok(None) => return,
                    Err(e) => {
                        // Sent if the reader still listens; the subscription ends either way.
                        let _ = tx.send(Err(event_error(OP, &stream, e))).await;
                        return;
                    }
                };
                let converted = child_shards(OP, &stream, event.child_shards.unwrap_or_default())
                    .map(|child_shards| SubscriptionEvent {
                        records: event.records.into_iter().map(received).collect(),
                        // Kinesis sends no continuation once the shard's end is reached.
                        continuation_sequence_number: Some(event.continuation_sequence_number)
                            .filter(|c| !c.is_empty()),
                        millis_behind_latest: Some(event.millis_behind_latest.max(0) as u64),
                        child_shards,
                    });
                let failed = converted.is_err();
                if tx.send(converted).await.is_err() || failed {
                    return;
                }
            }
        }))
    }
}

/// A position as GetShardIterator and SubscribeToShard take it: the iterator type, and the
/// sequence number or the timestamp it needs.
fn api_position(
    position: &IteratorPosition,
) -> (ShardIteratorType, Option<String>, Option<DateTime>) {
    match position {
        IteratorPosition::TrimHorizon => (ShardIteratorType::TrimHorizon, None, None),
        IteratorPosition::Latest => (ShardIteratorType::Latest, None, None),
        IteratorPosition::AtTimestamp(at) => (
            ShardIteratorType::AtTimestamp,
            None,
            Some(DateTime::from(*at)),
        ),
        IteratorPosition::AtSequenceNumber(seq) => {
            (ShardIteratorType::AtSequenceNumber, Some(seq.clone()), None)
        }
        IteratorPosition::AfterSequenceNumber(seq) => (
            ShardIteratorType::AfterSequenceNumber,
            Some(seq.clone()),
            None,
        ),
    }
}

/// A record as GetRecords and SubscribeToShard return it.
fn received(r: aws_sdk_kinesis::types::Record) -> ReceivedRecord {
    ReceivedRecord {
        sequence_number: r.sequence_number,
        partition_key: r.partition_key.unwrap_or_default(),
        approximate_arrival: r
            .approximate_arrival_timestamp
            .and_then(|t| std::time::SystemTime::try_from(t).ok()),
        data: bytes::Bytes::from(r.data.into_inner()),
    }
}

/// The child shards reported at the end of a closed shard.
fn child_shards(
    operation: &'static str,
    stream: &str,
    children: Vec<aws_sdk_kinesis::types::ChildShard>,
) -> Result<Vec<ChildShard>, StreamError> {
    let mut out = Vec::with_capacity(children.len());
    for c in children {
        let parse = |v: &str| {
            parse_hash_key(v).map_err(|e| {
                malformed(
                    operation,
                    stream,
                    &format!("child shard {}: {e}", c.shard_id),
                )
            })
        };
        let (start, end) = match &c.hash_key_range {
            Some(range) => (
                parse(range.starting_hash_key())?,
                parse(range.ending_hash_key())?,
            ),
            None => (0, u128::MAX),
        };
        out.push(ChildShard {
            shard_id: c.shard_id.clone(),
            parent_shards: c.parent_shards.clone(),
            starting_hash_key: start,
            ending_hash_key: end,
        });
    }
    Ok(out)
}

fn malformed(operation: &'static str, stream: &str, message: &str) -> StreamError {
    StreamError::Service {
        operation,
        stream: stream.to_owned(),
        code: "MalformedResponse".to_owned(),
        message: message.to_owned(),
        retryable: false,
    }
}

/// An error inside a SubscribeToShard event stream (a modelled exception event such as
/// `ResourceInUseException`, or a broken connection).
fn event_error<R: std::fmt::Debug>(
    operation: &'static str,
    stream: &str,
    err: SdkError<SubscribeToShardEventStreamError, R>,
) -> StreamError {
    use SubscribeToShardEventStreamError as E;
    match err {
        SdkError::ServiceError(e) => {
            let err = e.err();
            // The exception events' codes are their variants (the metadata may lack them).
            let code = match err {
                E::ResourceNotFoundException(_) => "ResourceNotFoundException",
                E::ResourceInUseException(_) => "ResourceInUseException",
                E::KmsDisabledException(_) => "KMSDisabledException",
                E::KmsInvalidStateException(_) => "KMSInvalidStateException",
                E::KmsAccessDeniedException(_) => "KMSAccessDeniedException",
                E::KmsNotFoundException(_) => "KMSNotFoundException",
                E::KmsOptInRequired(_) => "KMSOptInRequired",
                E::KmsThrottlingException(_) => "KMSThrottlingException",
                E::InternalFailureException(_) => "InternalFailureException",
                _ => err.code().unwrap_or("Unknown"),
            };
            let message = err.message().unwrap_or_default().to_owned();
            service_error(
                operation,
                stream.to_owned(),
                code.to_owned(),
                message,
                false,
            )
        }
        SdkError::TimeoutError(_) => StreamError::Timeout {
            operation,
            stream: stream.to_owned(),
        },
        other => StreamError::Transport {
            operation,
            stream: stream.to_owned(),
            message: format!("{other:?}"),
        },
    }
}
