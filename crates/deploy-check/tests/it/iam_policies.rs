//! The IAM policies of `deploy/aws/iam/` against the code: each binary's policy allows
//! every AWS call the binary makes, on exactly the resources its settings on the stack's
//! instances name, and nothing else.
//!
//! The calls are read from the built binaries (`target/<profile>/<binary>`, which `make
//! test` builds before it runs the tests): every SDK operation a binary can reach is a
//! `aws_sdk_<service>::operation::<op>::<Op>::orchestrate` symbol in it, dead code being
//! dropped by the linker. The source scan of the crates each binary links cross-checks
//! that list. So a new SDK call in a binary's code fails here until its policy allows it.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};

use chief_deploy_check::operations::{self, Catalog, SdkOperation};
use chief_deploy_check::policy::Request;
use chief_deploy_check::userdata;
use chief_deploy_check::workspace::{Workspace, rust_files};
use chief_deploy_check::workspace_root;
use support::*;

#[test]
fn each_binary_is_allowed_exactly_the_aws_calls_its_code_makes() {
    let template = template();
    let mut failures = Vec::new();
    let mut all_requests: BTreeMap<&str, Vec<Request>> = BTreeMap::new();
    for binary in binaries() {
        let ops = called_operations(binary);
        assert!(
            !ops.is_empty(),
            "{binary}: no SDK operation symbols found; is it a debug build with symbols?"
        );
        let policy = policy(binary);
        let uses = uses(&template, binary);
        let mut needed = BTreeSet::new();
        let mut requests = Vec::new();
        for op in &ops {
            if uses.never_calls.contains(&op.service)
                || operations::iam_action(op).is_some_and(|i| uses.never_calls.contains(i.action))
            {
                continue;
            }
            let Some(iam) = operations::iam_action(op) else {
                failures.push(format!(
                    "{binary} calls {op}, which has no IAM mapping: add it to operations::iam_action"
                ));
                continue;
            };
            needed.insert(iam.action.to_owned());
            let r = support::requests(op, &uses);
            if r.is_empty() {
                failures.push(format!(
                    "{binary} calls {op} ({}), but the test does not know on what: extend support::uses",
                    iam.action
                ));
            }
            requests.extend(r);
        }
        // Nothing missing, nothing more: the actions are exactly those of the calls.
        let granted = policy.allowed_actions();
        for action in needed.difference(&granted) {
            failures.push(format!(
                "{binary} calls {action}, which deploy/aws/iam/{binary}.json does not grant"
            ));
        }
        for action in granted.difference(&needed) {
            failures.push(format!(
                "deploy/aws/iam/{binary}.json grants {action}, which {binary} never calls"
            ));
        }
        // Every call allowed on what the binary's settings name.
        let mut used = BTreeSet::new();
        for r in &requests {
            if !policy.allows(r) {
                failures.push(format!("{binary}: {r} is not allowed by its policy"));
            }
            used.extend(policy.used_by(r));
        }
        // Every resource the policy names is one the binary uses.
        for (i, statement) in policy.statements.iter().enumerate() {
            for resource in &statement.resources {
                if !used.contains(&(i, resource.clone())) {
                    failures.push(format!(
                        "deploy/aws/iam/{binary}.json statement {:?} grants {resource}, which {binary} does not use",
                        statement.sid.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
        // And the neighbours of what it uses are refused.
        for r in &requests {
            for n in neighbours(r) {
                if policy.allows(&n) && !requests.contains(&n) {
                    failures.push(format!("{binary}: its policy allows {n}, next to {r}"));
                }
            }
        }
        all_requests.insert(binary, requests);
    }
    // No binary may do what only another one does (each executor's own prefixes, lease
    // table, dead letters).
    for binary in all_requests.keys() {
        let policy = policy(binary);
        let own = &all_requests[binary];
        for (other, theirs) in &all_requests {
            for r in theirs {
                let shared = own
                    .iter()
                    .any(|o| o.action == r.action && o.resource == r.resource);
                if other != binary && !shared && policy.allows(r) {
                    failures.push(format!(
                        "{binary}'s policy allows {r}, which only {other} needs"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_source_of_the_linked_crates_calls_every_operation_the_binaries_contain() {
    let root = workspace_root();
    let ws = Workspace::load(&root).unwrap_or_else(|e| panic!("{e}"));
    let sdk: Vec<(String, std::path::PathBuf)> = ws
        .sdk_crates
        .iter()
        .map(|(s, d)| (s.clone(), d.clone()))
        .collect();
    let catalog = Catalog::from_sdk_crates(&sdk).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for binary in binaries() {
        let package = ws
            .package_of(binary_file(binary))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut in_source: BTreeMap<SdkOperation, BTreeSet<String>> = BTreeMap::new();
        for member in ws.linked_members(&package.name) {
            let services = ws.sdk_services(member);
            if services.is_empty() {
                continue;
            }
            let files = rust_files(&member.dir.join("src"));
            let test_modules: BTreeSet<String> = files
                .iter()
                .filter_map(|f| std::fs::read_to_string(f).ok())
                .flat_map(|t| operations::test_module_files(&t))
                .collect();
            for file in files {
                let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
                if stem.is_some_and(|s| test_modules.contains(&s)) {
                    continue;
                }
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let shown = file
                    .strip_prefix(&root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                let ops = operations::scan_source(&shown, &text, &services, &catalog)
                    .unwrap_or_else(|e| panic!("{e}"));
                for op in ops {
                    in_source.entry(op).or_default().insert(shown.clone());
                }
            }
        }
        for op in in_source.keys() {
            if operations::iam_action(op).is_none() {
                failures.push(format!(
                    "{op} is called in {:?} but has no IAM mapping: add it to operations::iam_action",
                    in_source[op]
                ));
            }
        }
        let called = called_operations(binary);
        for op in &called {
            if !in_source.contains_key(op) {
                failures.push(format!(
                    "{binary} contains {op}, but no `.{}()` call was found in the crates it links",
                    op.operation
                ));
            }
        }
        let unreachable: Vec<String> = in_source
            .keys()
            .filter(|op| !called.contains(op))
            .map(ToString::to_string)
            .collect();
        report.push(format!(
            "{binary}: calls {:?}; linked but unreachable: {unreachable:?}",
            called.iter().map(ToString::to_string).collect::<Vec<_>>()
        ));
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn no_policy_grants_wildcards_or_another_applications_consumer() {
    let dir = workspace_root().join("deploy/aws/iam");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".json")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= binaries().len(), "{names:?}");
    for name in &names {
        let policy = policy(name);
        for s in &policy.statements {
            for a in &s.actions {
                assert!(!a.contains('*'), "{name}: action {a} has a wildcard");
            }
            // Enhanced fan-out reaches one consumer: the application's (named after its
            // lease table), never every consumer of the stream.
            if s.actions
                .iter()
                .any(|a| a == "kinesis:SubscribeToShard" || a == "kinesis:DescribeStreamConsumer")
            {
                for r in &s.resources {
                    assert!(
                        r.rsplit_once("/consumer/")
                            .is_some_and(|(_, c)| c.ends_with("leasetable:*")),
                        "{name}: {r}: fan-out must be limited to the application's own consumer"
                    );
                }
            }
            // Only actions without resource-level permissions may name every resource,
            // and then under a condition (PutMetricData: the binary's namespace).
            let resourceless = s.actions.iter().all(|a| a == "cloudwatch:PutMetricData")
                && s.conditions.iter().any(|c| c.key == "cloudwatch:namespace");
            for r in &s.resources {
                assert!(
                    r != "*" || resourceless,
                    "{name}: statement {:?} on every resource",
                    s.sid
                );
                assert!(
                    !r.ends_with(":::*") && !r.ends_with(":stream/*") && !r.ends_with(":table/*"),
                    "{name}: {r} is every bucket, stream or table"
                );
            }
        }
    }
}

#[test]
fn the_aurora_role_reads_only_what_the_loader_loads() {
    let template = template();
    let policy = policy("aurora-load-from-s3");
    // The AWS-documented minimum for LOAD DATA FROM S3: ListBucket, GetObject,
    // GetObjectVersion.
    assert_eq!(
        policy.allowed_actions(),
        ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]
            .map(str::to_owned)
            .into()
    );
    let loader = uses(&template, "chief-loader");
    // The loader's table files and the MANIFESTs it writes are what Aurora reads.
    let mut wanted = loader.read.clone();
    wanted.extend(loader.written.iter().cloned());
    for (bucket, key) in &wanted {
        for action in ["s3:GetObject", "s3:GetObjectVersion"] {
            let r = Request::new(action, object_arn(bucket, key));
            assert!(policy.allows(&r), "Aurora cannot {r}");
        }
    }
    for (bucket, prefix) in &loader.listed {
        let r = Request::new("s3:ListBucket", bucket_arn(bucket)).with("s3:prefix", prefix);
        assert!(policy.allows(&r), "Aurora cannot {r}");
    }
    // Not the dead letters, not the other executors' files, never a write.
    let executors = ["chief-order-es-s3", "chief-jobresult-es"];
    for e in executors {
        for (bucket, key) in &uses(&template, e).written {
            let r = Request::new("s3:GetObject", object_arn(bucket, key));
            assert!(!policy.allows(&r), "Aurora can {r}");
        }
    }
    for (bucket, key) in &wanted {
        let r = Request::new("s3:PutObject", object_arn(bucket, key));
        assert!(!policy.allows(&r), "Aurora can {r}");
    }
}

#[test]
fn bootstrap_policies_allow_exactly_the_aws_cli_calls_of_the_user_data() {
    let template = template();
    for (launch_template, bootstrap) in BOOTSTRAPS {
        let script = user_data(&template, launch_template);
        let policy = policy(bootstrap);
        let mut needed = BTreeSet::new();
        let mut used = BTreeSet::new();
        for call in userdata::cli_calls(&script) {
            let r = match (call.service.as_str(), call.command.as_str()) {
                ("s3", "cp") => {
                    let source = call
                        .args
                        .iter()
                        .find_map(|a| a.strip_prefix("s3://"))
                        .unwrap_or_else(|| {
                            panic!("{launch_template}: aws s3 cp from no s3:// URL")
                        });
                    Request::new("s3:GetObject", format!("arn:aws:s3:::{source}"))
                }
                ("secretsmanager", "get-secret-value") => Request::new(
                    "secretsmanager:GetSecretValue",
                    call.option("--secret-id").unwrap_or_else(|| {
                        panic!("{launch_template}: get-secret-value without --secret-id")
                    }),
                ),
                (s, c) => panic!(
                    "{launch_template} runs `aws {s} {c}`: map it to its IAM action in this test"
                ),
            };
            assert!(
                policy.allows(&r),
                "{launch_template}: {r} is not allowed by {bootstrap}.json"
            );
            needed.insert(r.action.clone());
            used.extend(policy.used_by(&r));
        }
        // ship-journal.sh: the CloudWatch agent writes the instance's streams in the group.
        let (group, _) = shipped_journal(&script);
        for (action, resource) in [
            ("logs:CreateLogStream", "log-stream:i-0123/chief-x"),
            ("logs:PutLogEvents", "log-stream:i-0123/chief-x"),
            ("logs:DescribeLogStreams", "*"),
        ] {
            let r = Request::new(
                action,
                format!("arn:aws:logs:eu-west-1:111122223333:log-group:{group}:{resource}"),
            );
            assert!(
                policy.allows(&r),
                "{launch_template}: {r} is not allowed by {bootstrap}.json"
            );
            needed.insert(r.action.clone());
            used.extend(policy.used_by(&r));
        }
        assert_eq!(policy.allowed_actions(), needed, "{bootstrap}.json");
        for (i, s) in policy.statements.iter().enumerate() {
            for resource in &s.resources {
                assert!(
                    used.contains(&(i, resource.clone())),
                    "{bootstrap}.json grants {resource}, which the user data of {launch_template} does not use"
                );
            }
        }
    }
}

#[test]
fn the_producer_library_links_no_pipeline_model_generator_or_sink() {
    // A service that adds `chief-producer` to its Cargo.toml gets the producer, the
    // aggregation format and the stream client, not the executors' model and sinks
    // (S3 archive, Elasticsearch), the fake-data generator or a command line: those
    // belong to the `chief-producer` binary (crate `chief-producer-cli`).
    let root = chief_deploy_check::workspace_root();
    let ws = Workspace::load(&root).unwrap_or_else(|e| panic!("{e}"));
    let linked: Vec<&str> = ws
        .linked_members("chief-producer")
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        linked,
        [
            "chief-aggregation",
            "chief-config",
            "chief-producer",
            "chief-stream"
        ]
    );
    let package = ws
        .package_of("chief-producer")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        package.name, "chief-producer-cli",
        "the binary is its own crate"
    );
    let library = ws
        .linked_members("chief-producer")
        .into_iter()
        .find(|p| p.name == "chief-producer")
        .expect("the library");
    for dep in [
        "fake",
        "elasticsearch",
        "clap",
        "aws-sdk-s3",
        "chief-pipeline",
        "chief-datagen",
    ] {
        assert!(
            !library.deps.iter().any(|d| d == dep),
            "chief-producer depends on {dep}"
        );
    }
}
