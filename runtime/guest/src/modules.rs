//! Kernel module selection: read each `.ko`'s `.modinfo` `depends=` entry and order a set of
//! root modules so that every module comes after its dependencies (no `depmod` needed).
//!
//! The order is a topological sort with a lexicographic tie-break (Kahn's algorithm, smallest
//! ready name first), so it depends only on the *set* of roots, not on the order they are given.

use object::Endianness;
use object::read::elf::FileHeader;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why modules could not be read or ordered.
#[derive(Debug, Error)]
pub enum ModuleError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `.ko` file is not an ELF or lacks a readable `.modinfo` section.
    #[error("bad kernel module {path}: {reason}")]
    BadModule {
        /// The module file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A module named as a root or a dependency does not exist in the kernel package.
    #[error("unknown kernel module {name:?}{}", required_by.as_ref().map(|r| format!(" (required by {r:?})")).unwrap_or_default())]
    UnknownModule {
        /// The missing module.
        name: String,
        /// The module whose `depends=` named it, or `None` for a requested root.
        required_by: Option<String>,
    },
    /// Dependencies form a cycle; these modules could not be ordered.
    #[error("kernel module dependency cycle among: {}", modules.join(", "))]
    Cycle {
        /// Modules left unordered (members of, or stuck behind, the cycle).
        modules: Vec<String>,
    },
}

/// The parts of a module's `.modinfo` this crate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=` (the module name the kernel uses), if present.
    pub name: Option<String>,
    /// `depends=`, split on commas, empty entries removed.
    pub depends: Vec<String>,
    /// `vermagic=`, if present.
    pub vermagic: Option<String>,
}

/// How a dependency source knows a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleLookup {
    /// A loadable module with its direct dependencies.
    Loadable(Vec<String>),
    /// Compiled into the kernel: nothing to load.
    Builtin,
    /// Not known at all.
    Missing,
}

/// Anything that can answer "what does module X depend on?".
pub trait ModuleSource {
    /// Looks a (normalised) module name up.
    fn lookup(&self, name: &str) -> Result<ModuleLookup, ModuleError>;
}

/// Synthetic sources for tests and callers: a map from name to dependencies.
impl ModuleSource for BTreeMap<String, Vec<String>> {
    fn lookup(&self, name: &str) -> Result<ModuleLookup, ModuleError> {
        Ok(self
            .get(name)
            .map_or(ModuleLookup::Missing, |d| ModuleLookup::Loadable(d.clone())))
    }
}

/// Kernel module names treat `-` and `_` alike; the canonical form uses `_`.
pub fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches(".ko").replace('-', "_")
}

/// Parses the `.modinfo` section of a module's ELF bytes.
pub fn parse_modinfo(ko: &[u8]) -> Result<ModInfo, String> {
    let header = object::elf::FileHeader64::<Endianness>::parse(ko).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let sections = header.sections(endian, ko).map_err(|e| e.to_string())?;
    let (_, section) = sections
        .section_by_name(endian, b".modinfo")
        .ok_or("no .modinfo section")?;
    let data =
        object::read::elf::SectionHeader::data(section, endian, ko).map_err(|e| e.to_string())?;
    let mut info = ModInfo {
        name: None,
        depends: Vec::new(),
        vermagic: None,
    };
    for entry in data.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let text = String::from_utf8_lossy(entry);
        let Some((key, value)) = text.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = Some(value.to_owned()),
            "vermagic" => info.vermagic = Some(value.to_owned()),
            "depends" => info.depends.extend(
                value
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(normalize_name),
            ),
            _ => {}
        }
    }
    Ok(info)
}

