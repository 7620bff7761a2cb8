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

use std::borrow::Cow;
use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chief_aggregation::{
    Aggregator, Bytes, DeaggregationStats, KinesisRecord, RecordKind, UserRecord, deaggregate,
};
use clap::Subcommand;
use serde::Deserialize;

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

/// Input and output buffers: large, so that a process spends its time on records, not
/// on system calls.
const IO_BUFFER: usize = 1 << 20;

/// Runs an `agg` subcommand on stdin and stdout.
pub fn main(command: AggCommand) -> ExitCode {
    let stdin = io::BufReader::with_capacity(IO_BUFFER, io::stdin());
    let stdout = BufWriter::with_capacity(IO_BUFFER, io::stdout().lock());
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

/// A record as both commands read it: a user record for `pack`, a Kinesis record for
/// `unpack` (extra fields ignored). Strings are borrowed from the line where no escape
/// forces a copy.
#[derive(Deserialize)]
struct RecordIn<'a> {
    #[serde(borrow)]
    partition_key: Cow<'a, str>,
    #[serde(default, borrow)]
    explicit_hash_key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// Reads the input line by line into one reused buffer: the non-blank lines with their
/// 1-based numbers; a line that is not UTF-8 is bad input.
struct Lines<R> {
    input: R,
    buffer: Vec<u8>,
    number: usize,
}

impl<R: BufRead> Lines<R> {
    fn new(input: R) -> Self {
        Lines {
            input,
            buffer: Vec::with_capacity(4096),
            number: 0,
        }
    }

    /// The next non-blank line, or `None` at the end of the input.
    fn next_line(&mut self) -> Result<Option<(usize, &str)>, Failure> {
        loop {
            self.buffer.clear();
            let read = self
                .input
                .read_until(b'\n', &mut self.buffer)
                .context("reading stdin")?;
            if read == 0 {
                return Ok(None);
            }
            self.number += 1;
            let mut end = self.buffer.len();
            for ending in [b'\n', b'\r'] {
                if end > 0 && self.buffer[end - 1] == ending {
                    end -= 1;
                }
            }
            let number = self.number;
            let blank = std::str::from_utf8(&self.buffer[..end])
                .map_err(|e| Failure::BadInput(format!("line {number}: not UTF-8: {e}")))?
                .trim()
                .is_empty();
            if blank {
                continue;
            }
            // Checked above: this cannot fail, and borrows for the caller's lifetime.
            let line = std::str::from_utf8(&self.buffer[..end])
                .map_err(|e| Failure::BadInput(format!("line {number}: not UTF-8: {e}")))?;
            return Ok(Some((number, line)));
        }
    }
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

/// Writes `"name":` and the JSON string `value`.
fn write_field(out: &mut impl Write, name: &str, value: &str) -> Result<(), Failure> {
    out.write_all(b"\"").context("writing stdout")?;
    out.write_all(name.as_bytes()).context("writing stdout")?;
    out.write_all(b"\":").context("writing stdout")?;
    serde_json::to_writer(&mut *out, value).context("writing stdout")?;
    Ok(())
}

/// Writes `"data":"<base64>"`, encoding through the reused `scratch`.
fn write_data(out: &mut impl Write, data: &[u8], scratch: &mut String) -> Result<(), Failure> {
    scratch.clear();
    BASE64.encode_string(data, scratch);
    out.write_all(b"\"data\":\"").context("writing stdout")?;
    out.write_all(scratch.as_bytes())
        .context("writing stdout")?;
    out.write_all(b"\"").context("writing stdout")?;
    Ok(())
}

/// One output line:
/// `{"partition_key", "explicit_hash_key" (or absent), "data", "<count_name>": count}`.
fn write_line(
    out: &mut impl Write,
    partition_key: &str,
    explicit_hash_key: Option<&str>,
    data: &[u8],
    (count_name, count): (&str, u64),
    scratch: &mut String,
) -> Result<(), Failure> {
    out.write_all(b"{").context("writing stdout")?;
    write_field(out, "partition_key", partition_key)?;
    if let Some(key) = explicit_hash_key {
        out.write_all(b",").context("writing stdout")?;
        write_field(out, "explicit_hash_key", key)?;
    }
    out.write_all(b",").context("writing stdout")?;
    write_data(out, data, scratch)?;
    writeln!(out, ",\"{count_name}\":{count}}}").context("writing stdout")?;
    Ok(())
}

fn write_kinesis_record(
    out: &mut impl Write,
    record: &KinesisRecord,
    scratch: &mut String,
) -> Result<(), Failure> {
    write_line(
        out,
        &record.partition_key,
        record.explicit_hash_key.as_deref(),
        &record.data,
        ("user_records", record.user_records as u64),
        scratch,
    )
}

/// How many parsed records travel between the two threads at a time.
const BATCH: usize = 1024;

/// Reads and parses the input on a thread of its own (JSON and base64 are half the work)
/// while `consume` handles the parsed records, in input order, on the calling thread. A
/// bad line stops both after every line before it was consumed, as a single thread would.
fn parse_in_background<R, T>(
    input: R,
    parse: fn(usize, &str) -> Result<T, Failure>,
    mut consume: impl FnMut(usize, T) -> Result<(), Failure>,
) -> Result<(), Failure>
where
    R: BufRead + Send,
    T: Send,
{
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<Vec<(usize, T)>, Failure>>(8);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut lines = Lines::new(input);
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let next = lines
                    .next_line()
                    .and_then(|line| line.map(|(n, l)| parse(n, l).map(|t| (n, t))).transpose());
                match next {
                    Ok(Some(item)) => {
                        batch.push(item);
                        if batch.len() == BATCH
                            && sender
                                .send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))))
                                .is_err()
                        {
                            return; // the consumer stopped
                        }
                    }
                    Ok(None) => {
                        let _ = sender.send(Ok(batch));
                        return;
                    }
                    Err(failure) => {
                        let _ = sender.send(Ok(batch));
                        let _ = sender.send(Err(failure));
                        return;
                    }
                }
            }
        });
        // Dropping the receiver on an early return stops the parser at its next batch.
        for batch in receiver {
            for (number, item) in batch? {
                consume(number, item)?;
            }
        }
        Ok(())
    })
}

