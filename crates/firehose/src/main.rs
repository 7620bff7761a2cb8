//! `chief-firehose --config config/firehose-<name>.toml`: one Firehose-style delivery.

fn main() -> std::process::ExitCode {
    chief_firehose::cli::main()
}
