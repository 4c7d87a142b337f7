//! Host side: [`AgentClient`], typed calls with domain types and per-call timeouts.
//!
//! Building a client from a connection (ttrpc 0.10): `ttrpc::r#async::Client::new(Socket)` takes
//! any connected `AsyncRead + AsyncWrite` wrapped by `Socket::new`, or a tokio `UnixStream`
//! (`Socket::from`), or a std `UnixStream` (`Socket::try_from`, which sets non-blocking mode).
//! So the runtime can do the hybrid-vsock `CONNECT 1024\n` / `OK ...` handshake on a plain Unix
//! socket itself and hand the connected stream to [`AgentClient::from_unix_stream`] or
//! [`AgentClient::from_tokio_unix_stream`]. `Client::new` spawns the connection task, so these
//! constructors must run inside a Tokio runtime (checked; an error instead of ttrpc's panic).

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use ttrpc::r#async::transport::Socket;

use crate::address::AgentAddress;
use crate::convert::Wire;
use crate::error::{ClientError, Code, from_ttrpc_status};
use crate::request::{AgentRequest, AgentResponse, ResponseBody};
use crate::rpc_table::with_rpc_table;
use crate::types::*;
use crate::wire::{agent_ttrpc::AgentServiceClient, health_ttrpc::HealthClient};

/// Default timeout of ordinary calls (Kata's shim uses 60 s for most RPCs).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A ttRPC client of the in-guest agent. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct AgentClient {
    agent: AgentServiceClient,
    health: HealthClient,
    timeout: Option<Duration>,
    long_poll_timeout: Option<Duration>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("timeout", &self.timeout)
            .field("long_poll_timeout", &self.long_poll_timeout)
            .finish_non_exhaustive()
    }
}

fn no_runtime(what: &str) -> ClientError {
    ClientError::Connect {
        address: what.to_owned(),
        source: std::io::Error::other("AgentClient must be created inside a Tokio runtime"),
    }
}

impl AgentClient {
    fn from_socket(socket: Socket) -> Self {
        let client = ttrpc::r#async::Client::new(socket);
        AgentClient {
            agent: AgentServiceClient::new(client.clone()),
            health: HealthClient::new(client),
            timeout: Some(DEFAULT_TIMEOUT),
            long_poll_timeout: None,
        }
    }

    /// Wraps a connected std Unix stream (e.g. after the hybrid-vsock handshake). Must be called
    /// inside a Tokio runtime.
    pub fn from_unix_stream(stream: std::os::unix::net::UnixStream) -> Result<Self, ClientError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(no_runtime("unix stream"));
        }
        let socket = Socket::try_from(stream).map_err(|source| ClientError::Connect {
            address: "unix stream".to_owned(),
            source,
        })?;
        Ok(Self::from_socket(socket))
    }

    /// Wraps a connected tokio Unix stream. Must be called inside a Tokio runtime.
    pub fn from_tokio_unix_stream(stream: tokio::net::UnixStream) -> Result<Self, ClientError> {
        Self::from_stream(stream)
    }

    /// Wraps any connected byte stream (virtio-serial, socketpair, ...). Must be called inside a
    /// Tokio runtime.
    pub fn from_stream<S>(stream: S) -> Result<Self, ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + Sync + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(no_runtime("stream"));
        }
        Ok(Self::from_socket(Socket::new(stream)))
    }

    /// Connects to `unix:///path` or `vsock://CID:PORT`.
    pub async fn connect(address: &str) -> Result<Self, ClientError> {
        let parsed =
            AgentAddress::parse(address).map_err(|reason| ClientError::InvalidAddress {
                address: address.to_owned(),
                reason,
            })?;
        let connect_error = |source| ClientError::Connect {
            address: parsed.to_string(),
            source,
        };
        match &parsed {
            AgentAddress::Unix(_) => {
                let socket = Socket::connect(parsed.to_string())
                    .await
                    .map_err(connect_error)?;
                Ok(Self::from_socket(socket))
            }
            AgentAddress::Vsock { cid, .. } if *cid == crate::address::VSOCK_CID_ANY => {
                Err(ClientError::InvalidAddress {
                    address: address.to_owned(),
                    reason: "CID -1 (any) is only valid for listening".to_owned(),
                })
            }
            AgentAddress::Vsock { .. } => {
                let socket = Socket::connect(parsed.to_string())
                    .await
                    .map_err(connect_error)?;
                Ok(Self::from_socket(socket))
            }
        }
    }

    /// Returns a handle (same connection) whose ordinary calls use `timeout` (`None` = wait
    /// without limit). The default is [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    /// Returns a handle whose long polls (WaitProcess, ReadStdout, ReadStderr, GetOOMEvent) use
    /// `timeout`. The default is `None` (wait without limit), as Kata's shim does.
    pub fn with_long_poll_timeout(&self, timeout: Option<Duration>) -> Self {
        Self {
            long_poll_timeout: timeout,
            ..self.clone()
        }
    }

    /// The timeout of ordinary calls.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn timeout_for(&self, long_poll: bool) -> Option<Duration> {
        if long_poll {
            self.long_poll_timeout
        } else {
            self.timeout
        }
    }

    /// `GetGuestDetails` under its short name.
    pub async fn guest_details(
        &self,
        req: GuestDetailsRequest,
    ) -> Result<GuestDetailsResponse, ClientError> {
        self.get_guest_details(req).await
    }

    /// `GetOOMEvent` under the name the runtime uses.
    pub async fn oom_event(&self) -> Result<OOMEvent, ClientError> {
        self.get_oom_event(GetOOMEventRequest {}).await
    }
}

