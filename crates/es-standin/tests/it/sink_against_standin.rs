//! The project's real search sink (`chief_pipeline::search::ElasticsearchIndex`, the
//! `elasticsearch` crate over HTTP) against the stand-in, started in-process on
//! `127.0.0.1:0` — one per test, and one index name per test, so they run in parallel.
//! The stand-in's own endpoints (`_count`, `_doc`, `/_standin/…`) are called with the
//! `elasticsearch` crate's client too.

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use chief_config::retry::RetryPolicy;
use chief_es_standin::{Faults, IndexStats, RunningStandin, Standin};
use chief_pipeline::search::{
    Document, ElasticsearchIndex, ItemResult, Rejected, SearchConfig, SearchError, SearchIndex,
    Secret, index_batch, orders_mapping,
};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::{BulkParts, CountParts, Elasticsearch, GetParts};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn start() -> RunningStandin {
    RunningStandin::start("127.0.0.1:0", Standin::default())
        .await
        .expect("start the stand-in")
}

fn config(es: &RunningStandin, index: &str) -> SearchConfig {
    SearchConfig {
        url: es.url(),
        index: index.to_owned(),
        ..SearchConfig::default()
    }
}

fn sink(es: &RunningStandin, index: &str) -> ElasticsearchIndex {
    ElasticsearchIndex::new(&config(es, index), orders_mapping()).expect("sink client")
}

/// A plain client for the calls the sink does not make.
fn client(es: &RunningStandin) -> Elasticsearch {
    let url = Url::parse(&es.url()).expect("url");
    let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
        .disable_proxy()
        .build()
        .expect("transport");
    Elasticsearch::new(transport)
}

async fn call(
    es: &RunningStandin,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let response = client(es)
        .send(
            method,
            path,
            HeaderMap::new(),
            Option::<&()>::None,
            body.map(JsonBody::new),
            None,
        )
        .await
        .expect("request");
    let status = response.status_code().as_u16();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("json body")
    };
    (status, value)
}

async fn set_faults(es: &RunningStandin, index: &str, faults: Value) {
    let (status, body) = call(
        es,
        Method::Put,
        &format!("/_standin/faults/{index}"),
        Some(faults),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

fn order(n: usize) -> Document {
    let id = format!("order-{n:05}");
    Document {
        index: None,
        source: Bytes::from(format!(
            r#"{{"orderid":"{id}","user":{{"userid":"u-{}","name":"Zoë \"Z\" Tab\tby"}},"factoryid":"f-{}","items":[{{"sku":"s-1","quantity":{n},"unit_price_cents":199}}],"timestamp":"2024-05-01T12:00:00.000Z"}}"#,
            n % 17,
            n % 3
        )),
        id: id.parse().expect("orderid"),
    }
}

fn orders(n: usize) -> Vec<Document> {
    (0..n).map(order).collect()
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        initial_backoff_ms: 1,
        max_backoff_ms: 5,
        multiplier: 2.0,
        deadline_ms: 30_000,
    }
}

async fn count(es: &RunningStandin, index: &str) -> u64 {
    let response = client(es)
        .count(CountParts::Index(&[index]))
        .send()
        .await
        .expect("_count");
    assert_eq!(response.status_code().as_u16(), 200);
    let body: Value = response.json().await.expect("_count body");
    body["count"].as_u64().expect("count")
}

/// `GET /{index}/_doc/{id}`: the status and the raw body.
async fn get_doc(es: &RunningStandin, index: &str, id: &str) -> (u16, String) {
    let response = client(es)
        .get(GetParts::IndexId(index, id))
        .send()
        .await
        .expect("_doc");
    let status = response.status_code().as_u16();
    (status, response.text().await.expect("_doc body"))
}

#[tokio::test]
async fn ensure_index_creates_the_index_with_its_mapping_then_finds_it() {
    let es = start().await;
    let index = sink(&es, "orders");
    assert!(index.ensure_index().await.expect("create"));
    assert!(!index.ensure_index().await.expect("exists"));
    assert_eq!(es.standin().mappings("orders"), Some(orders_mapping()));
    let (status, body) = call(&es, Method::Get, "/orders", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["orders"]["mappings"], orders_mapping());
    // A second worker racing to create it: the 400 resource_already_exists_exception
    // the stand-in answers is what the sink reads as "exists".
    let (status, body) = call(&es, Method::Put, "/orders", Some(json!({}))).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["type"],
        json!("resource_already_exists_exception")
    );
    assert_eq!(body["status"], json!(400));
}

