//! `chief-agent --config /etc/aws-kinesis/agent.json`: the Kinesis Agent.

fn main() -> std::process::ExitCode {
    chief_agent::cli::main()
}
