//! `chiefctl agg pack|unpack`: KPL aggregation as JSON lines on stdin/stdout, so that
//! interop with any other implementation can be checked from a shell.
//!
//! - `pack [--max-bytes N]` reads user records
//!   `{"partition_key", "explicit_hash_key" (optional), "data": "<base64>"}` and writes one
//!   line per Kinesis record
//!   `{"partition_key", "explicit_hash_key" (or absent), "data": "<base64>", "user_records"}`.
//! - `unpack` reads Kinesis records in that shape (extra fields ignored) and writes one
//!   line per user record
//!   `{"partition_key", "explicit_hash_key" (or absent), "data", "sub_sequence_number"}`.
//!
//! A malformed input line stops the command with `line N: …` on stderr and exit code 2.
//! Blank lines are skipped. A corrupt aggregate is passed through as one user record, as
//! the KCL does, with a warning naming its line on stderr.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chief_aggregation::{
    Aggregator, Bytes, DeaggregationStats, KinesisRecord, RecordKind, UserRecord, deaggregate,
};
use clap::Subcommand;
use serde::{Deserialize, Serialize};

/// The `agg` subcommands.
#[derive(Subcommand, Debug)]
pub enum AggCommand {
    /// Pack user records (JSON lines on stdin) into Kinesis records (JSON lines on stdout).
    Pack {
        /// Largest aggregate, in bytes, counted as Kinesis does (data + partition key);
        /// 1 to 1048576. The KPL's default is 51200.
        #[arg(long, default_value_t = chief_aggregation::DEFAULT_MAX_AGGREGATE_BYTES)]
        max_bytes: usize,
    },
    /// Unpack Kinesis records (JSON lines on stdin) into user records (JSON lines on stdout).
    Unpack,
}

