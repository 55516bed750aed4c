//! The service with exactly the environment the Terraform gives it, behind
//! the Cloud Run front end configured as the Terraform configures Cloud Run.
//!
//! `terraform/modules/service-env` (no provider; the gcp module uses it for
//! the service's env, its invokers, the push audience and the Eventarc
//! trigger's account) is rendered with `terraform apply` from
//! `tests/fixtures/terraform/service-env.tfvars`, plus the role, bucket,
//! prefix and audience of the AWS half that deploy/check.sh applied to moto
//! (`$TF_OUTPUTS_FILE`). The binary runs with that environment and nothing
//! else but the emulators' endpoints, and the test drives: a Pub/Sub put
//! through the emulator's push with the subscription's OIDC token, a
//! finalize of the source bucket delivered as the Terraform wires it (a
//! Cloud Storage notification pushed to /pubsub, or an Eventarc CloudEvent
//! to /events) from the events account, an HTTP call from an
//! additional invoker, a caller who is no invoker (403 at the front end) and
//! an invoker the service does not allow (a member of an invoker group:
//! 403 from the service).
//!
//! Without `$TF_OUTPUTS_FILE` the test fails when `CI=true` and is skipped
//! otherwise, as tests/integration/deploy.rs.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::{CloudRunConfig, MetadataConfig, PushConfig, PushShim, StsGate};
use common::cloud_run::start_front_end;
use common::gcs::Gcs;
use common::pubsub::PushTopic;
use common::*;
use serde_json::{json, Value};

struct AwsHalf {
    role_arn: String,
    bucket: String,
    prefix: String,
    target_audience: String,
    unique_id: String,
}

fn aws_half() -> Option<AwsHalf> {
    let path = std::env::var("TF_OUTPUTS_FILE")
        .ok()
        .filter(|p| !p.is_empty())?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{path}: {e}"),
    };
    let json: Value = serde_json::from_str(&text).unwrap();
    let value = |n: &str| match &json[n]["value"] {
        Value::String(s) => s.clone(),
        Value::Null => panic!("{path}: no output {n:?}"),
        other => other.to_string(),
    };
    Some(AwsHalf {
        role_arn: value("role_arn"),
        bucket: value("bucket_name"),
        prefix: value("s3_prefix"),
        target_audience: value("target_audience"),
        unique_id: value("google_service_account_unique_id"),
    })
}

/// `terraform apply` of the provider-free service-env module into a scratch
/// state, from the fixture's variables plus `vars`; its outputs.
pub(crate) fn render(vars: &[(&str, String)]) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    render_module(
        "service-env",
        Some(&root.join("tests/fixtures/terraform/service-env.tfvars")),
        vars,
    )
}

