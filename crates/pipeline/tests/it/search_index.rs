//! `SearchIndex`: one conformance suite run against the in-memory index and against
//! `ElasticsearchIndex` talking to a tiny in-test server that answers with the exact
//! Elasticsearch REST contract (`HEAD /<index>`, `PUT /<index>` with a mapping,
//! `POST /<index>/_bulk` NDJSON with per-item results, `errors: true` on partial
//! failure). No Elasticsearch server can run here: the response bodies follow the
//! shapes Elasticsearch 8/9 documents and returns (item statuses 201, 200, 429 with
//! `es_rejected_execution_exception`, 400 with `document_parsing_exception`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use chief_pipeline::search::{
    BatchOutcome, Document, ElasticsearchIndex, ItemResult, MemorySearchIndex, Rejected,
    SearchConfig, SearchError, SearchIndex, Secret, index_batch, orders_mapping,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct ServerState {
    indices: HashMap<String, Value>,
    docs: HashMap<String, Value>,
    failures: Vec<u16>,
    requests: Vec<Request>,
    /// A status for the next `_bulk` request as a whole.
    fail_request: Option<u16>,
}

/// The Elasticsearch REST contract, in memory, on 127.0.0.1:0.
#[derive(Clone)]
struct Server {
    url: String,
    state: Arc<Mutex<ServerState>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(ServerState::default()));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut read = BufReader::new(read);
                    while let Some(request) = read_request(&mut read).await {
                        let (status, body) = handle(&state, request);
                        let reason = match status {
                            200 => "OK",
                            404 => "Not Found",
                            400 => "Bad Request",
                            429 => "Too Many Requests",
                            _ => "Error",
                        };
                        let head = format!(
                            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
                             x-elastic-product: Elasticsearch\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if write.write_all(head.as_bytes()).await.is_err()
                            || write.write_all(&body).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Server { url, state }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ServerState> {
        self.state.lock().expect("server state")
    }

    fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }
}

