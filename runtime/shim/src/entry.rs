//! Entry point of the binary: parses containerd's command line and runs the action.
//!
//! The shim is built on `containerd-shim-protos` (generated task/event services and ttRPC)
//! rather than the `containerd-shim` crate's bootstrap: that bootstrap answers `start` only in
//! the containerd 2.x format and serves only `containerd.task.v3.Task`, while containerd
//! 1.6/1.7 (the Debian 12 package) expect a bare address and `containerd.task.v2.Task`; it
//! also pulls in a reaper, cgroups-rs and zbus the shim does not use (shim RSS). The
//! lifecycle itself lives in [`crate::shim`].

use std::io::Write;

use crate::flags::{FlagError, ShimFlags};
use crate::shim::{RUNTIME_ID, ShimError};

/// Errors of the entry point.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The command line does not parse.
    #[error(transparent)]
    Flags(#[from] FlagError),
    /// The lifecycle action failed.
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// Writing the answer to stdout.
    #[error("cannot write the answer to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

fn answer(bytes: &[u8]) -> Result<(), EntryError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Runs the action containerd asked for (`start`, `delete`, or serving).
pub async fn main_entry() -> Result<(), EntryError> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let flags: ShimFlags = crate::flags::parse(&args)?;
    if flags.version {
        return answer(
            format!(
                "{}:\n  Runtime: {RUNTIME_ID}\n  Version: {}\n",
                "containerd-shim-cocoon-v2",
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes(),
        );
    }
    match flags.action.as_str() {
        "start" => {
            let address = crate::shim::start(&flags).await?;
            answer(address.as_bytes())
        }
        "delete" => answer(&crate::shim::delete(&flags)?),
        "" => Ok(crate::shim::serve(&flags).await?),
        other => Err(EntryError::Flags(FlagError::Unknown(format!(
            "(action) {other}"
        )))),
    }
}
