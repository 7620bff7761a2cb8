//! `chief-dashboard --config config/dashboard.toml`: seed 000's realtime web front-end.

fn main() -> std::process::ExitCode {
    chief_dashboard::cli::main()
}