#[tokio::test]
async fn bulk_indexed_documents_are_counted_and_read_back_byte_for_byte() {
    let es = start().await;
    let index = sink(&es, "bulk-orders");
    index.ensure_index().await.expect("create");
    let mut docs = orders(500);
    // An id that needs percent-encoding in a `_doc` path.
    docs.push(Document {
        index: None,
        id: "order/ä 1".parse().expect("orderid"),
        source: Bytes::from_static(br#"{"orderid":"order/\u00e4 1","note":"a\\tb"}"#),
    });
    let results = index.bulk_index(&docs).await.expect("bulk");
    assert_eq!(
        results,
        vec![ItemResult::Indexed { status: 201 }; docs.len()]
    );
    assert_eq!(count(&es, "bulk-orders").await, docs.len() as u64);

    for doc in [&docs[0], &docs[250], &docs[500]] {
        let (status, body) = get_doc(&es, "bulk-orders", doc.id.as_str()).await;
        assert_eq!(status, 200, "{body}");
        let parsed: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(parsed["found"], json!(true));
        assert_eq!(parsed["_id"], json!(doc.id.as_str()));
        assert_eq!(parsed["_version"], json!(1));
        // `_source` holds exactly the bytes that were indexed.
        let source = body
            .split_once(",\"_source\":")
            .and_then(|(_, rest)| rest.strip_suffix('}'))
            .expect("_source last");
        assert_eq!(source.as_bytes(), &doc.source[..]);
    }
    let (status, body) = get_doc(&es, "bulk-orders", "order-99999").await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"_index": "bulk-orders", "_id": "order-99999", "found": false})
    );
}

#[tokio::test]
async fn replays_overwrite_and_never_duplicate() {
    let es = start().await;
    let index = sink(&es, "replays");
    let docs = orders(200);
    // No ensure_index: the first bulk creates the index, as Elasticsearch does.
    let first = index.bulk_index(&docs).await.expect("bulk");
    assert!(es.standin().index_exists("replays"));
    assert_eq!(first, vec![ItemResult::Indexed { status: 201 }; 200]);
    let replay = index.bulk_index(&docs).await.expect("replay");
    assert_eq!(replay, vec![ItemResult::Indexed { status: 200 }; 200]);
    assert_eq!(count(&es, "replays").await, 200);
    let (_, body) = get_doc(&es, "replays", "order-00007").await;
    let parsed: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(parsed["_version"], json!(2));
    assert_eq!(
        es.standin().stats("replays"),
        IndexStats {
            bulk_requests: 2,
            bulk_items: 400,
            created: 200,
            updated: 200,
            ..IndexStats::default()
        }
    );
}

#[tokio::test]
async fn index_batch_ends_with_every_id_despite_20_percent_429s() {
    let es = start().await;
    set_faults(&es, "busy", json!({"reject_429_ratio": 0.2})).await;
    let index = sink(&es, "busy");
    index.ensure_index().await.expect("create");
    let docs = orders(1_000);
    let outcome = index_batch(&index, &docs, &quick()).await.expect("batch");
    assert_eq!(outcome.indexed, 1_000);
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
    // 1,000 items → 200 rejected → 40 → 8 → 1 → 0: five requests, deterministically.
    assert_eq!(outcome.attempts, 5);
    let stats = es.standin().stats("busy");
    assert_eq!(stats.rejected_429, 200 + 40 + 8 + 1);
    assert_eq!(stats.bulk_requests, 5);
    let mut expected: Vec<String> = docs.iter().map(|d| d.id.as_str().to_owned()).collect();
    expected.sort_unstable();
    assert_eq!(es.standin().ids("busy"), expected);
    assert_eq!(count(&es, "busy").await, 1_000);
}

#[tokio::test]
async fn items_rejected_with_400_come_back_in_the_outcome() {
    let es = start().await;
    set_faults(&es, "strict", json!({"reject_400_ratio": 0.1})).await;
    let index = sink(&es, "strict");
    let docs = orders(50);
    let outcome = index_batch(&index, &docs, &quick()).await.expect("batch");
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.indexed, 45);
    let rejected: Vec<(usize, u16)> = outcome
        .rejected
        .iter()
        .map(|r: &Rejected| (r.index, r.status))
        .collect();
    assert_eq!(
        rejected,
        vec![(9, 400), (19, 400), (29, 400), (39, 400), (49, 400)]
    );
    for r in &outcome.rejected {
        assert!(
            r.error.starts_with("document_parsing_exception: "),
            "{}",
            r.error
        );
        assert_eq!(
            es.standin().source("strict", docs[r.index].id.as_str()),
            None
        );
    }
    assert_eq!(count(&es, "strict").await, 45);
}

