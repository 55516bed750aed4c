//! The credential server (`gcp-aws-bridge credential-server`) as a real
//! process, for the tests of it and of the SDKs that use it.

use std::process::{Child, Command};

use super::{free_port, spawn_until_healthy, Lines, World};

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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gcp-aws-bridge"));
        cmd.arg("credential-server")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("CREDENTIALS_ADDR", format!("127.0.0.1:{port}"))
            .envs(env.iter().cloned());
        let url = format!("http://127.0.0.1:{port}");
        let (child, stdout, stderr) = spawn_until_healthy("credential-server", cmd, &url).await;
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
