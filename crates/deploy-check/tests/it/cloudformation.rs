//! `deploy/aws/chief.yaml`: cfn-lint clean; its roles carry exactly the documents of
//! `deploy/aws/iam/`; its user data is valid bash, installs only what the release tarball
//! holds and gives each binary a config it accepts; its bucket, streams, database and
//! search domain are set up as the code and the issue expect.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use chief_deploy_check::template::{self, resources, resources_of, unwrap_subs};
use chief_deploy_check::workspace_root;
use chief_deploy_check::{policy, userdata};
use chief_executors::{Executor, ExecutorConfig};
use chief_loader::LoaderConfig;
use chief_producer_cli::app::ProducerAppConfig;
use serde_json::{Value, json};
use support::*;

#[test]
fn cfn_lint_is_clean() {
    let root = workspace_root();
    let cfn_lint = root.join(".local/venv/bin/cfn-lint");
    assert!(
        cfn_lint.is_file(),
        "{} is missing: run `make stack-up` (it installs deploy/local/requirements.txt, cfn-lint included, into .local/venv)",
        cfn_lint.display()
    );
    // Informational rules too (-c I): explicit deletion policies on stateful resources.
    let out = Command::new(&cfn_lint)
        .args(["--include-checks", "I", "--", "deploy/aws/chief.yaml"])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cfn_lint.display()));
    assert!(
        out.status.success(),
        "cfn-lint deploy/aws/chief.yaml (exit {:?}):\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every role's inline policies: role → (policy name → document with `!Sub` unwrapped).
fn role_policies(t: &Value) -> BTreeMap<String, BTreeMap<String, Value>> {
    resources_of(t, "AWS::IAM::Role")
        .into_iter()
        .map(|(id, props)| {
            let policies = props["Policies"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            (
                                p["PolicyName"].as_str().unwrap_or_default().to_owned(),
                                unwrap_subs(&p["PolicyDocument"]),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            (id.to_owned(), policies)
        })
        .collect()
}

#[test]
fn roles_carry_exactly_the_documents_of_deploy_aws_iam() {
    let t = template();
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        (
            "ProducerRole",
            vec!["chief-producer", "assume-agent-role", "bootstrap-producer"],
        ),
        ("AgentTaxiRole", vec!["chief-agent"]),
        (
            "ConsumerRole",
            vec!["assume-executor-roles", "bootstrap-consumer"],
        ),
        ("OrderFactoryS3Role", vec!["chief-order-factory-s3"]),
        ("OrderEsS3Role", vec!["chief-order-es-s3"]),
        ("JobResultEsRole", vec!["chief-jobresult-es"]),
        ("JobResultNotifyS3Role", vec!["chief-jobresult-notify-s3"]),
        ("FirehoseTaxiRole", vec!["chief-firehose-taxi"]),
        ("AnalyticsStatusRole", vec!["chief-analytics-status"]),
        ("AnalyticsLevelsRole", vec!["chief-analytics-levels"]),
        ("S3IngestRole", vec!["chief-s3-ingest"]),
        (
            "LoaderRole",
            vec!["chief-loader", "assume-dashboard-role", "bootstrap-loader"],
        ),
        ("DashboardRole", vec!["chief-dashboard"]),
        ("AuroraS3Role", vec!["aurora-load-from-s3"]),
    ]);
    let roles = role_policies(&t);
    assert_eq!(
        roles.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "the template's roles"
    );
    let mut files: BTreeSet<String> = BTreeSet::new();
    for (role, names) in &expected {
        let policies = &roles[*role];
        assert_eq!(
            policies.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            names.iter().copied().collect::<BTreeSet<_>>(),
            "{role}'s policies"
        );
        for name in names {
            assert_eq!(
                policies[*name],
                policy_json(name),
                "{role}'s policy {name} differs from deploy/aws/iam/{name}.json"
            );
            files.insert((*name).to_owned());
        }
    }
    // Every document in deploy/aws/iam is used by a role.
    let dir = workspace_root().join("deploy/aws/iam");
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = e
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(stem) = name.strip_suffix(".json") {
            assert!(
                files.contains(stem),
                "deploy/aws/iam/{name} is in no role of the template"
            );
        }
    }
    // Who may assume them; no managed policy but Session Manager's.
    let roles = resources_of(&t, "AWS::IAM::Role");
    for (id, props) in roles {
        let principal = match id {
            "AuroraS3Role" => json!({"Service": "rds.amazonaws.com"}),
            // An executor's role: only the executors' instance role may assume it.
            id if executor_role(id).is_some() => {
                json!({"AWS": {"Fn::GetAtt": ["ConsumerRole", "Arn"]}})
            }
            // The agent's role: only the producer instances' role may assume it.
            "AgentTaxiRole" => json!({"AWS": {"Fn::GetAtt": ["ProducerRole", "Arn"]}}),
            // The dashboard's role: only the loader instance's role may assume it.
            "DashboardRole" => json!({"AWS": {"Fn::GetAtt": ["LoaderRole", "Arn"]}}),
            _ => json!({"Service": "ec2.amazonaws.com"}),
        };
        let trust = &props["AssumeRolePolicyDocument"]["Statement"];
        assert_eq!(trust.as_array().map(Vec::len), Some(1), "{id} trust policy");
        assert_eq!(trust[0]["Principal"], principal, "{id}");
        assert_eq!(trust[0]["Action"], "sts:AssumeRole", "{id}");
        let managed = &props["ManagedPolicyArns"];
        if !managed.is_null() {
            assert_eq!(
                managed["Fn::If"][1],
                json!([{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}]),
                "{id}: managed policies"
            );
        }
    }
}

