//! How tests find the local stack (`make stack-up`): the settings in `config/local.toml`
//! (plus `CHIEF__` overrides), and a reachability check that fails loudly, naming the
//! command that starts the stack, instead of letting a test skip.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::aws::AwsConfig;
use crate::database::DatabaseConfig;

/// The command that starts the local stack.
pub const START_COMMAND: &str = "make stack-up";

/// The settings of the local stack, read from `config/local.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalStack {
    /// AWS endpoints and credentials of the emulators.
    pub aws: AwsConfig,
    /// The MariaDB server.
    pub database: DatabaseConfig,
    /// The Elasticsearch stand-in (`chief-es-standin`).
    pub elasticsearch: ElasticsearchEndpoint,
}

/// Where the local Elasticsearch stand-in answers: the `url` of the `[elasticsearch]`
/// section (`CHIEF__ELASTICSEARCH__URL`). Not strict about unknown keys, unlike the
/// binaries' sections: the executors' `[elasticsearch]` section (index, credentials,
/// time-out, retry) may be in the same files and environment, and only `url` is read
/// here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ElasticsearchEndpoint {
    /// The stand-in's URL. Default `http://127.0.0.1:9200`.
    pub url: String,
}

impl Default for ElasticsearchEndpoint {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".to_owned(),
        }
    }
}

/// The workspace root (the folder holding `Cargo.lock`, `config/`, `.local/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

impl LocalStack {
    /// Loads `config/local.toml` and checks that every service answers on its port.
    ///
    /// # Panics
    /// When the config cannot be read or a service does not answer: the message names
    /// the service, its address and [`START_COMMAND`]. Meant for tests, which must fail
    /// loudly rather than skip.
    pub fn require() -> Self {
        match Self::check() {
            Ok(stack) => stack,
            Err(why) => panic!("local stack not available: {why}; start it with `{START_COMMAND}`"),
        }
    }

    /// Loads `config/local.toml` and checks that every service answers on its port.
    pub fn check() -> Result<Self, String> {
        let path = workspace_root().join("config/local.toml");
        let stack: Self = crate::load(&[&path]).map_err(|e| e.to_string())?;
        let services = [
            (
                "Kinesis (kinesis-local)",
                stack.aws.kinesis.endpoint.clone(),
            ),
            ("DynamoDB (moto)", stack.aws.dynamodb.endpoint.clone()),
            ("S3 (moto)", stack.aws.s3.endpoint.clone()),
            ("MariaDB", Some(stack.database.url.clone())),
            (
                "Elasticsearch (chief-es-standin)",
                Some(stack.elasticsearch.url.clone()),
            ),
        ];
        for (name, url) in services {
            let url = url.ok_or_else(|| format!("{name} has no endpoint in {}", path.display()))?;
            let addr = socket_addr(&url).ok_or_else(|| format!("{name}: bad address {url}"))?;
            TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .map_err(|e| format!("{name} does not answer at {addr} ({e})"))?;
        }
        Ok(stack)
    }
}

/// `scheme://[user@]host:port[/…]` → the socket address.
fn socket_addr(url: &str) -> Option<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    host_port.to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addr_reads_http_and_mysql_urls() {
        assert_eq!(
            socket_addr("http://127.0.0.1:4568"),
            Some(SocketAddr::from(([127, 0, 0, 1], 4568)))
        );
        assert_eq!(
            socket_addr("mysql://root:pw@127.0.0.1:3307/chief"),
            Some(SocketAddr::from(([127, 0, 0, 1], 3307)))
        );
        assert_eq!(socket_addr("not a url"), None);
    }

    #[test]
    fn reads_only_the_url_of_a_full_elasticsearch_section() {
        let toml = r#"
            [elasticsearch]
            url = "http://127.0.0.1:9201"
            index = "orders"
            username = "chief"
            timeout_ms = 1000
            [elasticsearch.retry]
            initial_backoff_ms = 10
        "#;
        let env = [(
            "CHIEF__ELASTICSEARCH__API_KEY".to_owned(),
            "aWQ6a2V5".to_owned(),
        )];
        let stack: LocalStack = crate::load_str(toml, &env).expect("load");
        assert_eq!(stack.elasticsearch.url, "http://127.0.0.1:9201");
        let env = [(
            "CHIEF__ELASTICSEARCH__URL".to_owned(),
            "http://127.0.0.1:9333".to_owned(),
        )];
        let stack: LocalStack = crate::load_str("", &env).expect("load");
        assert_eq!(stack.elasticsearch.url, "http://127.0.0.1:9333");
        let stack: LocalStack = crate::load_str("", &[]).expect("load");
        assert_eq!(stack.elasticsearch, ElasticsearchEndpoint::default());
    }
}
