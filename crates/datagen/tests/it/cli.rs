//! The `chief-datagen` binary: output, summary, argument errors, closed stdout.

use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_chief-datagen");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("runs")
}

fn stdout_lines(output: &Output) -> Vec<&[u8]> {
    output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn orders_with_duplicates_line_count_and_summary() {
    let output = run(&[
        "orders",
        "--count",
        "2000",
        "--duplicate-ratio",
        "0.25",
        "--seed",
        "7",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 2_000);
    let ids: HashSet<String> = lines
        .iter()
        .map(|l| {
            chief_pipeline::model::Order::parse(l)
                .expect("parses")
                .orderid
                .into_string()
        })
        .collect();
    let duplicates = 2_000 - ids.len();
    assert!(duplicates > 0);
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(
        stderr,
        format!(
            "chief-datagen: orders lines=2000 distinct_orderids={} duplicates={duplicates} seed=7\n",
            ids.len()
        )
    );
}

#[test]
fn jobresults_default_ratio_is_zero_and_seed_is_reported() {
    let output = run(&["jobresults", "--count", "300"]);
    assert_eq!(output.status.code(), Some(0));
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 300);
    for line in &lines {
        chief_pipeline::model::JobResult::parse(line).expect("parses");
    }
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(
        stderr.starts_with(
            "chief-datagen: jobresults lines=300 distinct_orderids=300 duplicates=0 seed="
        ),
        "{stderr}"
    );
    // The reported seed reproduces the run.
    let seed = stderr
        .trim_end()
        .rsplit("seed=")
        .next()
        .expect("has a seed");
    let again = run(&["jobresults", "--count", "300", "--seed", seed]);
    assert_eq!(again.stdout, output.stdout);
}

#[test]
fn same_seed_same_output() {
    let a = run(&[
        "orders",
        "--count",
        "500",
        "--seed",
        "1",
        "--duplicate-ratio",
        "0.5",
    ]);
    let b = run(&[
        "orders",
        "--count",
        "500",
        "--seed",
        "1",
        "--duplicate-ratio",
        "0.5",
    ]);
    let c = run(&[
        "orders",
        "--count",
        "500",
        "--seed",
        "2",
        "--duplicate-ratio",
        "0.5",
    ]);
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout);
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["orders", "--count", "10", "--duplicate-ratio", "1.5"][..],
        &["orders", "--count", "10", "--duplicate-ratio", "1"],
        &["orders", "--count", "10", "--duplicate-ratio", "-0.1"],
        &["orders", "--count", "10", "--duplicate-ratio", "NaN"],
        &["orders", "--count", "10", "--duplicate-ratio", "many"],
        &["orders"],
        &["orders", "--count", "-1"],
        &["invoices", "--count", "10"],
        &[],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    let output = run(&["orders", "--count", "10", "--duplicate-ratio", "1.5"]);
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(
        stderr.contains("duplicate ratio 1.5 is not in [0, 1)"),
        "{stderr}"
    );
}

#[test]
fn closed_stdout_ends_quietly_with_success() {
    let mut child = Command::new(BIN)
        .args(["orders", "--count", "100000000", "--seed", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut stdout = child.stdout.take().expect("piped");
    let mut first = [0u8; 4096];
    stdout.read_exact(&mut first).expect("some output");
    drop(stdout);
    let output = child.wait_with_output().expect("exits");
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
