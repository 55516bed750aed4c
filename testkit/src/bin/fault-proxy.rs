//! Runs the fault/counting proxy, optionally with the STS gate, for local runs.
//!
//! ```text
//! fault-proxy --upstream http://127.0.0.1:5000 [--port P]
//!             [--jwks-url URL --oaud AUDIENCE --aud AZP --sub SUB]
//! ```
//!
//! Prints `READY 127.0.0.1:P` once listening, then serves until SIGTERM or SIGINT.
//! `GET /__counts` on the proxy answers its request counts per operation as JSON
//! (`{"total":N,"counts":{"AssumeRoleWithWebIdentity":N,...}}`); the same JSON is
//! printed to stdout on exit.
//! The gate is on when `--jwks-url` is given (then `--oaud`, `--aud` and `--sub`
//! are required).

use std::net::SocketAddr;
use std::process::ExitCode;

use bridge_testkit::{flags, ready, FaultProxy, StsGate};

const USAGE: &str = "usage: fault-proxy --upstream URL [--port P] [--jwks-url URL --oaud AUDIENCE --aud AZP --sub SUB]";

#[tokio::main]
async fn main() -> ExitCode {
    let mut upstream: Option<String> = None;
    let mut port: u16 = 0;
    let (mut jwks_url, mut oaud, mut aud, mut sub) = (None, None, None, None);
    let flags = match flags::parse(USAGE) {
        Ok(f) => f,
        Err(code) => return code,
    };
    for (name, value) in flags {
        match name.as_str() {
            "--upstream" => upstream = Some(value),
            "--port" => match flags::number(&name, &value) {
                Ok(p) => port = p,
                Err(code) => return code,
            },
            "--jwks-url" => jwks_url = Some(value),
            "--oaud" => oaud = Some(value),
            "--aud" => aud = Some(value),
            "--sub" => sub = Some(value),
            other => return flags::unknown(other, USAGE),
        }
    }
    let Some(upstream) = upstream else {
        eprintln!("--upstream is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let gate = match (jwks_url, oaud, aud, sub) {
        (None, None, None, None) => None,
        (Some(jwks_url), Some(oaud), Some(aud), Some(sub)) => Some(StsGate {
            jwks_url,
            oaud,
            aud,
            sub,
        }),
        _ => {
            eprintln!("the STS gate needs all of --jwks-url, --oaud, --aud and --sub\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let proxy = match FaultProxy::start_on(&upstream, addr).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    proxy.set_sts_gate(gate);
    if let Err(code) = ready::until_signal(&proxy.url()).await {
        return code;
    }
    let counts = serde_json::json!({"total": proxy.total(), "counts": proxy.counts()});
    println!("COUNTS {counts}");
    proxy.shutdown();
    ExitCode::SUCCESS
}