/// `terraform apply` of `terraform/modules/<module>` (a module without
/// providers) into a scratch state; its outputs by name.
pub(crate) fn render_module(
    module: &str,
    var_file: Option<&Path>,
    vars: &[(&str, String)],
) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let module = root.join("terraform/modules").join(module);
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let scratch = std::env::temp_dir().join(format!("bridge-tf-env-{n}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let tf = |args: &[String]| {
        let out = Command::new("terraform")
            .arg(format!("-chdir={}", module.display()))
            .args(args)
            .env("TF_DATA_DIR", scratch.join(".terraform"))
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env("TF_IN_AUTOMATION", "1")
            .output()
            .expect("terraform on PATH");
        assert!(
            out.status.success(),
            "terraform {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let state = scratch.join("terraform.tfstate").display().to_string();
    tf(&[
        "init".into(),
        "-input=false".into(),
        "-backend=false".into(),
        "-plugin-dir=/opt/tf-plugins".into(),
        "-no-color".into(),
    ]);
    let mut apply = vec![
        "apply".to_string(),
        "-input=false".into(),
        "-auto-approve".into(),
        "-no-color".into(),
        format!("-state={state}"),
    ];
    if let Some(f) = var_file {
        apply.push(format!("-var-file={}", f.display()));
    }
    for (k, v) in vars {
        apply.push(format!("-var={k}={v}"));
    }
    tf(&apply);
    let out = tf(&[
        "output".into(),
        "-json".into(),
        "-no-color".into(),
        format!("-state={state}"),
    ]);
    let _ = std::fs::remove_dir_all(&scratch);
    let v: Value = serde_json::from_slice(&out).unwrap();
    let mut flat = json!({});
    for (k, o) in v.as_object().unwrap() {
        flat[k] = o["value"].clone();
    }
    flat
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terraform_environment_behind_the_front_end() {
    let Some(d) = aws_half() else {
        let why = "TF_OUTPUTS_FILE is unset or names no file: run deploy/check.sh against \
                   the rig's moto, or scripts/test.sh";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("skipped: {why}");
        return;
    };
    let gcs = Gcs::new(&rig());
    let source_bucket = gcs.bucket("tfenv").await;
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("{}tfenv-{n}/", d.prefix);
    let out = render(&[
        ("target_audience", d.target_audience.clone()),
        ("aws_role_arn", d.role_arn.clone()),
        ("s3_bucket", d.bucket.clone()),
        ("s3_prefix", prefix.clone()),
        ("gcs_source_bucket", source_bucket.clone()),
    ]);
    let env: BTreeMap<String, String> = serde_json::from_value(out["env"].clone()).unwrap();
    let service_url = out["service_url"].as_str().unwrap().to_owned();
    assert_eq!(
        service_url,
        "https://gcp-aws-bridge-123456789012.europe-west1.run.app"
    );
    assert_eq!(env["AUTH_MODE"], "cloud-run-iam", "the Terraform default");
    assert_eq!(env["GCS_SOURCE_BUCKETS"], source_bucket);
    assert_eq!(out["container_port_name"], "h2c");
    let push_sa = out["push_service_account_email"]
        .as_str()
        .unwrap()
        .to_owned();
    let events_sa = out["eventarc_service_account_email"]
        .as_str()
        .unwrap()
        .to_owned();
    let invokers = strings(&out["invoker_members"]);
    assert!(invokers.contains(&format!("serviceAccount:{push_sa}")));
    assert!(invokers.contains(&format!("serviceAccount:{events_sa}")));

    // Two doors: the service's own tasks go to its tasks topic, pushed to
    // /tasks by an account of its own that invokes the service but is not
    // allowed at the outside doors.
    assert!(!env.contains_key("PUBSUB_TOPIC"), "replaced by TASKS_TOPIC");
    assert_eq!(
        env["TASKS_TOPIC"],
        "projects/bridge-test/topics/gcp-aws-bridge-tasks"
    );
    let tasks_sa = out["tasks_push_service_account_email"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(env["TASKS_PUSH_EMAIL"], tasks_sa);
    assert_ne!(tasks_sa, push_sa);
    assert_ne!(tasks_sa, events_sa);
    assert!(invokers.contains(&format!("serviceAccount:{tasks_sa}")));
    assert!(
        !env["AUTH_ALLOWED_EMAILS"].split(',').any(|e| e == tasks_sa),
        "the tasks account is allowed at /tasks only"
    );
    assert_eq!(out["tasks_push_endpoint"], format!("{service_url}/tasks"));
    assert_eq!(env["COMMAND_OPS"], "put,copy,delete,replicate,sync");
    assert_eq!(env["SYNC_DELETE"], "false");

    // All four event types of the source bucket, as Eventarc types and as
    // notification types; the default delivery is the notification, pushed
    // to /pubsub (its subscription has the dead-letter topic).
    let gcs_events = out["gcs_events"].as_object().unwrap();
    let kinds = |field: &str| -> Vec<String> {
        let mut v: Vec<String> = gcs_events
            .values()
            .map(|e| e[field].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        kinds("eventarc"),
        [
            "google.cloud.storage.object.v1.archived",
            "google.cloud.storage.object.v1.deleted",
            "google.cloud.storage.object.v1.finalized",
            "google.cloud.storage.object.v1.metadataUpdated",
        ]
    );
    assert_eq!(
        kinds("notification"),
        [
            "OBJECT_ARCHIVE",
            "OBJECT_DELETE",
            "OBJECT_FINALIZE",
            "OBJECT_METADATA_UPDATE",
        ]
    );
    assert_eq!(out["gcs_event_delivery"], "notification");
    let events_path = out["gcs_events_path"].as_str().unwrap().to_owned();
    assert_eq!(events_path, "/pubsub");

    // moto cannot evaluate the TLS-only bucket policy (see tests/integration/deploy.rs).
    admin_s3()
        .delete_bucket_policy()
        .bucket(&d.bucket)
        .send()
        .await
        .expect("remove the TLS-only bucket policy moto cannot evaluate");

    // The emulators, with the service account the trust policy names.
    let mut w = World::with_metadata(
        "tfenv",
        MetadataConfig {
            unique_id: d.unique_id.clone(),
            email: format!("gcp-aws-bridge@{}.iam.gserviceaccount.com", "bridge-test"),
            ..MetadataConfig::default()
        },
    )
    .await;
    w.proxy.set_sts_gate(Some(StsGate {
        jwks_url: w.metadata.jwks_url(),
        oaud: d.target_audience.clone(),
        aud: d.unique_id.clone(),
        sub: d.unique_id.clone(),
    }));
    w.bucket = d.bucket.clone();
    w.prefix = prefix.clone();
    // Exactly the rendered environment, plus where the emulators are.
    let endpoints = [
        ("AWS_ENDPOINT_URL".to_owned(), w.proxy.url()),
        ("S3_FORCE_PATH_STYLE".to_owned(), "true".to_owned()),
        ("GCE_METADATA_HOST".to_owned(), w.metadata.host()),
        ("GOOGLE_CERTS_URL".to_owned(), w.metadata.jwks_url()),
        (
            "STORAGE_EMULATOR_HOST".to_owned(),
            w.rig["STORAGE_EMULATOR_HOST"].clone(),
        ),
    ];
    for (k, _) in &endpoints {
        assert!(
            !env.contains_key(k),
            "{k}: the Terraform sets an emulator variable"
        );
    }
    let mut run_env: Vec<(String, String)> = env.clone().into_iter().collect();
    run_env.extend(endpoints);

    // Cloud Run as the Terraform configures it. The group invoker's member
    // is listed by email: the front end resolves no groups.
    let group_member = "alice@example.com";
    let mut members = invokers.clone();
    members.push(format!("user:{group_member}"));
    let front = start_front_end(
        CloudRunConfig {
            service: "gcp-aws-bridge".into(),
            revision: "gcp-aws-bridge-00001-tf".into(),
            url: Some(service_url.clone()),
            audiences: strings(&out["custom_audiences"]),
            invokers: members,
            jwks_url: w.metadata.jwks_url(),
            http2: out["container_port_name"] == "h2c",
            startup_probe: Some("/healthz".into()),
            ..CloudRunConfig::default()
        },
        &run_env,
        1,
    )
    .await;
    let log = front.all_output();
    assert!(log.contains("AUTH_MODE=cloud-run-iam"), "{log}");

    // 1. Pub/Sub push through the emulator, with the subscription's token.
    let push = PushShim::start(PushConfig {
        target: front.url(),
        service_account: push_sa.clone(),
        audience: Some(out["push_audience"].as_str().unwrap().to_owned()),
        metadata_url: w.metadata.base_url(),
    })
    .await;
    let topic = PushTopic::create(&w, "tfenv", &format!("{}/pubsub", push.url())).await;
    let cmd = json!({"op": "put", "key": "from-pubsub.txt", "body": "pushed"});
    topic
        .publish(&[json!({"data": STANDARD.encode(cmd.to_string())})])
        .await;

    // 2. An object finalized in the source bucket, delivered as the
    // Terraform wires it, with the events account's token for the service
    // URL: a Cloud Storage notification (Pub/Sub push to /pubsub) or an
    // Eventarc CloudEvent (/events).
    let obj = gcs
        .upload(
            &source_bucket,
            "from-gcs.txt",
            b"replicated",
            json!({"contentType": "text/plain"}),
        )
        .await;
    let events = PushShim::start(PushConfig {
        target: front.url(),
        service_account: events_sa.clone(),
        audience: Some(service_url.clone()),
        metadata_url: w.metadata.base_url(),
    })
    .await;
    let r = if events_path == "/events" {
        storage_event(
            reqwest::Client::new().post(format!("{}/events", events.url())),
            "tfenv-1",
            "finalized",
            &obj,
        )
        .send()
        .await
        .unwrap()
    } else {
        let generation = match &obj["generation"] {
            Value::String(g) => g.clone(),
            other => other.to_string(),
        };
        let envelope = json!({
            "message": {
                "data": STANDARD.encode(obj.to_string()),
                "attributes": {
                    "eventType": "OBJECT_FINALIZE",
                    "payloadFormat": "JSON_API_V1",
                    "bucketId": source_bucket,
                    "objectId": "from-gcs.txt",
                    "objectGeneration": generation,
                    "notificationConfig": format!(
                        "projects/_/buckets/{source_bucket}/notificationConfigs/1"
                    ),
                },
                "messageId": "tfenv-1",
                "message_id": "tfenv-1",
                "publishTime": "2026-01-01T00:00:00Z",
                "publish_time": "2026-01-01T00:00:00Z",
            },
            "subscription": "projects/bridge-test/subscriptions/gcp-aws-bridge-gcs-events",
        });
        reqwest::Client::new()
            .post(format!("{}{events_path}", events.url()))
            .json(&envelope)
            .send()
            .await
            .unwrap()
    };
    let status = r.status();
    assert!(
        status.is_success(),
        "finalize at {events_path}: {status} {}\n{}",
        r.text().await.unwrap(),
        front.all_output()
    );

    // 3. An additional invoker over HTTP (a custom audience works too).
    let caller = |email: &str, aud: &str| {
        let mut c = w.metadata.identity_claims(aud);
        c["email"] = json!(email);
        w.metadata.mint(c)
    };
    let http = reqwest::Client::new();
    let put = |token: String, key: &str| {
        http.put(format!("{}/v1/objects/{key}", front.url()))
            .bearer_auth(token)
            .body("from an invoker")
    };
    let reports = "reports@bridge-test.iam.gserviceaccount.com";
    let r = put(caller(reports, &service_url), "from-http.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = put(
        caller(reports, "https://bridge.example.com"),
        "custom-aud.txt",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // 4. Not an invoker: Cloud Run refuses, the service never sees it. The
    // emulator's push (step 1) arrives when it will: wait for its answer so
    // that it is not counted as the stranger's request.
    eventually(
        Duration::from_secs(60),
        || format!("no push answered: {:?}", push.statuses()),
        || async {
            push.statuses()
                .iter()
                .any(|s| (200..300).contains(s))
                .then_some(())
        },
    )
    .await;
    let served = front.requests_per_instance()[0];
    let refused = front.refused();
    let r = put(
        caller("stranger@bridge-test.iam.gserviceaccount.com", &service_url),
        "no.txt",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(front.refused(), refused + 1, "the front end answered");
    assert_eq!(front.requests_per_instance()[0], served);

    // 5. An invoker (through the group) the service does not allow.
    let r = put(caller(group_member, &service_url), "group.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden", "the service's answer: {v}");
    assert_eq!(front.requests_per_instance()[0], served + 1);

    // What landed: the push, the replica, the two HTTP puts.
    let want: Vec<String> = [
        "custom-aud.txt",
        "from-gcs.txt",
        "from-http.txt",
        "from-pubsub.txt",
    ]
    .iter()
    .map(|k| format!("{prefix}{k}"))
    .collect();
    eventually(
        Duration::from_secs(60),
        || format!("not {want:?}\n{}", front.all_output()),
        || async {
            let mut keys = admin_list(&d.bucket, &prefix).await;
            keys.sort();
            (keys == want).then_some(())
        },
    )
    .await;
    assert_eq!(
        admin_get(&d.bucket, &format!("{prefix}from-gcs.txt"))
            .await
            .as_deref(),
        Some(&b"replicated"[..])
    );
    assert!(push.statuses().iter().all(|s| (200..300).contains(s)));
}
