//! The JSON bodies Elasticsearch answers with, as serde structs whose fields serialize in
//! Elasticsearch's order (a `serde_json::Value` would sort the keys).

use serde::Serialize;

/// The `error` object of an Elasticsearch error (`ElasticsearchException#toXContent`):
/// `type`, `reason` and the metadata a given exception carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorCause {
    #[serde(rename = "type")]
    pub kind: String,
    pub reason: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<ErrorMeta>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<Box<ErrorCause>>,
}

/// The metadata some exceptions add after `reason`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorMeta {
    #[serde(rename = "resource.type", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<&'static str>,
    #[serde(rename = "resource.id", skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

impl ErrorCause {
    /// An error with only `type` and `reason`.
    pub fn new(kind: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            reason: reason.into(),
            meta: None,
            caused_by: None,
        }
    }

    fn with_meta(mut self, meta: ErrorMeta) -> Self {
        self.meta = Some(Box::new(meta));
        self
    }

    /// With a `caused_by`.
    pub fn caused_by(mut self, cause: ErrorCause) -> Self {
        self.caused_by = Some(Box::new(cause));
        self
    }

    /// `index_not_found_exception`, as `GET /missing` answers.
    pub fn index_not_found(index: &str) -> Self {
        Self::new(
            "index_not_found_exception",
            format!("no such index [{index}]"),
        )
        .with_meta(ErrorMeta {
            resource_type: Some("index_or_alias"),
            resource_id: Some(index.to_owned()),
            index_uuid: Some("_na_".to_owned()),
            index: Some(index.to_owned()),
            ..ErrorMeta::default()
        })
    }

    /// `resource_already_exists_exception`, as `PUT /existing` answers.
    pub fn index_already_exists(index: &str, uuid: &str) -> Self {
        Self::new(
            "resource_already_exists_exception",
            format!("index [{index}/{uuid}] already exists"),
        )
        .with_meta(ErrorMeta {
            index_uuid: Some(uuid.to_owned()),
            index: Some(index.to_owned()),
            ..ErrorMeta::default()
        })
    }

    /// `invalid_index_name_exception`.
    pub fn invalid_index_name(index: &str, why: &str) -> Self {
        Self::new(
            "invalid_index_name_exception",
            format!("Invalid index name [{index}], {why}"),
        )
        .with_meta(ErrorMeta {
            index_uuid: Some("_na_".to_owned()),
            index: Some(index.to_owned()),
            ..ErrorMeta::default()
        })
    }

    /// `version_conflict_engine_exception` of a `create` whose id exists.
    pub fn document_exists(index: &str, uuid: &str, id: &str, version: u64) -> Self {
        Self::new(
            "version_conflict_engine_exception",
            format!(
                "[{id}]: version conflict, document already exists (current version [{version}])"
            ),
        )
        .with_meta(ErrorMeta {
            index_uuid: Some(uuid.to_owned()),
            shard: Some("0".to_owned()),
            index: Some(index.to_owned()),
            ..ErrorMeta::default()
        })
    }

    /// The cause without its `caused_by`: what `root_cause` lists.
    fn root(&self) -> Self {
        Self {
            caused_by: None,
            ..self.clone()
        }
    }
}

/// `{"error": {"root_cause": [...], ...cause}, "status": N}`: the body of a request that
/// failed as a whole.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorResponse {
    error: ErrorBody,
    status: u16,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    root_cause: Vec<ErrorCause>,
    #[serde(flatten)]
    cause: ErrorCause,
}

impl ErrorResponse {
    pub fn new(status: u16, cause: ErrorCause) -> Self {
        Self {
            error: ErrorBody {
                root_cause: vec![cause.root()],
                cause,
            },
            status,
        }
    }
}

/// `{"error": "no handler found …", "status": N}`: what Elasticsearch's REST layer
/// answers for an unknown path or a wrong method (a string, not an object).
#[derive(Debug, Serialize)]
pub(crate) struct PlainError {
    pub error: String,
    pub status: u16,
}

/// `_shards` of a write on a one-node cluster with one replica configured.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Shards {
    pub total: u32,
    pub successful: u32,
    pub failed: u32,
}

impl Shards {
    pub const WRITE: Shards = Shards {
        total: 2,
        successful: 1,
        failed: 0,
    };
}

/// The per-item body of a `_bulk` response, and of a single-document write (without
/// `status`, which is then the HTTP status).
#[derive(Debug, Serialize)]
pub(crate) struct ItemBody {
    #[serde(rename = "_index")]
    pub index: String,
    #[serde(rename = "_id")]
    pub id: Option<String>,
    #[serde(rename = "_version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    #[serde(rename = "_shards", skip_serializing_if = "Option::is_none")]
    pub shards: Option<Shards>,
    #[serde(rename = "_seq_no", skip_serializing_if = "Option::is_none")]
    pub seq_no: Option<u64>,
    #[serde(rename = "_primary_term", skip_serializing_if = "Option::is_none")]
    pub primary_term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCause>,
}

