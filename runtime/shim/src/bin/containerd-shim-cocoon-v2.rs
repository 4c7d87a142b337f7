//! `containerd-shim-cocoon-v2`: the containerd shim v2 binary of Cocoon.

use std::os::unix::fs::OpenOptionsExt;

/// The `log` fifo containerd opened in the bundle (the shim's cwd) for the shim's logs, made
/// blocking again after a non-blocking open (which fails at once when nobody reads it).
fn shim_log_fifo() -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("log")
        .ok()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: fcntl on a descriptor this function owns; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Some(f)
}

/// Logs of the serving shim go to containerd's `log` fifo (containerd copies them into its
/// own log); `delete` logs to stderr (containerd reports it as cleanup warnings). `start`
/// logs nothing: containerd 1.6 reads its stdout and stderr together as the shim address.
fn init_logging() {
    if std::env::args().any(|a| a == "start") {
        return;
    }
    let serving = !std::env::args().any(|a| a == "delete");
    let debug = std::env::args().any(|a| a == "-debug");
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("COCOON_SHIM_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(if debug { "debug" } else { "info" })
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let fifo = if serving { shim_log_fifo() } else { None };
    let _ = match fifo {
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}

// One runtime thread: a shim serves one pod, and every worker thread costs RSS (stack,
// malloc arena) in every pod's shim. Blocking work goes to spawn_blocking.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    init_logging();
    let code = match runtime_shim::entry::main_entry().await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "shim failed");
            eprintln!("{}: {e}", runtime_shim::shim::RUNTIME_ID);
            1
        }
    };
    // Nothing may outlive the server (blocking stdio opens included).
    std::process::exit(code);
}