fn context(timeout: Option<Duration>) -> ttrpc::context::Context {
    match timeout {
        Some(timeout) => ttrpc::context::with_duration(timeout),
        None => ttrpc::context::Context::default(),
    }
}

fn client_error(
    rpc: &'static str,
    err: ttrpc::Error,
    timeout: Option<Duration>,
    started: Instant,
) -> ClientError {
    match err {
        ttrpc::Error::RpcStatus(status) => {
            let (code, message) = from_ttrpc_status(&status);
            match timeout {
                // The agent enforced the deadline this client sent with the request: the
                // same outcome as the client's own timer firing first.
                Some(limit) if code == Code::DeadlineExceeded && started.elapsed() >= limit => {
                    ClientError::Timeout {
                        rpc,
                        timeout_ms: limit.as_millis(),
                    }
                }
                _ => ClientError::Rpc { code, message },
            }
        }
        other => match timeout {
            Some(limit) if started.elapsed() >= limit => ClientError::Timeout {
                rpc,
                timeout_ms: limit.as_millis(),
            },
            _ => ClientError::Transport {
                rpc,
                detail: other.to_string(),
            },
        },
    }
}

macro_rules! impl_client {
    (
        health { $($hv:ident, $hrpc:literal, $hrule:literal, $hm:ident, $hreq:ty, $hwreq:ty, $hresp:ty, $hwresp:ty, $hlong:literal;)* }
        agent { $($av:ident, $arpc:literal, $arule:literal, $am:ident, $areq:ty, $awreq:ty, $aresp:ty, $awresp:ty, $along:literal;)* }
    ) => {
        impl AgentClient {
            $(
                #[doc = concat!("Calls `grpc.Health/", $hrpc, "`.")]
                pub async fn $hm(&self, req: $hreq) -> Result<$hresp, ClientError> {
                    let timeout = self.timeout_for($hlong);
                    let started = Instant::now();
                    let wire: $hwreq = req.into_wire();
                    self.health
                        .$hm(context(timeout), &wire)
                        .await
                        .map(<$hresp as Wire<$hwresp>>::from_wire)
                        .map_err(|e| client_error($hrpc, e, timeout, started))
                }
            )*
            $(
                #[doc = concat!("Calls `grpc.AgentService/", $arpc, "`.")]
                pub async fn $am(&self, req: $areq) -> Result<$aresp, ClientError> {
                    let timeout = self.timeout_for($along);
                    let started = Instant::now();
                    let wire: $awreq = req.into_wire();
                    self.agent
                        .$am(context(timeout), &wire)
                        .await
                        .map(<$aresp as Wire<$awresp>>::from_wire)
                        .map_err(|e| client_error($arpc, e, timeout, started))
                }
            )*

            /// Sends any request and returns the matching [`AgentResponse`] variant.
            pub async fn call(&self, req: AgentRequest) -> Result<AgentResponse, ClientError> {
                match req {
                    $(AgentRequest::$hv(r) => self.$hm(r).await.map(ResponseBody::into_response),)*
                    $(AgentRequest::$av(r) => self.$am(r).await.map(ResponseBody::into_response),)*
                }
            }
        }
    };
}
with_rpc_table!(impl_client);
