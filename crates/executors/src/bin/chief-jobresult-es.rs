//! `chief-jobresult-es`: see [`chief_executors::Executor::JobResultEs`] and `config/jobresult-es.toml`.

fn main() -> std::process::ExitCode {
    chief_executors::cli::main(chief_executors::Executor::JobResultEs)
}
