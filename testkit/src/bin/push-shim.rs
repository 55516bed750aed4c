//! Adds the OIDC token of a push subscription (or an Eventarc trigger) to
//! every request and forwards it.
//!
//! ```text
//! push-shim --target URL --service-account EMAIL --metadata URL
//!           [--audience AUD] [--port P]
//! ```
//!
//! Prints `READY 127.0.0.1:P` once listening, then serves until SIGTERM or
//! SIGINT. Tokens are minted by the metadata emulator at `--metadata`
//! (`generateIdToken` for EMAIL); `aud` is `--audience`, else the URL the
//! request is forwarded to.

use std::net::SocketAddr;
use std::process::ExitCode;

use bridge_testkit::{flags, ready, PushConfig, PushShim};

const USAGE: &str = "usage: push-shim --target URL --service-account EMAIL --metadata URL [--audience AUD] [--port P]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut cfg = PushConfig {
        target: String::new(),
        service_account: String::new(),
        audience: None,
        metadata_url: String::new(),
    };
    let mut port: u16 = 0;
    let flags = match flags::parse(USAGE) {
        Ok(f) => f,
        Err(code) => return code,
    };
    for (name, value) in flags {
        match name.as_str() {
            "--port" => match flags::number(&name, &value) {
                Ok(p) => port = p,
                Err(c) => return c,
            },
            "--target" => cfg.target = value,
            "--service-account" => cfg.service_account = value,
            "--audience" => cfg.audience = Some(value),
            "--metadata" => cfg.metadata_url = value,
            other => return flags::unknown(other, USAGE),
        }
    }
    if cfg.target.is_empty() || cfg.service_account.is_empty() || cfg.metadata_url.is_empty() {
        eprintln!("--target, --service-account and --metadata are required\n{USAGE}");
        return ExitCode::from(2);
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let shim = match PushShim::start_on(cfg, addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(code) = ready::until_signal(&shim.url()).await {
        return code;
    }
    ExitCode::SUCCESS
}
