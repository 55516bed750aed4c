//! The credential server (`gcp-aws-bridge credential-server`) as a real
//! process, for the tests of it and of the SDKs that use it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Lines, World};

/// A token no test shares with another.
pub fn random_token() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("sidecar-token-{n:x}-{}", std::process::id())
}

/// The world's environment less what only the service needs (bucket,
/// caller checks): the credential server needs none of it.
pub fn sidecar_env(w: &World) -> Vec<(String, String)> {
    w.env
        .iter()
        .filter(|(k, _)| !k.starts_with("S3_") && !k.starts_with("AUTH_"))
        .cloned()
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn capture(stream: impl std::io::Read + Send + 'static) -> Lines {
    let lines = Lines::default();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            l.0.lock().unwrap().push(line);
        }
    });
    lines
}

/// The credential server, running.
pub struct Sidecar {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Sidecar {
    /// Starts the binary with `env` (nothing of this process's environment
    /// but PATH) on a free loopback port and waits for `/healthz`.
    pub async fn start(env: &[(String, String)]) -> Sidecar {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gcp-aws-bridge"))
            .arg("credential-server")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("CREDENTIALS_ADDR", format!("127.0.0.1:{port}"))
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gcp-aws-bridge credential-server");
        let stdout = capture(child.stdout.take().unwrap());
        let stderr = capture(child.stderr.take().unwrap());
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "credential-server exited with {status}:\n{}\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
            if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "credential-server did not answer /healthz"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Sidecar {
            child,
            url,
            stdout,
            stderr,
        }
    }

    /// The variables an SDK next to the server is given.
    pub fn client_env(&self, path: &str, token: &str) -> Vec<(String, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
                format!("{}{path}", self.url),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), token.into()),
        ]
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
