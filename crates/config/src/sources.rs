//! Loading a typed config from TOML files and `CHIEF__` environment overrides.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Prefix of environment overrides: `CHIEF__AWS__REGION=eu-west-1` sets `aws.region`.
pub const ENV_PREFIX: &str = "CHIEF__";

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {source}")]
    Parse {
        /// The file (or `<string>`).
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// The merged config does not fit the binary's config type (unknown key, wrong type).
    #[error("invalid config (from {sources}): {source}")]
    Invalid {
        /// Where the values came from.
        sources: String,
        /// What is wrong.
        source: Box<toml::de::Error>,
    },
    /// An environment override names a key path that cannot be set.
    #[error("environment override {var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// The config could not be printed.
    #[error("cannot print config: {0}")]
    Print(#[from] toml::ser::Error),
}

/// Loads the config type `T` from `paths` (later files override earlier ones, table by
/// table) and then from `CHIEF__…` environment variables.
///
/// Overlay files such as `config/local.toml` hold settings for every binary; from them
/// only the top-level sections that `T` has (those present in `T::default()`) are taken.
/// The first file and the environment are checked strictly: an unknown key is an error.
pub fn load<T>(paths: &[impl AsRef<Path>]) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        files.push((path.to_path_buf(), text));
    }
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    build(&files, &env)
}

/// Loads `T` from one TOML string and the given environment pairs (for tests and tools).
pub fn load_str<T>(toml_text: &str, env: &[(String, String)]) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    build(&[(PathBuf::from("<string>"), toml_text.to_owned())], env)
}

/// Renders a config as TOML (what `--print-config` prints).
pub fn to_toml<T: Serialize>(config: &T) -> Result<String, ConfigError> {
    Ok(toml::to_string_pretty(config)?)
}

fn build<T>(files: &[(PathBuf, String)], env: &[(String, String)]) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let known_sections: Vec<String> = match Value::try_from(T::default()) {
        Ok(Value::Table(t)) => t.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let mut merged = Table::new();
    let mut names = Vec::new();
    for (i, (path, text)) in files.iter().enumerate() {
        let mut table: Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.clone(),
            source: Box::new(source),
        })?;
        if i > 0 {
            table.retain(|k, _| known_sections.iter().any(|s| s == k));
        }
        merge(&mut merged, table);
        names.push(path.display().to_string());
    }
    for (var, raw) in env {
        if apply_env(&mut merged, &known_sections, var, raw)? {
            names.push(format!("${var}"));
        }
    }
    let sources = if names.is_empty() {
        "defaults".to_owned()
    } else {
        names.join(", ")
    };
    T::deserialize(Value::Table(merged)).map_err(|source| ConfigError::Invalid {
        sources,
        source: Box::new(source),
    })
}

/// Deep merge: tables merge key by key, anything else is replaced.
fn merge(base: &mut Table, overlay: Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// `CHIEF__AWS__KINESIS__ENDPOINT=http://…` sets `aws.kinesis.endpoint`. The value is read
/// as a TOML value when it parses as one (`42`, `true`, `[1, 2]`), else as a string.
/// Like overlay files, a variable for a top-level section the binary does not have is
/// ignored (one environment can serve every binary); returns whether it was applied.
fn apply_env(
    root: &mut Table,
    known_sections: &[String],
    var: &str,
    raw: &str,
) -> Result<bool, ConfigError> {
    let err = |reason: &str| ConfigError::Env {
        var: var.to_owned(),
        reason: reason.to_owned(),
    };
    let path: Vec<String> = var
        .strip_prefix(ENV_PREFIX)
        .ok_or_else(|| err("does not start with CHIEF__"))?
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let Some((leaf, parents)) = path.split_last() else {
        return Err(err("names no key"));
    };
    if path.iter().any(String::is_empty) {
        return Err(err("has an empty key segment"));
    }
    if !known_sections.iter().any(|s| *s == path[0]) {
        tracing::debug!(
            var,
            "environment override for a section this binary does not have"
        );
        return Ok(false);
    }
    let mut table = root;
    for part in parents {
        let entry = table
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            _ => return Err(err(&format!("`{part}` is not a table"))),
        };
    }
    table.insert(leaf.clone(), parse_env_value(raw));
    Ok(true)
}

fn parse_env_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        app: App,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct App {
        name: String,
        workers: u32,
        tags: Vec<String>,
    }

    impl Default for App {
        fn default() -> Self {
            Self {
                name: "chief".into(),
                workers: 2,
                tags: Vec::new(),
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_apply_when_keys_are_absent() {
        let c: Sample = load_str("", &[]).expect("empty config loads");
        assert_eq!(c, Sample::default());
    }

    #[test]
    fn env_overrides_typed_values_and_strings() {
        let c: Sample = load_str(
            "[app]\nname = \"x\"\n",
            &env(&[
                ("CHIEF__APP__WORKERS", "7"),
                ("CHIEF__APP__TAGS", "[\"a\", \"b\"]"),
                ("CHIEF__APP__NAME", "plain words"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.app.workers, 7);
        assert_eq!(c.app.tags, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(c.app.name, "plain words");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = load_str::<Sample>("[app]\nworkerz = 3\n", &[]).expect_err("unknown key");
        assert!(e.to_string().contains("workerz"), "{e}");
        let e = load_str::<Sample>("", &env(&[("CHIEF__APP__NOPE", "1")])).expect_err("env");
        assert!(e.to_string().contains("nope"), "{e}");
        // A section this binary does not have is another binary's business.
        let c: Sample = load_str("", &env(&[("CHIEF__DATABASE__URL", "x")])).expect("ignored");
        assert_eq!(c, Sample::default());
    }

    #[test]
    fn wrong_type_is_an_error() {
        let e = load_str::<Sample>("[app]\nworkers = \"many\"\n", &[]).expect_err("type");
        assert!(e.to_string().contains("workers"), "{e}");
    }

    #[test]
    fn later_files_override_and_foreign_sections_of_overlays_are_ignored() {
        let dir = std::env::temp_dir().join(format!("chief-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let base = dir.join("base.toml");
        let overlay = dir.join("local.toml");
        std::fs::write(&base, "[app]\nname = \"base\"\nworkers = 3\n").expect("write");
        std::fs::write(
            &overlay,
            "[app]\nname = \"local\"\n[database]\nurl = \"mysql://x\"\n",
        )
        .expect("write");
        let c: Sample = load(&[&base, &overlay]).expect("loads");
        assert_eq!(c.app.name, "local");
        assert_eq!(c.app.workers, 3);
        // The base file itself is strict.
        let e = load::<Sample>(&[&overlay]).expect_err("base file is strict");
        assert!(e.to_string().contains("database"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = load::<Sample>(&["/nonexistent/chief.toml"]).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/chief.toml"), "{e}");
    }

    #[test]
    fn print_round_trips() {
        let c = Sample::default();
        let text = to_toml(&c).expect("prints");
        let back: Sample = load_str(&text, &[]).expect("reloads");
        assert_eq!(back, c);
    }
}
