//! `gcp-aws-bridge credential-server` and the cache of `credentials`, as
//! real processes against the rig: moto behind the fault proxy, whose STS
//! gate checks the Google token and the trust policy.

use crate::common;
use crate::common::{eventually, require_rig};

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::error::ProvideErrorMetadata as _;
use bridge_testkit::{Endpoint, Fault};
use common::sidecar::{random_token, sidecar_env, Sidecar};
use common::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gcp-aws-bridge");

fn s3_with(rig: &std::collections::HashMap<String, String>, v: &Value) -> aws_sdk_s3::Client {
    moto_s3(
        rig,
        v["AccessKeyId"].as_str().unwrap(),
        v["SecretAccessKey"].as_str().unwrap(),
        Some(v["Token"].as_str().unwrap()),
    )
}

fn left(v: &Value) -> time::Duration {
    let exp = time::OffsetDateTime::parse(
        v["Expiration"].as_str().expect("Expiration"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("Expiration is RFC 3339");
    assert!(v["Expiration"].as_str().unwrap().ends_with('Z'), "UTC: {v}");
    exp - time::OffsetDateTime::now_utc()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = temp_path(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every line is JSON with a severity, and none shows a secret.
fn assert_clean_log(lines: &[String], secrets: &[&str]) {
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["severity"].is_string(), "{line}");
        assert!(!line.contains("eyJ"), "a JWT in the log: {line}");
        for s in secrets {
            assert!(!line.contains(s), "a secret in the log: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_each_role_once_per_lifetime_to_the_token_holder_only() {
    require_rig!();
    let w = World::new("sidecar-roles").await;
    let token = random_token();
    let mut env = sidecar_env(&w);
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), token.clone()));
    env.push((
        "AWS_ROLES".into(),
        format!("reader={}", w.rig["RIG_READER_ROLE_ARN"]),
    ));
    assert!(
        !env.iter().any(|(k, _)| k == "S3_BUCKET"),
        "no bucket needed"
    );
    let server = Sidecar::start(&env).await;
    let http = reqwest::Client::new();
    let get = |path: &str, auth: Option<&str>| {
        let mut rb = http.get(format!("{}{path}", server.url));
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        rb.send()
    };

    // Open routes say nothing secret and call nothing.
    let r = get("/healthz", None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(w.metadata.calls(Endpoint::Identity), 0);

    // No token: 401; a wrong one: 403; both with the JSON error body.
    for (auth, status, code) in [
        (None, 401, "unauthenticated"),
        (Some("wrong-token"), 403, "forbidden"),
        (Some(&*format!("Bearer {token}")), 403, "forbidden"),
        (Some(&token[..token.len() - 1]), 403, "forbidden"),
    ] {
        for path in [
            "/v1/credentials",
            "/v1/credentials/reader",
            "/v1/credentials/nope",
        ] {
            let r = get(path, auth).await.unwrap();
            assert_eq!(r.status(), status, "{path} {auth:?}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{body}");
        }
    }
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 0);

    // 32 requests at once: one STS call, the same credentials for all.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, url, token) = (http.clone(), server.url.clone(), token.clone());
        set.spawn(async move {
            let r = http
                .get(format!("{url}/v1/credentials"))
                .header("Authorization", token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["cache-control"], "no-store");
            r.json::<Value>().await.unwrap()
        });
    }
    let mut answers = Vec::new();
    while let Some(v) = set.join_next().await {
        answers.push(v.unwrap());
    }
    let v = answers[0].clone();
    assert!(answers.iter().all(|a| a == &v), "one set of credentials");
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "AccessKeyId",
            "Expiration",
            "RoleArn",
            "SecretAccessKey",
            "Token"
        ]
    );
    assert_eq!(v["RoleArn"], w.rig["RIG_ROLE_ARN"].as_str());
    let l = left(&v);
    assert!(
        l >= time::Duration::minutes(15) && l <= time::Duration::minutes(61),
        "{l} left"
    );

    // The named role: its own STS call with the same Google token.
    let r = get("/v1/credentials/reader", Some(&token)).await.unwrap();
    assert_eq!(r.status(), 200);
    let reader: Value = r.json().await.unwrap();
    assert_eq!(reader["RoleArn"], w.rig["RIG_READER_ROLE_ARN"].as_str());
    assert_ne!(reader["AccessKeyId"], v["AccessKeyId"]);
    get("/v1/credentials/reader", Some(&token)).await.unwrap();
    get("/v1/credentials", Some(&token)).await.unwrap();
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 2);
    assert_eq!(w.metadata.calls(Endpoint::Identity), 1, "one Google token");
    let r = get("/v1/credentials/nope", Some(&token)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );

    // Each role's credentials are that role's: IAM tells them apart.
    let key = w.full("sidecar.txt");
    s3_with(&w.rig, &v)
        .put_object()
        .bucket(&w.bucket)
        .key(&key)
        .body(b"from the default role".to_vec().into())
        .send()
        .await
        .expect("the default role may write under allowed/");
    let as_reader = s3_with(&w.rig, &reader);
    let got = as_reader
        .get_object()
        .bucket(&w.bucket)
        .key(&key)
        .send()
        .await
        .expect("the reader may read");
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"from the default role"
    );
    let err = as_reader
        .put_object()
        .bucket(&w.bucket)
        .key(w.full("reader.txt"))
        .body(b"x".to_vec().into())
        .send()
        .await
        .expect_err("the reader may not write");
    assert_eq!(err.code(), Some("AccessDenied"), "{err:?}");

    // /readyz: ready, from the cache.
    let r = get("/readyz", None).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 2);

    let secrets = [
        token.as_str(),
        v["SecretAccessKey"].as_str().unwrap(),
        v["Token"].as_str().unwrap(),
        reader["SecretAccessKey"].as_str().unwrap(),
        reader["Token"].as_str().unwrap(),
    ];
    server.stdout.wait_for("credential server listening").await;
    server.stdout.wait_for("assumed AWS role").await;
    let lines = server.stdout.all();
    assert_clean_log(&lines, &secrets);
    assert!(server.stderr.text().is_empty(), "{}", server.stderr.text());

    // SIGTERM: it stops, exit 0.
    let mut server = server;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let status = eventually(
        Duration::from_secs(10),
        || "no exit after SIGTERM".into(),
        || std::future::ready(server.child.try_wait().unwrap()),
    )
    .await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_refusal_and_metadata_outage_answer_503_with_the_diagnostic_in_the_log() {
    require_rig!();
    let w = World::new("sidecar-refused").await;
    let mc = w.metadata.config();
    w.trust_someone_else();
    let token = random_token();
    let mut env = sidecar_env(&w);
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), token.clone()));
    let server = Sidecar::start(&env).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/v1/credentials", server.url))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "credentials_unavailable", "{body}");
    assert!(!body.to_string().contains("eyJ"));
    let r = http
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("not_ready") && !text.contains(&mc.unique_id),
        "{text}"
    );
    let diag = server.stdout.wait_for("accounts.google.com:oaud").await;
    let lines = server.stdout.all();
    assert!(
        diag.contains(&mc.unique_id) && diag.contains("AccessDenied"),
        "{diag}"
    );
    assert_clean_log(&lines, &[&token]);

    // The trust policy fixed: once the failure is forgotten (a few
    // seconds), a request gets credentials.
    w.trust(&mc.unique_id, &mc.unique_id);
    eventually(
        Duration::from_secs(30),
        || "never recovered".into(),
        || async {
            let r = http
                .get(format!("{}/v1/credentials", server.url))
                .header("Authorization", &token)
                .send()
                .await
                .unwrap();
            if r.status() != 200 {
                assert_eq!(r.status(), 503);
            }
            (r.status() == 200).then_some(())
        },
    )
    .await;
    drop(server);

    // A metadata server that is down: 503, after the identity source's own
    // bounded retries (at most 4 attempts: the STS provider does not retry
    // the token again).
    w.metadata.reset_calls();
    let sts_calls = w.proxy.count("AssumeRoleWithWebIdentity");
    for _ in 0..16 {
        w.metadata
            .push_fault(Endpoint::Identity, Fault::Status(503));
    }
    let server = Sidecar::start(&env).await;
    let r = http
        .get(format!("{}/v1/credentials", server.url))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "{}", server.stdout.text());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "credentials_unavailable", "{body}");
    assert!(
        (1..=4).contains(&w.metadata.calls(Endpoint::Identity)),
        "bounded attempts: {}",
        w.metadata.calls(Endpoint::Identity)
    );
    assert_eq!(
        w.proxy.count("AssumeRoleWithWebIdentity"),
        sts_calls,
        "STS not asked"
    );
    assert_clean_log(&server.stdout.all(), &[&token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_one_attempt_for_concurrent_requests_and_remembered_briefly() {
    require_rig!();
    let w = World::new("sidecar-outage").await;
    let token = random_token();
    let mut env = sidecar_env(&w);
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), token.clone()));
    let server = Sidecar::start(&env).await;
    let http = reqwest::Client::new();
    let get = || {
        let (http, url, token) = (http.clone(), server.url.clone(), token.clone());
        async move {
            let t = std::time::Instant::now();
            let r = http
                .get(format!("{url}/v1/credentials"))
                .header("Authorization", token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body, t.elapsed())
        }
    };
    // The metadata server fails every attempt: 8 requests at once.
    for _ in 0..64 {
        w.metadata
            .push_fault(Endpoint::Identity, Fault::Status(503));
    }
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        set.spawn(get());
    }
    let mut took = Vec::new();
    while let Some(a) = set.join_next().await {
        let (status, body, t) = a.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "credentials_unavailable", "{body}");
        took.push(t);
    }
    took.sort();
    let attempts = w.metadata.calls(Endpoint::Identity);
    eprintln!(
        "8 concurrent requests during an outage: first answered after {:?}, last after {:?}; {attempts} metadata attempts",
        took[0], took[7]
    );
    // One attempt (the identity source's own bounded retries) for all eight.
    assert!(
        (1..=4).contains(&attempts),
        "one attempt-set, not one per request: {attempts}"
    );
    // Within the next few seconds: the same 503 at once, no new attempt.
    let (status, _, t) = get().await;
    assert_eq!(status, 503);
    assert_eq!(w.metadata.calls(Endpoint::Identity), attempts);
    assert!(t <= took[0], "answered at once: {t:?}");
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 0);

    // Recovered: once the failure is forgotten, credentials.
    w.metadata.clear_faults();
    eventually(
        Duration::from_secs(30),
        || "never recovered".into(),
        || async {
            let (status, body, _) = get().await;
            assert!(status == 200 || status == 503, "{status} {body}");
            (status == 200).then_some(())
        },
    )
    .await;
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    assert_clean_log(&server.stdout.all(), &[&token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_is_read_again_when_it_changes() {
    require_rig!();
    let w = World::new("sidecar-file").await;
    let dir = temp_dir("token-file");
    let path = dir.join("token");
    std::fs::write(&path, "first-token-value").unwrap();
    let mut env = sidecar_env(&w);
    env.push((
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        path.display().to_string(),
    ));
    // The file wins over the variable, as in the SDKs.
    env.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), "ignored".into()));
    let server = Sidecar::start(&env).await;
    let http = reqwest::Client::new();
    let status = |t: &'static str| {
        let (http, url) = (http.clone(), server.url.clone());
        async move {
            http.get(format!("{url}/v1/credentials"))
                .header("Authorization", t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status("first-token-value").await, 200);
    assert_eq!(status("ignored").await, 403);
    // Rotated the way Kubernetes and Cloud Run secret mounts do it.
    std::fs::write(dir.join("token.new"), "second-token-value\n").unwrap();
    std::fs::rename(dir.join("token.new"), &path).unwrap();
    assert_eq!(status("first-token-value").await, 403);
    assert_eq!(status("second-token-value").await, 200);
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    server.stdout.wait_for("read again").await;
    let log = server.stdout.text();
    assert!(!log.contains("second-token-value") && !log.contains("first-token-value"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_stops_the_server_with_one_line_per_problem() {
    require_rig!();
    let w = World::new("sidecar-config").await;
    let mut env = sidecar_env(&w);
    env.push(("CREDENTIALS_ADDR".into(), "0.0.0.0:9911".into()));
    env.push(("AWS_ROLES".into(), "reader".into()));
    let out = run_bin(&["credential-server"], &env).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    for var in [
        "CREDENTIALS_ADDR:",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN:",
        "AWS_ROLES:",
    ] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(var)).count(),
            1,
            "{var} in:\n{stderr}"
        );
    }
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");

    // A token file that cannot be read, and a good address: the file named.
    let mut env = sidecar_env(&w);
    env.push((
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        "/nonexistent/token".into(),
    ));
    env.push(("CREDENTIALS_ADDR".into(), "[::1]:0".into()));
    let out = run_bin(&["credential-server"], &env).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: /nonexistent/token"),
        "{stderr}"
    );
    assert_eq!(w.metadata.calls(Endpoint::Identity), 0, "no outbound call");
}

