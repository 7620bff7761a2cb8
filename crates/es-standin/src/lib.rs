//! **A dev-only stand-in for Elasticsearch — not Elasticsearch.**
//!
//! `chief-es-standin` keeps indices and documents in memory and answers the REST calls
//! that chief's search sink (`chief_pipeline::search::ElasticsearchIndex`, built on the
//! `elasticsearch` crate) makes, with the status codes and JSON bodies Elasticsearch 8/9
//! documents for them. It exists so that the local stack (`make stack-up`) and the tests
//! can run the sink end to end on a machine where no Elasticsearch can run. It does not
//! search, analyse, apply settings, persist anything or replicate; of a mapping it
//! applies only what makes Elasticsearch refuse a document (a value out of an `integer`
//! or `long` range, an object where a `keyword` is mapped, a `date` it cannot read, an
//! immense `keyword`), and of a source only what makes its parser refuse it (not UTF-8,
//! a field name twice, not an object). A production deployment needs a real
//! Elasticsearch or OpenSearch cluster.
//!
//! What it answers:
//!
//! | call | answer |
//! |---|---|
//! | `HEAD /{index}` | 200 / 404 |
//! | `PUT /{index}` with `{"mappings": …, "settings": …, "aliases": …}` | 200 `acknowledged`; 400 `resource_already_exists_exception`, `invalid_index_name_exception` |
//! | `GET /{index}`, `DELETE /{index}` | the mapping as given; `acknowledged`; 404 `index_not_found_exception` |
//! | `POST\|PUT /_bulk`, `POST\|PUT /{index}/_bulk` | NDJSON `index` / `create` / `delete` items (`update` is refused per item); per-item `created` 201 / `updated` 200 / 409 `version_conflict_engine_exception` / 400 `document_parsing_exception` for a source that is not UTF-8, holds a field name twice, is not a JSON object, or has a value its mapped field refuses; a missing index is created |
//! | `GET /{index}/_doc/{id}`, `GET /{index}/_source/{id}` | `found` and `_source` with the bytes exactly as indexed; 404 `found: false` |
//! | `PUT\|POST /{index}/_doc/{id}`, `POST /{index}/_doc`, `PUT /{index}/_create/{id}`, `DELETE /{index}/_doc/{id}` | single-document writes |
//! | `GET\|POST /{index}/_count`, `/_count` | `{"count": N}` (no query, or `match_all`) |
//! | `POST /{index}/_refresh`, `/_refresh` | no-op: every write is visible at once |
//! | `GET /`, `GET /_cluster/health` | cluster info naming the stand-in; `green` |
//!
//! Fault injection, per index so that parallel tests do not disturb each other (see
//! [`Faults`]): `PUT /_standin/faults/{index}` with
//! `{"reject_429_ratio": 0.2, "reject_400_ratio": 0.0, "fail_requests": 0, "fail_status": 503, "delay_ms": 0}`
//! (all fields optional), `GET` / `DELETE` the same path; counters per index at
//! `GET /_standin/stats/{index}`, everything at `GET /_standin/stats`.
//!
//! Any `Authorization` header (basic auth, API key) is accepted; only its scheme is
//! counted (`GET /_standin/stats`), the credential is neither kept nor logged.
//!
//! ```no_run
//! # async fn run() -> Result<(), chief_es_standin::StandinError> {
//! use chief_es_standin::{Faults, RunningStandin, Standin};
//!
//! let es = RunningStandin::start("127.0.0.1:0", Standin::default()).await?;
//! es.standin().set_faults("orders", Faults { reject_429_ratio: 0.2, ..Faults::default() })?;
//! // … point the sink at es.url() …
//! assert_eq!(es.standin().count("orders"), Some(0));
//! es.stop().await;
//! # Ok(())
//! # }
//! ```

mod bulk;
mod document;
mod faults;
mod rest;
mod server;
pub mod sigv4;
mod standin;
mod wire;

pub use faults::Faults;
pub use server::{RunningStandin, serve};
pub use standin::{AuthCounts, IndexStats, Standin, StandinConfig};

/// Why the stand-in could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StandinError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A fault setting is out of range.
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
}
