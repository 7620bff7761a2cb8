//! The object writer: the [`ObjectSink`] trait, with [`S3ObjectSink`] (Amazon S3, or
//! moto on the local stack) and [`MemoryObjectSink`] (tests, benchmarks), and
//! [`put_with_retry`], a write retried with the shared back-off. Both sinks pass the one
//! conformance suite in `crates/pipeline/tests/it/object_sink.rs`.

pub mod template;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use chief_config::retry::RetryPolicy;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectSinkError {
    /// The service refused or could not complete the request.
    #[error("{operation} of `{key}` in bucket `{bucket}` failed: {source}")]
    Request {
        /// `PutObject`, `GetObject` or `ListObjectsV2`.
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key (or the prefix, for a listing).
        key: String,
        /// Whether trying again may succeed (throttling, 5xx, timeouts, connection errors).
        retryable: bool,
        /// What the client said.
        #[source]
        source: BoxError,
    },
    /// The object does not exist.
    #[error("object `{key}` not found in bucket `{bucket}`")]
    NotFound {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
}

impl ObjectSinkError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ObjectSinkError::Request { retryable, .. } => *retryable,
            ObjectSinkError::NotFound { .. } => false,
        }
    }
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The full key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An object read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The body.
    pub body: Bytes,
    /// The content type it was written with, if the store kept one.
    pub content_type: Option<String>,
}

/// A flat store of objects by key: what the archive sink writes to.
pub trait ObjectSink: Send + Sync {
    /// Writes (or overwrites) the object `key`.
    fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> impl Future<Output = Result<(), ObjectSinkError>> + Send;

    /// Every object whose key starts with `prefix`, in key order.
    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectMeta>, ObjectSinkError>> + Send;

    /// Reads the object `key`; [`ObjectSinkError::NotFound`] if there is none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Object, ObjectSinkError>> + Send;
}

impl<T: ObjectSink> ObjectSink for Arc<T> {
    fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> impl Future<Output = Result<(), ObjectSinkError>> + Send {
        (**self).put(key, body, content_type)
    }

    fn list(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectMeta>, ObjectSinkError>> + Send {
        (**self).list(prefix)
    }

    fn get(&self, key: &str) -> impl Future<Output = Result<Object, ObjectSinkError>> + Send {
        (**self).get(key)
    }
}

/// One S3 bucket, through the SDK client of `chief_config::aws::AwsClients::s3`.
#[derive(Debug, Clone)]
pub struct S3ObjectSink {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3ObjectSink {
    /// Writes to `bucket` with `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn error<E>(
        &self,
        operation: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> ObjectSinkError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let retryable = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(service) => {
                status.is_some_and(|s| s == 429 || s >= 500)
                    || matches!(
                        service.err().code().unwrap_or_default(),
                        "SlowDown"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "Throttling"
                            | "ThrottlingException"
                    )
            }
            _ => false,
        };
        ObjectSinkError::Request {
            operation,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            retryable,
            source: DisplayErrorContext(&err).to_string().into(),
        }
    }
}

impl ObjectSink for S3ObjectSink {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), ObjectSinkError> {
        let len = body.len();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        tracing::debug!(bucket = %self.bucket, key, bytes = len, "object written");
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectSinkError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    objects.push(ObjectMeta {
                        key: key.to_owned(),
                        size: object.size().map_or(0, |s| u64::try_from(s).unwrap_or(0)),
                    });
                }
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn get(&self, key: &str) -> Result<Object, ObjectSinkError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match &e {
                SdkError::ServiceError(service)
                    if matches!(service.err(), GetObjectError::NoSuchKey(_)) =>
                {
                    ObjectSinkError::NotFound {
                        bucket: self.bucket.clone(),
                        key: key.to_owned(),
                    }
                }
                _ => self.error("GetObject", key, e),
            })?;
        let content_type = output.content_type().map(str::to_owned);
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| ObjectSinkError::Request {
                operation: "GetObject",
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                retryable: true,
                source: Box::new(e),
            })?
            .into_bytes();
        Ok(Object { body, content_type })
    }
}

/// Objects in memory, with fault injection for tests of the callers' retries.
#[derive(Debug, Default)]
pub struct MemoryObjectSink {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    objects: BTreeMap<String, Object>,
    /// Errors the next puts fail with: `true` = retryable.
    failures: Vec<bool>,
    puts: u64,
}

impl MemoryObjectSink {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `count` puts fail (before writing anything), retryable or not.
    pub fn fail_next_puts(&self, count: usize, retryable: bool) {
        let mut state = self.lock();
        state.failures.extend(std::iter::repeat_n(retryable, count));
    }

    /// How many put calls were made, failed ones included.
    pub fn put_calls(&self) -> u64 {
        self.lock().puts
    }

    /// Every key, in order.
    pub fn keys(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock leaves the map consistent (every update is a
        // single insert), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ObjectSink for MemoryObjectSink {
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), ObjectSinkError> {
        let mut state = self.lock();
        state.puts += 1;
        if !state.failures.is_empty() {
            let retryable = state.failures.remove(0);
            return Err(ObjectSinkError::Request {
                operation: "PutObject",
                bucket: "memory".to_owned(),
                key: key.to_owned(),
                retryable,
                source: "injected failure".into(),
            });
        }
        state.objects.insert(
            key.to_owned(),
            Object {
                body,
                content_type: Some(content_type.to_owned()),
            },
        );
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectSinkError> {
        Ok(self
            .lock()
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, object)| ObjectMeta {
                key: key.clone(),
                size: object.body.len() as u64,
            })
            .collect())
    }

    async fn get(&self, key: &str) -> Result<Object, ObjectSinkError> {
        self.lock()
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ObjectSinkError::NotFound {
                bucket: "memory".to_owned(),
                key: key.to_owned(),
            })
    }
}

/// Writes `body` under `key`, retrying retryable failures with `retry`'s jittered
/// back-off until its deadline: the attempts it took, or the attempts and the last error.
///
/// # Errors
/// A failure that is not retryable, or a retryable one past the deadline.
pub async fn put_with_retry<S: ObjectSink>(
    sink: &S,
    retry: &RetryPolicy,
    key: &str,
    body: Bytes,
    content_type: &str,
) -> Result<u32, (u32, ObjectSinkError)> {
    let started = std::time::Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match sink.put(key, body.clone(), content_type).await {
            Ok(()) => return Ok(attempts),
            Err(error) if error.is_retryable() && retry.allows(started.elapsed()) => {
                let delay = retry.jittered(attempts);
                metrics::counter!("ObjectWriteRetries").increment(1);
                tracing::warn!(
                    key,
                    attempts,
                    delay_ms = delay.as_millis() as u64,
                    error = %error,
                    "write failed, retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err((attempts, error)),
        }
    }
}
