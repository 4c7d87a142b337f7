//! Starting the container-init helper: `clone3(2)` with the requested namespace flags, then
//! `execve("/proc/self/exe", ["cocoon-agent", "--container-init"])` in the child.
//!
//! The agent is multi-threaded, so the child does only async-signal-safe work between clone
//! and exec (`fcntl`, `dup2`, `execve`, `_exit`), with every argument prepared beforehand. For
//! an exec into a running container, a short-lived thread first enters the container's pid
//! namespace with `setns(CLONE_NEWPID)` — which changes only that thread's namespace for
//! children — so the new process is a direct child of the agent (the reaper sees its exit)
//! and pid-namespace member of the container. The spawner never waits for the child: exits
//! are collected by the one [`Reaper`](crate::reaper::Reaper).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// Argument that selects the helper mode of the agent binary.
pub const HELPER_ARG: &str = "--container-init";

/// The four descriptors the helper gets as 0, 1, 2 and 3.
pub struct ChildFds {
    /// Becomes stdin.
    pub stdin: OwnedFd,
    /// Becomes stdout.
    pub stdout: OwnedFd,
    /// Becomes stderr.
    pub stderr: OwnedFd,
    /// Becomes fd 3: the control socket to the agent.
    pub control: OwnedFd,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Starts the helper with namespace `clone_flags` (`CLONE_NEW*`), optionally inside the pid
/// namespace of `join_pid_ns_of`. Returns the child's pid.
pub fn spawn_helper(
    clone_flags: u64,
    join_pid_ns_of: Option<i32>,
    fds: &ChildFds,
) -> io::Result<i32> {
    let exe = CString::new("/proc/self/exe").map_err(io::Error::other)?;
    let arg0 = CString::new("cocoon-agent").map_err(io::Error::other)?;
    let arg1 = CString::new(HELPER_ARG).map_err(io::Error::other)?;
    let raw = [
        fds.stdin.as_raw_fd(),
        fds.stdout.as_raw_fd(),
        fds.stderr.as_raw_fd(),
        fds.control.as_raw_fd(),
    ];
    let pid_ns = match join_pid_ns_of {
        Some(pid) => Some(std::fs::File::open(format!("/proc/{pid}/ns/pid"))?),
        None => None,
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null::<libc::c_char>()];
                if let Some(ns) = &pid_ns {
                    // SAFETY: setns on an open namespace file; affects only this thread's
                    // pid namespace for children, and the thread ends right after.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                let mut args = CloneArgs {
                    flags: clone_flags,
                    exit_signal: libc::SIGCHLD as u64,
                    ..Default::default()
                };
                // SAFETY: clone3 with no stack behaves like fork; `args` outlives the call.
                let ret = unsafe {
                    libc::syscall(
                        libc::SYS_clone3,
                        &mut args as *mut CloneArgs,
                        std::mem::size_of::<CloneArgs>(),
                    )
                };
                if ret < 0 {
                    return Err(io::Error::last_os_error());
                }
                if ret == 0 {
                    // SAFETY: in the child of a multi-threaded process: only
                    // async-signal-safe calls on data prepared before the clone.
                    unsafe { child_exec(&raw, &exe, &argv, &envp) }
                }
                Ok(ret as i32)
            })
            .join()
            .map_err(|_| io::Error::other("spawner thread panicked"))?
    })
}

/// # Safety
/// Must only be called in a freshly cloned child; never returns.
unsafe fn child_exec(
    raw: &[i32; 4],
    exe: &CString,
    argv: &[*const libc::c_char; 3],
    envp: &[*const libc::c_char; 1],
) -> ! {
    // SAFETY: fcntl/dup2/execve/_exit are async-signal-safe, and every pointer refers to
    // memory prepared before the clone.
    unsafe {
        let mut high = [-1i32; 4];
        for (i, fd) in raw.iter().enumerate() {
            high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 100);
            if high[i] < 0 {
                libc::_exit(126);
            }
        }
        for (target, fd) in high.iter().enumerate() {
            if libc::dup2(*fd, target as i32) < 0 {
                libc::_exit(126);
            }
        }
        libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
        libc::_exit(127)
    }
}