#[tokio::test]
async fn a_source_that_is_not_json_is_a_400_item_the_rest_is_indexed() {
    let es = start().await;
    let index = sink(&es, "parsing");
    let docs = vec![
        order(1),
        Document {
            index: None,
            id: "order-bad".parse().expect("orderid"),
            source: Bytes::from_static(b"{\"orderid\": \"order-bad\", oops}"),
        },
        order(2),
    ];
    let results = index.bulk_index(&docs).await.expect("bulk");
    assert_eq!(results[0], ItemResult::Indexed { status: 201 });
    assert!(
        matches!(&results[1], ItemResult::Failed { status: 400, error_type, reason }
            if error_type == "document_parsing_exception" && reason.contains("failed to parse")),
        "{results:?}"
    );
    assert_eq!(results[2], ItemResult::Indexed { status: 201 });
    assert_eq!(es.standin().stats("parsing").invalid_sources, 1);
}

#[tokio::test]
async fn whole_request_failures_are_retried_by_index_batch() {
    let es = start().await;
    set_faults(
        &es,
        "flaky",
        json!({"fail_requests": 2, "fail_status": 503}),
    )
    .await;
    let index = sink(&es, "flaky");
    let err = index.bulk_index(&orders(3)).await.expect_err("503");
    assert!(
        matches!(&err, SearchError::Status { status: 503, body, .. } if body.contains("cluster_block_exception")),
        "{err}"
    );
    assert!(err.is_retryable());
    // One failure left: index_batch needs two requests.
    let outcome = index_batch(&index, &orders(3), &quick())
        .await
        .expect("batch");
    assert_eq!((outcome.indexed, outcome.attempts), (3, 2));

    set_faults(
        &es,
        "flaky",
        json!({"fail_requests": 1, "fail_status": 429}),
    )
    .await;
    let outcome = index_batch(&index, &orders(3), &quick())
        .await
        .expect("batch");
    assert_eq!((outcome.indexed, outcome.attempts), (3, 2));
    let (_, faults) = call(&es, Method::Get, "/_standin/faults/flaky", None).await;
    assert_eq!(faults["faults"]["fail_requests"], json!(0));
    assert_eq!(es.standin().stats("flaky").failed_requests, 3);
}

#[tokio::test]
async fn faults_of_one_index_leave_another_alone_in_one_request() {
    let es = start().await;
    set_faults(&es, "faulty", json!({"reject_429_ratio": 1.0})).await;
    let body: Vec<String> = vec![
        json!({"index": {"_index": "faulty", "_id": "a"}}).to_string(),
        json!({"n": 1}).to_string(),
        json!({"index": {"_index": "healthy", "_id": "a"}}).to_string(),
        json!({"n": 2}).to_string(),
        json!({"create": {"_index": "healthy", "_id": "a"}}).to_string(),
        json!({"n": 3}).to_string(),
    ];
    let response = client(&es)
        .bulk(BulkParts::None)
        .body(body)
        .send()
        .await
        .expect("_bulk");
    assert_eq!(response.status_code().as_u16(), 200);
    let value: Value = response.json().await.expect("body");
    assert_eq!(value["errors"], json!(true));
    let items = value["items"].as_array().expect("items");
    assert_eq!(items[0]["index"]["status"], json!(429));
    assert_eq!(
        items[0]["index"]["error"]["type"],
        json!("es_rejected_execution_exception")
    );
    assert_eq!(items[1]["index"]["_index"], json!("healthy"));
    assert_eq!(items[1]["index"]["result"], json!("created"));
    assert_eq!(items[2]["create"]["status"], json!(409));
    assert_eq!(
        items[2]["create"]["error"]["type"],
        json!("version_conflict_engine_exception")
    );
    assert_eq!(es.standin().count("healthy"), Some(1));
    assert_eq!(es.standin().count("faulty"), Some(0));
    let (status, _) = call(&es, Method::Delete, "/_standin/faults/faulty", None).await;
    assert_eq!(status, 200);
    assert_eq!(es.standin().faults("faulty"), None);
}