fn cli_env(w: &World, cache: &std::path::Path) -> Vec<(String, String)> {
    let mut env = sidecar_env(w);
    env.push(("XDG_CACHE_HOME".into(), cache.display().to_string()));
    env.push((
        "AWS_ROLES".into(),
        format!("reader={}", w.rig["RIG_READER_ROLE_ARN"]),
    ));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_command_shares_one_sts_call_across_processes() {
    require_rig!();
    let w = World::new("cli-cache").await;
    let cache = temp_dir("xdg-cache");
    let env = cli_env(&w, &cache);

    let runs: Vec<_> = (0..10).map(|_| run_bin(&["credentials"], &env)).collect();
    let outs = futures_util::future::join_all(runs).await;
    let mut keys = std::collections::HashSet::new();
    for out in &outs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            k,
            [
                "AccessKeyId",
                "Expiration",
                "SecretAccessKey",
                "SessionToken",
                "Version"
            ]
        );
        assert!(left(&v) >= time::Duration::minutes(15));
        keys.insert(v["AccessKeyId"].as_str().unwrap().to_owned());
    }
    assert_eq!(keys.len(), 1, "the same credentials for all ten");
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);

    let dir = cache.join("gcp-aws-bridge");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let json: Vec<_> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(json.len(), 1, "{files:?}");
    assert!(json[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("default-"));
    for f in &files {
        assert_eq!(mode(f), 0o600, "{f:?}");
    }

    // Again: from the cache. --no-cache: from STS, the cache untouched.
    let out = run_bin(&["credentials"], &env).await;
    assert!(out.status.success());
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    let before = std::fs::read(json[0]).unwrap();
    let out = run_bin(&["credentials", "--no-cache"], &env).await;
    assert!(out.status.success());
    let fresh: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!keys.contains(fresh["AccessKeyId"].as_str().unwrap()));
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 2);
    assert_eq!(std::fs::read(json[0]).unwrap(), before);

    // A named role has its own entry; an unknown one is a usage error.
    let out = run_bin(&["credentials", "--role", "reader"], &env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 3);
    run_bin(&["credentials", "--role", "reader"], &env).await;
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 3);
    assert!(std::fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("reader-")));
    let out = run_bin(&["credentials", "--role", "nope"], &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS_ROLES"));

    // Credentials with under 15 minutes left are not reused.
    let mut cached: Value = serde_json::from_slice(&before).unwrap();
    let now = SystemTime::now();
    cached["Expiration"] = Value::String(gcp_aws_bridge::util::rfc3339(
        now + Duration::from_secs(14 * 60),
    ));
    cached["IssuedAt"] = Value::String(gcp_aws_bridge::util::rfc3339(
        now - Duration::from_secs(46 * 60),
    ));
    std::fs::write(json[0], cached.to_string()).unwrap();
    let out = run_bin(&["credentials"], &env).await;
    assert!(out.status.success());
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 4);
    let _ = std::fs::remove_dir_all(&cache);
}

