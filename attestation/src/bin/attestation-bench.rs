//! Verification time per SNP report and per TDX quote on the crate's fixtures,
//! against the floor of one raw ECDSA P-384 verify measured in the same run.
//!
//! Usage: `attestation-bench [ITERATIONS] [DATA_DIR]` (defaults: 200, the crate's tests/data).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use attestation::snp::certs::{AmdCert, pem_chain_to_der};
use attestation::snp::{SnpPolicy, SnpReport, SnpVerifyInput, verify_snp};
use attestation::tdx::{TdxPolicy, TdxVerifyInput, parse_collateral_json, verify_tdx};
use attestation::time::parse_rfc3339;
use p384::ecdsa::signature::Verifier as _;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn median<F: FnMut() -> BenchResult<()>>(iterations: usize, mut f: F) -> BenchResult<Duration> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

fn read(dir: &Path, rel: &str) -> BenchResult<Vec<u8>> {
    std::fs::read(dir.join(rel)).map_err(|e| format!("{}: {e}", dir.join(rel).display()).into())
}

fn main() -> BenchResult<()> {
    let mut args = std::env::args().skip(1);
    let iterations: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200)
        .max(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"));

    let report = read(&dir, "snp/milan-vcek-virtee/report.bin")?;
    let vek = read(&dir, "snp/milan-vcek-virtee/vcek.der")?;
    let chain = pem_chain_to_der(&read(&dir, "snp/certs/milan/ask_ark_milan.pem")?)?;
    let snp_now = parse_rfc3339("2025-01-01T00:00:00Z")?;
    let quote = read(&dir, "tdx/v4-uptodate-dcapqvl/quote.bin")?;
    let collateral =
        parse_collateral_json(&read(&dir, "tdx/v4-uptodate-dcapqvl/collateral.json")?)?;
    let tdx_now = parse_rfc3339("2025-07-01T00:00:00Z")?;

    // Floor: the one ECDSA P-384 verify every SNP verification must do.
    let key = AmdCert::from_der(&vek)?.p384_key()?;
    let parsed = SnpReport::parse(&report)?;
    let (r, s) = parsed.signature_rs()?;
    let sig = p384::ecdsa::Signature::from_scalars(r, s)?;
    let floor = median(iterations, || {
        key.verify(parsed.signed_bytes(), &sig)?;
        Ok(())
    })?;
    // Cold: every RSA-PSS certificate signature checked (what the first report of a
    // platform costs); the medians below hit the signature cache for the AMD chain.
    let vek_cert = AmdCert::from_der(&vek)?;
    let ask = AmdCert::from_der(&chain[0])?;
    let ark = AmdCert::from_der(&chain[1])?;
    let rsa_chain = median(iterations.min(50), || {
        ark.verify_signed_uncached(&ark)?;
        ark.verify_signed_uncached(&ask)?;
        ask.verify_signed_uncached(&vek_cert)?;
        Ok(())
    })?;
    let snp = median(iterations, || {
        verify_snp(
            SnpVerifyInput {
                report: &report,
                vek: &vek,
                chain: Some(&chain),
                now: snp_now,
            },
            &SnpPolicy::default(),
        )?;
        Ok(())
    })?;
    let tdx = median(iterations, || {
        verify_tdx(
            TdxVerifyInput {
                quote: &quote,
                collateral: &collateral,
                now: tdx_now,
                root_ca_der: None,
            },
            &TdxPolicy::default(),
        )?;
        Ok(())
    })?;
    let ratio = |d: Duration| d.as_secs_f64() / floor.as_secs_f64();
    println!("attestation-bench: median of {iterations} runs");
    println!(
        "  raw ECDSA P-384 verify (floor): {:>10.1} us",
        floor.as_secs_f64() * 1e6
    );
    println!(
        "  3 RSA-PSS cert checks (cold):   {:>10.1} us  = {:.1}x floor",
        rsa_chain.as_secs_f64() * 1e6,
        ratio(rsa_chain)
    );
    println!(
        "  SNP report (chain+sig+TCB):     {:>10.1} us  = {:.1}x floor",
        snp.as_secs_f64() * 1e6,
        ratio(snp)
    );
    println!(
        "  TDX quote v4 + collateral:      {:>10.1} us  = {:.1}x floor",
        tdx.as_secs_f64() * 1e6,
        ratio(tdx)
    );
    Ok(())
}