async fn read_request<R: AsyncBufReadExt + Unpin>(read: &mut R) -> Option<Request> {
    let mut line = String::new();
    if read.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        read.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    assert!(
        !headers.contains_key("transfer-encoding"),
        "the client sent a chunked body"
    );
    let len: usize = headers
        .get("content-length")
        .map_or(Ok(0), |v| v.parse())
        .ok()?;
    let mut body = vec![0; len];
    read.read_exact(&mut body).await.ok()?;
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

fn handle(state: &Mutex<ServerState>, request: Request) -> (u16, Vec<u8>) {
    let mut state = state.lock().expect("server state");
    state.requests.push(request.clone());
    let path = request
        .path
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let json = |v: Value| v.to_string().into_bytes();
    match (request.method.as_str(), segments.as_slice()) {
        ("HEAD", [index]) => {
            let status = if state.indices.contains_key(*index) {
                200
            } else {
                404
            };
            (status, Vec::new())
        }
        ("PUT", [index]) => {
            if state.indices.contains_key(*index) {
                return (
                    400,
                    json(
                        json!({"error":{"root_cause":[{"type":"resource_already_exists_exception","reason":format!("index [{index}/abc] already exists"),"index":index}],"type":"resource_already_exists_exception","reason":format!("index [{index}/abc] already exists"),"index":index},"status":400}),
                    ),
                );
            }
            let body: Value = serde_json::from_slice(&request.body).expect("create body");
            state.indices.insert((*index).to_owned(), body);
            (
                200,
                json(json!({"acknowledged":true,"shards_acknowledged":true,"index":index})),
            )
        }
        ("POST", [index, "_bulk"]) => {
            if let Some(status) = state.fail_request.take() {
                return (
                    status,
                    json(
                        json!({"error":{"type":"circuit_breaking_exception","reason":"[parent] Data too large"},"status":status}),
                    ),
                );
            }
            state
                .indices
                .entry((*index).to_owned())
                .or_insert(Value::Null);
            let text = String::from_utf8(request.body).expect("utf-8 body");
            assert!(text.ends_with('\n'), "NDJSON must end with a newline");
            let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
            assert_eq!(lines.len() % 2, 0, "action and source lines come in pairs");
            let mut items = Vec::new();
            let mut errors = false;
            for pair in lines.chunks(2) {
                let action: Value = serde_json::from_str(pair[0]).expect("action line");
                let id = action["index"]["_id"].as_str().expect("_id").to_owned();
                let failure = (!state.failures.is_empty()).then(|| state.failures.remove(0));
                let source: Result<Value, _> = serde_json::from_str(pair[1]);
                let parse_error = |status: u16| json!({"index":{"_index":index,"_id":id,"status":status,"error":{"type":"document_parsing_exception","reason":format!("[1:36] failed to parse field [timestamp] of type [date] in document with id '{id}'. Preview of field's value: 'yesterday'"),"caused_by":{"type":"illegal_argument_exception","reason":"failed to parse date field [yesterday] with format [strict_date_optional_time||epoch_millis]"}}}});
                let item = match (failure, source) {
                    (Some(429), _) => {
                        json!({"index":{"_index":index,"_id":id,"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1048576, max_coordinating_and_primary_bytes=0]"}}})
                    }
                    (Some(status), _) if status >= 500 => {
                        json!({"index":{"_index":index,"_id":id,"status":status,"error":{"type":"unavailable_shards_exception","reason":"[orders][0] primary shard is not active Timeout: [1m]"}}})
                    }
                    (Some(status), _) => parse_error(status),
                    (None, Err(_)) => parse_error(400),
                    (None, Ok(source)) => {
                        let replaced = state.docs.insert(id.clone(), source).is_some();
                        let (result, status) = if replaced {
                            ("updated", 200)
                        } else {
                            ("created", 201)
                        };
                        json!({"index":{"_index":index,"_id":id,"_version":1,"result":result,"_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":status}})
                    }
                };
                errors |= item["index"].get("error").is_some();
                items.push(item);
            }
            (200, json(json!({"took":3,"errors":errors,"items":items})))
        }
        _ => (404, json(json!({"error":"unexpected request"}))),
    }
}

fn config(server: &Server) -> SearchConfig {
    SearchConfig {
        url: server.url.clone(),
        index: "orders".into(),
        ..SearchConfig::default()
    }
}

fn doc(id: &str, source: &str) -> Document {
    Document {
        index: None,
        id: id.parse().expect("orderid"),
        source: Bytes::from(source.to_owned()),
    }
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        initial_backoff_ms: 1,
        max_backoff_ms: 2,
        multiplier: 2.0,
        deadline_ms: 0,
    }
}

