//! The OCI spec's `linux.seccomp`, compiled to classic BPF in the agent (pure Rust:
//! `seccompiler` for the programs, `syscalls` for the name table; no libseccomp) and
//! installed by the container-init helper just before it execs the program.
//!
//! A profile can give every syscall its own action, while a `seccompiler` filter has one
//! match and one mismatch action. The kernel runs every installed filter and obeys the most
//! severe verdict (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > TRACE > LOG > ALLOW), so a
//! profile becomes a stack of filters:
//! - one filter per distinct non-ALLOW action (with its errno): the syscalls (and argument
//!   conditions) carrying that action return it, everything else is allowed;
//! - a default filter: every syscall the profile names (with its conditions) is allowed,
//!   everything else gets `defaultAction` (left out when that is ALLOW);
//! - on x86_64, a filter killing x32-ABI calls (their numbers would slip past the rules).
//!
//! Only the native architecture is filtered; calls from another ABI (e.g. i386 `int 0x80`)
//! kill the process, as libseccomp's default bad-architecture action does. Syscall names
//! this architecture lacks are skipped (profiles list names of every architecture), as
//! libseccomp does. `SCMP_ACT_NOTIFY` (needs a listener) is refused.

use std::collections::BTreeMap;
use std::str::FromStr;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

/// The default errno of `SCMP_ACT_ERRNO` without `errnoRet` (EPERM, as runc uses).
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// One BPF instruction, as sent to the helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insn(pub u16, pub u8, pub u8, pub u32);

/// Compiled filters, installed in order.
pub type Filters = Vec<Vec<Insn>>;

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const ARCH: TargetArch = TargetArch::riscv64;

/// The action of a rule group: its seccompiler form and its severity (higher wins).
fn action(a: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<SeccompAction, String> {
    use LinuxSeccompAction as A;
    Ok(match a {
        A::ScmpActKill | A::ScmpActKillThread => SeccompAction::KillThread,
        A::ScmpActKillProcess => SeccompAction::KillProcess,
        A::ScmpActTrap => SeccompAction::Trap,
        A::ScmpActErrno => SeccompAction::Errno(errno_ret.unwrap_or(DEFAULT_ERRNO)),
        A::ScmpActTrace => SeccompAction::Trace(errno_ret.unwrap_or(0)),
        A::ScmpActLog => SeccompAction::Log,
        A::ScmpActAllow => SeccompAction::Allow,
        A::ScmpActNotify => {
            return Err("seccomp action SCMP_ACT_NOTIFY is not supported (no listener)".into());
        }
    })
}

fn condition(arg: &LinuxSeccompArg) -> Result<SeccompCondition, String> {
    use LinuxSeccompOperator as O;
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| format!("seccomp argument index {} is not 0-5", arg.index()))?;
    // libseccomp's SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo.
    let (op, value) = match arg.op() {
        O::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        O::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        O::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        O::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        O::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        O::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        O::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| format!("seccomp argument condition: {e}"))
}

/// The rules of one syscall entry. Conditions on distinct arguments must all hold (one
/// rule); several conditions on the same argument are alternatives (one rule each), as runc
/// reads them.
fn rules(s: &LinuxSyscall) -> Result<Vec<SeccompRule>, String> {
    let args = s.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let conds: Vec<SeccompCondition> = args.iter().map(condition).collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashSet::new();
    let repeated = args.iter().any(|a| !seen.insert(a.index()));
    let rule =
        |c: Vec<SeccompCondition>| SeccompRule::new(c).map_err(|e| format!("seccomp rule: {e}"));
    if repeated {
        conds.into_iter().map(|c| rule(vec![c])).collect()
    } else {
        Ok(vec![rule(conds)?])
    }
}

/// Adds `new` to a syscall's rule chain; an empty chain means "always", which absorbs
/// conditional rules.
fn merge(chain: &mut Option<Vec<SeccompRule>>, new: Vec<SeccompRule>) {
    match chain {
        Some(existing) if existing.is_empty() => {}
        Some(_) if new.is_empty() => *chain = Some(Vec::new()),
        Some(existing) => existing.extend(new),
        None => *chain = Some(new),
    }
}

fn syscall_number(name: &str) -> Option<i64> {
    syscalls::Sysno::from_str(name).ok().map(|s| s.id() as i64)
}

fn to_insns(p: BpfProgram) -> Vec<Insn> {
    p.into_iter()
        .map(|i| Insn(i.code, i.jt, i.jf, i.k))
        .collect()
}

