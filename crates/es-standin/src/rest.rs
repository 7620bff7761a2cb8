//! Routing: method and path → the [`Standin`] call, with Elasticsearch's answers for an
//! unknown path (400 `no handler found`) and a wrong method (405).

use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::standin::{Reply, Standin};
use crate::wire::{ErrorCause, PlainError};

/// One request, as the routing needs it.
#[derive(Debug)]
pub(crate) struct RestRequest<'a> {
    pub method: &'a Method,
    /// The path as sent (percent-encoded).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: Bytes,
}

/// Decodes `%XX` escapes of one path segment or query component (`plus_is_space` for
/// query components).
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The query parameters, decoded.
pub(crate) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(key, true)?, percent_decode(value, true)?))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn no_handler(request: &RestRequest<'_>) -> Reply {
    Reply::json(
        400,
        &PlainError {
            error: format!(
                "no handler found for uri [{}] and method [{}]",
                request.path, request.method
            ),
            status: 400,
        },
    )
}

fn wrong_method(request: &RestRequest<'_>, allowed: &[&str]) -> Reply {
    Reply::json(
        405,
        &PlainError {
            error: format!(
                "Incorrect HTTP method for uri [{}] and method [{}], allowed: [{}]",
                request.path,
                request.method,
                allowed.join(", ")
            ),
            status: 405,
        },
    )
}

fn root_info() -> Reply {
    Reply::json(
        200,
        &json!({
            "name": "chief-es-standin",
            "cluster_name": "chief-es-standin",
            "cluster_uuid": "chief-es-standin",
            "version": {
                "number": "9.1.0",
                "build_flavor": "chief-es-standin",
                "minimum_wire_compatibility_version": "8.19.0",
                "minimum_index_compatibility_version": "8.0.0"
            },
            "chief_es_standin": "a dev-only in-memory stand-in for the REST calls chief makes; not Elasticsearch",
            "tagline": "You Know, for Search"
        }),
    )
}