/// Orders `roots` and all their transitive dependencies: dependencies first, ties broken by
/// name. Builtin modules are dropped. Returns the load order.
pub fn resolve_load_order(
    roots: &[String],
    source: &dyn ModuleSource,
) -> Result<Vec<String>, ModuleError> {
    // Discover the closure: name -> direct (loadable) dependencies.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut builtin = BTreeSet::new();
    let mut pending: Vec<(String, Option<String>)> =
        roots.iter().map(|r| (normalize_name(r), None)).collect();
    pending.reverse();
    while let Some((name, required_by)) = pending.pop() {
        if graph.contains_key(&name) || builtin.contains(&name) {
            continue;
        }
        match source.lookup(&name)? {
            ModuleLookup::Missing => return Err(ModuleError::UnknownModule { name, required_by }),
            ModuleLookup::Builtin => {
                tracing::debug!(module = %name, "module is built into the kernel; nothing to load");
                builtin.insert(name);
            }
            ModuleLookup::Loadable(deps) => {
                let deps: BTreeSet<String> = deps.iter().map(|d| normalize_name(d)).collect();
                for dep in deps.iter().rev() {
                    pending.push((dep.clone(), Some(name.clone())));
                }
                graph.insert(name, deps);
            }
        }
    }
    for deps in graph.values_mut() {
        deps.retain(|d| !builtin.contains(d));
    }
    // Kahn's algorithm; `ready` is ordered, so the smallest name goes first.
    let mut waiting_on: BTreeMap<&str, usize> =
        graph.iter().map(|(n, d)| (n.as_str(), d.len())).collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, deps) in &graph {
        for dep in deps {
            dependents
                .entry(dep.as_str())
                .or_default()
                .push(name.as_str());
        }
    }
    let mut ready: BTreeSet<&str> = waiting_on
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut order = Vec::with_capacity(graph.len());
    while let Some(name) = ready.pop_first() {
        order.push(name.to_owned());
        for dependent in dependents.get(name).map(Vec::as_slice).unwrap_or_default() {
            if let Some(count) = waiting_on.get_mut(dependent) {
                *count -= 1;
                if *count == 0 {
                    ready.insert(dependent);
                }
            }
        }
    }
    if order.len() != graph.len() {
        let placed: BTreeSet<&str> = order.iter().map(String::as_str).collect();
        let modules = graph
            .keys()
            .filter(|n| !placed.contains(n.as_str()))
            .cloned()
            .collect();
        return Err(ModuleError::Cycle { modules });
    }
    Ok(order)
}

/// The loadable and builtin modules of one kernel release directory
/// (`lib/modules/<release>` of an extracted kernel package).
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    release_dir: PathBuf,
    by_name: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Indexes `release_dir/kernel/**.ko` by module name and reads `modules.builtin`.
    pub fn scan(release_dir: &Path) -> Result<Self, ModuleError> {
        let mut files = Vec::new();
        collect_ko_files(&release_dir.join("kernel"), &mut files)?;
        files.sort();
        let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in files {
            let Some(stem) = file.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let name = normalize_name(stem);
            if let Some(first) = by_name.get(&name) {
                tracing::warn!(module = %name, kept = %first.display(), ignored = %file.display(), "duplicate module name");
                continue;
            }
            by_name.insert(name, file);
        }
        let builtin_path = release_dir.join("modules.builtin");
        let builtin = match std::fs::read_to_string(&builtin_path) {
            Ok(text) => text
                .lines()
                .filter_map(|l| l.rsplit('/').next())
                .filter(|n| !n.is_empty())
                .map(normalize_name)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(source) => {
                return Err(ModuleError::Io {
                    path: builtin_path,
                    source,
                });
            }
        };
        Ok(Self {
            release_dir: release_dir.to_path_buf(),
            by_name,
            builtin,
        })
    }

    /// The release directory this index was built from.
    pub fn release_dir(&self) -> &Path {
        &self.release_dir
    }

    /// Number of loadable modules found.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether no loadable module was found.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `name` is compiled into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize_name(name))
    }

    /// Path of the `.ko` file for a loadable module.
    pub fn path(&self, name: &str) -> Option<&Path> {
        self.by_name
            .get(&normalize_name(name))
            .map(PathBuf::as_path)
    }

    /// Reads and parses one module's `.modinfo`.
    pub fn modinfo(&self, name: &str) -> Result<ModInfo, ModuleError> {
        let path = self
            .path(name)
            .ok_or_else(|| ModuleError::UnknownModule {
                name: normalize_name(name),
                required_by: None,
            })?
            .to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| ModuleError::Io {
            path: path.clone(),
            source,
        })?;
        let info = parse_modinfo(&bytes).map_err(|reason| ModuleError::BadModule {
            path: path.clone(),
            reason,
        })?;
        if let Some(declared) = &info.name
            && normalize_name(declared) != normalize_name(name)
        {
            return Err(ModuleError::BadModule {
                path,
                reason: format!("file name says {name:?} but .modinfo says name={declared:?}"),
            });
        }
        Ok(info)
    }

    /// Resolves `roots` to a load order of `(name, .ko path)`.
    pub fn resolve(&self, roots: &[String]) -> Result<Vec<(String, PathBuf)>, ModuleError> {
        let order = resolve_load_order(roots, self)?;
        order
            .into_iter()
            .map(|name| {
                let path = self.path(&name).map(Path::to_path_buf).ok_or_else(|| {
                    ModuleError::UnknownModule {
                        name: name.clone(),
                        required_by: None,
                    }
                })?;
                Ok((name, path))
            })
            .collect()
    }
}

