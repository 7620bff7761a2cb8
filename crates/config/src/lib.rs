//! Configuration shared by every chief binary.
//!
//! - [`load`]: typed config from TOML files, later files overriding earlier ones, then
//!   `CHIEF__SECTION__KEY=value` environment overrides (DESIGN.md convention 3).
//!   Every binary takes `--config <file>` (repeatable) and `--print-config`.
//! - [`aws`]: the one place where AWS SDK clients are built: region, an endpoint per
//!   service, credentials from the default chain, `force_path_style` for S3, a pinned
//!   `BehaviorVersion`, retry and timeout settings.
//! - [`retry`]: the one back-off policy (exponential, full jitter, cap, deadline).
//! - [`telemetry`]: `tracing` set-up for binaries, the metrics exporters.
//! - [`cloudwatch`]: the `metrics` recorder and `PutMetricData` exporter behind
//!   `[metrics] cloudwatch`.
//! - [`local_stack`]: what tests use to find the local stack (and fail loudly without it).

pub mod aws;
pub mod cloudwatch;
pub mod database;
pub mod health;
pub mod local_stack;
pub mod retry;
pub mod s3_event;
pub mod secret;
pub mod service;
mod sources;
pub mod systemd;
pub mod telemetry;

pub use sources::{ConfigError, ENV_PREFIX, load, load_str, to_toml};
