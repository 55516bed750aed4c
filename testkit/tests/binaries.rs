//! The `metadata-emulator` binary starts, announces itself, serves and stops on
//! SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[tokio::test]
async fn metadata_emulator_binary_serves_until_sigterm() {
    let dir = std::env::temp_dir().join(format!("mdemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_path = dir.join("key.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_metadata-emulator"))
        .args([
            "--email",
            "svc@p.iam.gserviceaccount.com",
            "--unique-id",
            "111",
            "--project-id",
            "p",
        ])
        .arg("--write-key-file")
        .arg(&key_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let host = line
        .trim()
        .strip_prefix("READY ")
        .expect("READY line")
        .to_string();
    assert!(host.starts_with("127.0.0.1:"), "{line}");

    let key: Value = serde_json::from_str(&std::fs::read_to_string(&key_path).unwrap()).unwrap();
    assert_eq!(key["client_email"], "svc@p.iam.gserviceaccount.com");
    assert_eq!(key["token_uri"], format!("http://{host}/token"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");

    let email = reqwest::Client::new()
        .get(format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/default/email"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(email, "svc@p.iam.gserviceaccount.com");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("did not exit on SIGTERM")
    });
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads lines until `READY host:port`; returns the address.
fn ready_line(out: impl std::io::Read) -> String {
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("READY ") {
            return addr.to_owned();
        }
    }
    panic!("no READY line");
}

/// `cloud-run-emulator` in front of a Python echo server, and `push-shim` in
/// front of it: the push account's token passes the IAM check and reaches the
/// container stripped; SIGTERM stops the instance and the front end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_run_emulator_and_push_shim_binaries() {
    use bridge_testkit::{MetadataConfig, MetadataEmulator};
    const ECHO: &str = r#"
import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        b = json.dumps({"authorization": self.headers.get("authorization"), "service": os.environ.get("K_SERVICE"), "inherited": os.environ.get("ECHO_INHERITED")}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let push_sa = "push@p.iam.gserviceaccount.com";
    let service_url = "https://svc-1.europe-west1.run.app";
    let mut front = Command::new(env!("CARGO_BIN_EXE_cloud-run-emulator"))
        .args(["--service", "svc", "--url", service_url, "--jwks-url"])
        .arg(emu.jwks_url())
        .args([
            "--invoker",
            &format!("serviceAccount:{push_sa}"),
            "--instances",
            "2",
        ])
        .args(["--", "python3", "-c", ECHO])
        .env("ECHO_INHERITED", "yes")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let front_addr = ready_line(front.stdout.take().unwrap());
    let mut shim = Command::new(env!("CARGO_BIN_EXE_push-shim"))
        .args(["--target", &format!("http://{front_addr}")])
        .args(["--service-account", push_sa, "--audience", service_url])
        .args(["--metadata", &emu.base_url()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let shim_addr = ready_line(shim.stdout.take().unwrap());

    let c = reqwest::Client::new();
    let v: Value = c
        .post(format!("http://{shim_addr}/pubsub"))
        .body("{}")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let auth = v["authorization"].as_str().unwrap();
    assert!(auth.ends_with(".SIGNATURE_REMOVED_BY_GOOGLE"), "{auth}");
    let claims =
        bridge_testkit::keys::decode_claims_unverified(auth.trim_start_matches("Bearer ")).unwrap();
    assert_eq!(claims["email"], push_sa);
    assert_eq!(claims["aud"], service_url);
    assert_eq!(v["service"], "svc");
    assert_eq!(
        v["inherited"], "yes",
        "the binary passes its environment on"
    );
    // Straight to the front end without a token: 403.
    let r = c
        .post(format!("http://{front_addr}/pubsub"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    for child in [&mut shim, &mut front] {
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for child in [&mut shim, &mut front] {
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                assert!(s.success(), "{s}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The instances went with the front end.
    assert!(c
        .post(format!("http://{front_addr}/pubsub"))
        .send()
        .await
        .is_err());
}
