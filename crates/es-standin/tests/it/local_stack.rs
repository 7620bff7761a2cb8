//! The stand-in `make stack-up` started (at `[elasticsearch] url` of `config/local.toml`,
//! `CHIEF__ELASTICSEARCH__URL`) takes the sink's writes and the fault API: what the
//! executors' local-stack tests rely on. Uses an index of its own and removes it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chief_config::local_stack::LocalStack;
use chief_config::retry::RetryPolicy;
use chief_pipeline::search::{
    Document, ElasticsearchIndex, SearchConfig, SearchIndex, index_batch, orders_mapping,
};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::{CountParts, Elasticsearch};
use serde_json::{Value, json};

#[tokio::test]
async fn the_stack_standin_indexes_through_429s_and_counts() {
    let stack = LocalStack::require();
    let url = stack.elasticsearch.url;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("standin-test-{}-{nanos}", std::process::id());
    let client = Elasticsearch::new(
        TransportBuilder::new(SingleNodeConnectionPool::new(
            Url::parse(&url).expect("url"),
        ))
        .disable_proxy()
        .build()
        .expect("transport"),
    );
    let send = |method: Method, path: String, body: Option<Value>| {
        let client = client.clone();
        async move {
            let response = client
                .send(
                    method,
                    &path,
                    HeaderMap::new(),
                    Option::<&()>::None,
                    body.map(JsonBody::new),
                    None,
                )
                .await
                .expect("request");
            response.status_code().as_u16()
        }
    };
    let faults = format!("/_standin/faults/{name}");
    assert_eq!(
        send(
            Method::Put,
            faults.clone(),
            Some(json!({"reject_429_ratio": 0.2}))
        )
        .await,
        200
    );

    let index = ElasticsearchIndex::new(
        &SearchConfig {
            url: url.clone(),
            index: name.clone(),
            ..SearchConfig::default()
        },
        orders_mapping(),
    )
    .expect("sink");
    assert!(index.ensure_index().await.expect("create"));
    let docs: Vec<Document> = (0..300)
        .map(|n| Document {
            index: None,
            id: format!("o-{n}").parse().expect("orderid"),
            source: Bytes::from(format!(r#"{{"orderid":"o-{n}"}}"#)),
        })
        .collect();
    let retry = RetryPolicy {
        initial_backoff_ms: 1,
        max_backoff_ms: 5,
        multiplier: 2.0,
        deadline_ms: 30_000,
    };
    let outcome = index_batch(&index, &docs, &retry).await.expect("batch");
    assert_eq!(outcome.indexed, 300);
    assert!(outcome.attempts > 1);
    let count: Value = client
        .count(CountParts::Index(&[&name]))
        .send()
        .await
        .expect("_count")
        .json()
        .await
        .expect("_count body");
    assert_eq!(count["count"], json!(300));

    assert_eq!(send(Method::Delete, faults, None).await, 200);
    assert_eq!(send(Method::Delete, format!("/{name}"), None).await, 200);
}