impl ItemBody {
    /// A write that happened: `result` is `created`, `updated`, `deleted` or `not_found`.
    pub fn written(
        index: &str,
        id: &str,
        version: u64,
        result: &'static str,
        seq_no: u64,
        status: u16,
    ) -> Self {
        Self {
            index: index.to_owned(),
            id: Some(id.to_owned()),
            version: Some(version),
            result: Some(result),
            shards: Some(Shards::WRITE),
            seq_no: Some(seq_no),
            primary_term: Some(1),
            status: Some(status),
            error: None,
        }
    }

    /// An item that failed.
    pub fn failed(index: &str, id: Option<&str>, status: u16, error: ErrorCause) -> Self {
        Self {
            index: index.to_owned(),
            id: id.map(str::to_owned),
            version: None,
            result: None,
            shards: None,
            seq_no: None,
            primary_term: None,
            status: Some(status),
            error: Some(error),
        }
    }

    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}

/// One item of a `_bulk` response: `{"index": {...}}`, `{"create": {...}}`, …
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum BulkItem {
    Index(ItemBody),
    Create(ItemBody),
    Update(ItemBody),
    Delete(ItemBody),
}

impl BulkItem {
    pub fn body(&self) -> &ItemBody {
        match self {
            BulkItem::Index(b)
            | BulkItem::Create(b)
            | BulkItem::Update(b)
            | BulkItem::Delete(b) => b,
        }
    }
}

/// The body of a `_bulk` response.
#[derive(Debug, Serialize)]
pub(crate) struct BulkResponse {
    pub took: u64,
    pub errors: bool,
    pub items: Vec<BulkItem>,
}

/// The metadata of `GET /{index}/_doc/{id}`; `_source` is spliced in raw by the caller
/// (so the bytes come back exactly as they were indexed).
#[derive(Debug, Serialize)]
pub(crate) struct GetMetadata<'a> {
    #[serde(rename = "_index")]
    pub index: &'a str,
    #[serde(rename = "_id")]
    pub id: &'a str,
    #[serde(rename = "_version", skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(rename = "_seq_no", skip_serializing_if = "Option::is_none")]
    pub seq_no: Option<u64>,
    #[serde(rename = "_primary_term", skip_serializing_if = "Option::is_none")]
    pub primary_term: Option<u64>,
    pub found: bool,
}

/// `_shards` of a read (`_count`) or `_refresh`.
#[derive(Debug, Serialize)]
pub(crate) struct ReadShards {
    pub total: u32,
    pub successful: u32,
    pub skipped: u32,
    pub failed: u32,
}

/// The body of `_count`.
#[derive(Debug, Serialize)]
pub(crate) struct CountResponse {
    pub count: usize,
    #[serde(rename = "_shards")]
    pub shards: ReadShards,
}

/// `{"acknowledged": true, "shards_acknowledged": true, "index": "…"}` of a create.
#[derive(Debug, Serialize)]
pub(crate) struct CreateIndexResponse<'a> {
    pub acknowledged: bool,
    pub shards_acknowledged: bool,
    pub index: &'a str,
}

/// `{"acknowledged": true}`.
#[derive(Debug, Serialize)]
pub(crate) struct Acknowledged {
    pub acknowledged: bool,
}

/// `{"_shards": {...}}` of `_refresh`.
#[derive(Debug, Serialize)]
pub(crate) struct RefreshResponse {
    #[serde(rename = "_shards")]
    pub shards: Shards,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialize_in_elasticsearch_field_order() {
        let body = serde_json::to_string(&ErrorResponse::new(
            400,
            ErrorCause::index_already_exists("orders", "u1"),
        ))
        .expect("json");
        assert_eq!(
            body,
            r#"{"error":{"root_cause":[{"type":"resource_already_exists_exception","reason":"index [orders/u1] already exists","index_uuid":"u1","index":"orders"}],"type":"resource_already_exists_exception","reason":"index [orders/u1] already exists","index_uuid":"u1","index":"orders"},"status":400}"#
        );
        let missing = serde_json::to_string(&ErrorCause::index_not_found("x")).expect("json");
        assert_eq!(
            missing,
            r#"{"type":"index_not_found_exception","reason":"no such index [x]","resource.type":"index_or_alias","resource.id":"x","index_uuid":"_na_","index":"x"}"#
        );
    }

    #[test]
    fn bulk_items_serialize_like_elasticsearch() {
        let response = BulkResponse {
            took: 3,
            errors: true,
            items: vec![
                BulkItem::Index(ItemBody::written("orders", "o-1", 1, "created", 0, 201)),
                BulkItem::Index(ItemBody::failed(
                    "orders",
                    Some("o-2"),
                    429,
                    ErrorCause::new("es_rejected_execution_exception", "busy"),
                )),
            ],
        };
        assert_eq!(
            serde_json::to_string(&response).expect("json"),
            r#"{"took":3,"errors":true,"items":[{"index":{"_index":"orders","_id":"o-1","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},{"index":{"_index":"orders","_id":"o-2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"busy"}}}]}"#
        );
    }
}
