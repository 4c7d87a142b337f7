//! Agent side: the ttRPC adapter (generated service traits -> [`AgentDispatcher`]) and
//! [`serve`] / [`serve_stream`].
//!
//! What ttrpc 0.10 allows (used here):
//! - `Server::bind("unix://..." | "vsock://CID:PORT")`, or `Server::add_listener(Listener)` with a
//!   listener built from a std/tokio Unix listener (`Listener::try_from`) or `Listener::bind`.
//! - `Listener::new(stream_of_connections)` accepts *any* `AsyncRead + AsyncWrite` connection, so
//!   an already-connected stream (a virtio-serial port, a socketpair, an accepted fd) can be
//!   served: [`serve_stream`] wraps one stream as a one-item listener.
//! - Frames over 4 MiB are refused by ttrpc itself (the body is discarded, the connection keeps
//!   going or closes at EOF); one bad connection never stops the accept loop.

use std::future::Future;
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::StreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use ttrpc::r#async::transport::Listener;
use ttrpc::r#async::{Server, TtrpcContext};

use crate::address::AgentAddress;
use crate::convert::Wire;
use crate::dispatch::AgentDispatcher;
use crate::error::{AgentError, ProtocolError};
use crate::request::{AgentRequest, ResponseBody};
use crate::rpc_table::with_rpc_table;
use crate::types::*;
use crate::wire::{agent_ttrpc, health_ttrpc};

/// Converts the generated service traits into [`AgentDispatcher`] calls.
struct Adapter {
    dispatcher: Arc<dyn AgentDispatcher>,
}

impl Adapter {
    async fn handle<D, W>(&self, rpc: &'static str, request: AgentRequest) -> ttrpc::Result<W>
    where
        D: ResponseBody + Wire<W>,
    {
        tracing::debug!(rpc, "agent request");
        match self.dispatcher.dispatch(request).await {
            Ok(response) => match D::from_response(response) {
                Ok(body) => Ok(body.into_wire()),
                Err(other) => {
                    let err = AgentError::internal(format!(
                        "{rpc}: the agent produced a {} response for this call",
                        other.kind()
                    ));
                    tracing::error!(rpc, response = other.kind(), "response variant mismatch");
                    Err(ttrpc::Error::RpcStatus(err.to_ttrpc_status()))
                }
            },
            Err(err) => {
                tracing::debug!(rpc, code = %err.code(), "agent request failed");
                Err(ttrpc::Error::RpcStatus(err.to_ttrpc_status()))
            }
        }
    }
}

macro_rules! impl_adapter {
    (
        health { $($hv:ident, $hrpc:literal, $hrule:literal, $hm:ident, $hreq:ty, $hwreq:ty, $hresp:ty, $hwresp:ty, $hlong:literal;)* }
        agent { $($av:ident, $arpc:literal, $arule:literal, $am:ident, $areq:ty, $awreq:ty, $aresp:ty, $awresp:ty, $along:literal;)* }
    ) => {
        #[async_trait]
        impl health_ttrpc::Health for Adapter {
            $(async fn $hm(&self, _ctx: &TtrpcContext, req: $hwreq) -> ttrpc::Result<$hwresp> {
                let request = AgentRequest::$hv(<$hreq as Wire<$hwreq>>::from_wire(req));
                self.handle::<$hresp, $hwresp>($hrpc, request).await
            })*
        }

        #[async_trait]
        impl agent_ttrpc::AgentService for Adapter {
            $(async fn $am(&self, _ctx: &TtrpcContext, req: $awreq) -> ttrpc::Result<$awresp> {
                let request = AgentRequest::$av(<$areq as Wire<$awreq>>::from_wire(req));
                self.handle::<$aresp, $awresp>($arpc, request).await
            })*
        }
    };
}
with_rpc_table!(impl_adapter);

fn build_server(listener: Listener, dispatcher: Arc<dyn AgentDispatcher>) -> Server {
    let adapter = Arc::new(Adapter { dispatcher });
    Server::new()
        .add_listener(listener)
        .register_service(health_ttrpc::create_health(adapter.clone()))
        .register_service(agent_ttrpc::create_agent_service(adapter))
}

async fn run_until(
    mut server: Server,
    until: impl Future<Output = ()>,
) -> Result<(), ProtocolError> {
    server
        .start()
        .await
        .map_err(|e| ProtocolError::Server(e.to_string()))?;
    until.await;
    server
        .shutdown()
        .await
        .map_err(|e| ProtocolError::Server(e.to_string()))
}

/// Serves `grpc.Health` and `grpc.AgentService` on `address` (`unix:///path` or
/// `vsock://-1:1024`) until `shutdown` completes, then closes the listener and the open
/// connections (waiting at most ttrpc's 10 s shutdown timeout).
///
/// A stale Unix socket file (nobody accepting on it) is replaced; a live one is an error. The
/// socket file is removed on return.
pub async fn serve(
    address: &str,
    dispatcher: Arc<dyn AgentDispatcher>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProtocolError> {
    let parsed = AgentAddress::parse(address).map_err(|reason| ProtocolError::InvalidAddress {
        address: address.to_owned(),
        reason,
    })?;
    let listener = bind(&parsed)?;
    tracing::info!(address = %parsed, "agent ttRPC server listening");
    let result = run_until(build_server(listener, dispatcher), shutdown).await;
    if let AgentAddress::Unix(path) = &parsed
        && !path.starts_with('@')
    {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn bind(address: &AgentAddress) -> Result<Listener, ProtocolError> {
    let bind_error = |source| ProtocolError::Bind {
        address: address.to_string(),
        source,
    };
    match address {
        AgentAddress::Unix(path) => {
            if !path.starts_with('@') {
                remove_stale_socket(path);
            }
            Listener::bind(address.to_string()).map_err(bind_error)
        }
        AgentAddress::Vsock { .. } => Listener::bind(address.to_string()).map_err(bind_error),
    }
}

/// Removes `path` if it is a Unix socket nobody accepts on (left over by a crashed agent).
fn remove_stale_socket(path: &str) {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket
        && let Err(err) = std::os::unix::net::UnixStream::connect(path)
        && err.kind() == std::io::ErrorKind::ConnectionRefused
    {
        tracing::info!(path, "removing stale agent socket");
        let _ = std::fs::remove_file(path);
    }
}

/// Serves both services on one already-connected byte stream (e.g. a virtio-serial port opened
/// by the agent, or one end of a socketpair) until the peer closes it (read EOF or error) or
/// `shutdown` completes, whichever comes first.
pub async fn serve_stream<S>(
    stream: S,
    dispatcher: Arc<dyn AgentDispatcher>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProtocolError>
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static,
{
    let (closed_tx, mut closed_rx) = watch::channel(false);
    let stream = CloseNotify {
        inner: stream,
        closed: closed_tx,
    };
    let connections =
        futures::stream::iter([Ok::<_, std::io::Error>(stream)]).chain(futures::stream::pending());
    let listener = Listener::new(connections);
    let until = async move {
        tokio::select! {
            () = shutdown => {}
            _ = closed_rx.wait_for(|closed| *closed) => {}
        }
    };
    run_until(build_server(listener, dispatcher), until).await
}

/// A stream that reports when its reader sees EOF or an error.
struct CloseNotify<S> {
    inner: S,
    closed: watch::Sender<bool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CloseNotify<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let wants = buf.remaining() > 0;
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(outcome) = &result {
            let eof = outcome.is_ok() && wants && buf.filled().len() == before;
            if eof || outcome.is_err() {
                self.closed.send_replace(true);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CloseNotify<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
