//! The run-time files of a dynamically linked `/init`: its ELF interpreter and the shared
//! libraries named by `DT_NEEDED`, found transitively in the host's library directories.
//!
//! The shipped agent is static (scripts/build-guest.sh builds it `+crt-static`, non-PIE) and
//! needs nothing, so it gets nothing. A dynamic `/init` (e.g. a dev build given to
//! `cocoon guest build --agent`) brings glibc's loader and libraries into the initrd, which
//! is measured with them.

use crate::error::GuestBuildError;
use crate::initramfs::ExtraFile;
use object::elf::{DT_NEEDED, FileHeader64};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::{Endianness, SectionIndex};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Host directories searched for `DT_NEEDED` libraries, in glibc's multiarch default order.
pub const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// What an ELF executable or library asks of the dynamic loader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DynamicNeeds {
    /// `PT_INTERP`: the loader's absolute path (`None` for static binaries and libraries).
    pub interpreter: Option<String>,
    /// `DT_NEEDED` sonames, in file order.
    pub needed: Vec<String>,
}

fn bad_elf(what: &str, reason: impl std::fmt::Display) -> GuestBuildError {
    GuestBuildError::InvalidBinary {
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

/// Reads the interpreter and `DT_NEEDED` entries of a 64-bit ELF file.
pub fn dynamic_needs(what: &str, data: &[u8]) -> Result<DynamicNeeds, GuestBuildError> {
    let header = FileHeader64::<Endianness>::parse(data).map_err(|e| bad_elf(what, e))?;
    let endian = header.endian().map_err(|e| bad_elf(what, e))?;
    let mut needs = DynamicNeeds::default();
    for ph in header
        .program_headers(endian, data)
        .map_err(|e| bad_elf(what, e))?
    {
        if let Some(raw) = ph.interpreter(endian, data).map_err(|e| bad_elf(what, e))? {
            let path = std::str::from_utf8(raw).map_err(|e| bad_elf(what, e))?;
            needs.interpreter = Some(path.to_owned());
        }
    }
    let sections = header
        .sections(endian, data)
        .map_err(|e| bad_elf(what, e))?;
    if let Some((entries, link)) = sections
        .dynamic(endian, data)
        .map_err(|e| bad_elf(what, e))?
    {
        let strings = sections
            .strings(endian, data, SectionIndex(link.0))
            .map_err(|e| bad_elf(what, e))?;
        for entry in entries {
            if entry.tag32(endian) == Some(DT_NEEDED) {
                let name = entry
                    .string(endian, strings)
                    .map_err(|e| bad_elf(what, e))?;
                let name = std::str::from_utf8(name).map_err(|e| bad_elf(what, e))?;
                needs.needed.push(name.to_owned());
            }
        }
    }
    Ok(needs)
}

fn find_library(soname: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(soname)).find(|p| p.is_file())
}

/// The files a binary needs at run time, as initramfs extras at the same paths as on the
/// host (symlinks resolved to their contents). Empty for a static binary.
pub fn runtime_files(
    what: &str,
    binary: &[u8],
    library_dirs: &[PathBuf],
) -> Result<Vec<ExtraFile>, GuestBuildError> {
    // Not an ELF file (e.g. a `#!` script as `/init` in tests): the loader has nothing to do.
    if !binary.starts_with(b"\x7fELF") {
        return Ok(Vec::new());
    }
    let top = dynamic_needs(what, binary)?;
    let Some(interpreter) = top.interpreter.clone() else {
        return Ok(Vec::new());
    };
    let interpreter_path = PathBuf::from(&interpreter);
    if !interpreter_path.is_absolute() || !interpreter_path.is_file() {
        return Err(bad_elf(
            what,
            format!("its ELF interpreter {interpreter} is not a file on this host"),
        ));
    }
    let mut files: BTreeSet<PathBuf> = BTreeSet::from([interpreter_path]);
    let mut pending: Vec<(String, String)> = top
        .needed
        .into_iter()
        .map(|n| (what.to_owned(), n))
        .collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    while let Some((parent, soname)) = pending.pop() {
        if !seen.insert(soname.clone()) {
            continue;
        }
        let path = find_library(&soname, library_dirs).ok_or_else(|| {
            bad_elf(
                &parent,
                format!("needs {soname}, which is in none of {library_dirs:?}"),
            )
        })?;
        let data = std::fs::read(&path).map_err(|e| bad_elf(&path.display().to_string(), e))?;
        let needs = dynamic_needs(&path.display().to_string(), &data)?;
        pending.extend(
            needs
                .needed
                .into_iter()
                .map(|n| (path.display().to_string(), n)),
        );
        files.insert(path);
    }
    Ok(files
        .into_iter()
        .map(|p| ExtraFile::File {
            guest_path: p.display().to_string(),
            host_path: p,
        })
        .collect())
}

/// [`LIBRARY_DIRS`] as paths.
pub fn default_library_dirs() -> Vec<PathBuf> {
    LIBRARY_DIRS.iter().map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn read(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_dynamic_host_binary_brings_its_loader_and_libc() {
        // /bin/ls on Debian is dynamic (libselinux, libc, ...).
        let files = runtime_files("/bin/ls", &read("/bin/ls"), &default_library_dirs()).unwrap();
        let paths: Vec<String> = files
            .iter()
            .map(|f| match f {
                ExtraFile::File { guest_path, .. } => guest_path.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert!(paths.iter().any(|p| p.ends_with("/libc.so.6")), "{paths:?}");
        assert!(
            paths.iter().any(|p| p.contains("ld-linux-x86-64.so.2")),
            "{paths:?}"
        );
        assert!(paths.iter().all(|p| Path::new(p).is_absolute()));
    }

    #[test]
    fn a_static_binary_needs_nothing() {
        // Debian's busybox-static.
        let needs = dynamic_needs("busybox", &read("/bin/busybox")).unwrap();
        assert_eq!(needs, DynamicNeeds::default());
        assert!(
            runtime_files("busybox", &read("/bin/busybox"), &default_library_dirs())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_missing_library_is_named() {
        let err = runtime_files(
            "/bin/ls",
            &read("/bin/ls"),
            &[PathBuf::from("/nonexistent")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("libc.so.6") || err.contains("needs"), "{err}");
    }

    #[test]
    fn scripts_need_nothing_but_a_broken_elf_is_named() {
        let script = b"#!/bin/sh\necho hi\n";
        assert!(
            runtime_files("init", script, &default_library_dirs())
                .unwrap()
                .is_empty()
        );
        let mut truncated = read("/bin/ls");
        truncated.truncate(40);
        let err = runtime_files("agent", &truncated, &default_library_dirs())
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent"), "{err}");
    }
}
