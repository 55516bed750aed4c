//! Runs the GCE metadata emulator for local runs of the service.
//!
//! ```text
//! metadata-emulator [--port P] [--email E] [--unique-id N] [--project-id P]
//!                   [--numeric-project-id N] [--token-lifetime SECS]
//!                   [--write-key-file PATH]
//! ```
//!
//! Prints `READY 127.0.0.1:P` once listening, then serves until SIGTERM or SIGINT.
//! Point the service at it with `GCE_METADATA_HOST=127.0.0.1:P`; the key file
//! written by `--write-key-file` has its `token_uri` on the emulator.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bridge_testkit::{flags, ready, MetadataConfig, MetadataEmulator};

const USAGE: &str = "usage: metadata-emulator [--port P] [--email E] [--unique-id N] [--project-id P] [--numeric-project-id N] [--token-lifetime SECS] [--write-key-file PATH]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut cfg = MetadataConfig::default();
    let mut port: u16 = 0;
    let mut key_file: Option<String> = None;
    let flags = match flags::parse(USAGE) {
        Ok(f) => f,
        Err(code) => return code,
    };
    for (name, value) in flags {
        match name.as_str() {
            "--port" => match flags::number(&name, &value) {
                Ok(p) => port = p,
                Err(code) => return code,
            },
            "--email" => cfg.email = value,
            "--unique-id" => cfg.unique_id = value,
            "--project-id" => cfg.project_id = value,
            "--numeric-project-id" => cfg.numeric_project_id = value,
            "--token-lifetime" => match flags::number(&name, &value) {
                Ok(s) => cfg.token_lifetime = Duration::from_secs(s),
                Err(code) => return code,
            },
            "--write-key-file" => key_file = Some(value),
            other => return flags::unknown(other, USAGE),
        }
    }

    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let emu = match MetadataEmulator::start_on(cfg, addr).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = key_file {
        if let Err(e) = write_private(&path, &emu.service_account_key_json()) {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(code) = ready::until_signal(&emu.host()).await {
        return code;
    }
    emu.shutdown();
    ExitCode::SUCCESS
}

/// Writes a file readable only by its owner (it holds a private key).
fn write_private(path: &str, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}
