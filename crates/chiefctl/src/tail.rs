//! `chiefctl tail --stream NAME [--from trim-horizon|latest] [--max-records N]`: prints
//! the stream's deaggregated user records as JSON lines, following every shard (children
//! included) until interrupted or `--max-records` are printed.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chief_aggregation::{UserRecord, deaggregate};
use chief_config::aws::AwsClients;
use chief_stream::{IteratorPosition, KinesisClient, StreamClient, StreamError};
use clap::ValueEnum;
use serde::Serialize;

/// Where `tail` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum From {
    /// The oldest records of every shard.
    TrimHorizon,
    /// Only records written from now on.
    Latest,
}

#[derive(Debug, Serialize)]
struct RecordLine<'a> {
    shard: &'a str,
    sequence_number: &'a str,
    sub_sequence_number: u64,
    partition_key: &'a str,
    /// Base64 of the user record's bytes.
    data: String,
    /// Milliseconds since the epoch.
    approximate_arrival_ms: Option<u128>,
}

/// Runs the subcommand.
pub fn main(
    stream: &str,
    from: From,
    max_records: Option<u64>,
    decode: bool,
    endpoint: Option<String>,
    config: &[PathBuf],
) -> ExitCode {
    match run(stream, from, max_records, decode, endpoint, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chiefctl tail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    stream: &str,
    from: From,
    max_records: Option<u64>,
    decode: bool,
    endpoint: Option<String>,
    config: &[PathBuf],
) -> anyhow::Result<()> {
    let mut aws = crate::leases::aws_config(config)?;
    if endpoint.is_some() {
        aws.kinesis.endpoint = endpoint;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let client = KinesisClient::new(AwsClients::new(&aws).await.kinesis());
        tail(
            &client,
            stream,
            from,
            max_records.unwrap_or(u64::MAX),
            decode,
        )
        .await
    })
}

async fn tail<C: StreamClient>(
    client: &C,
    stream: &str,
    from: From,
    max: u64,
    decode: bool,
) -> anyhow::Result<()> {
    let position = match from {
        From::TrimHorizon => IteratorPosition::TrimHorizon,
        From::Latest => IteratorPosition::Latest,
    };
    let shards = client
        .list_shards(stream)
        .await
        .with_context(|| format!("listing the shards of {stream}"))?;
    let mut known: BTreeSet<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
    let mut readers: VecDeque<(String, String)> = VecDeque::new();
    for s in &shards {
        // Under LATEST, closed shards have nothing new.
        if from == From::Latest && !s.is_open() {
            continue;
        }
        let it = client
            .get_shard_iterator(stream, &s.shard_id, &position)
            .await
            .with_context(|| format!("iterator of {}", s.shard_id))?;
        readers.push_back((s.shard_id.clone(), it));
    }
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    let mut idle_round = true;
    let mut in_round = readers.len();
    while let Some((shard, it)) = readers.pop_front() {
        if printed >= max {
            break;
        }
        let page = match client.get_records(stream, &it, 10_000).await {
            Ok(page) => page,
            Err(StreamError::Throttled { .. }) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                readers.push_back((shard, it));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {shard}")),
        };
        for r in &page.records {
            let arrival = r
                .approximate_arrival
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis());
            for d in deaggregate(UserRecord::new(r.partition_key.clone(), r.data.clone())) {
                if printed >= max {
                    break;
                }
                if decode {
                    write_decoded(&mut out, &d.record.data).context("writing stdout")?;
                    printed += 1;
                    continue;
                }
                let line = RecordLine {
                    shard: &shard,
                    sequence_number: &r.sequence_number,
                    sub_sequence_number: d.sub_sequence_number,
                    partition_key: &d.record.partition_key,
                    data: BASE64.encode(&d.record.data),
                    approximate_arrival_ms: arrival,
                };
                serde_json::to_writer(&mut out, &line).context("writing stdout")?;
                std::io::Write::write_all(&mut out, b"\n").context("writing stdout")?;
                printed += 1;
            }
        }
        std::io::Write::flush(&mut out).context("writing stdout")?;
        idle_round &= page.records.is_empty();
        match page.next_shard_iterator {
            Some(next) => readers.push_back((shard, next)),
            None => {
                for child in page.child_shards {
                    if known.insert(child.shard_id.clone()) {
                        let it = client
                            .get_shard_iterator(
                                stream,
                                &child.shard_id,
                                &IteratorPosition::TrimHorizon,
                            )
                            .await
                            .with_context(|| format!("iterator of {}", child.shard_id))?;
                        readers.push_back((child.shard_id, it));
                    }
                }
            }
        }
        in_round = in_round.saturating_sub(1);
        if in_round == 0 {
            if idle_round {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            idle_round = true;
            in_round = readers.len();
        }
    }
    Ok(())
}

/// `Decoded payload:` and the data: indented when it is JSON (keys in the record's own
/// order), else as text.
fn write_decoded(out: &mut impl std::io::Write, data: &[u8]) -> std::io::Result<()> {
    writeln!(out, "Decoded payload:")?;
    let text = String::from_utf8_lossy(data);
    let text = text.trim_end_matches('\n');
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        writeln!(out, "{}", indent_json(text))
    } else {
        writeln!(out, "{text}")
    }
}

/// Valid JSON `text` indented by four spaces a level, its keys in their order.
fn indent_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"    ".repeat(depth));
    };
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn decoded_payloads_keep_their_key_order() {
        let mut out = Vec::new();
        super::write_decoded(&mut out, b"{\"b\":\"x, y\",\"a\":[1,{\"c\":\"}\"}]}\n")
            .unwrap_or_default();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "Decoded payload:\n{\n    \"b\": \"x, y\",\n    \"a\": [\n        1,\n        {\n            \"c\": \"}\"\n        }\n    ]\n}\n"
        );
    }
}
