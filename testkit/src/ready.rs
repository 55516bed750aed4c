//! The life of the test kit's binaries once they listen: `READY host:port`
//! on stdout, then serving until SIGTERM or SIGINT.

use std::io::Write;
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

/// Prints `READY {addr}` (`addr` as `127.0.0.1:PORT`, a leading `http://`
/// left out) and returns on SIGTERM or SIGINT. The handlers are installed
/// before the line is printed, so a signal sent as soon as it is read is not
/// missed. `Err` holds the exit code when they cannot be installed.
pub async fn until_signal(addr: &str) -> Result<(), ExitCode> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| {
        eprintln!("cannot install SIGTERM handler: {e}");
        ExitCode::FAILURE
    })?;
    println!("READY {}", addr.trim_start_matches("http://"));
    let _ = std::io::stdout().flush();
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
