//! The S3 side: listing a table's objects, reading them (line counts, local-mode
//! downloads) and writing Aurora MANIFESTs.

use crate::LoaderError;
use crate::lines::LineCounter;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

/// An object as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The key.
    pub key: String,
    /// The ETag, without quotes.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
}

/// An object as read: what [`load_history`](crate::history) records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadObject {
    /// The key.
    pub key: String,
    /// The ETag of the version read, without quotes.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Lines (rows) in it, as `LOAD DATA` reads them ([`crate::lines`]).
    pub lines: u64,
}

fn s3_error<E>(
    operation: &'static str,
    bucket: &str,
    key: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> LoaderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    // A service error says it in its code and message; the rest (timeouts, connection
    // failures) in the error chain.
    let text = match &err {
        SdkError::ServiceError(service) => format!(
            "{}: {} (HTTP {})",
            service.err().code().unwrap_or("unknown error"),
            service.err().message().unwrap_or("no message"),
            service.raw().status().as_u16()
        ),
        _ => DisplayErrorContext(&err).to_string(),
    };
    LoaderError::S3 {
        operation,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        source: text.into(),
    }
}

fn unquote(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim_matches('"').to_owned()
}

/// Every object under `prefix` (ending in `/`) whose key sorts after `start_after`, in
/// key order.
pub async fn list(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    start_after: Option<&str>,
) -> Result<Vec<ListedObject>, LoaderError> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_start_after(start_after.map(str::to_owned))
        .into_paginator()
        .send();
    let mut objects = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| s3_error("ListObjectsV2", bucket, prefix, e))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            objects.push(ListedObject {
                key: key.to_owned(),
                etag: unquote(object.e_tag()),
                size: object
                    .size()
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            });
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

/// `key` as it is now (HeadObject), or `None` when it is gone.
pub async fn head(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<ListedObject>, LoaderError> {
    match s3.head_object().bucket(bucket).key(key).send().await {
        Ok(out) => Ok(Some(ListedObject {
            key: key.to_owned(),
            etag: unquote(out.e_tag()),
            size: out
                .content_length()
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0),
        })),
        Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
        Err(e) => Err(s3_error("HeadObject", bucket, key, e)),
    }
}

/// Reads `key` to the end, keeping its body if `keep_body`; returns what it held.
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keep_body: bool,
) -> Result<(ReadObject, Option<Vec<u8>>), LoaderError> {
    let output = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error("GetObject", bucket, key, e))?;
    let etag = unquote(output.e_tag());
    let mut kept = keep_body.then(|| {
        Vec::with_capacity(
            output
                .content_length()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0),
        )
    });
    let mut body = output.body;
    let (mut size, mut lines) = (0u64, LineCounter::default());
    loop {
        let chunk = match body.next().await {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                return Err(LoaderError::S3 {
                    operation: "GetObject (body)",
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    source: Box::new(e),
                });
            }
        };
        size += chunk.len() as u64;
        lines.feed(&chunk);
        if let Some(kept) = &mut kept {
            kept.extend_from_slice(&chunk);
        }
    }
    let object = ReadObject {
        key: key.to_owned(),
        etag,
        size,
        lines: lines.finish(),
    };
    Ok((object, kept))
}

/// Reads `keys` (at most `concurrency` at a time), keeping their bodies if `keep_bodies`;
/// results in the order of `keys`.
pub async fn read_all(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    keys: &[String],
    keep_bodies: bool,
    concurrency: usize,
) -> Result<Vec<(ReadObject, Option<Vec<u8>>)>, LoaderError> {
    let mut results: Vec<Option<(ReadObject, Option<Vec<u8>>)>> = Vec::new();
    results.resize_with(keys.len(), || None);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut first_error = None;
    loop {
        while first_error.is_none() && next < keys.len() && tasks.len() < concurrency.max(1) {
            let (s3, bucket, key) = (s3.clone(), bucket.to_owned(), keys[next].clone());
            let index = next;
            tasks.spawn(async move { (index, read(&s3, &bucket, &key, keep_bodies).await) });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok((index, Ok(read))) => results[index] = Some(read),
            Ok((_, Err(e))) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(LoaderError::Task(join.to_string()));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| LoaderError::Task("an object read did not finish".into())))
        .collect()
}

/// Writes an Aurora MANIFEST.
pub async fn put_manifest(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: String,
) -> Result<(), LoaderError> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await
        .map_err(|e| s3_error("PutObject", bucket, key, e))?;
    Ok(())
}