#[tokio::test]
async fn a_slow_answer_times_the_client_out() {
    let es = start().await;
    es.standin()
        .set_faults(
            "slow",
            Faults {
                delay_ms: 2_000,
                ..Faults::default()
            },
        )
        .expect("faults");
    let index = ElasticsearchIndex::new(
        &SearchConfig {
            timeout_ms: 200,
            ..config(&es, "slow")
        },
        orders_mapping(),
    )
    .expect("sink");
    let err = index.bulk_index(&orders(1)).await.expect_err("timeout");
    assert!(
        matches!(err, SearchError::Transport { .. }) && err.is_retryable(),
        "{err}"
    );
}

#[tokio::test]
async fn any_credentials_are_accepted_and_only_their_scheme_is_counted() {
    let es = start().await;
    let basic = SearchConfig {
        username: Some("chief".to_owned()),
        password: Some(Secret::new("s3cret")),
        ..config(&es, "secured")
    };
    let index = ElasticsearchIndex::new(&basic, orders_mapping()).expect("sink");
    assert!(index.ensure_index().await.expect("ensure"));
    let keyed = SearchConfig {
        api_key: Some(Secret::new("aWQ6a2V5")),
        ..basic
    };
    let index = ElasticsearchIndex::new(&keyed, orders_mapping()).expect("sink");
    assert!(!index.ensure_index().await.expect("ensure"));
    let counts = es.standin().auth_counts();
    assert_eq!((counts.basic, counts.api_key), (2, 1));
    let (_, stats) = call(&es, Method::Get, "/_standin/stats", None).await;
    assert_eq!(stats["authorization"]["basic"], json!(2));
    assert!(!stats.to_string().contains("s3cret"));
}

#[tokio::test]
async fn the_binary_serves_and_exits_0_on_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chief-es-standin"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chief-es-standin");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some((_, rest)) = line.split_once("listening on ") {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("listen line in time")
    .expect("a listen line");
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let index = ElasticsearchIndex::new(
        &SearchConfig {
            url,
            index: "orders".to_owned(),
            ..SearchConfig::default()
        },
        orders_mapping(),
    )
    .expect("sink");
    assert!(index.ensure_index().await.expect("ensure"));
    assert_eq!(
        index.bulk_index(&orders(2)).await.expect("bulk"),
        vec![ItemResult::Indexed { status: 201 }; 2]
    );

    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}

/// An order at the edges of the record contract, as JSON.
fn edge_order(id: &str, quantity: &str, price: &str, timestamp: &str) -> Document {
    Document {
        index: None,
        id: id.parse().expect("orderid"),
        source: Bytes::from(format!(
            r#"{{"orderid":"{id}","user":{{"userid":"{}","name":"n"}},"factoryid":"f","items":[{{"sku":"s","product":"p","quantity":{quantity},"unit_price_cents":{price}}}],"timestamp":"{timestamp}"}}"#,
            "🦀".repeat(chief_pipeline::model::KEYWORD_MAX_LEN)
        )),
    }
}

