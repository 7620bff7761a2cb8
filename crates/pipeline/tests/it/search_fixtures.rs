//! `ElasticsearchIndex::bulk_index` reading real `_bulk` response bodies (`fixtures/`,
//! where each comes from is in `fixtures/README.md`): a tiny server on 127.0.0.1:0
//! answers each request with the next fixture, and the parsed `ItemResult`s are checked
//! exactly — successes, 429 and 503 items (retryable), 400 mapping errors and 409
//! conflicts (final), and a request rejected as a whole.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use chief_pipeline::search::{
    Document, ElasticsearchIndex, ItemResult, SearchConfig, SearchError, SearchIndex, index_batch,
    orders_mapping,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const SUCCESS: &str = include_str!("../fixtures/bulk_success.json");
const PARTIAL_429: &str = include_str!("../fixtures/bulk_partial_429.json");
const RETRY_CREATED: &str = include_str!("../fixtures/bulk_retry_created.json");
const MAPPING_400: &str = include_str!("../fixtures/bulk_400_mapping.json");
const CREATE_409: &str = include_str!("../fixtures/bulk_create_409.json");
const UNAVAILABLE_503: &str = include_str!("../fixtures/bulk_503_unavailable_shards.json");
const REQUEST_429: &str = include_str!("../fixtures/bulk_request_429.json");

