//! The service against what the Terraform AWS module created: deploy/check.sh
//! applies `terraform/modules/aws` (through `deploy/moto/`) into the rig's moto
//! and writes `terraform output -json` to `$TF_OUTPUTS_FILE`. This test runs
//! the real binary with that role, bucket and prefix, with a metadata server
//! whose service account has the unique id the trust policy names, and the STS
//! gate of the fault proxy checking the token's `aud`/`azp`/`sub` against the
//! module's audience and unique id (moto evaluates no trust policy itself).
//!
//! Without `$TF_OUTPUTS_FILE` the test fails when `CI=true` and is skipped
//! otherwise (run `deploy/check.sh` first, or `scripts/test.sh`).

use crate::common;

use bridge_testkit::{MetadataConfig, StsGate};
use common::*;

/// What the test needs from the Terraform outputs.
struct Deployed {
    role_arn: String,
    bucket: String,
    prefix: String,
    target_audience: String,
    unique_id: String,
}

/// Reads `$TF_OUTPUTS_FILE` (`{"name": {"value": ...}}`); `None` when the
/// variable is unset or the file is missing.
fn deployed() -> Option<Deployed> {
    let path = match std::env::var("TF_OUTPUTS_FILE") {
        Ok(p) if !p.is_empty() => p,
        _ => return None,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{path}: {e}"),
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
    let value = |name: &str| -> String {
        match &json[name]["value"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => panic!("{path}: no output {name:?}"),
            other => other.to_string(),
        }
    };
    Some(Deployed {
        role_arn: value("role_arn"),
        bucket: value("bucket_name"),
        prefix: value("s3_prefix"),
        target_audience: value("target_audience"),
        unique_id: value("google_service_account_unique_id"),
    })
}

/// A [`World`] whose service uses the deployed role, bucket and prefix (a
/// fresh sub-prefix of it per run), whose metadata server is the service
/// account the trust policy names, and whose STS gate checks what the trust
/// policy conditions on.
async fn deployed_world(name: &str, d: &Deployed) -> World {
    let mut w = World::with_metadata(
        name,
        MetadataConfig {
            unique_id: d.unique_id.clone(),
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
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    w.bucket = d.bucket.clone();
    w.prefix = format!("{}{name}-{n}/", d.prefix);
    let (bucket, prefix) = (w.bucket.clone(), w.prefix.clone());
    w.set("TARGET_AUDIENCE", &d.target_audience);
    w.set("AWS_ROLE_ARN", &d.role_arn);
    w.set("S3_BUCKET", &bucket);
    w.set("S3_PREFIX", &prefix);
    w.set("AUTH_MODE", "none");
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_into_the_terraform_applied_bucket() {
    let Some(d) = deployed() else {
        let why = "TF_OUTPUTS_FILE is unset or names no file: the Terraform outputs of \
                   deploy/check.sh are missing (run deploy/check.sh against the rig's moto, \
                   or scripts/test.sh)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("skipped: {why}");
        return;
    };
    assert!(
        d.prefix.is_empty() || d.prefix.ends_with('/'),
        "s3_prefix output {:?} should end with '/'",
        d.prefix
    );

    // moto evaluates bucket policies but has no aws:SecureTransport, and takes
    // a statement whose condition it cannot evaluate as a Deny: the module's
    // TLS-only policy (Deny s3:* when aws:SecureTransport is false), which AWS
    // applies to plain-HTTP requests only, would refuse every request to the
    // rig's plain-HTTP moto. deploy/check.sh has checked the policy's text;
    // here it is removed so that the role's own policy decides, as it does on
    // AWS over HTTPS.
    admin_s3()
        .delete_bucket_policy()
        .bucket(&d.bucket)
        .send()
        .await
        .expect("remove the TLS-only bucket policy moto cannot evaluate");

    let w = deployed_world("deploy", &d).await;
    let server = Server::start(&w.env).await;
    let client = reqwest::Client::new();

    let r = client
        .put(format!("{}/v1/objects/hello.txt", server.url))
        .header("content-type", "text/plain")
        .body("hello from the deployed role")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(
        status,
        201,
        "PUT /v1/objects/hello.txt: {text}\n{}\n{}",
        server.stdout.text(),
        server.stderr.text()
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["key"], "hello.txt", "{text}");

    assert_eq!(
        admin_get(&d.bucket, &w.full("hello.txt")).await.as_deref(),
        Some(&b"hello from the deployed role"[..]),
        "the object is not at s3://{}/{}",
        d.bucket,
        w.full("hello.txt")
    );
    // The credentials came from the role Terraform made, through the gate
    // that checked the token against the trust policy's conditions.
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);

    let r = client
        .get(format!("{}/v1/objects/hello.txt", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from the deployed role");
}

/// A Cloud Storage CloudEvent (binary mode) for `obj`, to a service with
/// `AUTH_MODE=none`; the answer's status and JSON body.
async fn event_to(
    server: &Server,
    kind: &str,
    obj: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = storage_event(
        reqwest::Client::new().post(format!("{}/events", server.url)),
        &format!("{kind}-{}", obj["generation"]),
        kind,
        obj,
    )
    .send()
    .await
    .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_deletes_on_the_versioned_terraform_bucket_remove_what_they_checked() {
    let Some(d) = deployed() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("TF_OUTPUTS_FILE is unset or names no file (run deploy/check.sh)");
        }
        eprintln!("skipped: TF_OUTPUTS_FILE is unset or names no file");
        return;
    };
    // As above: moto cannot evaluate the TLS-only bucket policy.
    admin_s3()
        .delete_bucket_policy()
        .bucket(&d.bucket)
        .send()
        .await
        .expect("remove the TLS-only bucket policy moto cannot evaluate");
    let mut w = deployed_world("versions", &d).await;
    let gcs = common::gcs::Gcs::new(&w.rig);
    let bucket = gcs.bucket("versions").await;
    w.set("GCS_SOURCE_BUCKETS", &bucket);
    let server = Server::start(&w.env).await;
    let name = "versioned.txt";
    let versions = || async {
        admin_s3()
            .list_object_versions()
            .bucket(&d.bucket)
            .prefix(w.full(name))
            .send()
            .await
            .unwrap()
    };

    // Two generations replicated: two S3 versions, the second current.
    let one = gcs
        .upload(&bucket, name, b"one", serde_json::json!({}))
        .await;
    let (s, b) = event_to(&server, "finalized", &one).await;
    assert_eq!(s, 200, "{b}\n{}", server.stdout.text());
    let two = gcs
        .upload(&bucket, name, b"two", serde_json::json!({}))
        .await;
    let (s, b) = event_to(&server, "finalized", &two).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "replicated", "{b}");
    assert_eq!(
        versions().await.versions().len(),
        2,
        "the bucket is versioned"
    );

    // A delete of generation two while generation three is replicated: the
    // delete is held after its check (it saw two's version)...
    let three = gcs
        .upload(&bucket, name, b"three", serde_json::json!({}))
        .await;
    let mut hold = w.proxy.hold_next("DeleteObject");
    let server = std::sync::Arc::new(server);
    let slow = {
        let (server, two) = (server.clone(), two.clone());
        tokio::spawn(async move { event_to(&server, "deleted", &two).await })
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), hold.arrived())
        .await
        .expect("the delete reached S3");
    let (s, b) = event_to(&server, "finalized", &three).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "replicated", "{b}");
    hold.release();
    let (s, b) = slow.await.unwrap();
    assert_eq!(s, 200, "{b}");
    // ...and removed the version it checked and the older replica of a
    // generation up to two (one), never three: three is current and alone.
    assert_eq!(
        admin_get(&d.bucket, &w.full(name)).await.as_deref(),
        Some(&b"three"[..])
    );
    let listed = versions().await;
    assert_eq!(listed.versions().len(), 1, "{:?}", listed.versions());

    // Three's delete removes three and the older replica that would have
    // become current: nothing reappears.
    gcs.delete(&bucket, name).await;
    let (s, b) = event_to(&server, "deleted", &three).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "replica_deleted", "{b}");
    assert_eq!(admin_get(&d.bucket, &w.full(name)).await, None);
    let listed = versions().await;
    assert!(listed.versions().is_empty(), "{:?}", listed.versions());
}
