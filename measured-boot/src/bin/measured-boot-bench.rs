//! Benchmark: our SNP launch digest versus spawning `sev-snp-measure` on the same
//! inputs, median of N runs each, with the digests asserted equal. Ours is timed twice: the
//! library call, and the `cocoon measure snp` command spawned with the oracle's own flags
//! (process start included, as for the oracle) when a `cocoon` binary is found
//! (`$COCOON_CLI`, else next to this binary: `cargo build --release -p cocoon`).
//!
//! Usage: `measured-boot-bench [RUNS]` (default 15). The oracle is
//! `$SEV_SNP_MEASURE` or `/opt/cocoon-tools/venv/bin/sev-snp-measure`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use measured_boot::snp::{SnpInputs, VcpuModel};
use sha2::{Digest as _, Sha256};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn det_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn oracle_args(i: &SnpInputs, vcpu_type: &str) -> Vec<String> {
    let mut a = vec![
        "--mode".to_string(),
        "snp".into(),
        "--vcpus".into(),
        i.vcpus.to_string(),
        "--vcpu-type".into(),
        vcpu_type.into(),
        "--ovmf".into(),
        i.ovmf.display().to_string(),
    ];
    if let Some(k) = &i.kernel {
        a.extend(["--kernel".into(), k.display().to_string()]);
    }
    if let Some(r) = &i.initrd {
        a.extend(["--initrd".into(), r.display().to_string()]);
    }
    if let Some(c) = &i.cmdline {
        a.push(format!("--append={c}"));
    }
    a
}

/// Median wall time of `runs` spawns of `program args`, and its (last) trimmed stdout.
fn time_command(
    program: &Path,
    args: &[String],
    runs: usize,
) -> Result<(Duration, String), String> {
    let mut times = Vec::new();
    let mut stdout = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        times.push(t.elapsed());
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    Ok((median(times), stdout))
}

fn run_case(
    name: &str,
    inputs: &SnpInputs,
    vcpu_type: &str,
    oracle: &Path,
    cli: Option<&Path>,
    runs: usize,
) -> Result<f64, String> {
    let args = oracle_args(inputs, vcpu_type);
    let (t, their_digest) = time_command(oracle, &args, runs)?;
    let mut ours = Vec::new();
    let mut our_digest = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        let d = inputs.digest().map_err(|e| e.to_string())?;
        ours.push(t.elapsed());
        our_digest = d.to_hex();
    }
    if our_digest != their_digest {
        return Err(format!(
            "{name}: digests differ: ours {our_digest}, sev-snp-measure {their_digest}"
        ));
    }
    // The floor both tools share: SHA-256 of the kernel and initrd, one thread (the
    // oracle's hashlib and our sha2 both use the CPU's SHA extensions).
    let mut floor = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        for p in inputs.kernel.iter().chain(inputs.initrd.iter()) {
            let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
            std::hint::black_box(Sha256::digest(&bytes));
        }
        floor.push(t.elapsed());
    }
    // No implementation that hashes each file once can beat the SHA-256 of its largest
    // input (one hash is sequential): the best speed-up these inputs allow.
    let largest = inputs
        .kernel
        .iter()
        .chain(inputs.initrd.iter())
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let mut floor_largest = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        if let Some(p) = largest {
            let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
            std::hint::black_box(Sha256::digest(&bytes));
        }
        floor_largest.push(t.elapsed());
    }
    let (o, f, fl) = (median(ours), median(floor), median(floor_largest));
    let ratio = t.as_secs_f64() / o.as_secs_f64();
    println!(
        "{name}: ours (library) {:.2} ms, sev-snp-measure {:.2} ms, speed-up {ratio:.1}x (digest {our_digest}); \
         SHA-256 of kernel+initrd, one thread: {:.2} ms",
        o.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        f.as_secs_f64() * 1e3
    );
    if largest.is_some() {
        println!(
            "  SHA-256 of the largest input alone {:.2} ms: no implementation exceeds {:.1}x here",
            fl.as_secs_f64() * 1e3,
            t.as_secs_f64() / fl.as_secs_f64()
        );
    }
    let Some(cli) = cli else {
        println!("  (no cocoon binary: command not timed; set COCOON_CLI)");
        return Ok(ratio);
    };
    let cli_args: Vec<String> = ["measure", "snp"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned())
        .collect();
    let (c, cli_digest) = time_command(cli, &cli_args, runs)?;
    if cli_digest != their_digest {
        return Err(format!(
            "{name}: `cocoon measure snp` printed {cli_digest}, sev-snp-measure {their_digest}"
        ));
    }
    let cli_ratio = t.as_secs_f64() / c.as_secs_f64();
    println!(
        "  `cocoon measure snp` command {:.2} ms: speed-up {cli_ratio:.1}x",
        c.as_secs_f64() * 1e3
    );
    Ok(cli_ratio)
}

fn main() -> ExitCode {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
        .max(1);
    let oracle = std::env::var_os("SEV_SNP_MEASURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/cocoon-tools/venv/bin/sev-snp-measure"));
    if !oracle.is_file() {
        eprintln!("sev-snp-measure not found at {}", oracle.display());
        return ExitCode::FAILURE;
    }
    let cli = std::env::var_os("COCOON_CLI")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.join("cocoon"))
        })
        .filter(|p| p.is_file());
    let dir = std::env::temp_dir().join(format!("measured-boot-bench-{}", std::process::id()));
    let setup = || -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(&dir)?;
        let k = dir.join("vmlinuz");
        let r = dir.join("initrd.img");
        std::fs::write(&k, det_bytes(1, 8 << 20))?;
        std::fs::write(&r, det_bytes(2, 24 << 20))?;
        Ok((k, r))
    };
    let (kernel, initrd) = match setup() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot write inputs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let amdsev = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ovmf_AmdSev_suffix.bin");
    let mut cases = Vec::new();
    let debian = PathBuf::from("/usr/share/ovmf/OVMF.fd");
    if debian.is_file() {
        cases.push((
            "Debian OVMF.fd (2 MiB), 4 vCPUs",
            SnpInputs::new(&debian, 4, VcpuModel::Named("EPYC-Milan".into())),
            "EPYC-Milan",
        ));
    }
    let mut direct = SnpInputs::new(&amdsev, 8, VcpuModel::Named("EPYC-Genoa".into()));
    direct.kernel = Some(kernel);
    direct.initrd = Some(initrd);
    direct.cmdline = Some("console=hvc0 root=/dev/vda1 agent.log=debug".into());
    cases.push((
        "AmdSev + 8 MiB kernel + 24 MiB initrd, 8 vCPUs",
        direct,
        "EPYC-Genoa",
    ));
    let mut ok = true;
    for (name, inputs, t) in &cases {
        match run_case(name, inputs, t, &oracle, cli.as_deref(), runs) {
            Ok(r) if r >= 10.0 => {}
            Ok(r) => println!("  below the 10x goal ({r:.1}x)"),
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
