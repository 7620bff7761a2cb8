//! The `[database]` section: the MySQL-compatible database the loader writes to
//! (Aurora MySQL in production, MariaDB on the local stack).

use serde::{Deserialize, Serialize};

/// Where the database is and how the loader reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `mysql://user:password@host:port/database`. Default `mysql://root@127.0.0.1:3307/chief`
    /// (the local stack). In production set it through `CHIEF__DATABASE__URL`.
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
