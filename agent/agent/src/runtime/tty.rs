//! Pseudo-terminals for `terminal: true` processes.
//!
//! As runc and the Kata agent do, the pty comes from the **container's own** devpts instance
//! (mounted with `newinstance` at the container's `/dev/pts`), never from the agent's: the
//! helper opens `/dev/pts/ptmx` after it entered the container's mount namespace, makes the
//! slave its stdio (and, in `exec_process`, its controlling terminal), and hands the master
//! to the agent over the control socket with `SCM_RIGHTS`. So `ttyname(3)` resolves to a
//! `/dev/pts/N` inside the container, and the agent only ever holds the master.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use agent_core::{HostError, ProcessIo, TtyControl};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use super::fdio::FdStream;

/// The container's pty multiplexer (`/dev/ptmx` is a symlink to it).
const CONTAINER_PTMX: &str = "/dev/pts/ptmx";

struct Pty {
    master: OwnedFd,
}

fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize; `fd` is an open terminal descriptor.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl TtyControl for Pty {
    fn resize(&self, rows: u16, cols: u16) -> Result<(), HostError> {
        set_winsize(self.master.as_raw_fd(), rows, cols)
            .map_err(|e| HostError::io("resize terminal", e))
    }
}

/// The agent's side of a container pty: the master received from the helper becomes the
/// process' stdin writer, stdout reader and resize handle (a terminal has no separate stderr).
pub(super) fn io_from_master(master: OwnedFd) -> Result<ProcessIo, HostError> {
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| HostError::io("dup pty", e));
    let reader = FdStream::new(dup(&master)?).map_err(|e| HostError::io("register pty", e))?;
    let writer = FdStream::new(dup(&master)?).map_err(|e| HostError::io("register pty", e))?;
    Ok(ProcessIo {
        stdin: Some(Box::new(writer)),
        stdout: Some(Box::new(reader)),
        stderr: None,
        tty: Some(Box::new(Pty { master })),
    })
}

/// Placeholder stdio for a terminal helper until it has opened the container's pty:
/// `/dev/null` three times.
pub(super) fn null_stdio() -> Result<(OwnedFd, OwnedFd, OwnedFd), HostError> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| HostError::io("open /dev/null", e))
    };
    Ok((open()?, open()?, open()?))
}

/// In the helper, inside the container's mount namespace: opens a pty from the container's
/// devpts, sets its size, and makes the slave fds 0, 1 and 2. Returns the master.
pub(super) fn open_in_container(size: Option<(u16, u16)>) -> Result<OwnedFd, String> {
    let path = std::ffi::CString::new(CONTAINER_PTMX).map_err(|e| e.to_string())?;
    // SAFETY: open(2) with a NUL-terminated path.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "terminal: open {CONTAINER_PTMX} (the container needs a devpts mount at /dev/pts): {e}"
        ));
    }
    // SAFETY: `raw` was just returned by open(2) and is owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(raw) };
    let fs = nix::sys::statfs::fstatfs(&master).map_err(|e| format!("terminal: statfs: {e}"))?;
    if fs.filesystem_type() != nix::sys::statfs::DEVPTS_SUPER_MAGIC {
        return Err(format!(
            "terminal: {CONTAINER_PTMX} is not on a devpts filesystem"
        ));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; `master` is an open pty master.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("terminal: unlock pty: {e}"));
    }
    let slave = open_peer(&master)?;
    if let Some((rows, cols)) = size {
        set_winsize(master.as_raw_fd(), rows, cols)
            .map_err(|e| format!("terminal: set size: {e}"))?;
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors of this single-threaded helper.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!("terminal: dup2: {e}"));
        }
    }
    Ok(master)
}

/// The slave of `master`: `TIOCGPTPEER` (no path lookup), else `/dev/pts/N`.
fn open_peer(master: &OwnedFd) -> Result<OwnedFd, String> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new descriptor.
    let raw = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if raw >= 0 {
        // SAFETY: a new descriptor returned by the kernel, owned by nobody else.
        return Ok(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("terminal: pty number: {e}"));
    }
    let path = std::ffi::CString::new(format!("/dev/pts/{n}")).map_err(|e| e.to_string())?;
    // SAFETY: open(2) with a NUL-terminated path.
    let raw = unsafe { libc::open(path.as_ptr(), flags) };
    if raw < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("terminal: open /dev/pts/{n}: {e}"));
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends `data` with `fd` attached (`SCM_RIGHTS`) on the control socket.
pub(super) fn send_with_fd(control: &UnixStream, data: &[u8], fd: &OwnedFd) -> Result<(), String> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(data)];
    let sent = sendmsg::<()>(control.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| format!("send terminal to agent: {e}"))?;
    if sent != data.len() {
        return Err("send terminal to agent: short write".into());
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes from the control socket, collecting a descriptor passed
/// with them (the first one; extra ones are closed). Honors the socket's read timeout.
pub(super) fn recv_with_fd(
    control: &UnixStream,
    buf: &mut [u8],
    fd: &mut Option<OwnedFd>,
) -> std::io::Result<usize> {
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        control.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let n = msg.bytes;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raws) = c {
            for raw in raws {
                // SAFETY: the kernel installed this descriptor for us; nobody else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if fd.is_none() {
                    *fd = Some(owned);
                }
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Write;

    #[test]
    fn a_descriptor_travels_with_the_first_byte() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        (&file).write_all(b"payload").unwrap();
        send_with_fd(&a, b"ok\n", &OwnedFd::from(file)).unwrap();
        let mut got = None;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while recv_with_fd(&b, &mut byte, &mut got).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        assert_eq!(line, b"ok");
        let fd = got.expect("no descriptor received");
        let mut f = std::fs::File::from(fd);
        use std::io::{Read, Seek};
        f.rewind().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "payload");
    }
}
