//! Puts records to a stream with PutRecords: 500 (and 5 MiB) a call, only the refused entries sent
//! again, with jittered back-off, up to 10 attempts.

use chief_config::retry::RetryPolicy;
use chief_stream::{PutEntry, StreamClient};

/// Why records were not all put.
#[derive(Debug, Clone, thiserror::Error)]
#[error("putting to {stream}: {message}")]
pub struct PutError {
    /// The stream.
    pub stream: String,
    /// Why.
    pub message: String,
    /// No retry can help (the stream is gone, access is denied).
    pub fatal: bool,
}

/// Puts every entry of `entries` to `stream`, in order within each call.
///
/// # Errors
/// A call refused as a whole, or entries still refused after 10 attempts.
pub async fn put_all<C: StreamClient>(
    client: &C,
    stream: &str,
    entries: Vec<PutEntry>,
) -> Result<(), PutError> {
    let retry = RetryPolicy::default();
    let mut rest = entries;
    while !rest.is_empty() {
        // 500 entries and 5 MiB a call at most.
        let mut take = 0;
        let mut bytes = 0;
        while take < rest.len() && take < 500 && (take == 0 || bytes + rest[take].size() <= 5 << 20)
        {
            bytes += rest[take].size();
            take += 1;
        }
        let tail = rest.split_off(take);
        let mut pending = rest;
        rest = tail;
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let results = client
                .put_records(stream, pending.clone())
                .await
                .map_err(|e| PutError {
                    stream: stream.to_owned(),
                    fatal: e.is_fatal(),
                    message: e.to_string(),
                })?;
            let failed: Vec<PutEntry> = pending
                .into_iter()
                .zip(results)
                .filter(|(_, r)| r.is_err())
                .map(|(e, _)| e)
                .collect();
            if !failed.is_empty() {
                if attempt >= 10 {
                    return Err(PutError {
                        stream: stream.to_owned(),
                        fatal: false,
                        message: format!(
                            "{} records still refused after 10 attempts",
                            failed.len()
                        ),
                    });
                }
                tokio::time::sleep(retry.jittered(attempt)).await;
            }
            pending = failed;
        }
    }
    Ok(())
}
