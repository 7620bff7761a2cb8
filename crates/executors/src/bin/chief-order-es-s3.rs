//! `chief-order-es-s3`: see [`chief_executors::Executor::OrderEsS3`] and `config/order-es-s3.toml`.

fn main() -> std::process::ExitCode {
    chief_executors::cli::main(chief_executors::Executor::OrderEsS3)
}
