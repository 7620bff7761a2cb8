//! `chief-analytics`: windowed aggregation on chief's consumer leases, exact whatever
//! the number of workers, after a kill, and across a split or merge.
//!
//! Two stages, as the design has it (never one worker reading everything):
//! - [`partial`]: per shard, records → partial aggregates per window and group; a
//!   window closes for the shard by the shard's newest record time plus the allowed
//!   lateness; late records go to a late output; the shard is checkpointed no further
//!   than the first record of its oldest open window.
//! - [`merge`]: per window, the partials of every shard merged once no shard can add to
//!   it (each past the window, finished, or idle for the idle timeout), the `having`
//!   filter applied, rows with deterministic ids.
//!
//! The application is declared in TOML ([`app`]).

pub mod aggregate;
pub mod app;
pub mod condition;
pub mod merge;
pub mod parse;
pub mod partial;
pub mod window;

pub use app::{App, AppError};
pub use merge::{ShardProgress, WindowResult, complete, merge};
pub use parse::{BadRecord, Parser};
pub use partial::{Input, Partial, Resume, ShardAggregator, Step};
pub use window::Window;