fn release_contents() -> BTreeSet<String> {
    let out = Command::new("bash")
        .args(["deploy/aws/package-release.sh", "--list"])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("package-release.sh --list: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('/').map(|(_, p)| p.to_owned()))
        .collect()
}

#[test]
fn user_data_is_valid_bash_and_installs_what_the_release_holds() {
    let t = template();
    let release = release_contents();
    let root = workspace_root();
    // Every file the release packs exists in the repository (binaries: workspace bins).
    let ws =
        chief_deploy_check::workspace::Workspace::load(&root).unwrap_or_else(|e| panic!("{e}"));
    for path in &release {
        match path.split_once('/') {
            Some(("bin", bin)) => {
                ws.package_of(bin)
                    .unwrap_or_else(|e| panic!("release bin/{bin}: {e}"));
            }
            Some(("systemd", f)) => {
                assert!(root.join("deploy/systemd").join(f).is_file(), "{path}")
            }
            Some(("cron", f)) => assert!(root.join("deploy/cron").join(f).is_file(), "{path}"),
            Some(("setup", f)) => assert!(root.join("deploy/aws").join(f).is_file(), "{path}"),
            Some(("config" | "sql", _)) => assert!(root.join(path).is_file(), "{path}"),
            _ => panic!("unexpected release path {path}"),
        }
    }
    let launch_templates: Vec<&str> = resources_of(&t, "AWS::EC2::LaunchTemplate")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        launch_templates,
        [
            "ConsumerLaunchTemplate",
            "LoaderLaunchTemplate",
            "ProducerLaunchTemplate"
        ]
    );
    for lt in launch_templates {
        let script = user_data(&t, lt);
        // bash -n: the script parses.
        let file =
            std::env::temp_dir().join(format!("chief-userdata-{lt}-{}.sh", std::process::id()));
        std::fs::write(&file, &script).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let check = Command::new("bash")
            .arg("-n")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("bash -n: {e}"));
        let _ = std::fs::remove_file(&file);
        assert!(
            check.status.success(),
            "{lt} user data is not valid bash:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(script.starts_with("#!/bin/bash\n"), "{lt}");
        assert!(
            script.contains("set -euo pipefail"),
            "{lt}: stops at the first error"
        );
        // Everything it installs from the release is in the release.
        let installed: Vec<String> = userdata::release_paths(&script)
            .into_iter()
            .filter(|p| p != "chief.tar.gz")
            .collect();
        assert!(!installed.is_empty(), "{lt} installs nothing");
        for path in &installed {
            assert!(
                release.contains(path),
                "{lt} installs {path}, which the release does not hold"
            );
        }
        // The units it enables are the ones it installs (a template `x@` by its instances
        // `x@…`), and each has its drop-in.
        let units: BTreeSet<String> = installed
            .iter()
            .filter_map(|p| p.strip_prefix("systemd/"))
            .map(|u| u.trim_end_matches(".service").to_owned())
            .collect();
        let enabled: BTreeSet<String> = script
            .lines()
            .filter_map(|l| l.trim().strip_prefix("systemctl enable --now "))
            .flat_map(|l| l.split_whitespace().map(str::to_owned))
            .filter(|u| u.starts_with("chief-"))
            .collect();
        let unit_files_enabled: BTreeSet<String> = enabled
            .iter()
            .map(|u| match u.split_once('@') {
                Some((template, _)) => format!("{template}@"),
                None => u.clone(),
            })
            .collect();
        assert_eq!(
            units, unit_files_enabled,
            "{lt}: units installed vs enabled"
        );
        let files = userdata::written_files(&script);
        for unit in &enabled {
            let drop_in = format!("/etc/systemd/system/{unit}.service.d/stack.conf");
            assert!(
                files.iter().any(|f| f.path == drop_in),
                "{lt}: {unit} has no {drop_in}"
            );
        }
    }
    // The executors' instances run all four; the loader's installs the cron entry.
    let consumer = user_data(&t, "ConsumerLaunchTemplate");
    for e in Executor::ALL {
        assert!(
            userdata::release_paths(&consumer).contains(&format!("systemd/{}.service", e.name())),
            "{e} is not installed"
        );
    }
    let loader = user_data(&t, "LoaderLaunchTemplate");
    assert!(userdata::release_paths(&loader).contains(&"cron/chief-loader".to_owned()));
    assert!(loader.contains("/etc/cron.d/chief-loader"));
}

