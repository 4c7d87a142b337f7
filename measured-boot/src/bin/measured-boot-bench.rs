//! Benchmark: our SNP launch digest versus spawning `sev-snp-measure` on the same
//! inputs, median of N runs each, with the digests asserted equal.
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

fn run_case(
    name: &str,
    inputs: &SnpInputs,
    vcpu_type: &str,
    oracle: &Path,
    runs: usize,
) -> Result<f64, String> {
    let args = oracle_args(inputs, vcpu_type);
    let mut theirs = Vec::new();
    let mut their_digest = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(oracle)
            .args(&args)
            .output()
            .map_err(|e| e.to_string())?;
        theirs.push(t.elapsed());
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        their_digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
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
    let (o, t, f) = (median(ours), median(theirs), median(floor));
    let ratio = t.as_secs_f64() / o.as_secs_f64();
    println!(
        "{name}: ours {:.2} ms, sev-snp-measure {:.2} ms, speed-up {ratio:.1}x (digest {our_digest}); \
         SHA-256 of kernel+initrd alone, one thread: {:.2} ms",
        o.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        f.as_secs_f64() * 1e3
    );
    Ok(ratio)
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
        match run_case(name, inputs, t, &oracle, runs) {
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
