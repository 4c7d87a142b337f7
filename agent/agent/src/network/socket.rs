//! A blocking `NETLINK_ROUTE` socket: one request at a time, acknowledged or dumped.
//! [`super::NetlinkHost`] opens one per RPC on a blocking thread, so no connection task and
//! no shared state live in the agent between calls.

use nix::sys::time::TimeVal;
use std::os::fd::{AsRawFd, OwnedFd};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};

/// How long the kernel may take to answer one request.
const RECV_TIMEOUT_SECS: i64 = 5;
/// Receive buffer: the kernel never sends a datagram larger than a page-sized dump chunk
/// (at most 32 KiB), so 64 KiB always holds one.
const RECV_BUFFER: usize = 64 * 1024;

/// A netlink failure.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened or used.
    #[error("netlink socket: {0}")]
    Socket(#[from] nix::Error),
    /// The kernel refused the request.
    #[error("{0}")]
    Kernel(std::io::Error),
    /// The kernel sent something that does not decode.
    #[error("netlink reply does not decode: {0}")]
    Decode(String),
}

impl NetlinkError {
    /// The errno the kernel answered with, if it refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel(e) => e.raw_os_error(),
            NetlinkError::Socket(e) => Some(*e as i32),
            NetlinkError::Decode(_) => None,
        }
    }
}

/// A connected rtnetlink socket.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::new(RECV_TIMEOUT_SECS, 0),
        )?;
        Ok(Rtnl {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUFFER],
        })
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::empty())?;
        Ok(self.seq)
    }

    /// Receives the answers to request `seq`: up to the acknowledgement of a change, or up to
    /// `NLMSG_DONE` of a dump; returns the messages collected.
    fn receive(&mut self, seq: u32, dump: bool) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut out = Vec::new();
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())?;
            let mut offset = 0;
            while offset < n {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[offset..n])
                        .map_err(|e| NetlinkError::Decode(e.to_string()))?;
                let len = message.header.length as usize;
                if len == 0 {
                    return Err(NetlinkError::Decode("zero-length message".into()));
                }
                // Messages are 4-byte aligned in a datagram.
                offset += (len + 3) & !3;
                if message.header.sequence_number != seq {
                    continue;
                }
                match message.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None if !dump => return Ok(out),
                        None => {}
                        Some(_) => return Err(NetlinkError::Kernel(e.to_io())),
                    },
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// Sends a change request and waits for the kernel's acknowledgement.
    pub fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let seq = self.send(message, flags | NLM_F_ACK)?;
        self.receive(seq, false).map(|_| ())
    }

    /// Sends a dump request and collects every answer.
    pub fn dump(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let seq = self.send(message, NLM_F_DUMP)?;
        self.receive(seq, true)
    }
}