/// What the server received: request line and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Answers request `n` with `replies[n]` (status, body), then 500.
async fn serve(replies: Vec<(u16, &'static str)>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let replies = Arc::clone(&replies);
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut request_line = String::new();
                    if read.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        let mut header = String::new();
                        if read.read_line(&mut header).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            len = value.trim().parse().expect("content-length");
                        }
                    }
                    let mut body = vec![0; len];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    record
                        .lock()
                        .expect("seen")
                        .push((request_line.trim_end().to_owned(), body));
                    let (status, reply) = replies
                        .lock()
                        .expect("replies")
                        .pop_front()
                        .unwrap_or((500, r#"{"error":"no fixture left"}"#));
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                         x-elastic-product: Elasticsearch\r\ncontent-length: {}\r\n\r\n",
                        reply.len()
                    );
                    if write.write_all(head.as_bytes()).await.is_err()
                        || write.write_all(reply.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn index(url: &str) -> ElasticsearchIndex {
    ElasticsearchIndex::new(
        &SearchConfig {
            url: url.to_owned(),
            index: "orders".to_owned(),
            ..SearchConfig::default()
        },
        orders_mapping(),
    )
    .expect("client")
}

fn docs(n: usize) -> Vec<Document> {
    (1..=n)
        .map(|i| Document {
            index: None,
            id: format!("o-{i}").parse().expect("orderid"),
            source: Bytes::from(format!(r#"{{"orderid":"o-{i}"}}"#)),
        })
        .collect()
}

fn failed(status: u16, error_type: &str, reason: &str) -> ItemResult {
    ItemResult::Failed {
        status,
        error_type: error_type.to_owned(),
        reason: reason.to_owned(),
    }
}

async fn bulk(fixture: &'static str, n: usize) -> Vec<ItemResult> {
    let (url, seen) = serve(vec![(200, fixture)]).await;
    let results = index(&url).bulk_index(&docs(n)).await.expect("bulk");
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0.starts_with("POST /orders/_bulk"), "{}", seen[0].0);
    results
}

const THREAD_POOL_FULL: &str = "rejected execution of org.elasticsearch.action.support.replication.TransportWriteAction$1/WrappedActionListener{org.elasticsearch.action.support.replication.ReplicationOperation$$Lambda$7002/0x0000000801b2b3d0@16e9faf7}{org.elasticsearch.action.support.replication.ReplicationOperation$$Lambda$7003/0x0000000801b2b5f8@46bcb787} on EsThreadPoolExecutor[name = es-data-0/write, queue capacity = 10000, org.elasticsearch.common.util.concurrent.EsThreadPoolExecutor@499b0f50[Running, pool size = 2, active threads = 2, queued tasks = 10000, completed tasks = 11472149]]";
const INDEXING_PRESSURE: &str = "rejected execution of coordinating operation [coordinating_and_primary_bytes=95396333, replica_bytes=0, all_bytes=95396333, coordinating_operation_bytes=22949230, max_coordinating_and_primary_bytes=107374182]";

#[tokio::test]
async fn all_indexed() {
    assert_eq!(
        bulk(SUCCESS, 3).await,
        vec![
            ItemResult::Indexed { status: 201 },
            ItemResult::Indexed { status: 201 },
            ItemResult::Indexed { status: 200 },
        ]
    );
}

#[tokio::test]
async fn partial_failure_with_429s() {
    assert_eq!(
        bulk(PARTIAL_429, 4).await,
        vec![
            ItemResult::Indexed { status: 201 },
            failed(429, "es_rejected_execution_exception", THREAD_POOL_FULL),
            ItemResult::Indexed { status: 201 },
            failed(429, "es_rejected_execution_exception", INDEXING_PRESSURE),
        ]
    );
}

#[tokio::test]
async fn mapping_errors_with_400() {
    assert_eq!(
        bulk(MAPPING_400, 3).await,
        vec![
            failed(
                400,
                "document_parsing_exception",
                "[1:74] failed to parse field [items.quantity] of type [integer] in document with id 'o-1'. Preview of field's value: 'many'"
            ),
            ItemResult::Indexed { status: 201 },
            failed(
                400,
                "mapper_parsing_exception",
                "failed to parse field [timestamp] of type [date] in document with id 'o-3'. Preview of field's value: 'yesterday'"
            ),
        ]
    );
}

#[tokio::test]
async fn version_conflict_of_create_with_409() {
    assert_eq!(
        bulk(CREATE_409, 2).await,
        vec![
            failed(
                409,
                "version_conflict_engine_exception",
                "[o-1]: version conflict, document already exists (current version [1])"
            ),
            ItemResult::Indexed { status: 201 },
        ]
    );
}

#[tokio::test]
async fn unavailable_shards_with_503() {
    let reason = "[orders][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[orders][0]] containing [2] requests]";
    assert_eq!(
        bulk(UNAVAILABLE_503, 2).await,
        vec![
            failed(503, "unavailable_shards_exception", reason),
            failed(503, "unavailable_shards_exception", reason),
        ]
    );
}

#[tokio::test]
async fn a_request_rejected_as_a_whole_is_a_retryable_status_error() {
    let (url, _) = serve(vec![(429, REQUEST_429)]).await;
    let err = index(&url).bulk_index(&docs(2)).await.expect_err("429");
    let SearchError::Status { status, body, .. } = &err else {
        panic!("not a status error: {err}");
    };
    assert_eq!(*status, 429);
    assert_eq!(body, REQUEST_429);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn index_batch_resends_only_the_429_items_then_finishes() {
    let (url, seen) = serve(vec![(200, PARTIAL_429), (200, RETRY_CREATED)]).await;
    let retry = RetryPolicy {
        initial_backoff_ms: 1,
        max_backoff_ms: 2,
        multiplier: 2.0,
        deadline_ms: 10_000,
    };
    let outcome = index_batch(&index(&url), &docs(4), &retry)
        .await
        .expect("batch");
    assert_eq!((outcome.indexed, outcome.attempts), (4, 2));
    assert!(outcome.rejected.is_empty());
    let seen = seen.lock().expect("seen");
    let retried = String::from_utf8(seen[1].1.clone()).expect("utf-8");
    assert_eq!(
        retried,
        "{\"index\":{\"_id\":\"o-2\"}}\n{\"orderid\":\"o-2\"}\n\
         {\"index\":{\"_id\":\"o-4\"}}\n{\"orderid\":\"o-4\"}\n"
    );
}

#[tokio::test]
async fn index_batch_hands_back_the_400s_and_409s() {
    let (url, _) = serve(vec![(200, MAPPING_400)]).await;
    let outcome = index_batch(&index(&url), &docs(3), &RetryPolicy::default())
        .await
        .expect("batch");
    assert_eq!((outcome.indexed, outcome.attempts), (1, 1));
    let rejected: Vec<(usize, u16, bool)> = outcome
        .rejected
        .iter()
        .map(|r| (r.index, r.status, r.error.contains("failed to parse field")))
        .collect();
    assert_eq!(rejected, vec![(0, 400, true), (2, 400, true)]);

    let (url, _) = serve(vec![(200, CREATE_409)]).await;
    let outcome = index_batch(&index(&url), &docs(2), &RetryPolicy::default())
        .await
        .expect("batch");
    assert_eq!(outcome.indexed, 1);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].status, 409);
    assert!(
        outcome.rejected[0]
            .error
            .starts_with("version_conflict_engine_exception: "),
        "{}",
        outcome.rejected[0].error
    );
}
