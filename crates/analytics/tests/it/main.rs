//! The crate's integration tests, one binary (one link, one executable) for all of them.

mod alerts;
mod deploy_files;
mod exactness;
mod local_stack;
mod s3_ingest;
mod ses_alert;
mod sns_alert;
mod support;