/// What every `SearchIndex` must do. `fail` injects per-item failures (statuses);
/// `count` says how many documents the index holds.
async fn conformance(index: &impl SearchIndex, fail: impl Fn(Vec<u16>), count: impl Fn() -> usize) {
    assert!(index.ensure_index().await.expect("create"));
    assert!(!index.ensure_index().await.expect("exists"));
    assert_eq!(index.bulk_index(&[]).await.expect("empty bulk"), vec![]);

    let docs = [
        doc(
            "o-1",
            r#"{"orderid":"o-1","timestamp":"2024-01-01T00:00:00.000Z"}"#,
        ),
        doc(
            "o-2",
            r#"{"orderid":"o-2","timestamp":"2024-01-01T00:00:00.000Z"}"#,
        ),
    ];
    assert_eq!(
        index.bulk_index(&docs).await.expect("bulk"),
        vec![
            ItemResult::Indexed { status: 201 },
            ItemResult::Indexed { status: 201 }
        ]
    );
    // The same ids again overwrite.
    assert_eq!(
        index.bulk_index(&docs[..1]).await.expect("bulk"),
        vec![ItemResult::Indexed { status: 200 }]
    );
    assert_eq!(count(), 2);

    // Partial failure: one of each, in order.
    fail(vec![429, 400]);
    let results = index
        .bulk_index(&[
            doc("o-3", r#"{"orderid":"o-3"}"#),
            doc("o-4", r#"{"orderid":"o-4"}"#),
            doc("o-5", r#"{"orderid":"o-5"}"#),
        ])
        .await
        .expect("bulk");
    assert_eq!(results.len(), 3);
    assert!(
        matches!(&results[0], ItemResult::Failed { status: 429, error_type, .. } if error_type == "es_rejected_execution_exception"),
        "{results:?}"
    );
    assert!(
        matches!(&results[1], ItemResult::Failed { status: 400, .. }),
        "{results:?}"
    );
    assert_eq!(results[2], ItemResult::Indexed { status: 201 });
    assert_eq!(count(), 3);

    // index_batch retries only the 429s and hands back the 400s.
    fail(vec![429, 400, 429, 429]);
    let batch: Vec<Document> = (10..15)
        .map(|n| doc(&format!("o-{n}"), &format!(r#"{{"orderid":"o-{n}"}}"#)))
        .collect();
    let outcome = index_batch(index, &batch, &quick()).await.expect("batch");
    // Attempt 1 fails o-10 (429), o-11 (400), o-12 (429), o-13 (429); o-14 indexed.
    // Attempt 2 resends o-10, o-12, o-13 only: all indexed.
    assert_eq!(
        outcome,
        BatchOutcome {
            indexed: 4,
            rejected: vec![Rejected {
                index: 1,
                status: 400,
                error: outcome.rejected[0].error.clone(),
            }],
            attempts: 2,
        }
    );
    assert!(!outcome.rejected[0].error.is_empty());
    assert_eq!(count(), 3 + 4);
}

#[tokio::test]
async fn memory_index_conforms() {
    let index = MemorySearchIndex::new();
    conformance(&index, |s| index.fail_next_items(s), || index.count()).await;
    assert_eq!(index.bulk_requests(), 5);
}

#[tokio::test]
async fn elasticsearch_index_conforms_to_the_rest_contract() {
    let server = Server::start().await;
    let index = ElasticsearchIndex::new(&config(&server), orders_mapping()).expect("client");
    conformance(
        &index,
        |s| server.state().failures.extend(s),
        || server.state().docs.len(),
    )
    .await;

    let requests = server.requests();
    let lines: Vec<String> = requests
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.method,
                r.path.split('?').next().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            "HEAD /orders",
            "PUT /orders",
            "HEAD /orders",
            "POST /orders/_bulk",
            "POST /orders/_bulk",
            "POST /orders/_bulk",
            "POST /orders/_bulk",
            "POST /orders/_bulk",
        ]
    );
    // The index was created with the explicit mapping.
    let created: Value = serde_json::from_slice(&requests[1].body).expect("create body");
    assert_eq!(created, json!({"mappings": orders_mapping()}));
    // _bulk: NDJSON, `_id` = orderid, the source as given.
    let bulk = &requests[3];
    assert_eq!(
        bulk.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        String::from_utf8(bulk.body.clone()).expect("utf-8"),
        "{\"index\":{\"_id\":\"o-1\"}}\n\
         {\"orderid\":\"o-1\",\"timestamp\":\"2024-01-01T00:00:00.000Z\"}\n\
         {\"index\":{\"_id\":\"o-2\"}}\n\
         {\"orderid\":\"o-2\",\"timestamp\":\"2024-01-01T00:00:00.000Z\"}\n"
    );
    // The retry of index_batch carried only the three 429s.
    let retry = String::from_utf8(requests[7].body.clone()).expect("utf-8");
    let ids: Vec<Value> = retry
        .lines()
        .step_by(2)
        .map(|l| serde_json::from_str::<Value>(l).expect("action")["index"]["_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("o-10"), json!("o-12"), json!("o-13")]);
}

#[tokio::test]
async fn sources_with_newlines_stay_one_ndjson_line() {
    let server = Server::start().await;
    let index = ElasticsearchIndex::new(&config(&server), orders_mapping()).expect("client");
    let results = index
        .bulk_index(&[doc(
            "o-1",
            "{\n  \"orderid\": \"o-1\",\r\n  \"note\": \"a\\nb\"\n}",
        )])
        .await
        .expect("bulk");
    assert_eq!(results, vec![ItemResult::Indexed { status: 201 }]);
    assert_eq!(
        server.state().docs.get("o-1"),
        Some(&json!({"orderid": "o-1", "note": "a\nb"}))
    );
}

#[tokio::test]
async fn credentials_are_sent_and_never_printed() {
    let server = Server::start().await;
    let basic = SearchConfig {
        username: Some("chief".into()),
        password: Some(Secret::new("s3cret-pw")),
        ..config(&server)
    };
    basic.validate().expect("valid");
    let printed = format!("{basic:?} {}", toml::to_string(&basic).expect("toml"));
    assert!(!printed.contains("s3cret-pw"), "{printed}");
    let index = ElasticsearchIndex::new(&basic, orders_mapping()).expect("client");
    index.ensure_index().await.expect("ensure");
    let with_key = SearchConfig {
        api_key: Some(Secret::new("aWQ6a2V5")),
        ..basic.clone()
    };
    let index = ElasticsearchIndex::new(&with_key, orders_mapping()).expect("client");
    index.ensure_index().await.expect("ensure");
    let auth: Vec<Option<String>> = server
        .requests()
        .iter()
        .map(|r| r.headers.get("authorization").cloned())
        .collect();
    assert_eq!(
        auth,
        vec![
            Some("Basic Y2hpZWY6czNjcmV0LXB3".to_owned()),
            Some("Basic Y2hpZWY6czNjcmV0LXB3".to_owned()),
            Some("ApiKey aWQ6a2V5".to_owned()),
        ]
    );
}

#[tokio::test]
async fn request_level_errors_are_classified_and_retried() {
    let server = Server::start().await;
    let index = ElasticsearchIndex::new(&config(&server), orders_mapping()).expect("client");
    server.state().fail_request = Some(503);
    let err = index
        .bulk_index(&[doc("o-1", "{}")])
        .await
        .expect_err("503");
    assert!(
        matches!(err, SearchError::Status { status: 503, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    // index_batch retries the whole request after a 5xx.
    server.state().fail_request = Some(503);
    let outcome = index_batch(&index, &[doc("o-1", "{}")], &quick())
        .await
        .expect("batch");
    assert_eq!((outcome.indexed, outcome.attempts), (1, 2));
    // A 4xx of the whole request is final.
    server.state().fail_request = Some(400);
    let err = index_batch(&index, &[doc("o-2", "{}")], &quick())
        .await
        .expect_err("400");
    assert!(!err.is_retryable(), "{err}");
    // Nobody listening: retryable.
    let gone = ElasticsearchIndex::new(
        &SearchConfig {
            url: "http://127.0.0.1:1".into(),
            timeout_ms: 2_000,
            ..config(&server)
        },
        orders_mapping(),
    )
    .expect("client");
    let err = gone.ensure_index().await.expect_err("refused");
    assert!(
        matches!(err, SearchError::Transport { .. }) && err.is_retryable(),
        "{err}"
    );
}

#[tokio::test]
async fn index_batch_gives_up_at_the_deadline_with_the_items_pending() {
    let index = MemorySearchIndex::new();
    index.fail_next_items(vec![429; 1_000]);
    let policy = RetryPolicy {
        initial_backoff_ms: 5,
        max_backoff_ms: 5,
        multiplier: 1.0,
        deadline_ms: 20,
    };
    let err = index_batch(&index, &[doc("o-1", "{}"), doc("o-2", "{}")], &policy)
        .await
        .expect_err("deadline");
    let SearchError::GaveUp {
        pending,
        attempts,
        status,
        ..
    } = err
    else {
        panic!("not GaveUp: {err}");
    };
    assert_eq!((pending, status), (2, 429));
    assert_eq!(attempts, index.bulk_requests());
    assert_eq!(index.count(), 0);
}
