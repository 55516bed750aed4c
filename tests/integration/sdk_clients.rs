//! Real, unmodified AWS clients next to `gcp-aws-bridge credential-server`,
//! each configured for credentials only through the container-credentials
//! variables (`AWS_CONTAINER_CREDENTIALS_FULL_URI`,
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`): the AWS CLI and boto3 (PyPI, in the
//! rig's Python), the AWS SDK for JavaScript v3 (npm, `tests/clients/js`)
//! and Terraform's AWS provider (`tests/clients/terraform`). The Rust SDK's
//! default chain is tested in `sdk_rust.rs`.
//!
//! The path: client → the expiring pass-through (`tests/integration/common/expiring.rs`:
//! checks `Expiration` as AWS does, shortens it on demand) → the fault proxy
//! (counts calls, checks the Google token against the trust policy) → moto.
//! The credential server's STS calls take the same path.
//!
//! For each client:
//! - many calls cost one STS call, and every request was signed with
//!   credentials the server handed out;
//! - a missing or a wrong token fails clearly (401 / 403 from the server);
//! - credentials that live 20 s are replaced before they expire, over 30 s
//!   of calls, with no failed call (a call signed with expired credentials
//!   would get `ExpiredToken`).
//!
//! The clients come from `scripts/test-clients.sh` (scripts/test.sh runs it).

use crate::common;
use crate::common::require_rig;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::expiring::ExpiringAws;
use common::sidecar::{random_token, sidecar_env, Sidecar};
use common::*;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The lifetime of the short-lived credentials, and how long calls go on.
const SHORT_LIFETIME: Duration = Duration::from_secs(20);
const SHORT_RUN: Duration = Duration::from_secs(30);

struct Stand {
    w: World,
    aws: ExpiringAws,
    token: String,
    home: std::path::PathBuf,
}

impl Stand {
    async fn new(name: &str) -> Stand {
        let w = World::new(name).await;
        let aws = ExpiringAws::start(&w.proxy.url()).await;
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let home =
            std::env::temp_dir().join(format!("bridge-sdk-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        Stand {
            w,
            aws,
            token: random_token(),
            home,
        }
    }

    /// A credential server whose STS calls go through the pass-through.
    async fn sidecar(&self) -> Sidecar {
        let mut env = sidecar_env(&self.w);
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL".into(), self.aws.url()));
        env.push((
            "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
            self.token.clone(),
        ));
        Sidecar::start(&env).await
    }

    /// A client's whole environment: the container-credentials variables
    /// (with `token`, if any), the region and endpoint, and nothing that
    /// could supply other credentials (no profile files, no instance
    /// metadata).
    fn client_env(&self, server: &Sidecar, token: Option<&str>) -> Vec<(String, String)> {
        let none = self.home.join("none");
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), self.home.display().to_string()),
            ("AWS_REGION".into(), "us-east-1".into()),
            // The AWS CLI v1 and boto3 read this one.
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL".into(), self.aws.url()),
            ("AWS_CONFIG_FILE".into(), none.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                none.display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("CHECKPOINT_DISABLE".into(), "1".into()),
            ("TF_CLI_CONFIG_FILE".into(), "/dev/null".into()),
            ("TF_IN_AUTOMATION".into(), "1".into()),
        ];
        env.extend(
            server
                .client_env("/v1/credentials", token.unwrap_or(""))
                .into_iter()
                .filter(|(k, _)| token.is_some() || k != "AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        );
        env
    }

    fn sts_calls(&self) -> usize {
        self.w.proxy.count("AssumeRoleWithWebIdentity")
    }

    /// Every signed request used credentials the server handed out; the
    /// number of distinct ones used.
    fn assert_all_from_server(&self) -> usize {
        let issued = self.aws.issued();
        let used = self.aws.used();
        assert!(!used.is_empty(), "no signed request seen");
        for key in used.keys() {
            assert!(
                issued.contains_key(key),
                "a request was signed with {key}, which the credential server did not hand out"
            );
        }
        assert_eq!(issued.len(), self.sts_calls());
        used.len()
    }
}

impl Drop for Stand {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

async fn run(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    dir: &str,
) -> std::process::Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(300), child)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in 300 s"))
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A client program that takes `BUCKET PREFIX MIN_SECONDS MIN_ROUNDS` and
/// prints `{"rounds","failures","arn"}` (tests/clients/).
struct Program {
    program: String,
    script: String,
    dir: String,
}

impl Program {
    async fn rounds(
        &self,
        s: &Stand,
        env: &[(String, String)],
        secs: u64,
        rounds: u32,
    ) -> std::process::Output {
        let args = vec![
            self.script.clone(),
            s.w.bucket.clone(),
            s.w.prefix.clone(),
            secs.to_string(),
            rounds.to_string(),
        ];
        run(&self.program, &args, env, &self.dir).await
    }
}

/// The three checks for a client program. `says_status`: the client's
/// error names the server's status (the JavaScript SDK's default chain says
/// only that no provider could load credentials; the server's log has the
/// refusal).
async fn check_program(name: &str, p: Program, says_status: bool) {
    let s = Stand::new(name).await;
    let server = s.sidecar().await;

    // Many calls, one STS call, all with the server's credentials.
    let out = p
        .rounds(&s, &s.client_env(&server, Some(&s.token)), 0, 10)
        .await;
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out)));
    assert_eq!(v["rounds"], 10, "{v}");
    assert!(
        v["arn"]
            .as_str()
            .unwrap()
            .contains("assumed-role/bridge-test-role/"),
        "{v}"
    );
    assert_eq!(s.sts_calls(), 1, "20 SDK calls, one STS call");
    assert_eq!(s.assert_all_from_server(), 1);
    assert_eq!(s.w.proxy.count("GetCallerIdentity"), 10);
    assert_eq!(s.w.proxy.count("PutObject"), 10);

    // No token, a wrong token: refused by the server, and the client says so.
    for (token, status, code) in [
        (None, "401", "unauthenticated"),
        (Some("not-the-token"), "403", "forbidden"),
    ] {
        let out = p.rounds(&s, &s.client_env(&server, token), 0, 1).await;
        assert!(!out.status.success(), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains("redential"), "no word of credentials in:\n{t}");
        if says_status {
            assert!(t.contains(status), "no {status} in:\n{t}");
        }
        server
            .stdout
            .wait_for(&format!("\"code\":\"{code}\""))
            .await;
    }
    assert_eq!(s.sts_calls(), 1);
    drop(server);

    // Short-lived credentials, replaced before they expire.
    s.aws.set_lifetime(Some(SHORT_LIFETIME));
    let server = s.sidecar().await;
    let out = p
        .rounds(
            &s,
            &s.client_env(&server, Some(&s.token)),
            SHORT_RUN.as_secs(),
            1,
        )
        .await;
    assert!(out.status.success(), "a call failed: {}", text(&out));
    assert_eq!(s.aws.expired_refusals(), 0);
    assert!(s.sts_calls() >= 3, "{} STS calls", s.sts_calls());
    assert!(s.assert_all_from_server() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_uses_the_credential_server() {
    require_rig!();
    let python = tokio::task::spawn_blocking(rig_python).await.unwrap();
    check_program(
        "boto3",
        Program {
            program: python,
            script: format!("{ROOT}/tests/clients/boto3_client.py"),
            dir: ROOT.into(),
        },
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_for_javascript_v3_uses_the_credential_server() {
    require_rig!();
    let dir = format!("{ROOT}/tests/clients/js");
    assert!(
        std::path::Path::new(&format!("{dir}/node_modules/@aws-sdk/client-s3")).is_dir(),
        "the npm packages are missing: run scripts/test-clients.sh"
    );
    check_program(
        "js",
        Program {
            program: "node".into(),
            script: "client.mjs".into(),
            dir,
        },
        false,
    )
    .await;
}

/// The AWS CLI: each command is a process of its own, so each one asks the
/// server; the server asks STS once per credential lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_uses_the_credential_server() {
    require_rig!();
    let python = tokio::task::spawn_blocking(rig_python).await.unwrap();
    let s = Stand::new("aws-cli").await;
    let server = s.sidecar().await;
    let aws = |env: Vec<(String, String)>, args: &[&str]| {
        let python = python.clone();
        let mut a = vec!["-m".to_owned(), "awscli".to_owned()];
        a.extend(args.iter().map(|s| s.to_string()));
        async move { run(&python, &a, &env, ROOT).await }
    };
    let key = format!("{}aws-cli.txt", s.w.prefix);
    let body = s.home.join("body.txt");
    std::fs::write(&body, "from the AWS CLI").unwrap();
    let put = [
        "s3api",
        "put-object",
        "--bucket",
        &s.w.bucket,
        "--key",
        &key,
        "--body",
        body.to_str().unwrap(),
    ];
    let ok = s.client_env(&server, Some(&s.token));
    for _ in 0..5 {
        let out = aws(
            ok.clone(),
            &["sts", "get-caller-identity", "--output", "json"],
        )
        .await;
        assert!(out.status.success(), "{}", text(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["Arn"]
            .as_str()
            .unwrap()
            .contains("assumed-role/bridge-test-role/"));
        let out = aws(ok.clone(), &put).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(s.sts_calls(), 1, "ten commands, one STS call");
    assert_eq!(s.assert_all_from_server(), 1);
    assert_eq!(
        admin_get(&s.w.bucket, &key).await.unwrap(),
        b"from the AWS CLI"
    );

    for (token, status) in [(None, "401"), (Some("not-the-token"), "403")] {
        let out = aws(
            s.client_env(&server, token),
            &["sts", "get-caller-identity"],
        )
        .await;
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains(status) && t.contains("container"), "{t}");
    }
    drop(server);

    s.aws.set_lifetime(Some(SHORT_LIFETIME));
    let server = s.sidecar().await;
    let ok = s.client_env(&server, Some(&s.token));
    let started = Instant::now();
    let mut commands = 0;
    while started.elapsed() < SHORT_RUN {
        let out = aws(ok.clone(), &["sts", "get-caller-identity"]).await;
        assert!(out.status.success(), "a call failed: {}", text(&out));
        commands += 1;
    }
    assert!(commands >= 5, "{commands}");
    assert_eq!(s.aws.expired_refusals(), 0);
    assert!(s.sts_calls() >= 3, "{} STS calls", s.sts_calls());
    assert!(s.assert_all_from_server() >= 3);
}

/// Terraform's AWS provider: an `aws_caller_identity` data source and an
/// `aws_s3_object`, applied against moto.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_aws_provider_uses_the_credential_server() {
    require_rig!();
    let s = Stand::new("terraform").await;
    let dir = s.home.join("tf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        format!("{ROOT}/tests/clients/terraform/main.tf"),
        dir.join("main.tf"),
    )
    .unwrap();
    let plugins = std::env::var("TF_PLUGIN_DIR").unwrap_or("/opt/tf-plugins".into());
    let key = format!("{}terraform.txt", s.w.prefix);
    let vars = [
        format!("-var=endpoint={}", s.aws.url()),
        format!("-var=bucket={}", s.w.bucket),
        format!("-var=key={key}"),
    ];
    let tf = |env: Vec<(String, String)>, args: Vec<String>| {
        let dir = dir.display().to_string();
        async move { run("terraform", &args, &env, &dir).await }
    };
    let cmd = |words: &[&str], with_vars: bool| -> Vec<String> {
        let mut v: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        v.push("-no-color".into());
        v.push("-input=false".into());
        if with_vars {
            v.extend(vars.iter().cloned());
        }
        v
    };
    let server = s.sidecar().await;
    let ok = s.client_env(&server, Some(&s.token));
    let out = tf(
        ok.clone(),
        cmd(&["init", &format!("-plugin-dir={plugins}")], false),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let out = tf(ok.clone(), cmd(&["apply", "-auto-approve"], true)).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = tf(
        ok.clone(),
        vec!["output".into(), "-raw".into(), "arn".into()],
    )
    .await;
    let arn = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        arn.contains("assumed-role/bridge-test-role/"),
        "{}",
        text(&out)
    );
    assert!(admin_get(&s.w.bucket, &key)
        .await
        .unwrap()
        .starts_with(b"written by Terraform"));
    assert_eq!(s.sts_calls(), 1, "every provider run, one STS call");
    assert_eq!(s.assert_all_from_server(), 1);
    assert!(s.w.proxy.count("PutObject") >= 1);

    // The provider says only that it found no credentials; the server's log
    // has the refusal. (A missing token is refused the same way: the AWS
    // CLI, boto3 and JavaScript tests show that; each Terraform run costs
    // three starts of the provider.)
    let out = tf(
        s.client_env(&server, Some("not-the-token")),
        cmd(&["plan", "-refresh=true"], true),
    )
    .await;
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("No valid credential sources found"), "{t}");
    server.stdout.wait_for("\"code\":\"forbidden\"").await;
    drop(server);

    s.aws.set_lifetime(Some(SHORT_LIFETIME));
    let server = s.sidecar().await;
    let ok = s.client_env(&server, Some(&s.token));
    // Runs until the first credentials have expired; the destroy after it
    // is one more run, with fresh ones.
    let started = Instant::now();
    let mut runs = 0;
    while started.elapsed() < SHORT_RUN || runs < 1 {
        let out = tf(
            ok.clone(),
            cmd(&["apply", "-auto-approve", "-refresh=true"], true),
        )
        .await;
        assert!(out.status.success(), "a run failed: {}", text(&out));
        runs += 1;
    }
    let out = tf(ok.clone(), cmd(&["destroy", "-auto-approve"], true)).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(admin_get(&s.w.bucket, &key).await.is_none());
    assert_eq!(s.aws.expired_refusals(), 0);
    assert!(s.sts_calls() >= 3, "{} STS calls", s.sts_calls());
    let distinct: HashSet<String> = s.aws.used().into_keys().collect();
    assert!(distinct.len() >= 2, "{distinct:?}");
    s.assert_all_from_server();
}
