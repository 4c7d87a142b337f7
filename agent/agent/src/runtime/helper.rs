//! The container-init helper: the agent binary started as `cocoon-agent --container-init`
//! by [`spawn_helper`](super::spawn::spawn_helper), already in its new namespaces. It is
//! single-threaded, so it may mount, `setns` and `pivot_root` freely. It reads a
//! [`HelperPlan`] from fd 3, sets the container up, answers `ok` (or `err <reason>`), waits
//! for the start byte when creating, and execs the program. fd 3 is close-on-exec, so the
//! agent reads EOF once the exec succeeded, or `err exec ...` if it failed.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::plan::{ContainerSetup, HelperPlan, MountPlan, ProcessPlan, Setup};

type Res<T> = Result<T, String>;

fn errno(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Runs the helper; never returns.
pub fn main() -> ! {
    // The spawner exec'd us with every signal blocked (see `spawn`).
    super::spawn::unblock_all_signals();
    // SAFETY: fd 3 was placed by the spawner and is owned by nobody else in this process.
    let mut control = unsafe { UnixStream::from(OwnedFd::from_raw_fd(3)) };
    // SAFETY: close_range on descriptors this fresh process does not use; FD_CLOEXEC on our
    // control socket so the agent sees EOF when the program was exec'd.
    unsafe {
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        libc::fcntl(3, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let result = read_plan(&mut control).and_then(|plan| run(plan, &mut control));
    if let Err(msg) = result {
        let _ = control.write_all(format!("err {msg}\n").as_bytes());
    }
    // SAFETY: plain process exit.
    unsafe { libc::_exit(127) }
}

fn read_plan(control: &mut UnixStream) -> Res<HelperPlan> {
    let mut len = [0u8; 4];
    control
        .read_exact(&mut len)
        .map_err(|e| errno("read plan", e))?;
    let len = u32::from_le_bytes(len) as usize;
    if len > 16 << 20 {
        return Err("plan too large".into());
    }
    let mut buf = vec![0u8; len];
    control
        .read_exact(&mut buf)
        .map_err(|e| errno("read plan", e))?;
    serde_json::from_slice(&buf).map_err(|e| errno("decode plan", e))
}

fn run(plan: HelperPlan, control: &mut UnixStream) -> Res<()> {
    match &plan.setup {
        Setup::Create(setup) => {
            create(setup)?;
            report_ok(control, &plan.process)?;
            let mut go = [0u8; 1];
            match control.read(&mut go) {
                Ok(1) => {}
                _ => {
                    // The agent gave up on this container.
                    // SAFETY: plain process exit.
                    unsafe { libc::_exit(1) }
                }
            }
        }
        Setup::Exec { init_pid } => {
            enter(*init_pid)?;
            report_ok(control, &plan.process)?;
        }
    }
    exec_process(&plan.process)
}

/// Answers `ok`; for a terminal process first opens the pty in the container's devpts
/// (now that we are in its mount namespace) and sends the master along with the answer.
fn report_ok(control: &mut UnixStream, p: &ProcessPlan) -> Res<()> {
    if p.terminal {
        let master = super::tty::open_in_container(p.console_size)?;
        super::tty::send_with_fd(control, b"ok\n", &master)
    } else {
        control.write_all(b"ok\n").map_err(|e| errno("report", e))
    }
}

fn enter(init_pid: i32) -> Res<()> {
    // Open all first: after entering the mount namespace /proc is the container's.
    let mut files = Vec::new();
    for kind in ["cgroup", "ipc", "uts", "mnt"] {
        let path = format!("/proc/{init_pid}/ns/{kind}");
        let f =
            std::fs::File::open(&path).map_err(|e| errno(&format!("open {kind} namespace"), e))?;
        files.push((kind, f));
    }
    for (kind, f) in &files {
        nix::sched::setns(f, nix::sched::CloneFlags::empty())
            .map_err(|e| errno(&format!("enter {kind} namespace"), e))?;
    }
    Ok(())
}

fn create(s: &ContainerSetup) -> Res<()> {
    for (kind, path) in &s.join {
        let f =
            std::fs::File::open(path).map_err(|e| errno(&format!("open {kind} namespace"), e))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::empty())
            .map_err(|e| errno(&format!("join pod {kind} namespace"), e))?;
    }
    if s.new_cgroup_ns {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| errno("new cgroup namespace", e))?;
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| errno("make / private", e))?;
    let root = PathBuf::from(&s.rootfs);
    mount(
        Some(&root),
        &root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| errno("bind rootfs", e))?;
    let mut dev_mounted = false;
    let mut pts_mounted = false;
    for m in &s.mounts {
        do_mount(&root, m)?;
        dev_mounted |= m.destination == "/dev";
        pts_mounted |= m.destination.trim_end_matches('/') == "/dev/pts";
    }
    if dev_mounted {
        if !pts_mounted {
            mount_own_devpts(&root)?;
        }
        populate_dev(&root)?;
    }
    for d in &s.devices {
        make_device(&root, d)?;
    }
    pivot(&root)?;
    for p in &s.masked_paths {
        mask(p)?;
    }
    for p in &s.readonly_paths {
        if Path::new(p).exists() {
            bind_readonly(p)?;
        }
    }
    if s.readonly_root {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| errno("remount / read-only", e))?;
    }
    if let Some(h) = &s.hostname {
        nix::unistd::sethostname(h).map_err(|e| errno("sethostname", e))?;
    }
    for (k, v) in &s.sysctl {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        std::fs::write(&path, v).map_err(|e| errno(&format!("sysctl {k}"), e))?;
    }
    Ok(())
}