#[tokio::test]
async fn the_mapping_and_the_record_contract_agree_at_the_boundaries() {
    use chief_pipeline::model::{Order, PRICE_MAX_CENTS, QUANTITY_MAX};
    let es = start().await;
    let index = sink(&es, "boundaries");
    index
        .ensure_index()
        .await
        .expect("create with the orders mapping");
    let (q, p) = (QUANTITY_MAX.to_string(), PRICE_MAX_CENTS.to_string());
    let docs = [
        // Valid by the contract: the largest numbers, the earliest and latest years.
        edge_order("max", &q, &p, "9999-12-31T23:59:59.999Z"),
        edge_order("min", "0", "0", "1000-01-01T00:00:00-14:00"),
        // One past the bounds: the contract refuses them, and so does the cluster.
        edge_order(
            "q+1",
            &(u64::from(QUANTITY_MAX) + 1).to_string(),
            "1",
            "2024-01-01T00:00:00Z",
        ),
        edge_order(
            "p+1",
            "1",
            &(PRICE_MAX_CENTS + 1).to_string(),
            "2024-01-01T00:00:00Z",
        ),
        edge_order("q-frac", "1.5", "1", "2024-01-01T00:00:00Z"),
        edge_order("leap", "1", "1", "2016-12-31T23:59:60Z"),
        edge_order("space", "1", "1", "2024-01-01 00:00:00Z"),
        Document {
            index: None,
            id: "utf8".parse().expect("orderid"),
            source: Bytes::from_static(b"{\"orderid\":\"utf8\",\"user\":{\"name\":\"\xff\xfe\"}}"),
        },
        Document {
            index: None,
            id: "twice".parse().expect("orderid"),
            source: Bytes::from_static(br#"{"orderid":"twice","x":{"a":1,"a":2}}"#),
        },
        Document {
            index: None,
            id: "array".parse().expect("orderid"),
            source: Bytes::from_static(br#"["array"]"#),
        },
    ];
    let results = index.bulk_index(&docs).await.expect("bulk");
    for (doc, result) in docs.iter().zip(&results) {
        let valid = Order::parse(&doc.source).is_ok();
        match result {
            ItemResult::Indexed { status: 201 } => {
                assert!(valid, "{}: indexed, but the contract refuses it", doc.id)
            }
            ItemResult::Failed {
                status: 400,
                error_type,
                ..
            } if error_type == "document_parsing_exception" => {
                assert!(
                    !valid,
                    "{}: the contract accepts what the cluster refuses",
                    doc.id
                )
            }
            other => panic!("{}: {other:?}", doc.id),
        }
    }
    assert_eq!(count(&es, "boundaries").await, 2);
    let (status, body) = get_doc(&es, "boundaries", "max").await;
    assert_eq!(status, 200);
    assert!(body.contains(&format!("\"quantity\":{q}")), "{body}");
}

/// The sink signing with AWS SigV4 (`[elasticsearch] aws_sigv4_service = "es"`).
fn signed(es: &RunningStandin, index: &str, secret: &str) -> ElasticsearchIndex {
    let credentials = aws_credential_types::provider::SharedCredentialsProvider::new(
        aws_credential_types::Credentials::new("AKIACHIEFTEST", secret, None, None, "test"),
    );
    ElasticsearchIndex::new(&config(es, index), orders_mapping())
        .expect("client")
        .signed_with(chief_pipeline::search::AwsSigner::new(
            credentials,
            "eu-west-1",
            "es",
        ))
}

#[tokio::test]
async fn sigv4_signed_requests_pass_and_a_wrong_secret_gets_403_with_awss_message() {
    let es = RunningStandin::start(
        "127.0.0.1:0",
        Standin::new(chief_es_standin::StandinConfig {
            sigv4: Some(chief_es_standin::sigv4::SigV4Key {
                access_key_id: "AKIACHIEFTEST".into(),
                secret_access_key: "the-right-secret".into(),
                service: "es".into(),
            }),
            ..chief_es_standin::StandinConfig::default()
        }),
    )
    .await
    .expect("start the stand-in");
    // Signed with the right secret: the index is created and documents indexed.
    let right = signed(&es, "signed", "the-right-secret");
    assert!(right.ensure_index().await.expect("create, signed"));
    let results = right
        .bulk_index(&[Document {
            index: None,
            id: "o-1".to_owned(),
            source: Bytes::from_static(br#"{"orderid":"o-1","timestamp":"2024-01-01T00:00:00Z"}"#),
        }])
        .await
        .expect("bulk, signed");
    assert_eq!(results, vec![ItemResult::Indexed { status: 201 }]);
    // A wrong secret, and no signature at all: 403 with AWS's words, not retryable.
    for (what, index) in [
        ("a wrong secret", signed(&es, "signed", "a-wrong-secret")),
        (
            "no signature",
            ElasticsearchIndex::new(&config(&es, "signed"), orders_mapping()).expect("client"),
        ),
    ] {
        let err = index.ensure_index().await.expect_err(what);
        assert!(
            matches!(err, SearchError::Status { status: 403, .. }) && !err.is_retryable(),
            "{what}: {err}"
        );
        assert!(
            err.to_string().contains("refused these credentials"),
            "{what}: {err}"
        );
        // A request with a body carries AWS's reason.
        let err = index
            .bulk_index(&[Document {
                index: None,
                id: "o-2".to_owned(),
                source: Bytes::from_static(br#"{"orderid":"o-2"}"#),
            }])
            .await
            .expect_err(what);
        let text = err.to_string();
        assert!(
            matches!(err, SearchError::Status { status: 403, .. }),
            "{what}: {text}"
        );
        assert!(
            text.contains("The request signature we calculated does not match")
                || text.contains("Missing Authentication Token"),
            "{what}: {text}"
        );
    }
}