#[test]
fn each_binary_accepts_its_settings_on_the_instance() {
    let t = template();
    for binary in binaries() {
        let settings = instance_settings(&t, binary);
        let text = config_text(binary);
        assert!(
            settings
                .iter()
                .any(|(k, v)| k == "CHIEF__AWS__REGION" && v == "eu-west-1"),
            "{binary}: the region is not the stack's: {settings:?}"
        );
        match binary {
            "chief-producer" => {
                let _: ProducerAppConfig = chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|e| panic!("{binary}: {e}"));
            }
            "chief-dashboard" => {
                let c: chief_dashboard::DashboardConfig = chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|e| panic!("{binary}: {e}"));
                c.validate().unwrap_or_else(|e| panic!("{binary}: {e}"));
                assert_eq!(
                    c.aws.role_arn.as_deref(),
                    Some(value_of("DashboardRole.Arn").as_str()),
                    "{binary} assumes its own role"
                );
                assert_eq!(c.orders.stream, value_of("OrdersStream"), "{binary}");
                assert_eq!(
                    c.orders.table,
                    value_of("DashboardOrdersLeaseTable"),
                    "{binary}"
                );
                assert_eq!(
                    c.jobresults.stream,
                    value_of("JobResultsStream"),
                    "{binary}"
                );
                assert_eq!(
                    c.jobresults.table,
                    value_of("DashboardJobResultsLeaseTable"),
                    "{binary}"
                );
            }
            "chief-agent" => {
                let c: chief_agent::AgentSettings = chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|e| panic!("{binary}: {e}"));
                assert_eq!(
                    c.aws.role_arn.as_deref(),
                    Some(value_of("AgentTaxiRole.Arn").as_str()),
                    "{binary} assumes its own role"
                );
                let agent = agent_json(&t);
                let streams: Vec<Option<String>> = agent
                    .flows
                    .iter()
                    .map(|f| f.kinesis_stream.clone())
                    .collect();
                assert_eq!(
                    streams,
                    vec![
                        Some(value_of("TaxiTripsStream")),
                        Some(value_of("WebLogsStream"))
                    ],
                    "{binary}"
                );
                // The unit may write its checkpoint there (StateDirectory=aws-kinesis-agent).
                assert!(
                    agent
                        .checkpoint_file
                        .starts_with("/var/lib/aws-kinesis-agent/"),
                    "{binary}: checkpointFile {}",
                    agent.checkpoint_file.display()
                );
            }
            _ if analytics_of(binary).is_some() => {
                let c: chief_analytics::AnalyticsConfig = chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|e| panic!("{binary}: {e}"));
                c.validate().unwrap_or_else(|e| panic!("{binary}: {e}"));
                let (role, stream, lease, windows) = match analytics_of(binary) {
                    Some("status") => (
                        "AnalyticsStatusRole.Arn",
                        "WebLogsStream",
                        "AnalyticsStatusLeaseTable",
                        "AnalyticsStatusWindowTable",
                    ),
                    _ => (
                        "AnalyticsLevelsRole.Arn",
                        "AppLogsStream",
                        "AnalyticsLevelsLeaseTable",
                        "AnalyticsLevelsWindowTable",
                    ),
                };
                assert_eq!(
                    c.aws.role_arn.as_deref(),
                    Some(value_of(role).as_str()),
                    "{binary} assumes its own role"
                );
                assert_eq!(c.consumer.stream, value_of(stream), "{binary}");
                assert_eq!(c.consumer.table, value_of(lease), "{binary}");
                assert_eq!(c.store.table, value_of(windows), "{binary}");
                if analytics_of(binary) == Some("status") {
                    let es = c
                        .output
                        .elasticsearch
                        .as_ref()
                        .expect("status: elasticsearch");
                    assert_eq!(
                        es.url,
                        format!("https://{}", value_of("SearchDomain.DomainEndpoint"))
                    );
                    assert_eq!(es.aws_sigv4_service.as_deref(), Some("es"), "{binary}");
                } else {
                    let s3 = c.output.s3.as_ref().expect("levels: s3");
                    assert_eq!(s3.bucket, value_of("AppLogsBucket"), "{binary}");
                    // The stack's addresses replace the shipped example's.
                    let email = c.alert.first().and_then(|a| a.email.clone());
                    assert_eq!(
                        email.map(|e| (e.from, e.to)),
                        Some((value_of("AlertSender"), vec![value_of("AlertRecipient")])),
                        "{binary}: the alert's addresses"
                    );
                    assert_eq!(c.alert.len(), 1, "{binary}");
                    assert_eq!(c.alert[0].when, "ERROR > 1", "{binary}");
                }
            }
            "chief-s3-ingest" => {
                let c: chief_analytics::ingest::IngestConfig =
                    chief_config::load_str(&text, &settings)
                        .unwrap_or_else(|e| panic!("{binary}: {e}"));
                assert_eq!(
                    c.aws.role_arn.as_deref(),
                    Some(value_of("S3IngestRole.Arn").as_str()),
                    "{binary} assumes its own role"
                );
                assert_eq!(c.ingest.queue_url, value_of("AppLogsQueue"), "{binary}");
                assert_eq!(c.ingest.stream, value_of("AppLogsStream"), "{binary}");
                assert_eq!(
                    c.ingest.state_table,
                    value_of("S3IngestStateTable"),
                    "{binary}"
                );
                // The bucket announces only logs/: what it sends.
                assert_eq!(c.ingest.key_prefix, "logs/", "{binary}");
            }
            _ if delivery_of(binary).is_some() => {
                let c: chief_firehose::FirehoseConfig = chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|e| panic!("{binary}: {e}"));
                c.validate().unwrap_or_else(|e| panic!("{binary}: {e}"));
                assert_eq!(c.consumer.stream, value_of("TaxiTripsStream"), "{binary}");
                assert_eq!(
                    c.consumer.table,
                    value_of("FirehoseTaxiLeaseTable"),
                    "{binary}"
                );
                assert_eq!(c.s3.bucket, value_of("FirehoseBucket"), "{binary}");
            }
            "chief-loader" => {
                let c: LoaderConfig = chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|e| panic!("{binary}: {e}"));
                assert_eq!(c.loader.bucket, value_of("ArchiveBucket"));
                assert_eq!(c.loader.mode, chief_loader::Mode::Aurora);
                assert_eq!(
                    c.database.url,
                    "mysql://chief_loader:<$loader_password>@x-auroracluster-endpoint-address:x-auroracluster-endpoint-port/chief"
                );
            }
            _ => {
                let e = Executor::ALL
                    .into_iter()
                    .find(|e| e.name() == binary)
                    .unwrap_or_else(|| panic!("{binary}"));
                let c: ExecutorConfig = chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|err| panic!("{binary}: {err}"));
                c.validate(e)
                    .unwrap_or_else(|err| panic!("{binary}: {err}"));
                let (stream, table) = match e {
                    Executor::OrderFactoryS3 => ("OrdersStream", "OrderFactoryS3LeaseTable"),
                    Executor::OrderEsS3 => ("OrdersStream", "OrderEsS3LeaseTable"),
                    Executor::JobResultEs => ("JobResultsStream", "JobResultEsLeaseTable"),
                    Executor::JobResultNotifyS3 => {
                        ("JobResultsStream", "JobResultNotifyS3LeaseTable")
                    }
                };
                assert_eq!(c.consumer.stream, value_of(stream), "{binary}");
                assert_eq!(c.consumer.table, value_of(table), "{binary}");
                assert_eq!(c.archive.bucket, value_of("ArchiveBucket"), "{binary}");
                assert_eq!(
                    c.elasticsearch.url,
                    format!("https://{}", value_of("SearchDomain.DomainEndpoint")),
                    "{binary}"
                );
            }
        }
    }
}

