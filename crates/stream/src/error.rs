//! Errors of Kinesis calls, classified once: retryable or not, and a short code for the
//! `ErrorsByCode` metric.

/// A Kinesis call failed as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The stream does not exist (or is being deleted).
    #[error("{operation}: stream {stream} not found: {message}")]
    StreamNotFound {
        /// The API call.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// Kinesis' message.
        message: String,
    },
    /// Kinesis throttled the call (ProvisionedThroughputExceeded, LimitExceeded, KMS throttling).
    #[error("{operation} on {stream} throttled: {code}: {message}")]
    Throttled {
        /// The API call.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// Error code.
        code: String,
        /// Kinesis' message.
        message: String,
    },
    /// Kinesis answered with an error.
    #[error("{operation} on {stream} failed: {code}: {message}")]
    Service {
        /// The API call.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// Error code (`InternalFailure`, `InvalidArgumentException`, `HTTP 500`…).
        code: String,
        /// Kinesis' message.
        message: String,
        /// Whether trying again may succeed (5xx, internal failures).
        retryable: bool,
    },
    /// The request did not get an answer (connection refused or reset, bad response).
    #[error("{operation} on {stream}: no answer from Kinesis: {message}")]
    Transport {
        /// The API call.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// What happened.
        message: String,
    },
    /// The shard iterator expired (Kinesis iterators live 5 minutes) or is unknown:
    /// get a new one from the last position read.
    #[error("{operation} on {stream}: shard iterator expired: {message}")]
    ExpiredIterator {
        /// The API call.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// Kinesis' message.
        message: String,
    },
    /// The call timed out.
    #[error("{operation} on {stream} timed out")]
    Timeout {
        /// The API call.
        operation: &'static str,
        /// The stream.
        stream: String,
    },
}

impl StreamError {
    /// Whether the process cannot go on: the stream is gone, or the credentials are
    /// refused or not allowed the call. Retrying does not help; an operator must act.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::StreamNotFound { .. } => true,
            Self::Service { code, .. } => is_fatal_code(code),
            _ => false,
        }
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::StreamNotFound { .. } | Self::ExpiredIterator { .. } => false,
            Self::Throttled { .. } | Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Service { retryable, .. } => *retryable,
        }
    }

    /// A short, low-cardinality code for metrics and attempt records.
    pub fn code(&self) -> &str {
        match self {
            Self::StreamNotFound { .. } => "ResourceNotFoundException",
            Self::Throttled { code, .. } | Self::Service { code, .. } => code,
            Self::ExpiredIterator { .. } => "ExpiredIteratorException",
            Self::Transport { .. } => "Transport",
            Self::Timeout { .. } => "Timeout",
        }
    }
}

/// One PutRecords entry was refused (the others in the call may have succeeded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PutEntryError {
    /// `ProvisionedThroughputExceededException`, `InternalFailure`, `KMSThrottlingException`…
    pub code: String,
    /// Kinesis' message.
    pub message: String,
}

impl PutEntryError {
    /// The code Kinesis uses for a shard over its write limit.
    pub const THROTTLED: &'static str = "ProvisionedThroughputExceededException";
    /// The code Kinesis uses for an internal error on one entry.
    pub const INTERNAL_FAILURE: &'static str = "InternalFailure";

    /// Whether this is throttling (the shard's write limit, or KMS).
    pub fn is_throttling(&self) -> bool {
        self.code == Self::THROTTLED || self.code.contains("Throttling")
    }
}

/// An SDK error and its causes on one readable line (`a: b: c`), for logs and error
/// messages. `Debug` would spell out connector state or the whole credential chain, and
/// the SDK's `DisplayErrorContext` appends that `Debug` too.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Some layers repeat their cause in their own message.
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// AWS error codes no retry can fix: missing resources, refused or insufficient
/// credentials (the same codes across Kinesis, DynamoDB and S3).
pub fn is_fatal_code(code: &str) -> bool {
    matches!(
        code,
        "ResourceNotFoundException"
            | "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "NoSuchBucket"
            | "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSNotFoundException"
    )
}
