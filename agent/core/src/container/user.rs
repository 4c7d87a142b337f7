//! User and group names resolved through the container's own `/etc/passwd` and
//! `/etc/group` (Kata's `string_user`, and the OCI `user.username`), as runc does:
//! - a numeric field is taken as is; a name is looked up in the rootfs;
//! - a user given by name without a group gets its primary group from `/etc/passwd`, and
//!   the groups listing it as a member in `/etc/group` become supplementary groups;
//! - nothing of the guest is read: the two files must be regular files inside the rootfs
//!   (no symlinked `/etc` or file), at most 1 MiB each.

use std::io::Read;
use std::path::Path;

use agent_protocol::AgentError;
use agent_protocol::types::StringUser;

/// Largest `/etc/passwd` or `/etc/group` read.
const MAX_DB: u64 = 1 << 20;

/// The resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
}

/// One `/etc/passwd` entry.
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` entry.
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads `<rootfs>/etc/<file>` without following a symlink out of the rootfs; a missing
/// file reads as empty.
fn read_db(rootfs: &Path, file: &str) -> Result<String, AgentError> {
    let etc = rootfs.join("etc");
    let path = etc.join(file);
    for p in [&etc, &path] {
        match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(AgentError::invalid_argument(format!(
                    "the container's /etc/{file} is reached through a symlink; \
                     cannot resolve user names"
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
            Err(e) => {
                return Err(AgentError::internal(format!(
                    "reading the container's /etc/{file}: {e}"
                )));
            }
        }
    }
    let f = std::fs::File::open(&path)
        .map_err(|e| AgentError::internal(format!("reading the container's /etc/{file}: {e}")))?;
    let mut text = String::new();
    f.take(MAX_DB)
        .read_to_string(&mut text)
        .map_err(|e| AgentError::invalid_argument(format!("the container's /etc/{file}: {e}")))?;
    Ok(text)
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn groups(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The identity `string_user` names, with `base` supplying what it leaves out.
pub fn resolve(
    rootfs: &Path,
    user: &StringUser,
    base: &ResolvedUser,
) -> Result<ResolvedUser, AgentError> {
    let named = |s: &str| !s.is_empty() && s.parse::<u32>().is_err();
    let need_passwd = named(&user.uid);
    let need_group =
        named(&user.gid) || need_passwd || user.additional_gids.iter().any(|g| named(g));
    let pw = if need_passwd {
        passwd(&read_db(rootfs, "passwd")?)
    } else {
        Vec::new()
    };
    let gr = if need_group {
        groups(&read_db(rootfs, "group")?)
    } else {
        Vec::new()
    };
    let mut out = base.clone();
    let mut primary_from_passwd = None;
    if !user.uid.is_empty() {
        match user.uid.parse::<u32>() {
            Ok(uid) => out.uid = uid,
            Err(_) => {
                let e = pw.iter().find(|e| e.name == user.uid).ok_or_else(|| {
                    AgentError::invalid_argument(format!(
                        "user {:?} is not in the container's /etc/passwd",
                        user.uid
                    ))
                })?;
                out.uid = e.uid;
                primary_from_passwd = Some(e.gid);
                // Groups listing the user as a member.
                for g in gr.iter().filter(|g| g.members.contains(&user.uid)) {
                    if !out.additional_gids.contains(&g.gid) {
                        out.additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    let group_id = |name: &str| -> Result<u32, AgentError> {
        if let Ok(gid) = name.parse::<u32>() {
            return Ok(gid);
        }
        gr.iter()
            .find(|g| g.name == name)
            .map(|g| g.gid)
            .ok_or_else(|| {
                AgentError::invalid_argument(format!(
                    "group {name:?} is not in the container's /etc/group"
                ))
            })
    };
    if !user.gid.is_empty() {
        out.gid = group_id(&user.gid)?;
    } else if let Some(gid) = primary_from_passwd {
        out.gid = gid;
    }
    for g in &user.additional_gids {
        let gid = group_id(g)?;
        if !out.additional_gids.contains(&gid) {
            out.additional_gids.push(gid);
        }
    }
    Ok(out)
}

/// Applies `string_user` (when given) or else the spec's `username` (when set) to `process`.
pub fn apply(
    rootfs: &Path,
    process: &mut oci_spec::runtime::Process,
    string_user: Option<&StringUser>,
) -> Result<(), AgentError> {
    let from_username;
    let user = match string_user {
        Some(u) if !u.uid.is_empty() || !u.gid.is_empty() || !u.additional_gids.is_empty() => u,
        _ => match process.user().username().as_deref() {
            Some(name) if !name.is_empty() => {
                from_username = StringUser {
                    uid: name.to_string(),
                    ..Default::default()
                };
                &from_username
            }
            _ => return Ok(()),
        },
    };
    let current = process.user();
    let base = ResolvedUser {
        uid: current.uid(),
        gid: current.gid(),
        additional_gids: current.additional_gids().clone().unwrap_or_default(),
    };
    let r = resolve(rootfs, user, &base)?;
    let mut new_user = current.clone();
    new_user.set_uid(r.uid);
    new_user.set_gid(r.gid);
    new_user.set_additional_gids(Some(r.additional_gids));
    process.set_user(new_user);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nweb:x:1000:1001::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("etc/group"),
            "root:x:0:\nwebgrp:x:1001:\nlogs:x:2000:web,other\naudio:x:63:\n",
        )
        .unwrap();
        t
    }

    fn su(uid: &str, gid: &str, extra: &[&str]) -> StringUser {
        StringUser {
            uid: uid.into(),
            gid: gid.into(),
            additional_gids: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    const ROOT: ResolvedUser = ResolvedUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
    };

    #[test]
    fn names_resolve_through_the_rootfs() {
        let t = rootfs();
        let r = resolve(t.path(), &su("web", "", &[]), &ROOT).unwrap();
        assert_eq!(
            r,
            ResolvedUser {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![2000]
            }
        );
        let r = resolve(t.path(), &su("web", "audio", &["root", "7"]), &ROOT).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 63));
        assert_eq!(r.additional_gids, vec![2000, 0, 7]);
        let r = resolve(t.path(), &su("42", "43", &[]), &ROOT).unwrap();
        assert_eq!((r.uid, r.gid), (42, 43));
    }

    #[test]
    fn unknown_names_and_symlinks_are_refused() {
        let t = rootfs();
        let e = resolve(t.path(), &su("nobody", "", &[]), &ROOT).unwrap_err();
        assert!(e.message().contains("\"nobody\""), "{}", e.message());
        let e = resolve(t.path(), &su("", "wheel", &[]), &ROOT).unwrap_err();
        assert!(e.message().contains("\"wheel\""), "{}", e.message());
        // A passwd symlinked out of the rootfs (here: to the host's) is never read.
        std::fs::remove_file(t.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("etc/passwd")).unwrap();
        let e = resolve(t.path(), &su("root", "", &[]), &ROOT).unwrap_err();
        assert!(e.message().contains("symlink"), "{}", e.message());
    }

    #[test]
    fn spec_username_is_applied_and_string_user_wins() {
        let t = rootfs();
        let mut p = oci_spec::runtime::Process::default();
        let mut u = p.user().clone();
        u.set_username(Some("web".into()));
        p.set_user(u);
        apply(t.path(), &mut p, None).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1001));
        apply(t.path(), &mut p, Some(&su("root", "", &[]))).unwrap();
        assert_eq!(p.user().uid(), 0);
        // Nothing named: untouched.
        let mut plain = oci_spec::runtime::Process::default();
        let before = plain.clone();
        apply(t.path(), &mut plain, Some(&StringUser::default())).unwrap();
        assert_eq!(plain, before);
    }
}
