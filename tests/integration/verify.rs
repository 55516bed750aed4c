//! `gcp-aws-bridge verify` (SPEC §11, proof without read-back) on the rig:
//! replicas written by the service's own sync (fake-gcs-server behind a
//! counting proxy, moto behind the fault proxy), then one replica of each
//! difference made by hand; the binary is run as a user runs it, with
//! stdout a pipe and, for the summary, a terminal (`script` gives it a
//! pty).

use crate::common;
use crate::common::require_rig;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bridge_testkit::ProxyFault;
use common::deployment::{bytes, gzip_stored, Deployment};
use common::*;
use serde_json::{json, Value};

/// Runs the binary with the deployment's environment and `extra`: exit
/// code, stdout, stderr.
async fn run(d: &Deployment, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
    let mut env = d.w.env.clone();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let out = run_bin(args, &env).await;
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the binary on a pseudo-terminal (`script -qec`), as a person at a
/// shell does: exit code and what the terminal showed.
fn run_on_pty(d: &Deployment, args: &[&str]) -> (i32, String) {
    let cmd = std::iter::once(env!("CARGO_BIN_EXE_gcp-aws-bridge"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(d.w.env.iter().cloned())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
    )
}

/// The JSON lines of a run: the differences and the totals.
fn parse(stdout: &str) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let totals = lines.pop().expect("a totals line")["totals"].clone();
    assert!(totals.is_object(), "{stdout}");
    (lines, totals)
}

async fn put_replica(d: &Deployment, name: &str, body: Vec<u8>, meta: &[(&str, &str)]) {
    let mut req = admin_s3()
        .put_object()
        .bucket(&d.w.bucket)
        .key(d.w.full(name))
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from(body));
    for (k, v) in meta {
        req = req.metadata(*k, *v);
    }
    req.send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_each_difference_from_listings_and_heads_only() {
    require_rig!();
    let d = Deployment::start("verify", 1, &[]).await;
    let names = [
        "v/checksum",
        "v/exact",
        "v/generation",
        "v/gone",
        "v/missing",
        "v/size",
        "w/outside",
    ];
    let mut generation: BTreeMap<&str, String> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let body = bytes(100 * (i + 1), i as u64);
        let obj = d.gcs.upload(&d.bucket, name, &body, json!({})).await;
        generation.insert(name, obj["generation"].as_str().unwrap().to_owned());
    }
    // A gzip-encoded object: replicated as stored, its CRC32C is of the
    // stored bytes on both sides.
    let gz = gzip_stored(&bytes(5000, 77));
    let meta = json!({"contentType": "text/plain", "contentEncoding": "gzip"});
    d.gcs.upload(&d.bucket, "w/gzip", &gz, meta).await;
    let all = names.len() + 1;

    // The service's own sync writes the replicas.
    d.post_sync(json!({ "bucket": d.bucket })).await;
    eventually(
        Duration::from_secs(120),
        || format!("no replicas:\n{}", d.log_text()),
        || async { (d.replicas().await.len() >= all).then_some(()) },
    )
    .await;
    d.sync_done(0).await;
    d.quiet().await;

    // All in sync, over pages of two objects and the sync's own markers
    // under the reserved prefix: exit 0, nothing but the totals.
    let url = format!("gs://{}", d.bucket);
    let (code, out, err) = run(&d, &["verify", &url], &[("TEST_SYNC_PAGE_SIZE", "2")]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (diffs, totals) = parse(&out);
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!(totals["objects"], all);
    assert_eq!(totals["in_sync"]["count"], all);
    assert_eq!(
        totals["in_sync"]["bytes"],
        100 * (1 + 2 + 3 + 4 + 5 + 6 + 7) + gz.len()
    );
    assert_eq!(totals["differences"], 0);
    assert!(totals["pages"].as_u64().unwrap() >= 4, "{totals}");
    let markers = admin_list(&d.w.bucket, &format!("{}.gcp-aws-bridge/", d.w.prefix)).await;
    assert!(
        !markers.is_empty(),
        "the sync's page marker is there and was not compared"
    );

    // One difference of each kind.
    admin_s3()
        .delete_object()
        .bucket(&d.w.bucket)
        .key(d.w.full("v/missing"))
        .send()
        .await
        .unwrap();
    d.gcs.delete(&d.bucket, "v/gone").await;
    let bucket = d.bucket.clone();
    let current = |n: &str| generation[n].clone();
    // Another size, the current generation.
    let g = current("v/size");
    put_replica(
        &d,
        "v/size",
        bytes(601, 99),
        &[("goog-bucket", &bucket), ("goog-generation", &g)],
    )
    .await;
    // Other bytes of the same length, with their own correct checksum and
    // the current generation.
    let g = current("v/checksum");
    put_replica(
        &d,
        "v/checksum",
        bytes(100, 1234),
        &[("goog-bucket", &bucket), ("goog-generation", &g)],
    )
    .await;
    // The same bytes again: a newer generation, the replica is older.
    let same = bytes(300, 2);
    let newer = d
        .gcs
        .upload(&d.bucket, "v/generation", &same, json!({}))
        .await;
    let newer = newer["generation"].as_str().unwrap().to_owned();
    assert_ne!(newer, current("v/generation"));
    // Not the service's: a user object and another bucket's replica.
    put_replica(&d, "v/user-file", b"mine".to_vec(), &[]).await;
    put_replica(
        &d,
        "v/foreign",
        b"theirs".to_vec(),
        &[("goog-bucket", "another-bucket"), ("goog-generation", "1")],
    )
    .await;

    d.w.proxy.reset_counts();
    d.gcs_proxy.reset_counts();
    let url = format!("gs://{}/v/", d.bucket);
    let (code, out, err) = run(&d, &["verify", &url], &[("TEST_SYNC_PAGE_SIZE", "2")]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let (diffs, totals) = parse(&out);
    let key = |n: &str| d.w.full(n);
    let g = |n: &str| json!(current(n));
    assert_eq!(
        diffs,
        vec![
            json!({"kind": "checksum", "bucket": bucket, "name": "v/checksum", "key": key("v/checksum"),
                   "gcs": d_crc(&bytes(100, 0)), "s3": d_crc(&bytes(100, 1234))}),
            json!({"kind": "generation", "bucket": bucket, "name": "v/generation",
                   "key": key("v/generation"), "gcs": newer, "s3": g("v/generation")}),
            json!({"kind": "extra", "bucket": bucket, "name": "v/gone", "key": key("v/gone"),
                   "gcs": null, "s3": g("v/gone")}),
            json!({"kind": "missing", "bucket": bucket, "name": "v/missing",
                   "key": key("v/missing"), "gcs": g("v/missing"), "s3": null}),
            json!({"kind": "size", "bucket": bucket, "name": "v/size", "key": key("v/size"),
                   "gcs": 600, "s3": 601}),
        ],
        "{out}"
    );
    let tally = |count: u64, bytes: u64| json!({ "count": count, "bytes": bytes });
    assert_eq!(
        totals,
        json!({
            "bucket": bucket, "prefix": "v/", "s3_bucket": d.w.bucket,
            "s3_prefix": key("v/"), "pages": totals["pages"],
            "objects": 5, "bytes": 100 + 200 + 300 + 500 + 600, "differences": 5,
            "in_sync": tally(1, 200), "missing": tally(1, 500), "extra": tally(1, 400),
            "size": tally(1, 600), "generation": tally(1, 300), "checksum": tally(1, 100),
            "skipped": tally(0, 0), "not_replicas": tally(2, 4 + 6),
        })
    );
    // Listings and HEADs only: no object read on either side, one HEAD per
    // key listed in S3 (the four replicas of listed objects, the three
    // keys whose object is not listed).
    let s3 = d.w.proxy.counts();
    assert_eq!(d.w.proxy.count("GetObject"), 0, "{s3:?}");
    assert_eq!(d.w.proxy.count("HeadObject"), 7, "{s3:?}");
    let gcs = d.gcs_proxy.counts();
    assert_eq!(d.gcs_proxy.count("GcsGetMedia"), 0, "{gcs:?}");
    assert_eq!(d.gcs_proxy.count("GcsGetObject"), 0, "{gcs:?}");
    assert_eq!(
        d.gcs_proxy.total(),
        d.gcs_proxy.count("GcsListObjects"),
        "{gcs:?}"
    );

    // A HEAD that S3 refuses: no conclusion (exit 2), no totals line, the
    // reason on stderr.
    d.w.proxy.push_fault(
        "HeadObject",
        ProxyFault::AwsError {
            status: 403,
            code: "AccessDenied".into(),
            message: "Access Denied".into(),
        },
    );
    let (code, out, err) = run(&d, &["verify", &url], &[]).await;
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(!out.contains("totals"), "{out}");
    assert!(err.contains("S3 denied access"), "{err}");

    // At a terminal: the summary, no JSON.
    let (code, screen) = run_on_pty(&d, &["verify", &url]);
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains(&format!(
            "verify gs://{}/v/ against s3://{}/{}",
            d.bucket,
            d.w.bucket,
            key("v/")
        )),
        "{screen}"
    );
    let rows: Vec<String> = screen
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for row in [
        "in sync 1 200 B",
        "missing 1 500 B",
        "extra 1 400 B",
        "not replicas 2 10 B",
    ] {
        assert!(rows.iter().any(|r| r == row), "{row:?} in\n{screen}");
    }
    assert!(screen.contains("Differences:"), "{screen}");
    assert!(screen.contains("missing     v/missing"), "{screen}");
    assert!(screen.contains("5 differences (exit status 1)"), "{screen}");
    // The progress line on stderr, cleared before the summary.
    assert!(
        screen.contains("5 objects checked, 5 differences so far\r\x1b[2K"),
        "{screen:?}"
    );
    assert!(!screen.contains('{'), "{screen}");

    // sync --dry-run at a terminal: the plan as a summary.
    let (code, screen) = run_on_pty(&d, &["sync", &url, "--dry-run"]);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("would copy"), "{screen}");
    assert!(screen.contains("Would copy"), "{screen}");
    assert!(
        screen.contains(&format!("copy gs://{}/v/missing 500", d.bucket)),
        "{screen}"
    );
    assert!(
        screen.contains("Dry run: nothing was copied, deleted or published."),
        "{screen}"
    );
    assert!(!screen.contains('{'), "{screen}");
}

/// CRC32C as Cloud Storage lists it.
fn d_crc(data: &[u8]) -> Value {
    use base64::Engine;
    let c = crc32c_of(data);
    json!(base64::engine::general_purpose::STANDARD.encode(c.to_be_bytes()))
}

/// CRC32C (Castagnoli), bit by bit.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn verify_usage_and_configuration_errors_exit_2() {
    for args in [
        &["verify"][..],
        &["verify", "s3://b"],
        &["verify", "gs://Not_A_Bucket"],
        &["verify", "gs://b", "--delete"],
    ] {
        let out = run_bin(args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: gcp-aws-bridge verify"), "{err}");
        assert!(out.stdout.is_empty());
    }
    // A configuration that cannot work: one line per problem, exit 2.
    let out = run_bin(&["verify", "gs://bucket"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("configuration error"));
}
