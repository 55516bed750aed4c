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
