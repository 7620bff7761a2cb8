//! `chiefctl leases --table NAME [--endpoint URL] [--config FILE…]`: the lease table of a
//! consumer application, one JSON line per lease.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chief_config::aws::{AwsClients, AwsConfig};
use chief_consumer::{DynamoDbLeaseStore, LeaseStore};
use serde::{Deserialize, Serialize};

/// The `[aws]` section of any chief config file (other sections are ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AwsSection {
    /// AWS clients.
    pub aws: AwsConfig,
}

/// Loads `[aws]` from the config files, then the `CHIEF__AWS__…` variables (with no file:
/// the defaults, the variables and the default credential chain).
pub fn aws_config(config: &[PathBuf]) -> anyhow::Result<AwsConfig> {
    let section: AwsSection = chief_config::load(config)
        .context("loading the config (--config files and CHIEF__ variables)")?;
    Ok(section.aws)
}

/// One lease as printed.
#[derive(Debug, Serialize)]
struct LeaseLine<'a> {
    shard: &'a str,
    owner: Option<&'a str>,
    counter: u64,
    checkpoint: &'a str,
    sub_sequence: u64,
    parents: Vec<&'a str>,
    children: Vec<&'a str>,
    owner_switches_since_checkpoint: u64,
}

/// Runs the subcommand.
pub fn main(table: &str, endpoint: Option<String>, config: &[PathBuf]) -> ExitCode {
    match run(table, endpoint, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chiefctl leases: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(table: &str, endpoint: Option<String>, config: &[PathBuf]) -> anyhow::Result<()> {
    let mut aws = aws_config(config)?;
    if endpoint.is_some() {
        aws.dynamodb.endpoint = endpoint;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let leases = runtime.block_on(async {
        let clients = AwsClients::new(&aws).await;
        DynamoDbLeaseStore::new(clients.dynamodb(), table)
            .list_leases()
            .await
    })?;
    let mut out = std::io::stdout().lock();
    for l in &leases {
        let line = LeaseLine {
            shard: &l.lease_key,
            owner: l.lease_owner.as_deref(),
            counter: l.lease_counter,
            checkpoint: &l.checkpoint.sequence_number,
            sub_sequence: l.checkpoint.sub_sequence_number,
            parents: l.parent_shard_ids.iter().map(String::as_str).collect(),
            children: l.child_shard_ids.iter().map(String::as_str).collect(),
            owner_switches_since_checkpoint: l.owner_switches_since_checkpoint,
        };
        serde_json::to_writer(&mut out, &line).context("writing stdout")?;
        std::io::Write::write_all(&mut out, b"\n").context("writing stdout")?;
    }
    Ok(())
}