fn prop<'a>(t: &'a Value, id: &str) -> &'a Value {
    let r = resources(t)
        .get(id)
        .unwrap_or_else(|| panic!("the template has no resource {id}"));
    &r["Properties"]
}

#[test]
fn bucket_streams_database_and_search_are_set_up_as_the_code_expects() {
    let t = template();
    // Streams: server-side encryption, the shard counts of chiefctl setup by default,
    // the executors' stream names by default.
    let chiefctl: toml::Table =
        toml::from_str(&config_text("chiefctl")).unwrap_or_else(|e| panic!("{e}"));
    let setup_streams = chiefctl["setup"]["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let params = &t["Parameters"];
    for (id, name_param, shards_param) in [
        ("OrdersStream", "OrdersStreamName", "OrdersShardCount"),
        (
            "JobResultsStream",
            "JobResultsStreamName",
            "JobResultsShardCount",
        ),
    ] {
        let p = prop(&t, id);
        assert_eq!(
            p["StreamEncryption"],
            json!({"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
            "{id}"
        );
        assert_eq!(p["Name"], json!({"Ref": name_param}));
        assert_eq!(p["ShardCount"], json!({"Ref": shards_param}));
        let default_name = params[name_param]["Default"].as_str().unwrap_or_default();
        let setup = setup_streams
            .iter()
            .find(|s| s["name"].as_str() == Some(default_name))
            .unwrap_or_else(|| panic!("config/chiefctl.toml has no stream {default_name}"));
        assert_eq!(
            params[shards_param]["Default"].as_i64(),
            setup["shards"].as_integer(),
            "{id} shards"
        );
    }
    let executor_streams: BTreeSet<String> = Executor::ALL
        .iter()
        .map(|e| {
            let c: ExecutorConfig = chief_config::load_str(&config_text(e.name()), &[])
                .unwrap_or_else(|err| panic!("{e}: {err}"));
            c.consumer.stream
        })
        .collect();
    let default_streams: BTreeSet<String> = ["OrdersStreamName", "JobResultsStreamName"]
        .iter()
        .map(|p| params[p]["Default"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(executor_streams, default_streams);

    // Bucket: encrypted, no public access, lifecycle for dead letters and manifests.
    let b = prop(&t, "ArchiveBucket");
    assert_eq!(
        b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
            ["SSEAlgorithm"],
        "AES256"
    );
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(b["PublicAccessBlockConfiguration"][k], true, "{k}");
    }
    let expiring: BTreeSet<String> = b["LifecycleConfiguration"]["Rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter(|r| r["ExpirationInDays"].is_object() || r["ExpirationInDays"].is_number())
                .filter_map(|r| r["Prefix"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let loader: LoaderConfig =
        chief_config::load_str(&config_text("chief-loader"), &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut want = BTreeSet::from([format!("{}/", loader.loader.manifest_prefix)]);
    for e in Executor::ALL {
        let c: ExecutorConfig = chief_config::load_str(&config_text(e.name()), &[])
            .unwrap_or_else(|err| panic!("{e}: {err}"));
        want.insert(format!("{}/", c.archive.dead_letter_prefix));
    }
    assert_eq!(
        expiring, want,
        "lifecycle expirations vs dead-letter and manifest prefixes"
    );

    // Aurora: the S3 role in the cluster parameter group and associated with the cluster.
    let role = json!({"Fn::GetAtt": ["AuroraS3Role", "Arn"]});
    let group = prop(&t, "AuroraClusterParameters");
    assert_eq!(group["Family"], "aurora-mysql8.0");
    assert_eq!(group["Parameters"]["aws_default_s3_role"], role);
    let cluster = prop(&t, "AuroraCluster");
    assert_eq!(cluster["Engine"], "aurora-mysql");
    assert_eq!(
        cluster["DBClusterParameterGroupName"],
        json!({"Ref": "AuroraClusterParameters"})
    );
    assert_eq!(cluster["AssociatedRoles"], json!([{"RoleArn": role}]));
    assert_eq!(cluster["StorageEncrypted"], true);
    // Only the loader reaches the database, only the executors the search domain.
    for (sg, port, from) in [
        ("AuroraSecurityGroup", 3306, "LoaderSecurityGroup"),
        ("SearchSecurityGroup", 443, "ConsumerSecurityGroup"),
    ] {
        assert_eq!(
            prop(&t, sg)["SecurityGroupIngress"],
            json!([{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                    "SourceSecurityGroupId": {"Ref": from}, "Description": prop(&t, sg)["SecurityGroupIngress"][0]["Description"]}]),
            "{sg}"
        );
    }
    // Search: in the VPC, encrypted, HTTPS, IAM authentication (below).
    let search = prop(&t, "SearchDomain");
    assert_eq!(
        search["VPCOptions"]["SecurityGroupIds"],
        json!([{"Ref": "SearchSecurityGroup"}])
    );
    assert_eq!(search["EncryptionAtRestOptions"]["Enabled"], true);
    assert_eq!(search["NodeToNodeEncryptionOptions"]["Enabled"], true);
    assert_eq!(search["DomainEndpointOptions"]["EnforceHTTPS"], true);
    // Instance metadata v2 only, encrypted volumes.
    for (lt, props) in resources_of(&t, "AWS::EC2::LaunchTemplate") {
        let data = &props["LaunchTemplateData"];
        assert_eq!(data["MetadataOptions"]["HttpTokens"], "required", "{lt}");
        assert_eq!(
            data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"], true,
            "{lt}"
        );
        assert!(template::user_data(&t, lt).is_some(), "{lt}");
    }
}

/// The source of every crate, concatenated: where metric names are emitted.
fn all_source() -> String {
    let mut text = String::new();
    let mut stack = vec![workspace_root().join("crates")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    text
}

#[test]
fn every_alarm_watches_a_metric_a_binary_publishes_under_its_namespace() {
    let t = template();
    // The namespaces the stack gives the binaries (their instance settings).
    let namespaces: BTreeSet<String> = [
        "chief-producer",
        "chief-loader",
        "chief-order-factory-s3",
        "chief-order-es-s3",
        "chief-jobresult-es",
        "chief-jobresult-notify-s3",
    ]
    .into_iter()
    .map(|binary| {
        instance_settings(&t, binary)
            .into_iter()
            .find(|(k, _)| k == "CHIEF__METRICS__CLOUDWATCH__NAMESPACE")
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{binary} publishes no metrics on the stack"))
    })
    .collect();
    assert_eq!(namespaces.len(), 6, "one namespace per binary");
    let source = all_source();
    let alarms = resources_of(&t, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 17, "{} alarms", alarms.len());
    let mut watched = BTreeSet::new();
    for (id, props) in alarms {
        assert_eq!(
            props["AlarmActions"],
            json!([{"Ref": "AlarmTopic"}]),
            "{id} notifies the topic"
        );
        let query = props["Metrics"][0]["Expression"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: a Metrics Insights query"));
        // SELECT FN(Metric) FROM "namespace"
        let metric = query
            .split('(')
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or_else(|| panic!("{id}: {query}"));
        let namespace = query
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("{id}: {query}"));
        assert!(
            namespaces.contains(namespace),
            "{id} watches namespace {namespace}, which no binary publishes to"
        );
        assert!(
            source.contains(&format!("\"{metric}\"")),
            "{id} watches {metric}, which no crate emits"
        );
        watched.insert(metric.to_owned());
    }
    for needed in [
        "MillisBehindLatest",
        "DeadLetters",
        "LeasesLost",
        "UserRecordExpired",
    ] {
        assert!(watched.contains(needed), "no alarm on {needed}");
    }
}

#[test]
fn every_instance_ships_the_journal_of_its_programs_to_the_stacks_log_group() {
    let t = template();
    let group = prop(&t, "LogGroup");
    assert_eq!(
        group["LogGroupName"],
        json!({"Fn::Sub": "/chief/${AWS::StackName}"})
    );
    assert_eq!(group["RetentionInDays"], json!({"Ref": "LogRetentionDays"}));
    let root = workspace_root();
    for (lt, bootstrap) in BOOTSTRAPS {
        let script = user_data(&t, lt);
        let (log_group, programs) = shipped_journal(&script);
        assert_eq!(
            log_group,
            value_of("LogGroup"),
            "{lt}: the stack's log group"
        );
        // Every binary the instance runs, and its own bootstrap lines.
        let mut expected: BTreeSet<String> = binaries()
            .into_iter()
            .filter(|b| launch_template_of(b) == lt)
            .map(str::to_owned)
            .collect();
        expected.insert("chief-bootstrap".to_owned());
        assert!(script.contains("logger -t chief-bootstrap"), "{lt}");
        assert_eq!(
            programs.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{lt}: the programs whose journal it ships"
        );
        // Each unit logs under the identifier rsyslog picks its lines by.
        for program in programs.iter().filter(|p| p.as_str() != "chief-bootstrap") {
            let (unit_file, _) = unit_of(program);
            // The producer and the loader run from their own scripts and cron, not units.
            let Ok(text) = std::fs::read_to_string(root.join("deploy/systemd").join(&unit_file))
            else {
                continue;
            };
            // A template's instance `x@d` logs as `x-d`.
            let identifier = if delivery_of(program).is_some() {
                "chief-firehose-%i".to_owned()
            } else if analytics_of(program).is_some() {
                "chief-analytics-%i".to_owned()
            } else {
                program.clone()
            };
            assert!(
                text.lines()
                    .any(|l| l.trim() == format!("SyslogIdentifier={identifier}")),
                "{unit_file}: SyslogIdentifier={identifier}"
            );
        }
        // What the script writes for these programs: rsyslog sends each program's lines to
        // a file, and the CloudWatch agent ships each of those files to the log group.
        let dir = std::env::temp_dir().join(format!("chief-journal-{lt}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new("bash")
            .arg(root.join("deploy/aws/ship-journal.sh"))
            .arg(&log_group)
            .args(&programs)
            .env("CHIEF_SHIP_JOURNAL_ROOT", &dir)
            .output()
            .unwrap_or_else(|e| panic!("ship-journal.sh: {e}"));
        assert!(
            out.status.success(),
            "{lt}: ship-journal.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rsyslog = std::fs::read_to_string(dir.join("etc/rsyslog.d/10-chief.conf"))
            .expect("rsyslog config");
        let agent: Value = serde_json::from_str(
            &std::fs::read_to_string(
                dir.join("opt/aws/amazon-cloudwatch-agent/etc/chief-journal.json"),
            )
            .expect("agent config"),
        )
        .unwrap_or_else(|e| panic!("{lt}: the agent config is not JSON: {e}"));
        assert!(dir.join("etc/logrotate.d/chief").is_file());
        let _ = std::fs::remove_dir_all(&dir);
        let collect = agent["logs"]["logs_collected"]["files"]["collect_list"]
            .as_array()
            .expect("collect_list");
        let mut shipped = BTreeSet::new();
        for entry in collect {
            assert_eq!(entry["log_group_name"], json!(log_group), "{lt}: {entry}");
            let path = entry["file_path"].as_str().expect("file_path");
            let program = path
                .strip_prefix("/var/log/chief/")
                .and_then(|f| f.strip_suffix(".log"))
                .unwrap_or_else(|| panic!("{lt}: {path}"));
            assert_eq!(
                entry["log_stream_name"],
                json!(format!("{{instance_id}}/{program}")),
                "{lt}"
            );
            assert!(
                rsyslog.contains(&format!("file=\"{path}\"")),
                "{lt}: rsyslog writes no {path}"
            );
            shipped.insert(program.to_owned());
        }
        let mut all = expected.clone();
        all.insert("systemd".to_owned());
        assert_eq!(shipped, all, "{lt}: the files the agent ships");
        for program in &expected {
            assert!(
                rsyslog.contains(&format!("$programname == \"{program}\"")),
                "{lt}: rsyslog does not pick {program}'s lines"
            );
        }
        // The instance role may write there, and nowhere else in CloudWatch Logs.
        let policy = policy(bootstrap);
        let stream = format!(
            "arn:aws:logs:eu-west-1:111122223333:log-group:{}:log-stream:i-0123/chief-x",
            value_of("LogGroup")
        );
        for action in ["logs:CreateLogStream", "logs:PutLogEvents"] {
            assert!(
                policy.allows(&policy::Request::new(action, &stream)),
                "{bootstrap}: {action} on {stream}"
            );
            assert!(
                !policy.allows(&policy::Request::new(
                    action,
                    "arn:aws:logs:eu-west-1:111122223333:log-group:other:log-stream:x"
                )),
                "{bootstrap}: {action} on another log group"
            );
        }
    }
}

#[test]
fn the_archive_bucket_announces_every_loader_object_to_the_loaders_queue() {
    let t = template();
    let loader: LoaderConfig = chief_config::load_str(
        &config_text("chief-loader"),
        &instance_settings(&t, "chief-loader"),
    )
    .unwrap_or_else(|e| panic!("chief-loader: {e}"));
    assert_eq!(
        loader.loader.queue_url.as_deref(),
        Some(value_of("LoaderQueue").as_str()),
        "the loader drains the stack's queue"
    );
    // One s3:ObjectCreated:* notification per table prefix, all to that queue.
    let notified: BTreeSet<String> =
        prop(&t, "ArchiveBucket")["NotificationConfiguration"]["QueueConfigurations"]
            .as_array()
            .expect("QueueConfigurations")
            .iter()
            .map(|q| {
                assert_eq!(q["Event"], "s3:ObjectCreated:*", "{q}");
                assert_eq!(
                    q["Queue"],
                    json!({"Fn::GetAtt": ["LoaderQueue", "Arn"]}),
                    "{q}"
                );
                let rules = q["Filter"]["S3Key"]["Rules"].as_array().expect("rules");
                assert_eq!(rules.len(), 1, "{q}");
                assert_eq!(rules[0]["Name"], "prefix", "{q}");
                rules[0]["Value"].as_str().expect("prefix").to_owned()
            })
            .collect();
    let prefixes: BTreeSet<String> = loader
        .loader
        .tables
        .values()
        .map(|t| format!("{}/", t.prefix))
        .collect();
    assert_eq!(
        notified, prefixes,
        "notifications vs the loader's table prefixes"
    );
    assert_eq!(
        resources(&t)["ArchiveBucket"]["DependsOn"],
        "LoaderQueuePolicy",
        "S3 checks it may send before it accepts the notifications"
    );
    // Only this bucket of this account may send to the queue.
    let statements = prop(&t, "LoaderQueuePolicy")["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements")
        .clone();
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Principal"], json!({"Service": "s3.amazonaws.com"}));
    assert_eq!(s["Action"], "sqs:SendMessage");
    assert_eq!(
        s["Condition"]["ArnLike"]["aws:SourceArn"],
        prop(&t, "ArchiveBucket")["BucketName"]
            .get("Fn::Sub")
            .map(|name| json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:s3:::{}", name.as_str().unwrap_or_default())}))
            .expect("bucket name")
    );
    // A message stays hidden at least as long as the loader says a run takes.
    let queue = prop(&t, "LoaderQueue");
    assert!(
        queue["VisibilityTimeout"].as_u64().unwrap_or_default()
            >= u64::from(loader.loader.queue_visibility_timeout_s)
    );
    assert_eq!(queue["SqsManagedSseEnabled"], true);
}

/// The executor whose own role `id` is, if it is one.
fn executor_role(id: &str) -> Option<&'static str> {
    match id {
        "OrderFactoryS3Role" => Some("chief-order-factory-s3"),
        "OrderEsS3Role" => Some("chief-order-es-s3"),
        "JobResultEsRole" => Some("chief-jobresult-es"),
        "JobResultNotifyS3Role" => Some("chief-jobresult-notify-s3"),
        "FirehoseTaxiRole" => Some("chief-firehose-taxi"),
        "AnalyticsStatusRole" => Some("chief-analytics-status"),
        "AnalyticsLevelsRole" => Some("chief-analytics-levels"),
        "S3IngestRole" => Some("chief-s3-ingest"),
        _ => None,
    }
}

#[test]
fn each_executor_process_assumes_its_own_role_and_the_instance_role_nothing_else() {
    let t = template();
    let roles = resources_of(&t, "AWS::IAM::Role");
    let mut assumable = BTreeSet::new();
    for (id, props) in &roles {
        let Some(binary) = executor_role(id) else {
            continue;
        };
        // The role's name is what the instance role may assume.
        let name = props["RoleName"]["Fn::Sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} has no RoleName"));
        assert_eq!(name, format!("${{AWS::StackName}}-{binary}"), "{id}");
        assumable.insert(format!("arn:aws:iam::111122223333:role/{}", fill(name)));
        // The process assumes exactly this role: its drop-in sets its ARN.
        let settings = instance_settings(&t, binary);
        let role_arn: Vec<&String> = settings
            .iter()
            .filter(|(k, _)| k == "CHIEF__AWS__ROLE_ARN")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            role_arn,
            vec![&value_of(&format!("{id}.Arn"))],
            "{binary} must assume {id}"
        );
        let role = if delivery_of(binary).is_some() {
            let config: chief_firehose::FirehoseConfig =
                chief_config::load_str(&config_text(binary), &settings).expect("config");
            config.aws.role_arn
        } else if analytics_of(binary).is_some() {
            let config: chief_analytics::AnalyticsConfig =
                chief_config::load_str(&config_text(binary), &settings).expect("config");
            config.aws.role_arn
        } else if binary == "chief-s3-ingest" {
            let config: chief_analytics::ingest::IngestConfig =
                chief_config::load_str(&config_text(binary), &settings).expect("config");
            config.aws.role_arn
        } else {
            let config: ExecutorConfig =
                chief_config::load_str(&config_text(binary), &settings).expect("config");
            config.aws.role_arn
        };
        assert_eq!(
            role.as_deref(),
            Some(value_of(&format!("{id}.Arn")).as_str())
        );
    }
    assert_eq!(
        assumable.len(),
        8,
        "one role per executor, delivery, analytics application and chief-s3-ingest"
    );
    // The instance role may assume those roles and nothing else of IAM or STS; its
    // other statements are the bootstrap's (release, search secret, logs).
    let instance = policy("assume-executor-roles");
    assert_eq!(
        instance.allowed_actions(),
        BTreeSet::from(["sts:AssumeRole".to_owned()])
    );
    for arn in &assumable {
        assert!(
            instance.allows(&policy::Request::new("sts:AssumeRole", arn)),
            "{arn}"
        );
    }
    for other in [
        "arn:aws:iam::111122223333:role/chief-test-chief-loader",
        "arn:aws:iam::111122223333:role/chief-test-ProducerRole",
        "arn:aws:iam::111122223333:role/someone-else",
    ] {
        assert!(
            !instance.allows(&policy::Request::new("sts:AssumeRole", other)),
            "{other}"
        );
    }
    // No executor request is allowed to the instance role (it reads the release tarball
    // with s3:GetObject, chief-s3-ingest the uploaded logs: same action, not the same
    // objects).
    let bootstrap = policy("bootstrap-consumer");
    for binary in [
        "chief-order-factory-s3",
        "chief-order-es-s3",
        "chief-jobresult-es",
        "chief-jobresult-notify-s3",
        "chief-firehose-taxi",
        "chief-analytics-status",
        "chief-analytics-levels",
        "chief-s3-ingest",
    ] {
        let uses = uses(&t, binary);
        for op in called_operations(binary) {
            for request in support::requests(&op, &uses) {
                assert!(
                    !bootstrap.allows(&request),
                    "bootstrap-consumer allows {request}, which only {binary} should"
                );
            }
        }
    }
    // The executors' instances start once the roles exist.
    let depends = &resources(&t)["ConsumerGroup"]["DependsOn"];
    for id in [
        "OrderFactoryS3Role",
        "OrderEsS3Role",
        "JobResultEsRole",
        "JobResultNotifyS3Role",
        "FirehoseTaxiRole",
    ] {
        assert!(
            depends
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == id)),
            "ConsumerGroup does not wait for {id}"
        );
    }
}

#[test]
fn each_search_executor_signs_with_its_role_and_may_write_only_its_index() {
    let t = template();
    let search = prop(&t, "SearchDomain");
    // No internal users, no master password anywhere: access is by IAM principal.
    assert!(
        search["AdvancedSecurityOptions"].is_null(),
        "no internal user database"
    );
    let statements = search["AccessPolicies"]["Statement"]
        .as_array()
        .expect("access policy statements")
        .clone();
    let domain = |path: &str| {
        json!({"Fn::Sub": format!(
            "arn:${{AWS::Partition}}:es:${{AWS::Region}}:${{AWS::AccountId}}:domain/${{SearchDomainName}}/{path}"
        )})
    };
    let mut granted = BTreeMap::new();
    for st in &statements {
        assert_eq!(st["Effect"], "Allow", "{st}");
        assert_eq!(
            st["Action"],
            json!(["es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut"]),
            "{st}"
        );
        let role = st["Principal"]["AWS"]["Fn::GetAtt"][0]
            .as_str()
            .unwrap_or_else(|| panic!("a principal that is not one of the stack's roles: {st}"));
        granted.insert(role.to_owned(), st["Resource"].clone());
    }
    let mut expected = BTreeMap::new();
    for executor in Executor::ALL.into_iter().filter(|e| e.writes_search()) {
        let binary = executor.name();
        let settings = instance_settings(&t, binary);
        let config: ExecutorConfig =
            chief_config::load_str(&config_text(binary), &settings).expect("config");
        let es = &config.elasticsearch;
        assert_eq!(
            es.aws_sigv4_service.as_deref(),
            Some("es"),
            "{binary} signs"
        );
        assert!(
            es.username.is_none() && es.password.is_none() && es.api_key.is_none(),
            "{binary} carries no search credential"
        );
        let role = match binary {
            "chief-order-es-s3" => "OrderEsS3Role",
            "chief-jobresult-es" => "JobResultEsRole",
            other => panic!("{other} writes search but has no role here"),
        };
        assert!(
            config.aws.role_arn.is_some(),
            "{binary} signs as its own role"
        );
        expected.insert(
            role.to_owned(),
            json!([domain(&es.index), domain(&format!("{}/*", es.index))]),
        );
    }
    // chief-analytics@status: its index rotated by day (`<index>-YYYY-MM-DD`).
    let binary = "chief-analytics-status";
    let settings = instance_settings(&t, binary);
    let config: chief_analytics::AnalyticsConfig =
        chief_config::load_str(&config_text(binary), &settings).expect("config");
    let es = config
        .output
        .elasticsearch
        .expect("its elasticsearch output");
    assert_eq!(
        es.aws_sigv4_service.as_deref(),
        Some("es"),
        "{binary} signs"
    );
    assert!(
        es.username.is_none() && es.password.is_none() && es.api_key.is_none(),
        "{binary} carries no search credential"
    );
    expected.insert(
        "AnalyticsStatusRole".to_owned(),
        json!([domain(&format!("{}-*", es.index))]),
    );
    assert_eq!(granted, expected, "who may write which index");
    // No instance writes a search password.
    let consumer = user_data(&t, "ConsumerLaunchTemplate");
    assert!(
        !consumer.contains("PASSWORD"),
        "a password in the executors' instance files"
    );
    assert!(
        !consumer.contains("secretsmanager"),
        "the executors' bootstrap reads no secret"
    );
}

#[test]
fn the_log_analytics_streams_tables_and_uploads_are_set_up_as_the_applications_expect() {
    let t = template();
    let params = &t["Parameters"];
    // The streams: encrypted, named by default as the shipped configs name them.
    let status: chief_analytics::AnalyticsConfig =
        chief_config::load_str(&config_text("chief-analytics-status"), &[]).expect("status");
    let levels: chief_analytics::AnalyticsConfig =
        chief_config::load_str(&config_text("chief-analytics-levels"), &[]).expect("levels");
    let ingest: chief_analytics::ingest::IngestConfig =
        chief_config::load_str(&config_text("chief-s3-ingest"), &[]).expect("ingest");
    for (id, name_param, shipped) in [
        (
            "WebLogsStream",
            "WebLogsStreamName",
            vec![&status.consumer.stream],
        ),
        (
            "AppLogsStream",
            "AppLogsStreamName",
            vec![&levels.consumer.stream, &ingest.ingest.stream],
        ),
    ] {
        let p = prop(&t, id);
        assert_eq!(
            p["StreamEncryption"],
            json!({"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}),
            "{id}"
        );
        assert_eq!(p["Name"], json!({"Ref": name_param}), "{id}");
        for name in shipped {
            assert_eq!(
                params[name_param]["Default"].as_str(),
                Some(name.as_str()),
                "{id}"
            );
        }
    }
    // The tables: the key schemas the code creates when a table is missing.
    let key = |id: &str| {
        let p = prop(&t, id);
        let attrs: BTreeMap<String, String> = p["AttributeDefinitions"]
            .as_array()
            .expect("attributes")
            .iter()
            .map(|a| {
                (
                    a["AttributeName"].as_str().unwrap_or_default().to_owned(),
                    a["AttributeType"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let schema: Vec<(String, String, String)> = p["KeySchema"]
            .as_array()
            .expect("key schema")
            .iter()
            .map(|k| {
                let name = k["AttributeName"].as_str().unwrap_or_default().to_owned();
                let kind = attrs.get(&name).cloned().unwrap_or_default();
                (
                    name,
                    kind,
                    k["KeyType"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        schema
    };
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    for id in ["AnalyticsStatusLeaseTable", "AnalyticsLevelsLeaseTable"] {
        assert_eq!(key(id), vec![s("leaseKey", "S", "HASH")], "{id}");
    }
    for id in ["AnalyticsStatusWindowTable", "AnalyticsLevelsWindowTable"] {
        assert_eq!(
            key(id),
            vec![s("pk", "S", "HASH"), s("sk", "S", "RANGE")],
            "{id}: the window store's items"
        );
    }
    assert_eq!(key("S3IngestStateTable"), vec![s("object", "S", "HASH")]);
    // The uploads: every object created under chief-s3-ingest's key prefix is announced
    // to its queue, which only that bucket may send to.
    let settings = instance_settings(&t, "chief-s3-ingest");
    let on_instance: chief_analytics::ingest::IngestConfig =
        chief_config::load_str(&config_text("chief-s3-ingest"), &settings).expect("ingest");
    let bucket = prop(&t, "AppLogsBucket");
    let notifications = bucket["NotificationConfiguration"]["QueueConfigurations"]
        .as_array()
        .expect("QueueConfigurations");
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0]["Event"], "s3:ObjectCreated:*");
    assert_eq!(
        notifications[0]["Queue"],
        json!({"Fn::GetAtt": ["AppLogsQueue", "Arn"]})
    );
    assert_eq!(
        notifications[0]["Filter"]["S3Key"]["Rules"],
        json!([{"Name": "prefix", "Value": on_instance.ingest.key_prefix}])
    );
    let bucket_name = bucket["BucketName"]["Fn::Sub"]
        .as_str()
        .expect("BucketName");
    let queue_policy = &prop(&t, "AppLogsQueuePolicy")["PolicyDocument"]["Statement"];
    assert_eq!(
        queue_policy[0]["Condition"]["ArnLike"]["aws:SourceArn"],
        json!({"Fn::Sub": format!("arn:${{AWS::Partition}}:s3:::{bucket_name}")}),
        "the queue takes the notifications of that bucket only"
    );
    assert_eq!(
        resources(&t)["AppLogsBucket"]["DependsOn"],
        "AppLogsQueuePolicy",
        "S3 checks it may send to the queue when the notification is set"
    );
    // A message stays invisible longer than chief-s3-ingest's own visibility timeout
    // would need: it sets that per receive, the queue's is the fallback.
    assert!(
        prop(&t, "AppLogsQueue")["VisibilityTimeout"].as_i64()
            >= Some(i64::from(on_instance.ingest.visibility_timeout_s))
    );
}
