//! The AWS SDK for Rust's default credentials chain next to
//! `gcp-aws-bridge credential-server`, configured only through the
//! container-credentials variables (see tests/integration/sdk_clients.rs for the other
//! clients and the path the requests take).
//!
//! The default chain reads the process environment and nothing else (its
//! injectable environment is crate-private), so this test sets variables on
//! its own process, and runs its scenarios one after the other. The suite
//! runs under cargo-nextest, which gives every test a process of its own
//! (`scripts/test.sh` installs it when it is missing).

use crate::common;
use crate::common::require_rig;

use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_smithy_types::retry::RetryConfig;
use common::expiring::ExpiringAws;
use common::sidecar::{random_token, sidecar_env, Sidecar};
use common::*;

fn set_client_env(server: &Sidecar, aws: &ExpiringAws, token: Option<&str>, none: &str) {
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ENDPOINT_URL_S3",
    ] {
        std::env::remove_var(k);
    }
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ENDPOINT_URL", aws.url());
    std::env::set_var("AWS_CONFIG_FILE", none);
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", none);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        format!("{}/v1/credentials", server.url),
    );
    if let Some(t) = token {
        std::env::set_var("AWS_CONTAINER_AUTHORIZATION_TOKEN", t);
    }
}

/// Clients built as an application would: `aws_config::defaults`. The HTTP
/// client is given because this crate builds aws-config without its default
/// TLS features; retries are off so that a failed call shows.
async fn clients() -> (aws_sdk_sts::Client, aws_sdk_s3::Client) {
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .http_client(gcp_aws_bridge::aws::http_client())
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    (aws_sdk_sts::Client::new(&conf), s3)
}

async fn round(
    sts: &aws_sdk_sts::Client,
    s3: &aws_sdk_s3::Client,
    w: &World,
    i: usize,
) -> Result<String, String> {
    let who = sts.get_caller_identity().send().await.map_err(|e| {
        format!(
            "GetCallerIdentity: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&e)
        )
    })?;
    s3.put_object()
        .bucket(&w.bucket)
        .key(w.full(&format!("rust/{i}")))
        .body(b"rust".to_vec().into())
        .send()
        .await
        .map_err(|e| {
            format!(
                "PutObject: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        })?;
    Ok(who.arn().unwrap_or_default().to_owned())
}

fn assert_all_from_server(w: &World, aws: &ExpiringAws) -> usize {
    let issued = aws.issued();
    let used = aws.used();
    assert!(!used.is_empty());
    for k in used.keys() {
        assert!(
            issued.contains_key(k),
            "{k} was not handed out by the server"
        );
    }
    assert_eq!(issued.len(), w.proxy.count("AssumeRoleWithWebIdentity"));
    used.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_default_chain_uses_the_credential_server() {
    require_rig!();
    let w = World::new("rust-sdk").await;
    let aws = ExpiringAws::start(&w.proxy.url()).await;
    let token = random_token();
    let none = std::env::temp_dir().join("bridge-rust-sdk-no-such-file");
    let none = none.to_str().unwrap();
    let mut env = sidecar_env(&w);
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), aws.url()));
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), token.clone()));

    // Many calls, one STS call.
    let server = Sidecar::start(&env).await;
    set_client_env(&server, &aws, Some(&token), none);
    let (sts, s3) = clients().await;
    for i in 0..10 {
        let arn = round(&sts, &s3, &w, i).await.expect("a call failed");
        assert!(arn.contains("assumed-role/bridge-test-role/"), "{arn}");
    }
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    assert_eq!(assert_all_from_server(&w, &aws), 1);

    // No token, a wrong token.
    for (t, status) in [(None, "401"), (Some("not-the-token"), "403")] {
        set_client_env(&server, &aws, t, none);
        let (sts, s3) = clients().await;
        let e = round(&sts, &s3, &w, 99).await.expect_err("refused");
        assert!(e.contains(status), "{status} not in: {e}");
    }
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    drop(server);

    // Credentials that live 20 s, over 30 s of calls.
    aws.set_lifetime(Some(Duration::from_secs(20)));
    let server = Sidecar::start(&env).await;
    set_client_env(&server, &aws, Some(&token), none);
    let (sts, s3) = clients().await;
    let started = Instant::now();
    let mut i = 100;
    while started.elapsed() < Duration::from_secs(30) {
        round(&sts, &s3, &w, i)
            .await
            .expect("no call fails across refreshes");
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(aws.expired_refusals(), 0);
    let calls = w.proxy.count("AssumeRoleWithWebIdentity");
    assert!(calls >= 4, "{calls} STS calls");
    assert!(assert_all_from_server(&w, &aws) >= 3);
}