impl ModuleSource for ModuleIndex {
    fn lookup(&self, name: &str) -> Result<ModuleLookup, ModuleError> {
        if self.by_name.contains_key(name) {
            Ok(ModuleLookup::Loadable(self.modinfo(name)?.depends))
        } else if self.builtin.contains(name) {
            Ok(ModuleLookup::Builtin)
        } else {
            Ok(ModuleLookup::Missing)
        }
    }
}

/// Recursively collects `*.ko` files under `dir`.
fn collect_ko_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ModuleError> {
    let io = |source| ModuleError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            collect_ko_files(&path, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "ko") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn roots(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn orders_dependencies_first_with_name_tie_break() {
        let g = graph(&[
            ("virtio_ring", &[]),
            ("virtio", &["virtio_ring"]),
            ("virtio_net", &["virtio", "net_failover", "virtio_ring"]),
            ("net_failover", &["failover"]),
            ("failover", &[]),
            ("overlay", &[]),
            ("unused", &[]),
        ]);
        let order = resolve_load_order(&roots(&["virtio_net", "overlay"]), &g).unwrap();
        assert_eq!(
            order,
            [
                "failover",
                "net_failover",
                "overlay",
                "virtio_ring",
                "virtio",
                "virtio_net"
            ]
        );
        let reversed =
            resolve_load_order(&roots(&["overlay", "virtio-net", "overlay"]), &g).unwrap();
        assert_eq!(order, reversed);
    }

    #[test]
    fn cycle_is_an_error_naming_its_members() {
        let g = graph(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &[]),
            ("e", &["a"]),
        ]);
        match resolve_load_order(&roots(&["e", "d"]), &g).unwrap_err() {
            ModuleError::Cycle { modules } => assert_eq!(modules, ["a", "b", "c", "e"]),
            other => panic!("expected a cycle, got {other}"),
        }
        let self_loop = graph(&[("a", &["a"])]);
        assert!(matches!(
            resolve_load_order(&roots(&["a"]), &self_loop),
            Err(ModuleError::Cycle { .. })
        ));
    }

    #[test]
    fn missing_module_error_names_it_and_who_needs_it() {
        let g = graph(&[("virtio", &["virtio_ring"])]);
        let err = resolve_load_order(&roots(&["virtio"]), &g).unwrap_err();
        assert!(matches!(
            &err,
            ModuleError::UnknownModule { name, required_by: Some(by) } if name == "virtio_ring" && by == "virtio"
        ));
        assert!(err.to_string().contains("\"virtio_ring\""), "{err}");
        let err = resolve_load_order(&roots(&["no_such_mod"]), &g).unwrap_err();
        assert_eq!(err.to_string(), "unknown kernel module \"no_such_mod\"");
    }

    struct WithBuiltin(BTreeMap<String, Vec<String>>);
    impl ModuleSource for WithBuiltin {
        fn lookup(&self, name: &str) -> Result<ModuleLookup, ModuleError> {
            if name == "ext4" {
                return Ok(ModuleLookup::Builtin);
            }
            self.0.lookup(name)
        }
    }

    #[test]
    fn builtin_modules_are_skipped() {
        let g = WithBuiltin(graph(&[("overlay", &[]), ("jbd_user", &["ext4"])]));
        let order = resolve_load_order(&roots(&["ext4", "jbd_user", "overlay"]), &g).unwrap();
        assert_eq!(order, ["jbd_user", "overlay"]);
    }

    #[test]
    fn non_elf_module_is_reported() {
        assert!(parse_modinfo(b"not an elf").is_err());
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(parse_modinfo(&me).unwrap_err(), "no .modinfo section");
    }
}
