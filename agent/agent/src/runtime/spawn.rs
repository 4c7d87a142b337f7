//! Starting the container-init helper: `clone(2)` with the requested namespace flags, then
//! `execveat(<fd of /proc/self/exe>, "", ["cocoon-agent", "--container-init"],
//! AT_EMPTY_PATH)` in the child. Exec through an opened descriptor is the same file as the
//! path; it also lets the agent run under valgrind (scripts/agent-symbol-order.sh), which
//! maps an `open` of /proc/self/exe to the program it runs but not an `execve` of it.
//!
//! The clone is vfork-style (`CLONE_VM | CLONE_VFORK`, as `posix_spawn` does): the child runs
//! on a small stack of its own in the agent's address space until it execs, so the agent's
//! page tables are not copied (under TCG that copy was ~20 ms of every CreateContainer and
//! exec). The child does only async-signal-safe work between clone and exec (`fcntl`,
//! `dup2`, `execveat`, `_exit`) on data prepared beforehand, with every signal blocked so no
//! handler of the agent runs in it; the helper unblocks them when it starts. For
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

/// Starts the helper with namespace `clone_flags` (`CLONE_NEW*`), optionally inside the pid
/// namespace of `join_pid_ns_of`. Returns the child's pid.
pub fn spawn_helper(
    clone_flags: u64,
    join_pid_ns_of: Option<i32>,
    fds: &ChildFds,
) -> io::Result<i32> {
    let exe = std::fs::File::open("/proc/self/exe")?;
    let empty = CString::new("").map_err(io::Error::other)?;
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
                let mut child = ChildArgs {
                    raw: &raw,
                    exe: exe.as_raw_fd(),
                    empty: &empty,
                    argv: &argv,
                    envp: &envp,
                };
                let flags = i32::try_from(clone_flags)
                    .map_err(|_| io::Error::other("clone flags out of range"))?;
                let mut stack = vec![0u8; CHILD_STACK];
                // All signals blocked across the clone: no handler of ours may run in the
                // child while it shares our memory. It execs with them blocked and the
                // helper unblocks them first thing (`helper::main`).
                let old = block_all_signals();
                // The stack grows down: pass its 16-byte aligned top.
                let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
                // SAFETY: posix_spawn's model: CLONE_VM | CLONE_VFORK runs the child on
                // `stack` in our address space while this thread is suspended until the
                // child execs or exits; the child only makes async-signal-safe calls on
                // `child`, which outlives the call because this thread waits.
                let ret = unsafe {
                    libc::clone(
                        child_main,
                        top as *mut libc::c_void,
                        flags | libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                        &mut child as *mut ChildArgs as *mut libc::c_void,
                    )
                };
                let clone_error = io::Error::last_os_error();
                restore_signals(&old);
                drop(stack);
                if ret < 0 {
                    return Err(clone_error);
                }
                Ok(ret as i32)
            })
            .join()
            .map_err(|_| io::Error::other("spawner thread panicked"))?
    })
}

/// Blocks every signal in this thread; returns the previous mask.
fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask only write to it.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

/// Restores a mask saved by [`block_all_signals`].
fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: setting this thread's mask from a valid sigset_t.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// Unblocks every signal in this (single-threaded helper) process.
pub fn unblock_all_signals() {
    // SAFETY: an empty sigset_t, set as this thread's mask.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Stack of the vfork-style child until it execs.
const CHILD_STACK: usize = 64 * 1024;

/// What the child needs, prepared before the clone.
struct ChildArgs<'a> {
    raw: &'a [i32; 4],
    exe: i32,
    empty: &'a CString,
    argv: &'a [*const libc::c_char; 3],
    envp: &'a [*const libc::c_char; 1],
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent passed to clone, alive while the parent
    // is suspended (CLONE_VFORK).
    let a = unsafe { &*(arg as *const ChildArgs) };
    // SAFETY: we are the freshly cloned child.
    unsafe { child_exec(a.raw, a.exe, a.empty, a.argv, a.envp) }
}

/// # Safety
/// Must only be called in a freshly cloned child; never returns.
unsafe fn child_exec(
    raw: &[i32; 4],
    exe: i32,
    empty: &CString,
    argv: &[*const libc::c_char; 3],
    envp: &[*const libc::c_char; 1],
) -> ! {
    // SAFETY: fcntl/dup2/execveat/_exit are async-signal-safe, and every pointer refers to
    // memory prepared before the clone.
    unsafe {
        // Out of the way of the dup2s below (the binary's descriptor may be 0..=3).
        let exe = libc::fcntl(exe, libc::F_DUPFD_CLOEXEC, 100);
        if exe < 0 {
            libc::_exit(126);
        }
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
        libc::execveat(
            exe,
            empty.as_ptr(),
            argv.as_ptr() as *const *mut libc::c_char,
            envp.as_ptr() as *const *mut libc::c_char,
            libc::AT_EMPTY_PATH,
        );
        libc::_exit(127)
    }
}
