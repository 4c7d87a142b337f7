//! Entry point of the binary. containerd-shim 0.12's own bootstrap answers `start` in the
//! containerd 2.x format and serves only `containerd.task.v3.Task`; containerd 1.6/1.7 (the
//! Debian 12 package) expect a bare address and call `containerd.task.v2.Task`. The messages
//! are identical, so this entry reuses the crate's pieces (flags, spawn, publisher, the
//! generated service) and answers both: bare address, service registered under both names.

use std::sync::Arc;

use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim_async::create_task;
use containerd_shim::protos::ttrpc::r#async::Server;
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Flags, Shim, StartOpts, Task};
use tokio::io::AsyncWriteExt;

use crate::shim::{CocoonShim, RUNTIME_ID, shim_config};

/// Errors of the entry point.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// containerd-shim failed.
    #[error(transparent)]
    Shim(#[from] containerd_shim::Error),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// ttRPC server.
    #[error(transparent)]
    Ttrpc(#[from] containerd_shim::protos::ttrpc::Error),
}

fn bind(socket: &str) -> std::io::Result<std::os::unix::net::UnixListener> {
    let path = std::path::Path::new(socket.trim_start_matches("unix://"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    std::os::unix::net::UnixListener::bind(path)
}

/// Runs the action containerd asked for.
pub async fn main_entry() -> Result<(), EntryError> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let flags: Flags = containerd_shim::parse(&args[1..])?;
    let mut config = shim_config();
    let mut shim = CocoonShim::new(RUNTIME_ID, &flags, &mut config).await;
    let mut stdout = tokio::io::stdout();
    match flags.action.as_str() {
        "start" => {
            let opts = StartOpts {
                id: flags.id.clone(),
                publish_binary: flags.publish_binary.clone(),
                address: flags.address.clone(),
                ttrpc_address: std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
                namespace: flags.namespace.clone(),
                debug: flags.debug,
                ..Default::default()
            };
            let address = shim.start_shim(opts).await?;
            stdout.write_all(address.as_bytes()).await?;
            stdout.flush().await?;
            Ok(())
        }
        "delete" => {
            let resp = shim.delete_shim().await?;
            let bytes = resp
                .write_to_bytes()
                .map_err(|e| containerd_shim::Error::Other(e.to_string()))?;
            stdout.write_all(&bytes).await?;
            stdout.flush().await?;
            Ok(())
        }
        _ => serve(shim, &flags).await,
    }
}

async fn serve(mut shim: CocoonShim, flags: &Flags) -> Result<(), EntryError> {
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    let publisher = RemotePublisher::new(&ttrpc_address).await?;
    let task: Arc<dyn Task + Send + Sync> = Arc::new(shim.create_task_service(publisher).await);
    let v3 = create_task(task.clone());
    let v2 = create_task(task)
        .into_iter()
        .map(|(k, v)| (k.replace("containerd.task.v3.", "containerd.task.v2."), v))
        .collect();
    let listener = Listener::try_from(bind(&flags.socket)?)?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(v3)
        .register_service(v2);
    server.start().await?;
    // Tell the `start` process we are up: it reads our stdout until EOF.
    // SAFETY: dup2 on the process's own standard descriptors; no Rust object owns fd 1.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
    shim.wait().await;
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(flags.socket.trim_start_matches("unix://"));
    Ok(())
}