/// Syscall number -> rule chain (`Some(vec![])`: unconditional).
type RuleMap = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn build(
    rules: RuleMap,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<Vec<Insn>, String> {
    let rules = rules
        .into_iter()
        .map(|(nr, chain)| (nr, chain.unwrap_or_default()))
        .collect();
    let filter = SeccompFilter::new(rules, mismatch, matched, ARCH)
        .map_err(|e| format!("seccomp filter: {e}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp filter: {e}"))?;
    Ok(to_insns(program))
}

/// A filter killing the process on any x32-ABI system call (numbers with bit 30 set).
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Vec<Insn> {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JSET_K: u16 = 0x45;
    const BPF_RET_K: u16 = 0x06;
    vec![
        Insn(BPF_LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        Insn(BPF_JMP_JSET_K, 0, 1, X32_SYSCALL_BIT),
        Insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        Insn(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Compiles a profile. Errors name what is wrong (unsupported action, bad argument).
pub fn compile(profile: &LinuxSeccomp) -> Result<Filters, String> {
    if profile.listener_path().is_some() {
        return Err("seccomp listenerPath is not supported".into());
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    // action -> syscall -> rule chain; plus every named syscall for the default filter.
    let mut by_action: Vec<(SeccompAction, RuleMap)> = Vec::new();
    let mut named = RuleMap::new();
    for s in profile.syscalls().as_deref().unwrap_or_default() {
        let act = action(s.action(), s.errno_ret())?;
        let chain = rules(s)?;
        for name in s.names() {
            let Some(nr) = syscall_number(name) else {
                tracing::debug!(
                    syscall = name,
                    "seccomp: not a syscall of this architecture"
                );
                continue;
            };
            merge(named.entry(nr).or_default(), chain.clone());
            if act == SeccompAction::Allow {
                continue;
            }
            let group = match by_action.iter_mut().find(|(a, _)| *a == act) {
                Some((_, g)) => g,
                None => {
                    by_action.push((act.clone(), BTreeMap::new()));
                    let last = by_action.len() - 1;
                    &mut by_action[last].1
                }
            };
            merge(group.entry(nr).or_default(), chain.clone());
        }
    }
    let mut filters = Vec::new();
    #[cfg(target_arch = "x86_64")]
    filters.push(x32_guard());
    if default != SeccompAction::Allow {
        filters.push(build(named, default.clone(), SeccompAction::Allow)?);
    }
    for (act, group) in by_action {
        filters.push(build(group, SeccompAction::Allow, act)?);
    }
    Ok(filters)
}

/// Installs `filters` on the calling thread (the helper, just before exec). Needs
/// `no_new_privs` or `CAP_SYS_ADMIN`; unlike `seccompiler::apply_filter` this does not set
/// `no_new_privs` itself (the spec decides that).
pub fn install(filters: &Filters) -> Result<(), String> {
    for f in filters {
        let program: Vec<libc::sock_filter> = f
            .iter()
            .map(|i| libc::sock_filter {
                code: i.0,
                jt: i.1,
                jf: i.2,
                k: i.3,
            })
            .collect();
        let len = u16::try_from(program.len()).map_err(|_| {
            format!(
                "seccomp filter of {} instructions is too long",
                program.len()
            )
        })?;
        let prog = libc::sock_fprog {
            len,
            filter: program.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies the
        // program during seccomp(2) and does not keep the pointer.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(format!(
                "install seccomp filter: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    const RET_K: u16 = 0x06;

    /// The return values of a filter's `ret` instructions.
    fn returns(f: &[Insn]) -> Vec<u32> {
        f.iter().filter(|i| i.0 == RET_K).map(|i| i.3).collect()
    }

    #[test]
    fn deny_list_profile_is_one_errno_filter() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["mkdir","mkdirat","not_a_syscall"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        );
        let f = compile(&p).unwrap();
        // x32 guard + the ERRNO filter; no default filter for a default ALLOW.
        assert_eq!(f.len(), 2);
        let r = returns(&f[1]);
        assert!(r.contains(&(libc::SECCOMP_RET_ERRNO | 1)), "{r:x?}");
        assert!(r.contains(&libc::SECCOMP_RET_ALLOW));
        // Both syscall numbers are compared against.
        let ks: Vec<u32> = f[1].iter().map(|i| i.3).collect();
        assert!(ks.contains(&(libc::SYS_mkdir as u32)));
        assert!(ks.contains(&(libc::SYS_mkdirat as u32)));
    }

    #[test]
    fn allow_list_profile_has_a_default_filter() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"},
                {"names":["personality"],"action":"SCMP_ACT_ALLOW",
                 "args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},
                         {"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                {"names":["kill"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
        );
        let f = compile(&p).unwrap();
        assert_eq!(f.len(), 3, "guard, default, kill-process");
        let default = returns(&f[1]);
        assert!(default.contains(&(libc::SECCOMP_RET_ERRNO | libc::EPERM as u32)));
        assert!(returns(&f[2]).contains(&libc::SECCOMP_RET_KILL_PROCESS));
    }

    #[test]
    fn unsupported_profiles_are_refused_by_name() {
        for (json, want) in [
            (r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, "SCMP_ACT_NOTIFY"),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],
                   "action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
                "index 6",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/l.sock"}"#,
                "listenerPath",
            ),
        ] {
            let e = compile(&profile(json)).unwrap_err();
            assert!(e.contains(want), "{e} lacks {want}");
        }
    }

    #[test]
    fn same_argument_conditions_are_alternatives() {
        let s: LinuxSyscall = serde_json::from_str(
            r#"{"names":["personality"],"action":"SCMP_ACT_ALLOW",
                "args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"},
                        {"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}"#,
        )
        .unwrap();
        assert_eq!(rules(&s).unwrap().len(), 2);
        let both: LinuxSyscall = serde_json::from_str(
            r#"{"names":["socket"],"action":"SCMP_ACT_ALLOW",
                "args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},
                        {"index":1,"value":2,"op":"SCMP_CMP_EQ"}]}"#,
        )
        .unwrap();
        assert_eq!(rules(&both).unwrap().len(), 1);
    }
}
