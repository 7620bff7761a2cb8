//! `chiefctl setup` against the local stack (`make stack-up`): creates the streams and the
//! bucket of its config, and a second run leaves them as they are.

use std::process::Command;

use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};

#[tokio::test]
async fn setup_creates_streams_and_bucket_then_is_idempotent() {
    let stack = LocalStack::require();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (orders, jobs, bucket) = (
        format!("Orders-{id}"),
        format!("Jobs-{id}"),
        format!("chief-setup-{id}"),
    );
    let dir = std::env::temp_dir().join(format!("chiefctl-setup-{id}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("chiefctl.toml");
    std::fs::write(
        &config,
        format!(
            "[setup]\nbucket = \"{bucket}\"\n\
             [[setup.streams]]\nname = \"{orders}\"\nshards = 4\n\
             [[setup.streams]]\nname = \"{jobs}\"\nshards = 2\n"
        ),
    )
    .expect("write config");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_chiefctl"))
            .arg("setup")
            .arg("--config")
            .arg(&config)
            .arg("--config")
            .arg(workspace_root().join("config/local.toml"))
            .output()
            .expect("run chiefctl");
        assert!(
            out.status.success(),
            "chiefctl setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    };

    let first = run();
    assert_eq!(
        first.lines().collect::<Vec<_>>(),
        vec![
            format!("stream {orders}: created, 4 shards, ACTIVE"),
            format!("stream {jobs}: created, 2 shards, ACTIVE"),
            format!("bucket {bucket}: created"),
        ]
    );
    let second = run();
    assert_eq!(
        second.lines().collect::<Vec<_>>(),
        vec![
            format!("stream {orders}: exists, 4 shards, ACTIVE"),
            format!("stream {jobs}: exists, 2 shards, ACTIVE"),
            format!("bucket {bucket}: exists"),
        ]
    );

    let clients = AwsClients::new(&stack.aws).await;
    let shards = clients
        .kinesis()
        .list_shards()
        .stream_name(&orders)
        .send()
        .await
        .expect("ListShards");
    assert_eq!(shards.shards().len(), 4);
    clients
        .s3()
        .head_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("bucket exists");
    for s in [&orders, &jobs] {
        clients
            .kinesis()
            .delete_stream()
            .stream_name(s)
            .send()
            .await
            .expect("DeleteStream");
    }
    clients
        .s3()
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("DeleteBucket");
    std::fs::remove_dir_all(&dir).ok();
}
