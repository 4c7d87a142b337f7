//! Switching to the container user with the requested capabilities.

use super::plan::{CapsPlan, ProcessPlan};

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn mask(caps: &[u8]) -> u64 {
    caps.iter()
        .filter(|c| **c < 64)
        .fold(0u64, |m, c| m | (1u64 << c))
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Drops the bounding set, switches uid/gid/groups, then sets the capability sets.
pub fn switch_user(p: &ProcessPlan) -> Result<(), String> {
    if let Some(c) = &p.caps {
        let keep = mask(&c.bounding);
        for cap in 0..=last_cap() {
            if keep & (1u64 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0
                {
                    return Err(os_err("drop bounding capability"));
                }
            }
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            return Err(os_err("keepcaps"));
        }
    }
    let groups: Vec<nix::unistd::Gid> = p.additional_gids.iter().map(|g| (*g).into()).collect();
    nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(p.gid.into(), p.gid.into(), p.gid.into())
        .map_err(|e| format!("setgid: {e}"))?;
    nix::unistd::setresuid(p.uid.into(), p.uid.into(), p.uid.into())
        .map_err(|e| format!("setuid: {e}"))?;
    if let Some(c) = &p.caps {
        set_caps(c)?;
    }
    Ok(())
}

fn set_caps(c: &CapsPlan) -> Result<(), String> {
    let (e, pm, i) = (mask(&c.effective), mask(&c.permitted), mask(&c.inheritable));
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: e as u32,
            permitted: pm as u32,
            inheritable: i as u32,
        },
        CapData {
            effective: (e >> 32) as u32,
            permitted: (pm >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: capset with a v3 header and two data structs, as the ABI requires.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } != 0 {
        return Err(os_err("capset"));
    }
    for cap in &c.ambient {
        // SAFETY: prctl with integer arguments.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                *cap as libc::c_ulong,
                0,
                0,
            )
        };
        if r != 0 {
            return Err(os_err("raise ambient capability"));
        }
    }
    Ok(())
}