/// Joins `dest` (absolute, container view) to `root` without leaving it through symlinks:
/// each existing component is resolved only if it stays below the root.
fn in_root(root: &Path, dest: &str) -> Res<PathBuf> {
    let mut out = root.to_path_buf();
    for comp in dest.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return Err(format!("path {dest:?} contains .."));
        }
        out.push(comp);
        if std::fs::symlink_metadata(&out).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(format!("mount destination {dest:?} goes through a symlink"));
        }
    }
    Ok(out)
}

fn do_mount(root: &Path, m: &MountPlan) -> Res<()> {
    let target = in_root(root, &m.destination)?;
    let bind = m.fstype == "bind";
    let src_is_file = bind && std::fs::metadata(&m.source).is_ok_and(|md| !md.is_dir());
    if src_is_file {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| errno(&format!("mkdir for {}", m.destination), e))?;
        }
        if !target.exists() {
            std::fs::write(&target, b"")
                .map_err(|e| errno(&format!("create {}", m.destination), e))?;
        }
    } else {
        std::fs::create_dir_all(&target)
            .map_err(|e| errno(&format!("mkdir {}", m.destination), e))?;
    }
    let flags = MsFlags::from_bits_truncate(m.flags as libc::c_ulong);
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    let what = format!("mount {} on {}", m.fstype, m.destination);
    if bind {
        mount(
            Some(m.source.as_str()),
            &target,
            None::<&str>,
            flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
            None::<&str>,
        )
        .map_err(|e| errno(&what, e))?;
        let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                extra | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(|e| errno(&format!("{what} (remount)"), e))?;
        }
    } else {
        let fstype = if m.fstype == "cgroup" {
            "cgroup2"
        } else {
            m.fstype.as_str()
        };
        let res = mount(Some(m.source.as_str()), &target, Some(fstype), flags, data);
        match res {
            Ok(()) => {}
            // A cgroup mount is best effort (a host without a usable cgroup2).
            Err(_) if fstype == "cgroup2" => {}
            Err(e) => return Err(errno(&what, e)),
        }
    }
    if m.propagation != 0 {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::from_bits_truncate(m.propagation as libc::c_ulong),
            None::<&str>,
        )
        .map_err(|e| errno(&format!("{what} (propagation)"), e))?;
    }
    Ok(())
}

/// A spec that mounts a fresh /dev but no /dev/pts still gets a devpts instance of its own
/// (terminals are allocated from it, never from the agent's).
fn mount_own_devpts(root: &Path) -> Res<()> {
    let target = root.join("dev/pts");
    std::fs::create_dir_all(&target).map_err(|e| errno("mkdir /dev/pts", e))?;
    mount(
        Some("devpts"),
        &target,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| errno("mount devpts on /dev/pts", e))
}

fn populate_dev(root: &Path) -> Res<()> {
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = root.join("dev").join(name);
        if !target.exists() {
            std::fs::write(&target, b"").map_err(|e| errno(&format!("create /dev/{name}"), e))?;
        }
        let src = format!("/dev/{name}");
        mount(
            Some(src.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| errno(&format!("bind /dev/{name}"), e))?;
    }
    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = root.join("dev").join(link);
        if std::fs::symlink_metadata(&p).is_err() {
            std::os::unix::fs::symlink(to, &p)
                .map_err(|e| errno(&format!("symlink /dev/{link}"), e))?;
        }
    }
    Ok(())
}

