//! `chief-jobresult-notify-s3`: see [`chief_executors::Executor::JobResultNotifyS3`] and `config/jobresult-notify-s3.toml`.

fn main() -> std::process::ExitCode {
    chief_executors::cli::main(chief_executors::Executor::JobResultNotifyS3)
}
