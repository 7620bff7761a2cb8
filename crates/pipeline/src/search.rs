//! The Elasticsearch sink: the record-agnostic bulk writer lives in `chief-sinks`
//! ([`chief_sinks::elasticsearch`], re-exported here); what is the orders' and job
//! results' own is here: their index mappings.

pub use chief_sinks::elasticsearch::*;
use serde_json::{Value, json};

/// The mapping of the `orders` index: ids and statuses as `keyword`, names as `text`,
/// the timestamp as `date`; fields not listed stay in `_source` but are not indexed.
pub fn orders_mapping() -> Value {
    json!({
        "dynamic": false,
        "properties": {
            "orderid": {"type": "keyword"},
            "user": {"properties": {
                "userid": {"type": "keyword"},
                "name": {"type": "text"}
            }},
            "factoryid": {"type": "keyword"},
            "items": {"properties": {
                "sku": {"type": "keyword"},
                "product": {"type": "text"},
                "quantity": {"type": "integer"},
                "unit_price_cents": {"type": "long"}
            }},
            "timestamp": {"type": "date"}
        }
    })
}

/// The mapping of the `jobresults` index.
pub fn job_results_mapping() -> Value {
    json!({
        "dynamic": false,
        "properties": {
            "orderid": {"type": "keyword"},
            "userid": {"type": "keyword"},
            "factoryid": {"type": "keyword"},
            "robotid": {"type": "keyword"},
            "jobstatus": {"type": "keyword"},
            "timestamp": {"type": "date"}
        }
    })
}
