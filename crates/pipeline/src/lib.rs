//! The pipeline pieces shared by chief's executors.
//!
//! - [`model`]: the records that flow through the streams, [`Order`](model::Order) and
//!   [`JobResult`](model::JobResult), with their JSON shape, validation on parse and the
//!   conversions the sinks need.

pub mod model;
