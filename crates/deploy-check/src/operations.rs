//! Which AWS SDK operations a binary calls, found two ways, and the IAM action each needs.
//!
//! - [`from_binary`]: the operations compiled into a built binary. Every SDK operation,
//!   whether sent by its fluent builder or by a paginator, runs through
//!   `aws_sdk_<service>::operation::<op>::<Op>::orchestrate`, and the linker keeps only the
//!   functions the binary can reach, so those symbols are the operations its code can call.
//! - [`scan_source`]: the `.<operation>()` calls in Rust source (test code removed), for
//!   the operations of the SDK crates the source's crate depends on. Per crate, so a
//!   binary's linked crates give a superset of what it calls.
//!
//! [`iam_action`] maps an operation to its IAM action and the kind of resource it acts on;
//! [`sdk_internal`] names the operations the SDK sends on its own (credentials, S3 Express
//! sessions), which chief's policies do not grant.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An SDK operation: `kinesis` / `put_records` is `aws_sdk_kinesis::operation::put_records`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SdkOperation {
    /// The SDK crate's service name (`kinesis`, `dynamodb`, `s3`, `sts`, `cloudwatch`).
    pub service: String,
    /// The operation's module name (`put_records`).
    pub operation: String,
}

impl SdkOperation {
    /// An operation.
    pub fn new(service: &str, operation: &str) -> Self {
        Self {
            service: service.to_owned(),
            operation: operation.to_owned(),
        }
    }

    /// The API name: `put_records` → `PutRecords`, `list_objects_v2` → `ListObjectsV2`.
    pub fn api_name(&self) -> String {
        self.operation
            .split('_')
            .map(|part| {
                let mut c = part.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl std::fmt::Display for SdkOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.service, self.api_name())
    }
}

/// What an IAM action acts on (what the tests build concrete requests for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A Kinesis stream ARN.
    Stream,
    /// An enhanced fan-out consumer of a stream (`…:stream/NAME/consumer/CONSUMER:TIME`);
    /// chief names it after the application's lease table.
    StreamConsumer,
    /// A DynamoDB table ARN.
    Table,
    /// An object ARN written by the binary (`arn:aws:s3:::bucket/key`).
    ObjectWritten,
    /// An object ARN read by the binary.
    ObjectRead,
    /// A bucket ARN, listed with an `s3:prefix`.
    BucketListed,
    /// A bucket ARN, no prefix.
    Bucket,
    /// An SQS queue ARN.
    Queue,
    /// A Firehose delivery stream ARN.
    DeliveryStream,
    /// An SES identity ARN (`…:identity/alerts@example.com`): the sender's.
    EmailIdentity,
    /// An SNS topic ARN.
    Topic,
    /// `*` (actions without resource-level permissions).
    Any,
}

/// The IAM action an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IamAction {
    /// E.g. `s3:ListBucket` for ListObjectsV2.
    pub action: &'static str,
    /// What it acts on.
    pub resource: ResourceKind,
}

