//! S3 event notifications, as S3 sends them to SQS (or through SNS): the objects created.
//! Read by `chief-loader` (its queue of archive objects) and `chief-s3-ingest`.
//!
//! Event format: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>
//! (the key URL-encoded, `+` for a space); S3's `s3:TestEvent`; and the same event wrapped
//! in an SNS notification (bucket → SNS topic → queue).

use serde_json::Value;

/// An object a notification named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    /// The bucket.
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
    /// The ETag it had when the event was sent, without quotes.
    pub etag: String,
    /// Its size then.
    pub size: u64,
}

/// Why a message body is not an S3 notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an S3 event notification: {0}")]
pub struct NotAnEvent(String);

/// The objects created that a message body names (none for `s3:TestEvent` and for other
/// event types).
///
/// # Errors
/// The body is not JSON, or not an S3 event (nor one wrapped by SNS).
pub fn parse(body: &str) -> Result<Vec<Notified>, NotAnEvent> {
    let value: Value = serde_json::from_str(body).map_err(|e| NotAnEvent(e.to_string()))?;
    // Bucket → SNS → SQS: the event is the notification's Message.
    if value["Type"] == "Notification"
        && let Some(inner) = value["Message"].as_str()
    {
        return parse(inner);
    }
    if value["Event"] == "s3:TestEvent" {
        return Ok(Vec::new());
    }
    let records = value["Records"]
        .as_array()
        .ok_or_else(|| NotAnEvent("no Records".to_owned()))?;
    let mut out = Vec::new();
    for record in records {
        let name = record["eventName"].as_str().unwrap_or_default();
        if !name.starts_with("ObjectCreated:") {
            continue;
        }
        let object = &record["s3"]["object"];
        let key = object["key"]
            .as_str()
            .ok_or_else(|| NotAnEvent("a record without s3.object.key".to_owned()))?;
        out.push(Notified {
            bucket: record["s3"]["bucket"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            key: decode_key(key)?,
            etag: object["eTag"]
                .as_str()
                .unwrap_or_default()
                .trim_matches('"')
                .to_owned(),
            size: object["size"].as_u64().unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A key as S3 writes it in an event: URL-encoded, `+` for a space.
fn decode_key(encoded: &str) -> Result<String, NotAnEvent> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = encoded
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| NotAnEvent(format!("bad escape in key {encoded:?}")))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| NotAnEvent(format!("key {encoded:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_created_events_decoding_the_key() {
        // As S3 sends it (moto encodes `/` too; S3 leaves it).
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"object":{"key":"ChiefOrderS3%2F2024%2F05%2F01%2F10%2Fa+b%2Bc","size":42,"eTag":"0123abc"}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"object":{"key":"x"}}}]}"#;
        assert_eq!(
            parse(body).expect("event"),
            vec![Notified {
                bucket: String::new(),
                key: "ChiefOrderS3/2024/05/01/10/a b+c".to_owned(),
                etag: "0123abc".to_owned(),
                size: 42
            }]
        );
        let s3_style = r#"{"Records":[{"eventName":"ObjectCreated:CompleteMultipartUpload",
            "s3":{"bucket":{"name":"logs"},"object":{"key":"p/2024/05/01/10/k","size":1,"eTag":"\"e\""}}}]}"#;
        assert_eq!(parse(s3_style).expect("event")[0].key, "p/2024/05/01/10/k");
        assert_eq!(parse(s3_style).expect("event")[0].etag, "e");
        assert_eq!(parse(s3_style).expect("event")[0].bucket, "logs");
    }

    #[test]
    fn test_events_and_sns_wrapping_are_understood_and_junk_is_refused() {
        assert_eq!(
            parse(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#),
            Ok(Vec::new())
        );
        let inner = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"p/k","size":1,"eTag":"e"}}}]}"#;
        let sns = serde_json::json!({"Type": "Notification", "Message": inner}).to_string();
        assert_eq!(parse(&sns).expect("wrapped")[0].key, "p/k");
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"hello":1}"#).is_err());
        assert!(parse(r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"bad%zz"}}}]}"#).is_err());
    }
}