/// Answers one request. HEAD gets the status of the matching GET (the server sends no
/// body for it).
pub(crate) fn route(standin: &Standin, request: RestRequest<'_>) -> Reply {
    let Some(segments) = request
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect::<Option<Vec<String>>>()
    else {
        return Reply::error(
            400,
            ErrorCause::new(
                "illegal_argument_exception",
                "invalid percent-encoding in the path",
            ),
        );
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let params = query_params(request.query);
    let method = request.method;
    let (get, head, put, post, delete) = (
        method == Method::GET,
        method == Method::HEAD,
        method == Method::PUT,
        method == Method::POST,
        method == Method::DELETE,
    );
    let is_index = |name: &str| !name.starts_with('_');
    let body = &request.body;
    let reply = match segments.as_slice() {
        [] if get || head => root_info(),
        [] => wrong_method(&request, &["GET", "HEAD"]),
        ["_bulk"] if post || put => standin.bulk(None, body),
        ["_bulk"] => wrong_method(&request, &["POST", "PUT"]),
        ["_count"] if get || post => standin.count_reply(None, param(&params, "q"), body),
        ["_count"] => wrong_method(&request, &["GET", "POST"]),
        ["_refresh"] if get || post => standin.refresh(None),
        ["_refresh"] => wrong_method(&request, &["GET", "POST"]),
        ["_cluster", "health"] if get || head => standin.cluster_health(),
        ["_cluster", "health"] => wrong_method(&request, &["GET"]),
        ["_standin", "faults", index] if put || post => standin.put_faults_reply(index, body),
        ["_standin", "faults", index] if get => standin.faults_reply(index),
        ["_standin", "faults", index] if delete => standin.clear_faults_reply(index),
        ["_standin", "faults", _] => wrong_method(&request, &["PUT", "GET", "DELETE"]),
        ["_standin", "stats"] if get => standin.stats_reply(None),
        ["_standin", "stats", index] if get => standin.stats_reply(Some(index)),
        ["_standin", "stats", ..] => wrong_method(&request, &["GET"]),
        [index] if is_index(index) => match *method {
            Method::HEAD => standin.index_exists_reply(index),
            Method::GET => standin.get_index(index),
            Method::PUT => standin.create_index(index, body),
            Method::DELETE => standin.delete_index(index),
            _ => wrong_method(&request, &["HEAD", "GET", "PUT", "DELETE"]),
        },
        [index, "_bulk"] if is_index(index) && (post || put) => standin.bulk(Some(index), body),
        [index, "_bulk"] if is_index(index) => wrong_method(&request, &["POST", "PUT"]),
        [index, "_doc"] if is_index(index) && post => {
            standin.put_doc(index, None, request.body.clone(), false)
        }
        [index, "_doc"] if is_index(index) => wrong_method(&request, &["POST"]),
        [index, "_doc", id] if is_index(index) => match *method {
            Method::GET | Method::HEAD => standin.get_doc(index, id, false),
            Method::PUT | Method::POST => {
                let create = param(&params, "op_type") == Some("create");
                standin.put_doc(index, Some(id), request.body.clone(), create)
            }
            Method::DELETE => standin.delete_doc(index, id),
            _ => wrong_method(&request, &["GET", "HEAD", "PUT", "POST", "DELETE"]),
        },
        [index, "_create", id] if is_index(index) && (put || post) => {
            standin.put_doc(index, Some(id), request.body.clone(), true)
        }
        [index, "_create", _] if is_index(index) => wrong_method(&request, &["PUT", "POST"]),
        [index, "_source", id] if is_index(index) && (get || head) => {
            standin.get_doc(index, id, true)
        }
        [index, "_source", _] if is_index(index) => wrong_method(&request, &["GET", "HEAD"]),
        [index, "_count"] if is_index(index) && (get || post) => {
            standin.count_reply(Some(index), param(&params, "q"), body)
        }
        [index, "_count"] if is_index(index) => wrong_method(&request, &["GET", "POST"]),
        [index, "_refresh"] if is_index(index) && (get || post) => standin.refresh(Some(index)),
        [index, "_refresh"] if is_index(index) => wrong_method(&request, &["GET", "POST"]),
        _ => no_handler(&request),
    };
    if params.iter().any(|(k, v)| k == "pretty" && v != "false") {
        return pretty(reply);
    }
    reply
}

/// `?pretty`: the body indented, with a final newline.
fn pretty(reply: Reply) -> Reply {
    let Ok(value) = serde_json::from_slice::<Value>(&reply.body) else {
        return reply;
    };
    match serde_json::to_vec_pretty(&value) {
        Ok(mut body) => {
            body.push(b'\n');
            Reply {
                body: Bytes::from(body),
                ..reply
            }
        }
        Err(_) => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(standin: &Standin, method: Method, path: &str, body: &str) -> (u16, Value) {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let reply = route(
            standin,
            RestRequest {
                method: &method,
                path,
                query,
                body: Bytes::from(body.to_owned()),
            },
        );
        let value = if reply.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&reply.body).expect("json")
        };
        (reply.status, value)
    }

    #[test]
    fn decodes_paths_and_queries() {
        assert_eq!(percent_decode("a%2Fb%20c", false).as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(
            query_params(Some("pretty&q=a%3Ab&refresh=true")),
            vec![
                ("pretty".to_owned(), String::new()),
                ("q".to_owned(), "a:b".to_owned()),
                ("refresh".to_owned(), "true".to_owned())
            ]
        );
    }

    #[test]
    fn index_lifecycle_and_documents() {
        let s = Standin::default();
        assert_eq!(call(&s, Method::HEAD, "/orders", "").0, 404);
        let (status, body) = call(
            &s,
            Method::PUT,
            "/orders",
            r#"{"mappings":{"dynamic":false}}"#,
        );
        assert_eq!((status, body["acknowledged"].clone()), (200, json!(true)));
        assert_eq!(call(&s, Method::HEAD, "/orders", "").0, 200);
        let (status, body) = call(&s, Method::PUT, "/orders", "{}");
        assert_eq!(status, 400);
        assert_eq!(
            body["error"]["type"],
            json!("resource_already_exists_exception")
        );
        assert_eq!(body["error"]["root_cause"][0]["index"], json!("orders"));
        let (status, body) = call(&s, Method::GET, "/orders", "");
        assert_eq!(status, 200);
        assert_eq!(body["orders"]["mappings"], json!({"dynamic": false}));

        let (status, body) = call(&s, Method::PUT, "/orders/_doc/a%2Fb", r#"{"x":1}"#);
        assert_eq!((status, body["result"].clone()), (201, json!("created")));
        let (status, body) = call(&s, Method::GET, "/orders/_doc/a%2Fb", "");
        assert_eq!(status, 200);
        assert_eq!(body["_source"], json!({"x": 1}));
        assert_eq!(body["found"], json!(true));
        let (status, body) = call(&s, Method::GET, "/orders/_doc/nope", "");
        assert_eq!((status, body["found"].clone()), (404, json!(false)));
        let (status, _) = call(&s, Method::PUT, "/orders/_create/a%2Fb", r#"{"x":2}"#);
        assert_eq!(status, 409);
        let (status, body) = call(&s, Method::GET, "/orders/_count?pretty", "");
        assert_eq!((status, body["count"].clone()), (200, json!(1)));
        let (status, _) = call(
            &s,
            Method::POST,
            "/orders/_count",
            r#"{"query":{"term":{"x":1}}}"#,
        );
        assert_eq!(status, 400);
        assert_eq!(call(&s, Method::POST, "/orders/_refresh", "").0, 200);
        assert_eq!(call(&s, Method::DELETE, "/orders/_doc/a%2Fb", "").0, 200);
        assert_eq!(call(&s, Method::DELETE, "/orders", "").0, 200);
        let (status, body) = call(&s, Method::GET, "/orders/_count", "");
        assert_eq!(status, 404);
        assert_eq!(body["error"]["type"], json!("index_not_found_exception"));
    }

    #[test]
    fn unknown_paths_and_methods() {
        let s = Standin::default();
        let (status, body) = call(&s, Method::GET, "/_nope", "");
        assert_eq!(status, 400);
        assert_eq!(
            body["error"],
            json!("no handler found for uri [/_nope] and method [GET]")
        );
        let (status, _) = call(&s, Method::DELETE, "/orders/_count", "");
        assert_eq!(status, 405);
        let (status, body) = call(&s, Method::PUT, "/Orders", "");
        assert_eq!(status, 400);
        assert_eq!(body["error"]["type"], json!("invalid_index_name_exception"));
    }

    #[test]
    fn fault_api() {
        let s = Standin::default();
        let (status, body) = call(
            &s,
            Method::PUT,
            "/_standin/faults/orders",
            r#"{"reject_429_ratio":0.5,"fail_requests":1}"#,
        );
        assert_eq!(status, 200);
        assert_eq!(body["faults"]["reject_429_ratio"], json!(0.5));
        assert_eq!(body["faults"]["fail_status"], json!(503));
        let (status, _) = call(&s, Method::PUT, "/_standin/faults/orders", r#"{"nope":1}"#);
        assert_eq!(status, 400);
        let (status, _) = call(
            &s,
            Method::PUT,
            "/_standin/faults/orders",
            r#"{"reject_400_ratio":2}"#,
        );
        assert_eq!(status, 400);
        let bulk = "{\"index\":{\"_id\":\"1\"}}\n{}\n{\"index\":{\"_id\":\"2\"}}\n{}\n";
        assert_eq!(call(&s, Method::POST, "/orders/_bulk", bulk).0, 503);
        let (status, body) = call(&s, Method::POST, "/orders/_bulk", bulk);
        assert_eq!(status, 200);
        assert_eq!(body["items"][0]["index"]["status"], json!(201));
        assert_eq!(body["items"][1]["index"]["status"], json!(429));
        let (_, stats) = call(&s, Method::GET, "/_standin/stats/orders", "");
        assert_eq!(stats["stats"]["failed_requests"], json!(1));
        assert_eq!(stats["stats"]["rejected_429"], json!(1));
        assert_eq!(stats["docs"], json!(1));
        assert_eq!(
            call(&s, Method::DELETE, "/_standin/faults/orders", "").0,
            200
        );
        let (_, body) = call(&s, Method::GET, "/_standin/faults/orders", "");
        assert_eq!(body["faults"], Value::Null);
    }
}