/// The IAM action of an operation, for the operations chief uses or might: `None` for an
/// operation this table does not know yet (add it: the service authorization reference
/// lists the action and its resource types).
pub fn iam_action(op: &SdkOperation) -> Option<IamAction> {
    use ResourceKind::*;
    let (action, resource) = match (op.service.as_str(), op.operation.as_str()) {
        ("kinesis", "put_records") => ("kinesis:PutRecords", Stream),
        ("kinesis", "put_record") => ("kinesis:PutRecord", Stream),
        ("kinesis", "list_shards") => ("kinesis:ListShards", Stream),
        ("kinesis", "get_shard_iterator") => ("kinesis:GetShardIterator", Stream),
        ("kinesis", "get_records") => ("kinesis:GetRecords", Stream),
        ("kinesis", "describe_stream_summary") => ("kinesis:DescribeStreamSummary", Stream),
        ("kinesis", "describe_stream") => ("kinesis:DescribeStream", Stream),
        ("kinesis", "create_stream") => ("kinesis:CreateStream", Stream),
        ("kinesis", "delete_stream") => ("kinesis:DeleteStream", Stream),
        ("kinesis", "split_shard") => ("kinesis:SplitShard", Stream),
        ("kinesis", "merge_shards") => ("kinesis:MergeShards", Stream),
        ("kinesis", "register_stream_consumer") => ("kinesis:RegisterStreamConsumer", Stream),
        ("kinesis", "describe_stream_consumer") => {
            ("kinesis:DescribeStreamConsumer", StreamConsumer)
        }
        ("kinesis", "subscribe_to_shard") => ("kinesis:SubscribeToShard", StreamConsumer),
        ("kinesis", "list_streams") => ("kinesis:ListStreams", Any),
        ("dynamodb", "create_table") => ("dynamodb:CreateTable", Table),
        ("dynamodb", "describe_table") => ("dynamodb:DescribeTable", Table),
        ("dynamodb", "delete_table") => ("dynamodb:DeleteTable", Table),
        ("dynamodb", "scan") => ("dynamodb:Scan", Table),
        ("dynamodb", "query") => ("dynamodb:Query", Table),
        ("dynamodb", "get_item") => ("dynamodb:GetItem", Table),
        ("dynamodb", "put_item") => ("dynamodb:PutItem", Table),
        ("dynamodb", "update_item") => ("dynamodb:UpdateItem", Table),
        ("dynamodb", "delete_item") => ("dynamodb:DeleteItem", Table),
        ("dynamodb", "batch_write_item") => ("dynamodb:BatchWriteItem", Table),
        ("dynamodb", "list_tables") => ("dynamodb:ListTables", Any),
        ("s3", "put_object") => ("s3:PutObject", ObjectWritten),
        ("s3", "get_object") => ("s3:GetObject", ObjectRead),
        ("s3", "head_object") => ("s3:GetObject", ObjectRead),
        ("s3", "delete_object") => ("s3:DeleteObject", ObjectWritten),
        ("s3", "list_objects_v2") => ("s3:ListBucket", BucketListed),
        ("s3", "head_bucket") => ("s3:ListBucket", Bucket),
        ("s3", "create_bucket") => ("s3:CreateBucket", Bucket),
        ("cloudwatch", "put_metric_data") => ("cloudwatch:PutMetricData", Any),
        ("firehose", "describe_delivery_stream") => {
            ("firehose:DescribeDeliveryStream", DeliveryStream)
        }
        ("firehose", "put_record_batch") => ("firehose:PutRecordBatch", DeliveryStream),
        ("firehose", "put_record") => ("firehose:PutRecord", DeliveryStream),
        ("sqs", "receive_message") => ("sqs:ReceiveMessage", Queue),
        ("sqs", "delete_message") => ("sqs:DeleteMessage", Queue),
        ("sqs", "delete_message_batch") => ("sqs:DeleteMessage", Queue),
        ("sqs", "change_message_visibility") => ("sqs:ChangeMessageVisibility", Queue),
        ("sqs", "get_queue_attributes") => ("sqs:GetQueueAttributes", Queue),
        // SES v2's SendEmail (raw content included) is authorized as ses:SendEmail on the
        // identity it sends as.
        ("sesv2", "send_email") => ("ses:SendEmail", EmailIdentity),
        ("sns", "publish") => ("sns:Publish", Topic),
        _ => return None,
    };
    Some(IamAction { action, resource })
}

/// Operations the SDK sends by itself rather than chief's code, with why chief's policies
/// do not grant them.
pub fn sdk_internal(op: &SdkOperation) -> Option<&'static str> {
    match (op.service.as_str(), op.operation.as_str()) {
        ("s3", "create_session") => Some(
            "S3 Express One Zone sessions, used only for directory buckets (chief's bucket is a general purpose bucket)",
        ),
        ("sts", "assume_role") => Some(
            "credential provider of [aws] role_arn (the executors assume their own role with the instance role's credentials: granted to the instance role by assume-executor-roles.json, never needed by the assumed role) and of profiles with role_arn",
        ),
        ("sts", "assume_role_with_web_identity") => Some(
            "credential provider of web identity tokens (EKS); on EC2 the instance profile's credentials come from IMDS",
        ),
        ("sso", "get_role_credentials") | ("ssooidc", "create_token") => {
            Some("credential provider of SSO profiles (workstations, not instances)")
        }
        _ => None,
    }
}

