//! Pseudo-terminals for `terminal: true` processes.

use std::os::fd::{AsRawFd, OwnedFd};

use agent_core::{HostError, ProcessIo, TtyControl};

use super::fdio::FdStream;

struct Pty {
    master: OwnedFd,
}

impl TtyControl for Pty {
    fn resize(&self, rows: u16, cols: u16) -> Result<(), HostError> {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on our pty master.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(HostError::io(
                "resize terminal",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// Opens a pty: the slave (three times) for the child, the master for the agent.
pub(super) fn open(
    console: Option<(u16, u16)>,
) -> Result<((OwnedFd, OwnedFd, OwnedFd), ProcessIo), HostError> {
    let ws = console.map(|(rows, cols)| nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    });
    let pty = nix::pty::openpty(ws.as_ref(), None)
        .map_err(|e| HostError::io("open pty", std::io::Error::from(e)))?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| HostError::io("dup pty", e));
    for fd in [&pty.master, &pty.slave] {
        // SAFETY: setting FD_CLOEXEC on descriptors we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let reader = FdStream::new(dup(&pty.master)?).map_err(|e| HostError::io("register pty", e))?;
    let writer = FdStream::new(dup(&pty.master)?).map_err(|e| HostError::io("register pty", e))?;
    let child = (dup(&pty.slave)?, dup(&pty.slave)?, pty.slave);
    let io = ProcessIo {
        stdin: Some(Box::new(writer)),
        stdout: Some(Box::new(reader)),
        stderr: None,
        tty: Some(Box::new(Pty { master: pty.master })),
    };
    Ok((child, io))
}