fn make_device(root: &Path, d: &super::plan::DevicePlan) -> Res<()> {
    let target = in_root(root, &d.path)?;
    let kind = match d.kind.as_str() {
        "c" | "u" => libc::S_IFCHR,
        "b" => libc::S_IFBLK,
        "p" => libc::S_IFIFO,
        other => return Err(format!("device {}: unknown type {other:?}", d.path)),
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| errno("mkdir for device", e))?;
    }
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    let path = CString::new(target.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: mknod with a NUL-terminated path.
    if unsafe { libc::mknod(path.as_ptr(), kind | (d.mode & 0o7777), dev) } != 0 {
        return Err(errno(
            &format!("mknod {}", d.path),
            std::io::Error::last_os_error(),
        ));
    }
    nix::unistd::chown(&target, Some(d.uid.into()), Some(d.gid.into()))
        .map_err(|e| errno(&format!("chown {}", d.path), e))
}

fn pivot(root: &Path) -> Res<()> {
    nix::unistd::chdir(root).map_err(|e| errno("chdir rootfs", e))?;
    match nix::unistd::pivot_root(".", ".") {
        Ok(()) => {
            // The old root is stacked under the new one at "/": detach it.
            umount2(".", MntFlags::MNT_DETACH).map_err(|e| errno("detach old root", e))?;
        }
        // No chroot fallback: a chroot can be escaped. PID 1 leaves the initramfs at boot
        // (`switch_root`), so EINVAL here means that did not happen.
        Err(e) => return Err(errno("pivot_root (is / still the initramfs?)", e)),
    }
    nix::unistd::chdir("/").map_err(|e| errno("chdir /", e))
}

fn mask(p: &str) -> Res<()> {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| errno(&format!("mask {p}"), e)),
        Ok(_) => mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| errno(&format!("mask {p}"), e)),
        Err(_) => Ok(()),
    }
}

fn bind_readonly(p: &str) -> Res<()> {
    mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| errno(&format!("bind {p}"), e))?;
    mount(
        None::<&str>,
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| errno(&format!("read-only {p}"), e))
}

fn exec_process(p: &ProcessPlan) -> Res<()> {
    nix::unistd::setsid().map_err(|e| errno("setsid", e))?;
    if p.terminal {
        // SAFETY: TIOCSCTTY on stdin (the pty slave) with argument 0.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
            return Err(errno(
                "set controlling terminal",
                std::io::Error::last_os_error(),
            ));
        }
    }
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| errno("oom_score_adj", e))?;
    }
    for (res, soft, hard) in &p.rlimits {
        let lim = libc::rlimit {
            rlim_cur: *soft,
            rlim_max: *hard,
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(*res as _, &lim) } != 0 {
            return Err(errno("setrlimit", std::io::Error::last_os_error()));
        }
    }
    if let Some(mask) = p.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            mask as libc::mode_t,
        ));
    }
    nix::unistd::chdir(p.cwd.as_str()).map_err(|e| errno(&format!("chdir {}", p.cwd), e))?;
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: install it before the
    // user and capability switch (whose syscalls the profile must then allow, as with runc).
    if !p.no_new_privileges {
        super::seccomp::install(&p.seccomp)?;
    }
    super::caps::switch_user(p)?;
    if p.no_new_privileges {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(errno("no_new_privs", std::io::Error::last_os_error()));
        }
    }
    let program = resolve(&p.args[0], &p.env)?;
    let cstr = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in {s:?}"));
    let argv: Vec<CString> = p.args.iter().map(|a| cstr(a)).collect::<Res<_>>()?;
    let envp: Vec<CString> = p.env.iter().map(|a| cstr(a)).collect::<Res<_>>()?;
    reset_signals();
    if p.no_new_privileges {
        // As late as possible: only execve itself runs under the filter.
        super::seccomp::install(&p.seccomp)?;
    }
    let err = nix::unistd::execve(&cstr(&program)?, &argv, &envp).err();
    Err(format!(
        "exec {}: {}",
        p.args[0],
        err.map(|e| e.desc()).unwrap_or("failed")
    ))
}

fn resolve(arg0: &str, env: &[String]) -> Res<String> {
    if arg0.contains('/') {
        return Ok(arg0.to_string());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::plan::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = format!("{dir}/{arg0}");
        if std::fs::metadata(&cand).is_ok_and(|m| m.is_file()) {
            return Ok(cand);
        }
    }
    Err(format!("exec {arg0}: not found in PATH"))
}

fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: restoring the default disposition; no handler pointer involved.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}
