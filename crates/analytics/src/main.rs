//! `chief-analytics --config config/analytics-<name>.toml`: one analytics application.

fn main() -> std::process::ExitCode {
    chief_analytics::cli::main()
}