/// The credential_process output of a successful run, and its stderr.
fn printed(out: &std::process::Output) -> (Value, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["Version"], 1, "{v}");
    assert!(v["AccessKeyId"].is_string() && v["SessionToken"].is_string());
    assert!(left(&v) >= time::Duration::minutes(15));
    (v, stderr)
}

/// The one file of the cache directory whose name ends with `suffix`.
fn cache_file(dir: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_command_gives_up_a_lock_held_too_long() {
    require_rig!();
    let w = World::new("cli-lock").await;
    let cache = temp_dir("xdg-lock");
    let env = cli_env(&w, &cache);
    let (first, _) = printed(&run_bin(&["credentials"], &env).await);
    let dir = cache.join("gcp-aws-bridge");
    let lock = cache_file(&dir, ".lock");
    // The entry runs out, and another process (a stopped `aws`, here a
    // shell that takes the lock with flock(1) and becomes `sleep`, keeping
    // the locked descriptor) holds the lock and never lets go.
    std::fs::remove_file(cache_file(&dir, ".json")).unwrap();
    let mut holder = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(r#"exec 9<>"$0" && flock -x 9 && exec sleep 60"#)
        .arg(&lock)
        .kill_on_drop(true)
        .spawn()
        .expect("sh and flock(1) from util-linux");
    eventually(
        Duration::from_secs(10),
        || "flock never took the lock".into(),
        || {
            let free = std::process::Command::new("flock")
                .arg("-n")
                .arg(&lock)
                .arg("true")
                .status()
                .unwrap()
                .success();
            std::future::ready((!free).then_some(()))
        },
    )
    .await;
    let t = std::time::Instant::now();
    let out = run_bin(&["credentials"], &env).await;
    let took = t.elapsed();
    let (v, stderr) = printed(&out);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
    assert!(stderr.contains("still locked"), "{stderr}");
    assert!(stderr.contains("without the cache"), "{stderr}");
    assert_ne!(v["AccessKeyId"], first["AccessKeyId"], "fetched anew");
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 2);
    assert!(
        std::fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".json")),
        "not cached without the lock"
    );
    // The holder gone, the cache serves again.
    holder.kill().await.unwrap();
    let _ = holder.wait().await;
    printed(&run_bin(&["credentials"], &env).await);
    printed(&run_bin(&["credentials"], &env).await);
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 3);
    let _ = std::fs::remove_dir_all(&cache);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_command_follows_no_link_and_trusts_no_open_directory() {
    require_rig!();
    let w = World::new("cli-links").await;
    let cache = temp_dir("xdg-links");
    let env = cli_env(&w, &cache);
    printed(&run_bin(&["credentials"], &env).await);
    let dir = cache.join("gcp-aws-bridge");
    let lock = cache_file(&dir, ".lock");
    std::fs::remove_file(cache_file(&dir, ".json")).unwrap();
    // The lock file is a link to a file that does not exist yet: creating
    // it through the link would write where the link points.
    let outside = temp_dir("outside");
    let target = outside.join("target");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    for _ in 0..2 {
        let (_, stderr) = printed(&run_bin(&["credentials"], &env).await);
        assert!(stderr.contains("without the cache"), "{stderr}");
    }
    assert!(!target.exists(), "the link was followed");
    assert!(std::fs::symlink_metadata(&lock)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        w.proxy.count("AssumeRoleWithWebIdentity"),
        3,
        "no cache without the lock"
    );
    let _ = std::fs::remove_dir_all(&cache);

    // A cache directory anyone may write: not used, said on stderr.
    let cache = temp_dir("xdg-open");
    let env = cli_env(&w, &cache);
    let dir = cache.join("gcp-aws-bridge");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    for _ in 0..2 {
        let (_, stderr) = printed(&run_bin(&["credentials"], &env).await);
        assert!(
            stderr.contains("0777") && stderr.contains("without the cache"),
            "{stderr}"
        );
    }
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 5);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing cached"
    );
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o777, "left as it was");
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_dir_all(&outside);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_aws_cli_commands_at_once_make_one_sts_call_through_credential_process() {
    require_rig!();
    let w = World::new("cli-process").await;
    let python = tokio::task::spawn_blocking(rig_python).await.unwrap();
    let cache = temp_dir("aws-cli");
    let config = cache.join("aws-config");
    std::fs::write(
        &config,
        format!("[default]\nregion = us-east-1\ncredential_process = {BIN} credentials\n"),
    )
    .unwrap();
    let mut env = cli_env(&w, &cache);
    env.push(("AWS_CONFIG_FILE".into(), config.display().to_string()));
    env.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        cache.join("none").display().to_string(),
    ));
    env.push(("AWS_EC2_METADATA_DISABLED".into(), "true".into()));
    env.push(("HOME".into(), cache.display().to_string()));
    let runs: Vec<_> = (0..10)
        .map(|_| {
            tokio::process::Command::new(&python)
                .args([
                    "-m",
                    "awscli",
                    "sts",
                    "get-caller-identity",
                    "--output",
                    "json",
                ])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env.iter().cloned())
                .kill_on_drop(true)
                .output()
        })
        .collect();
    for out in futures_util::future::join_all(runs).await {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            v["Arn"]
                .as_str()
                .unwrap()
                .contains("assumed-role/bridge-test-role/"),
            "{v}"
        );
    }
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    assert_eq!(w.proxy.count("GetCallerIdentity"), 10);
    let _ = std::fs::remove_dir_all(&cache);
}
