//! `chief-dynamodb-sink --config config/dynamodb-sink.toml`: a stream's JSON records into a
//! DynamoDB table.

fn main() -> std::process::ExitCode {
    chief_dynamodb_sink::main()
}