/// Runs an `agg` subcommand on stdin and stdout.
pub fn main(command: AggCommand) -> ExitCode {
    let stdin = io::stdin().lock();
    let stdout = BufWriter::new(io::stdout().lock());
    let result = match command {
        AggCommand::Pack { max_bytes } => pack(max_bytes, stdin, stdout),
        AggCommand::Unpack => unpack(stdin, stdout, &mut io::stderr()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(message)) => {
            eprintln!("chiefctl agg: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Io(error)) => {
            eprintln!("chiefctl agg: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command stopped.
#[derive(Debug)]
enum Failure {
    /// The input (or an argument) is wrong: exit code 2.
    BadInput(String),
    /// Reading or writing failed: exit code 1.
    Io(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Io(error)
    }
}

/// A user record as `pack` reads it.
#[derive(Deserialize)]
struct UserRecordIn {
    partition_key: String,
    #[serde(default)]
    explicit_hash_key: Option<String>,
    data: String,
}

/// A Kinesis record as `pack` writes it and `unpack` reads it.
#[derive(Serialize, Deserialize)]
struct KinesisRecordLine {
    partition_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<String>,
    data: String,
    #[serde(default, skip_deserializing)]
    user_records: usize,
}

/// A user record as `unpack` writes it.
#[derive(Serialize)]
struct UserRecordOut<'a> {
    partition_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<&'a str>,
    data: String,
    sub_sequence_number: u64,
}

/// Non-blank input lines with their 1-based numbers; a line that is not UTF-8 is bad input.
fn numbered_lines(input: impl BufRead) -> impl Iterator<Item = Result<(usize, String), Failure>> {
    input
        .split(b'\n')
        .enumerate()
        .map(|(i, line)| {
            let number = i + 1;
            let mut line = line.context("reading stdin")?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8(line)
                .map_err(|e| Failure::BadInput(format!("line {number}: not UTF-8: {e}")))?;
            Ok((number, line))
        })
        .filter(|item| {
            item.as_ref()
                .map_or(true, |(_, line)| !line.trim().is_empty())
        })
}

fn parse_line<'a, T: Deserialize<'a>>(number: usize, line: &'a str) -> Result<T, Failure> {
    serde_json::from_str(line).map_err(|e| Failure::BadInput(format!("line {number}: {e}")))
}

fn decode_data(number: usize, data: &str) -> Result<Bytes, Failure> {
    BASE64
        .decode(data)
        .map(Bytes::from)
        .map_err(|e| Failure::BadInput(format!("line {number}: \"data\" is not valid base64: {e}")))
}

fn write_kinesis_record(out: &mut impl Write, record: KinesisRecord) -> Result<(), Failure> {
    let line = KinesisRecordLine {
        data: BASE64.encode(&record.data),
        partition_key: record.partition_key,
        explicit_hash_key: record.explicit_hash_key,
        user_records: record.user_records,
    };
    serde_json::to_writer(&mut *out, &line).context("writing stdout")?;
    out.write_all(b"\n").context("writing stdout")?;
    Ok(())
}

fn pack(max_bytes: usize, input: impl BufRead, mut out: impl Write) -> Result<(), Failure> {
    let mut aggregator = Aggregator::with_max_bytes(max_bytes)
        .map_err(|e| Failure::BadInput(format!("--max-bytes: {e}")))?;
    for item in numbered_lines(input) {
        let (number, line) = item?;
        let parsed: UserRecordIn = parse_line(number, &line)?;
        let record = UserRecord {
            data: decode_data(number, &parsed.data)?,
            partition_key: parsed.partition_key,
            explicit_hash_key: parsed.explicit_hash_key,
        };
        let closed = aggregator
            .add(record)
            .map_err(|e| Failure::BadInput(format!("line {number}: {e}")))?;
        if let Some(closed) = closed {
            write_kinesis_record(&mut out, closed)?;
        }
    }
    if let Some(last) = aggregator.flush() {
        write_kinesis_record(&mut out, last)?;
    }
    out.flush().context("writing stdout")?;
    Ok(())
}

fn unpack(
    input: impl BufRead,
    mut out: impl Write,
    warnings: &mut impl Write,
) -> Result<(), Failure> {
    let mut stats = DeaggregationStats::default();
    for item in numbered_lines(input) {
        let (number, line) = item?;
        let parsed: KinesisRecordLine = parse_line(number, &line)?;
        let received = UserRecord {
            data: decode_data(number, &parsed.data)?,
            partition_key: parsed.partition_key,
            explicit_hash_key: parsed.explicit_hash_key,
        };
        let unpacked = deaggregate(received);
        stats.observe(&unpacked);
        if let RecordKind::Corrupt(why) = unpacked.kind() {
            writeln!(
                warnings,
                "chiefctl agg: line {number}: passed through as one user record: {why}"
            )
            .context("writing stderr")?;
        }
        for sub in unpacked {
            let line = UserRecordOut {
                partition_key: &sub.record.partition_key,
                explicit_hash_key: sub.record.explicit_hash_key.as_deref(),
                data: BASE64.encode(&sub.record.data),
                sub_sequence_number: sub.sub_sequence_number,
            };
            serde_json::to_writer(&mut out, &line).context("writing stdout")?;
            out.write_all(b"\n").context("writing stdout")?;
        }
    }
    out.flush().context("writing stdout")?;
    if stats.corrupt_aggregates > 0 {
        writeln!(
            warnings,
            "chiefctl agg: {} Kinesis records, {} user records, {} corrupt aggregates passed through",
            stats.kinesis_records, stats.user_records, stats.corrupt_aggregates
        )
        .context("writing stderr")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_pack(max_bytes: usize, input: &str) -> Result<String, Failure> {
        let mut out = Vec::new();
        pack(max_bytes, input.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).expect("UTF-8"))
    }

    fn run_unpack(input: &str) -> Result<(String, String), Failure> {
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        unpack(input.as_bytes(), &mut out, &mut warnings)?;
        Ok((
            String::from_utf8(out).expect("UTF-8"),
            String::from_utf8(warnings).expect("UTF-8"),
        ))
    }

    fn bad_input(result: Result<impl std::fmt::Debug, Failure>) -> String {
        match result {
            Err(Failure::BadInput(message)) => message,
            other => panic!("expected bad input, got {other:?}"),
        }
    }

    #[test]
    fn pack_writes_one_line_per_kinesis_record() {
        let out = run_pack(
            51_200,
            "{\"partition_key\":\"a\",\"data\":\"eA==\"}\n\n{\"partition_key\":\"b\",\"explicit_hash_key\":\"1\",\"data\":\"\"}\n",
        )
        .expect("packs");
        assert_eq!(
            out,
            "{\"partition_key\":\"a\",\"explicit_hash_key\":\"16955237001963240173058271559858726497\",\
             \"data\":\"84mawgoBYQoBYhIBMRoFCAAaAXgaBggBEAAaANgIwDDaZKVgjTo3O3a1NNM=\",\"user_records\":2}\n"
        );
        let plain = run_pack(51_200, "{\"partition_key\":\"a\",\"data\":\"eA==\"}").expect("packs");
        assert_eq!(
            plain,
            "{\"partition_key\":\"a\",\"data\":\"eA==\",\"user_records\":1}\n"
        );
    }

    #[test]
    fn unpack_names_corrupt_lines_on_stderr() {
        let (out, warnings) = run_unpack(
            "{\"partition_key\":\"p\",\"data\":\"84mawgAAAAAAAAAAAAAAAAAAAAAA\",\"shard\":\"x\"}\n",
        )
        .expect("unpacks");
        assert_eq!(
            out,
            "{\"partition_key\":\"p\",\"data\":\"84mawgAAAAAAAAAAAAAAAAAAAAAA\",\"sub_sequence_number\":0}\n"
        );
        assert!(warnings.contains("line 1: passed through"), "{warnings}");
        assert!(warnings.contains("1 corrupt aggregates"), "{warnings}");
    }

    #[test]
    fn malformed_lines_are_named() {
        let good = "{\"partition_key\":\"a\",\"data\":\"eA==\"}\n";
        assert!(bad_input(run_pack(100, &format!("{good}{{not json\n"))).starts_with("line 2: "));
        assert!(
            bad_input(run_pack(
                100,
                &format!("{good}\n{{\"partition_key\":\"a\",\"data\":\"!!\"}}")
            ))
            .starts_with("line 3: \"data\" is not valid base64")
        );
        assert!(bad_input(run_pack(100, "{\"data\":\"eA==\"}")).contains("partition_key"));
        assert!(
            bad_input(run_pack(100, "{\"partition_key\":\"\",\"data\":\"eA==\"}"))
                .starts_with("line 1: user record refused: empty partition key")
        );
        assert!(bad_input(run_pack(0, good)).starts_with("--max-bytes"));
        let mut not_utf8 = good.as_bytes().to_vec();
        not_utf8.extend_from_slice(b"{\"partition_key\":\"\xff\"}\n");
        let mut out = Vec::new();
        assert!(
            bad_input(pack(100, not_utf8.as_slice(), &mut out)).starts_with("line 2: not UTF-8")
        );
        assert!(bad_input(run_unpack("{\"partition_key\":\"a\"}")).starts_with("line 1: "));
    }
}
