//! `chief-order-factory-s3`: see [`chief_executors::Executor::OrderFactoryS3`] and `config/order-factory-s3.toml`.

fn main() -> std::process::ExitCode {
    chief_executors::cli::main(chief_executors::Executor::OrderFactoryS3)
}
