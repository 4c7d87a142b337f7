//! Boot-time benchmark: the same guest with a raw vs a gzip initrd on microvm/TCG.
//!
//! `cargo bench -p runtime-guest --bench initrd_boot -- [ROUNDS] [--ballast PATH]`
//!
//! Both variants carry the test `/init` (loads every module, powers off) plus a ballast file
//! standing in for the agent binary's size (default: this benchmark's own executable).
//! Each round boots both variants (alternating which goes first); medians, minima and the
//! gzip/raw ratios of wall time to init, guest uptime at init and QEMU CPU time are printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use runtime_guest::{ExtraFile, GuestBuildSpec, InitrdCompression, build_guest, default_cache_dir};
use std::path::PathBuf;
use std::time::Duration;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// User + system CPU time of all reaped children so far.
fn children_cpu_time() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_CHILDREN is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn min(v: &[Duration]) -> f64 {
    v.iter().min().map_or(f64::NAN, Duration::as_secs_f64)
}

/// The guest's own `/proc/uptime` at init start (kernel boot incl. initramfs unpacking).
fn guest_uptime(console: &str) -> Option<Duration> {
    let line = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("INIT-UPTIME "))?;
    let secs: f64 = line.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

/// One initrd variant and its measurements.
struct Variant {
    compression: InitrdCompression,
    out: PathBuf,
    manifest: runtime_guest::GuestManifest,
    to_init: Vec<Duration>,
    guest_uptime: Vec<Duration>,
    qemu_cpu: Vec<Duration>,
}

fn report(what: &str, raw: &[Duration], gzip: &[Duration]) {
    let (r, g) = (
        median(raw.to_vec()).as_secs_f64(),
        median(gzip.to_vec()).as_secs_f64(),
    );
    println!(
        "{what:<34} median raw {r:.3}s gzip {g:.3}s ratio gzip/raw {:.3} | min raw {:.3}s gzip {:.3}s",
        g / r,
        min(raw),
        min(gzip)
    );
}

fn main() {
    let mut rounds = 5usize;
    let mut ballast = std::env::current_exe().unwrap();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--ballast" => ballast = PathBuf::from(args.next().expect("--ballast PATH")),
            n => rounds = n.parse().expect("ROUNDS must be a number"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let init = support::compile_init(dir.path());
    let mut variants = Vec::new();
    for compression in [InitrdCompression::None, InitrdCompression::Gzip] {
        let out = dir.path().join(compression.file_name());
        let mut spec = GuestBuildSpec::new(
            default_cache_dir(),
            out.clone(),
            init.clone(),
            support::test_cmdline(),
        )
        .unwrap();
        spec.compression = compression;
        spec.extra_files = vec![ExtraFile::File {
            guest_path: "/ballast".into(),
            host_path: ballast.clone(),
        }];
        let manifest = build_guest(&spec).unwrap();
        println!(
            "{:<5} initrd {:>9} bytes (cpio {:>9}), vmlinux {} bytes, bzImage {} bytes, ballast {} bytes",
            format!("{compression:?}"),
            manifest.initrd.digest.size,
            manifest.initrd.cpio_size,
            manifest.vmlinux.size,
            manifest.bzimage.size,
            std::fs::metadata(&ballast).unwrap().len()
        );
        variants.push(Variant {
            compression,
            out,
            manifest,
            to_init: Vec::new(),
            guest_uptime: Vec::new(),
            qemu_cpu: Vec::new(),
        });
    }
    for round in 0..rounds {
        // Alternate which variant goes first so neither always runs right after a build/boot.
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for index in order {
            let v = &mut variants[index];
            let cpu_before = children_cpu_time();
            let boot = support::boot_microvm(&v.manifest, &v.out, Duration::from_secs(90));
            let cpu = children_cpu_time() - cpu_before;
            let marker = boot.marker_at.unwrap_or_else(|| {
                panic!("{:?} did not reach init:\n{}", v.compression, boot.console)
            });
            let guest = guest_uptime(&boot.console).expect("INIT-UPTIME line");
            println!(
                "round {round} {:?}: init seen {:.3}s, exit {:.3}s, guest uptime at init {:.3}s, QEMU CPU {:.3}s",
                v.compression,
                marker.as_secs_f64(),
                boot.elapsed.as_secs_f64(),
                guest.as_secs_f64(),
                cpu.as_secs_f64()
            );
            v.to_init.push(marker);
            v.guest_uptime.push(guest);
            v.qemu_cpu.push(cpu);
        }
    }
    let (raw, gz) = (&variants[0], &variants[1]);
    report(
        "QEMU start -> GUEST-INIT-OK (wall)",
        &raw.to_init,
        &gz.to_init,
    );
    report("guest uptime at init", &raw.guest_uptime, &gz.guest_uptime);
    report("QEMU CPU time (whole run)", &raw.qemu_cpu, &gz.qemu_cpu);
}