/// Why operations could not be listed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperationsError {
    /// `nm` could not be run.
    #[error("cannot run nm on {path} ({source}); install binutils")]
    Nm {
        /// The binary.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `nm` failed.
    #[error("nm {path} failed: {stderr}")]
    NmFailed {
        /// The binary.
        path: PathBuf,
        /// What it said.
        stderr: String,
    },
    /// A call in the source names an operation of more than one SDK the crate uses.
    #[error("{file}: .{operation}() is an operation of {services:?}; cannot tell which")]
    Ambiguous {
        /// The source file.
        file: String,
        /// The operation.
        operation: String,
        /// The candidates.
        services: Vec<String>,
    },
    /// A source file or SDK directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The SDK operations compiled into the binary at `path` (see the module docs).
pub fn from_binary(path: &Path) -> Result<BTreeSet<SdkOperation>, OperationsError> {
    let out = Command::new("nm")
        .args(["--demangle", "--defined-only"])
        .arg(path)
        .output()
        .map_err(|source| OperationsError::Nm {
            path: path.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(OperationsError::NmFailed {
            path: path.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(parse_symbols(&String::from_utf8_lossy(&out.stdout)))
}

/// The operations in `nm --demangle` output: symbols
/// `aws_sdk_<service>::operation::<op>::<Op>::orchestrate`.
pub fn parse_symbols(nm_output: &str) -> BTreeSet<SdkOperation> {
    nm_output
        .lines()
        .filter_map(|line| {
            let symbol = line.split_whitespace().last()?;
            let rest = symbol.strip_prefix("aws_sdk_")?;
            let rest = rest.strip_suffix("::orchestrate")?;
            let mut parts = rest.split("::");
            let service = parts.next()?;
            (parts.next()? == "operation").then_some(())?;
            let operation = parts.next()?;
            let _type_name = parts.next()?;
            parts.next().is_none().then_some(())?;
            Some(SdkOperation::new(service, operation))
        })
        .collect()
}

/// The operation names of SDK crates: service → operation module names.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    operations: BTreeMap<String, BTreeSet<String>>,
}

impl Catalog {
    /// Reads `<sdk crate>/src/operation/` of each `(service, crate directory)`.
    pub fn from_sdk_crates(crates: &[(String, PathBuf)]) -> Result<Self, OperationsError> {
        let mut operations = BTreeMap::new();
        for (service, dir) in crates {
            let op_dir = dir.join("src/operation");
            let entries = std::fs::read_dir(&op_dir).map_err(|source| OperationsError::Read {
                path: op_dir.clone(),
                source,
            })?;
            let names: BTreeSet<String> = entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let name = name.strip_suffix(".rs").unwrap_or(&name).to_owned();
                    (!name.is_empty()).then_some(name)
                })
                .collect();
            operations.insert(service.clone(), names);
        }
        Ok(Self { operations })
    }

    /// The services whose SDK has `operation`, among `services`.
    pub fn services_with<'a>(&'a self, operation: &str, services: &'a [String]) -> Vec<&'a str> {
        services
            .iter()
            .filter(|s| {
                self.operations
                    .get(s.as_str())
                    .is_some_and(|ops| ops.contains(operation))
            })
            .map(String::as_str)
            .collect()
    }
}

/// The SDK operations called in `text` (one Rust source file of a crate whose SDK
/// dependencies are `services`): `.<operation>()` with no arguments, the fluent builder
/// calls, outside comments, strings and `#[cfg(test)]` items. A name that more than one of
/// the crate's SDKs have is attributed by the `aws_sdk_<service>` paths the file names.
pub fn scan_source(
    file: &str,
    text: &str,
    services: &[String],
    catalog: &Catalog,
) -> Result<BTreeSet<SdkOperation>, OperationsError> {
    let code = strip_test_items(&blank_comments_and_strings(text));
    let bytes = code.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while let Some(dot) = code[i..].find('.') {
        let start = i + dot + 1;
        let end = start
            + code[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(code.len() - start);
        i = start;
        if end == start || !bytes[start].is_ascii_lowercase() || !code[end..].starts_with("()") {
            continue;
        }
        let name = &code[start..end];
        let candidates = catalog.services_with(name, services);
        let service = match candidates.as_slice() {
            [] => continue,
            [one] => *one,
            many => {
                let named: Vec<&str> = many
                    .iter()
                    .copied()
                    .filter(|s| code.contains(&format!("aws_sdk_{s}")))
                    .collect();
                match named.as_slice() {
                    [one] => *one,
                    _ => {
                        return Err(OperationsError::Ambiguous {
                            file: file.to_owned(),
                            operation: name.to_owned(),
                            services: many.iter().map(|s| (*s).to_owned()).collect(),
                        });
                    }
                }
            }
        };
        found.insert(SdkOperation::new(service, name));
    }
    Ok(found)
}

/// Comments removed, and the contents of string and char literals replaced by spaces
/// (so that neither their text nor their braces count), keeping line structure.
pub fn blank_comments_and_strings(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    while i < c.len() {
        // Line comment.
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        // Block comment (nested).
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            continue;
        }
        // Raw string: r"…", r#"…"#, br"…".
        let raw_start = if c[i] == 'r' {
            Some(i + 1)
        } else if c[i] == 'b' && c.get(i + 1) == Some(&'r') {
            Some(i + 2)
        } else {
            None
        };
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if let (Some(mut j), false) = (raw_start, ident_before) {
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) == Some(&'"') {
                out.push('"');
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    out.push(blank(c[j]));
                    j += 1;
                }
                out.push('"');
                i = j;
                continue;
            }
        }
        // String (and byte string).
        if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
            continue;
        }
        // Char literal ('x', '\n', '\u{..}'), not a lifetime.
        if c[i] == '\'' {
            let close = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len().min(i + 12)).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = close {
                out.push_str("' '");
                i = end + 1;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// `code` (already through [`blank_comments_and_strings`]) without the items marked
/// `#[cfg(test)]`: a braced item is skipped to its closing brace, `mod x;` dropped.
pub fn strip_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    const MARK: &str = "#[cfg(test)]";
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let brace = after.find('{');
        let semi = after.find(';');
        match (brace, semi) {
            (Some(b), s) if s.is_none_or(|s| b < s) => {
                let mut depth = 0;
                let mut end = after.len();
                for (j, ch) in after[b..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            (_, Some(s)) => rest = &after[s + 1..],
            _ => rest = "",
        }
    }
    out.push_str(rest);
    out
}

/// The names of `#[cfg(test)] mod name;` declarations in `text` (their files are test
/// code).
pub fn test_module_files(text: &str) -> Vec<String> {
    let code = blank_comments_and_strings(text);
    let mut names = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = rest[at + "#[cfg(test)]".len()..].trim_start();
        let item: String = after
            .chars()
            .take_while(|&c| c != ';' && c != '{')
            .collect();
        let words: Vec<&str> = item.split_whitespace().collect();
        if after[item.len()..].starts_with(';')
            && let Some(pos) = words.iter().position(|w| *w == "mod")
            && let Some(name) = words.get(pos + 1)
        {
            names.push((*name).to_owned());
        }
        rest = &rest[at + 1..];
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut operations = BTreeMap::new();
        for (s, ops) in [
            (
                "kinesis",
                &["put_records", "list_shards", "list_tags_for_resource"][..],
            ),
            (
                "s3",
                &["put_object", "list_objects_v2", "list_tags_for_resource"][..],
            ),
        ] {
            operations.insert(s.to_owned(), ops.iter().map(|o| (*o).to_owned()).collect());
        }
        Catalog { operations }
    }

    #[test]
    fn symbols() {
        let nm = "\
0000000000c5a0e0 T aws_sdk_kinesis::operation::list_shards::ListShards::orchestrate
0000000000c5a130 T aws_sdk_kinesis::operation::list_shards::ListShards::orchestrate::{{closure}}
0000000000c7c5f0 T aws_sdk_s3::operation::list_objects_v2::ListObjectsV2::orchestrate
0000000000ca5cb0 T core::ptr::drop_in_place<aws_sdk_kinesis::operation::put_records::PutRecords::orchestrate::{{closure}}>
";
        let ops: Vec<String> = parse_symbols(nm).iter().map(ToString::to_string).collect();
        assert_eq!(ops, ["kinesis ListShards", "s3 ListObjectsV2"]);
    }

    #[test]
    fn source_calls_outside_tests_comments_and_strings() {
        let src = r##"
            use aws_sdk_kinesis::Client;
            // self.client.put_object() in a comment
            /* .list_objects_v2() */
            fn f(c: &Client) { c.put_records().send(); let s = ".list_shards()"; let r = r#"{.put_object()"#; let ch = '{'; }
            fn g<'a>(x: &'a str) { x.list_shards(); }
            #[cfg(test)]
            mod tests { fn t() { c.put_object().send(); let s = "}"; } }
            fn h() { c.list_tags_for_resource(); }
        "##;
        let services = vec!["kinesis".to_owned(), "s3".to_owned()];
        let ops: Vec<String> = scan_source("f.rs", src, &services, &catalog())
            .expect("scan")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            ops,
            [
                "kinesis ListShards",
                "kinesis ListTagsForResource",
                "kinesis PutRecords"
            ]
        );
        // Without an aws_sdk_ path to tell, a shared name is an error.
        assert!(matches!(
            scan_source(
                "g.rs",
                "fn h() { c.list_tags_for_resource(); }",
                &services,
                &catalog()
            ),
            Err(OperationsError::Ambiguous { .. })
        ));
        // Only the crate's own SDKs count.
        assert!(
            scan_source(
                "g.rs",
                "fn h() { c.put_object(); }",
                &["kinesis".to_owned()],
                &catalog()
            )
            .expect("scan")
            .is_empty()
        );
    }

    #[test]
    fn test_module_declarations() {
        assert_eq!(
            test_module_files("#[cfg(test)]\nmod tests;\n#[cfg(test)] mod inline { }\nmod real;"),
            ["tests"]
        );
    }

    #[test]
    fn api_names() {
        assert_eq!(
            SdkOperation::new("s3", "list_objects_v2").api_name(),
            "ListObjectsV2"
        );
        assert_eq!(
            SdkOperation::new("kinesis", "put_records").api_name(),
            "PutRecords"
        );
    }
}
