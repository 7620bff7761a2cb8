//! The `[database]` section: the MySQL-compatible database the loader writes to
//! (Aurora MySQL in production, MariaDB on the local stack).

use serde::{Deserialize, Serialize};

/// Where the database is and how the loader reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `mysql://user:password@host:port/database`. Default `mysql://root@127.0.0.1:3307/chief`
    /// (the local stack). In production set it through `CHIEF__DATABASE__URL`. Shown with
    /// its password replaced by `***` when serialized (`--print-config`).
    #[serde(serialize_with = "serialize_redacted")]
    pub url: String,
    /// Local mode only: the server's `secure_file_priv` directory, where the loader puts
    /// the files it asks the server to `LOAD DATA INFILE`. Default `.local/mysql-import`.
    pub import_dir: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "mysql://root@127.0.0.1:3307/chief".to_owned(),
            import_dir: ".local/mysql-import".to_owned(),
        }
    }
}

fn serialize_redacted<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact(url))
}

/// The URL with its password replaced by `***`, for messages, logs and `--print-config`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("mysql://admin:s3cr3t@db:3306/chief"),
            "mysql://admin:***@db:3306/chief"
        );
        assert_eq!(
            redact("mysql://root@127.0.0.1:3307/chief"),
            "mysql://root@127.0.0.1:3307/chief"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn serializing_hides_the_password() {
        let config = DatabaseConfig {
            url: "mysql://loader:pa:ss@word@db:3306/chief".into(),
            ..DatabaseConfig::default()
        };
        let text = toml::to_string(&config).expect("toml");
        assert!(!text.contains("word"), "{text}");
        assert!(text.contains("mysql://loader:***@db:3306/chief"), "{text}");
    }
}
