//! `--print-config` of every binary shows every setting but never a password or secret:
//! each credential a binary reads is set (environment, as on the instances) and must
//! appear redacted, not in clear, in what it prints.

use std::process::Command;

use chief_config::local_stack::workspace_root;

/// Credentials, each with a marker no default contains.
const SECRETS: [(&str, &str); 4] = [
    (
        "CHIEF__DATABASE__URL",
        "mysql://loader:dbS3cretPw@db.example:3306/chief",
    ),
    ("CHIEF__ELASTICSEARCH__PASSWORD", "esS3cretPw"),
    ("CHIEF__ELASTICSEARCH__API_KEY", "apiS3cretKey"),
    (
        "CHIEF__AWS__STATIC_CREDENTIALS__SECRET_ACCESS_KEY",
        "awsS3cretKey",
    ),
];

fn print_config(binary: &str, args: &[&str]) -> String {
    let out = Command::new(chief_e2e::bin(binary))
        .current_dir(workspace_root())
        .args(args)
        .arg("--print-config")
        .env("CHIEF__ELASTICSEARCH__USERNAME", "chief")
        .env(
            "CHIEF__AWS__STATIC_CREDENTIALS__ACCESS_KEY_ID",
            "AKIACHIEFTEST",
        )
        .envs(SECRETS)
        .output()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{binary} --print-config: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn no_binary_prints_a_password_or_secret() {
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "chief-producer",
            vec![
                "--config",
                "config/producer.toml",
                "--stream",
                "s",
                "--generate",
                "orders",
                "--count",
                "1",
            ],
            vec!["secret_access_key = \"<redacted>\""],
        ),
        (
            "chief-order-factory-s3",
            vec!["--config", "config/order-factory-s3.toml"],
            vec!["secret_access_key = \"<redacted>\""],
        ),
        (
            "chief-order-es-s3",
            vec!["--config", "config/order-es-s3.toml"],
            vec![
                "secret_access_key = \"<redacted>\"",
                "password = \"<redacted>\"",
                "api_key = \"<redacted>\"",
            ],
        ),
        (
            "chief-jobresult-es",
            vec!["--config", "config/jobresult-es.toml"],
            vec!["password = \"<redacted>\"", "api_key = \"<redacted>\""],
        ),
        (
            "chief-jobresult-notify-s3",
            vec!["--config", "config/jobresult-notify-s3.toml"],
            vec!["secret_access_key = \"<redacted>\""],
        ),
        (
            "chief-firehose",
            vec!["--config", "config/firehose-analysed-logs.toml"],
            vec![
                "secret_access_key = \"<redacted>\"",
                "password = \"<redacted>\"",
                "api_key = \"<redacted>\"",
            ],
        ),
        (
            "chief-dashboard",
            vec!["--config", "config/dashboard.toml"],
            vec!["secret_access_key = \"<redacted>\""],
        ),
        (
            "chief-loader",
            vec!["--config", "config/loader.toml", "run"],
            vec![
                "url = \"mysql://loader:***@db.example:3306/chief\"",
                "secret_access_key = \"<redacted>\"",
            ],
        ),
        (
            "chief-join",
            vec!["--config", "config/join-orders.toml"],
            vec!["secret_access_key = \"<redacted>\""],
        ),
        (
            "chief-dynamodb-sink",
            vec!["--config", "config/dynamodb-sink.toml"],
            vec!["secret_access_key = \"<redacted>\""],
        ),
        (
            "chiefctl",
            vec!["setup", "--config", "config/chiefctl.toml"],
            vec!["secret_access_key = \"<redacted>\""],
        ),
    ];
    for (binary, args, redacted) in cases {
        let printed = print_config(binary, &args);
        for (variable, value) in SECRETS {
            let marker = value
                .split(['/', ':', '@'])
                .find(|p| p.contains("S3cret"))
                .unwrap_or(value);
            assert!(
                !printed.contains(marker),
                "{binary} --print-config shows {variable} in clear:\n{printed}"
            );
        }
        // The credentials were read (the binary has these settings) and shown redacted.
        for line in redacted {
            assert!(
                printed.lines().any(|l| l.trim() == line),
                "{binary} --print-config lacks `{line}`:\n{printed}"
            );
        }
        assert!(
            printed.contains("access_key_id = \"AKIACHIEFTEST\""),
            "{binary}:\n{printed}"
        );
    }
}
