//! Runs the Cloud Run front end in front of instances of a container.
//!
//! ```text
//! cloud-run-emulator --jwks-url URL [--port P] [--service NAME] [--revision REV]
//!                    [--url SERVICE_URL] [--audience AUD]... [--invoker MEMBER]...
//!                    [--instances N] [--timeout SECS] [--use-http2 true|false]
//!                    [--grace SECS] [--startup-probe PATH]
//!                    -- PROGRAM [ARGS...]
//! ```
//!
//! Starts N instances of PROGRAM (default 1) with this process's environment
//! plus `PORT`, `K_SERVICE`, `K_REVISION` and `K_CONFIGURATION`, their output
//! on this process's own; prints `READY 127.0.0.1:P` once every instance is
//! ready; on SIGTERM or SIGINT scales to zero (SIGTERM, SIGKILL after the
//! grace period) and exits. `--invoker` takes `serviceAccount:EMAIL`,
//! `user:EMAIL`, an email or `allUsers`; `--audience` adds a custom audience
//! to the service URL (default `http://127.0.0.1:P`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bridge_testkit::{flags, ready, CloudRunConfig, CloudRunEmulator, Container, Output};

const USAGE: &str = "usage: cloud-run-emulator --jwks-url URL [--port P] [--service NAME] [--revision REV] [--url SERVICE_URL] [--audience AUD]... [--invoker MEMBER]... [--instances N] [--timeout SECS] [--use-http2 true|false] [--grace SECS] [--startup-probe PATH] -- PROGRAM [ARGS...]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (own, program) = match args.iter().position(|a| a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (args, Vec::new()),
    };
    let flags = match flags::parse_from(own.into_iter(), USAGE) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let mut cfg = CloudRunConfig::default();
    let mut port: u16 = 0;
    let mut instances: usize = 1;
    for (name, value) in flags {
        let secs = |v: &str| flags::number::<u64>(&name, v).map(Duration::from_secs);
        match name.as_str() {
            "--port" => match flags::number(&name, &value) {
                Ok(p) => port = p,
                Err(c) => return c,
            },
            "--instances" => match flags::number(&name, &value) {
                Ok(n) => instances = n,
                Err(c) => return c,
            },
            "--service" => cfg.service = value,
            "--revision" => cfg.revision = value,
            "--url" => cfg.url = Some(value),
            "--audience" => cfg.audiences.push(value),
            "--invoker" => cfg.invokers.push(value),
            "--jwks-url" => cfg.jwks_url = value,
            "--timeout" => match secs(&value) {
                Ok(d) => cfg.request_timeout = d,
                Err(c) => return c,
            },
            "--grace" => match secs(&value) {
                Ok(d) => cfg.shutdown_grace = d,
                Err(c) => return c,
            },
            "--use-http2" => cfg.http2 = value == "true",
            "--startup-probe" => cfg.startup_probe = Some(value),
            other => return flags::unknown(other, USAGE),
        }
    }
    let Some((exe, rest)) = program.split_first() else {
        eprintln!("no program after --\n{USAGE}");
        return ExitCode::from(2);
    };
    if cfg.jwks_url.is_empty() && !cfg.invokers.iter().any(|m| m == "allUsers") {
        eprintln!("--jwks-url is required unless --invoker allUsers\n{USAGE}");
        return ExitCode::from(2);
    }
    if cfg.revision == CloudRunConfig::default().revision {
        cfg.revision = format!("{}-00001-emu", cfg.service);
    }
    let container = Container {
        program: exe.into(),
        args: rest.to_vec(),
        env: Vec::new(),
        inherit_env: true,
        output: Output::Inherit,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let emu = match CloudRunEmulator::start_on(cfg, Some(container), addr).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = emu.scale_to(instances).await {
        eprintln!("cannot start the instances: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(code) = ready::until_signal(&emu.url()).await {
        return code;
    }
    match emu.scale_to(0).await {
        Ok(stopped) => {
            for s in stopped {
                eprintln!(
                    "cloud-run-emulator: instance stopped (exit {:?}, killed: {}, in {:?})",
                    s.code, s.killed, s.took
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