fn parse_record(number: usize, line: &str) -> Result<UserRecord, Failure> {
    let parsed: RecordIn = parse_line(number, line)?;
    Ok(UserRecord {
        data: decode_data(number, &parsed.data)?,
        partition_key: parsed.partition_key.into_owned(),
        explicit_hash_key: parsed.explicit_hash_key.map(Cow::into_owned),
    })
}

fn pack(max_bytes: usize, input: impl BufRead + Send, mut out: impl Write) -> Result<(), Failure> {
    let mut aggregator = Aggregator::with_max_bytes(max_bytes)
        .map_err(|e| Failure::BadInput(format!("--max-bytes: {e}")))?;
    let mut scratch = String::new();
    parse_in_background(input, parse_record, |number, record| {
        let closed = aggregator
            .add(record)
            .map_err(|e| Failure::BadInput(format!("line {number}: {e}")))?;
        if let Some(closed) = closed {
            write_kinesis_record(&mut out, &closed, &mut scratch)?;
        }
        Ok(())
    })?;
    if let Some(last) = aggregator.flush() {
        write_kinesis_record(&mut out, &last, &mut scratch)?;
    }
    out.flush().context("writing stdout")?;
    Ok(())
}

fn unpack(
    input: impl BufRead + Send,
    mut out: impl Write,
    warnings: &mut impl Write,
) -> Result<(), Failure> {
    let mut stats = DeaggregationStats::default();
    let mut scratch = String::new();
    parse_in_background(input, parse_record, |number, received| {
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
            write_line(
                &mut out,
                &sub.record.partition_key,
                sub.record.explicit_hash_key.as_deref(),
                &sub.record.data,
                ("sub_sequence_number", sub.sub_sequence_number),
                &mut scratch,
            )?;
        }
        Ok(())
    })?;
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

    #[test]
    fn a_bad_line_stops_after_every_line_before_it_across_batches() {
        // 3 × BATCH good lines, then a bad one: the parser thread hands over full batches,
        // a partial one and the error; every record before the error is packed and written.
        let mut input = String::new();
        for i in 0..3 * BATCH {
            input.push_str(&format!(
                "{{\"partition_key\":\"k{i}\",\"data\":\"eA==\"}}\n"
            ));
        }
        input.push_str("{\"partition_key\":\"k\",\"data\":\"!\"}\n");
        let mut out = Vec::new();
        // 9 bytes hold one record ("k…" + 1 byte of data): every record closes the last.
        let message = bad_input(pack(9, input.as_bytes(), &mut out));
        assert!(
            message.starts_with(&format!(
                "line {}: \"data\" is not valid base64",
                3 * BATCH + 1
            )),
            "{message}"
        );
        let written = String::from_utf8(out).expect("UTF-8");
        // The last good record is still in the aggregator when the error stops the run.
        assert_eq!(written.lines().count(), 3 * BATCH - 1);
        assert!(
            written
                .lines()
                .last()
                .is_some_and(|l| l.contains(&format!("\"partition_key\":\"k{}\"", 3 * BATCH - 2)))
        );
    }
}
