//! Benchmark: pull+unpack of a multi-layer image (>= 200 MiB uncompressed) from a loopback
//! docker-registry against `skopeo copy` + `umoci unpack` in the same run, and our
//! decrypt+HMAC throughput against `openssl speed`. Prints ratios.
//!
//! Needs docker-registry, skopeo, umoci and openssl on PATH. Run with
//! `cargo run --release -p guest-image --bin guest-image-bench` (`-- --decrypt-only` skips the
//! pull part).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aes::cipher::{KeyIvInit, StreamCipher};
use guest_image::ocicrypt::LayerCipherKey;
use guest_image::ocicrypt::cipher::encrypt_stream;
use guest_image::{PullOptions, pull_image};

type Fail = Box<dyn std::error::Error>;

fn run(cmd: &mut Command) -> Result<String, Fail> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Incompressible bytes (AES-CTR keystream).
fn random_bytes(len: usize, seed: u8) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut c = ctr::Ctr128BE::<aes::Aes256>::new(&[seed; 32].into(), &[seed; 16].into());
    c.apply_keystream(&mut buf);
    buf
}

/// Compressible text-like bytes.
fn text_bytes(len: usize, seed: usize) -> Vec<u8> {
    let words = [
        "container",
        "image",
        "layer",
        "digest",
        "confidential",
        "guest",
        "kernel",
        "attest",
    ];
    let mut out = Vec::with_capacity(len + 32);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
        out.push(if i.is_multiple_of(11) { b'\n' } else { b' ' });
        out.extend_from_slice(format!("{}", i % 1000).as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry(dir: &Path) -> Result<(Registry, String), Fail> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n\
             storage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {host}}}\n",
            dir.join("registry-data").display()
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let reg = Registry(child);
    for _ in 0..300 {
        if let Ok(mut s) = TcpStream::connect(&host) {
            write!(
                s,
                "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            )?;
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if resp.starts_with("HTTP/1.1 200") {
                return Ok((reg, host));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("docker-registry did not start".into())
}

/// Four layers: two of random data, two of text; about 224 MiB uncompressed.
fn build_image(work: &Path) -> Result<(std::path::PathBuf, u64), Fail> {
    let layout = work.join("oci");
    let img = format!("{}:bench", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &img]))?;
    let mut total = 0u64;
    for layer in 0..4usize {
        let src = work.join(format!("src{layer}"));
        fs::create_dir_all(&src)?;
        for f in 0..8usize {
            let data = if layer % 2 == 0 {
                random_bytes(7 << 20, (layer * 16 + f) as u8)
            } else {
                text_bytes(7 << 20, layer * 1000 + f)
            };
            total += data.len() as u64;
            fs::write(src.join(format!("file{f}")), data)?;
        }
        run(Command::new("umoci")
            .args(["insert", "--image", &img])
            .arg(&src)
            .arg(format!("/data{layer}")))?;
    }
    run(Command::new("umoci").args(["gc", "--layout"]).arg(&layout))?;
    Ok((layout, total))
}

/// `openssl speed` figure (bytes/s) for 16 KiB blocks.
fn openssl_speed(args: &[&str], label: &str) -> Result<f64, Fail> {
    let out = run(Command::new("openssl")
        .args(["speed", "-seconds", "2", "-bytes", "16384"])
        .args(args)
        .stderr(Stdio::null()))?;
    let line = out
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with(label))
        .ok_or_else(|| format!("no `{label}` line in openssl output:\n{out}"))?;
    let field = line
        .split_whitespace()
        .last()
        .ok_or("empty openssl line")?
        .trim_end_matches('k');
    Ok(field.parse::<f64>()? * 1000.0)
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn main() -> Result<(), Fail> {
    if std::env::args().any(|a| a == "--decrypt-only") {
        return bench_decrypt();
    }
    let work = tempfile::tempdir()?;
    let w = work.path();
    println!("building the benchmark image with umoci ...");
    let (layout, uncompressed) = build_image(w)?;
    let (_registry, host) = start_registry(w)?;
    let image = format!("{host}/bench/image:latest");
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:bench", layout.display()))
        .arg(format!("docker://{image}")))?;
    println!(
        "image: 4 layers, {:.0} MiB uncompressed",
        uncompressed as f64 / (1 << 20) as f64
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let options = PullOptions {
        insecure_registries: vec![host.clone()],
        max_concurrent_downloads: 4,
        ..PullOptions::default()
    };
    let mut ours = Duration::MAX;
    let mut theirs = Duration::MAX;
    for round in 0..2 {
        let dest = w.join(format!("ours{round}"));
        let t = Instant::now();
        runtime.block_on(pull_image(&image, &dest, &options))?;
        ours = ours.min(t.elapsed());
        fs::remove_dir_all(&dest)?;

        let oci = w.join(format!("skopeo{round}"));
        let bundle = w.join(format!("bundle{round}"));
        let t = Instant::now();
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{image}"))
            .arg(format!("oci:{}:x", oci.display())))?;
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:x", oci.display()))
            .arg(&bundle))?;
        theirs = theirs.min(t.elapsed());
        fs::remove_dir_all(&oci)?;
        fs::remove_dir_all(&bundle)?;
    }
    println!(
        "pull+unpack: ours {:.2} s ({:.0} MiB/s), skopeo copy + umoci unpack {:.2} s; ratio {:.2} (goal <= 1.0)",
        ours.as_secs_f64(),
        mib_s(uncompressed, ours),
        theirs.as_secs_f64(),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );

    bench_decrypt()
}

/// Best time of `rounds` runs of `f`.
fn best_of(rounds: usize, mut f: impl FnMut() -> Result<(), Fail>) -> Result<Duration, Fail> {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

/// Decrypt + HMAC throughput on a 256 MiB layer held in memory, against `openssl speed`
/// measured in the same run, plus the primitives on their own (which HMAC implementation is
/// faster here, and whether AES-CTR uses AES-NI).
fn bench_decrypt() -> Result<(), Fail> {
    let plain = random_bytes(256 << 20, 99);
    let (key, nonce) = ([7u8; 32], [9u8; 16]);
    let mut ciphertext = Vec::with_capacity(plain.len());
    let hmac = encrypt_stream(&key, &nonce, &plain[..], &mut ciphertext)?;
    drop(plain);
    let bytes = ciphertext.len() as u64;
    let layer_key = LayerCipherKey::new(key, nonce, hmac);
    // The pull path: one pipelined pass that HMACs and decrypts into an unnamed staging file
    // (tmpfs when /dev/shm exists, as /run is in the guest), released only after the HMAC
    // matched.
    let shm = Path::new("/dev/shm");
    let staging = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir()?
    };
    let ours = best_of(5, || {
        let plaintext = layer_key.decrypt_verified(&ciphertext[..], staging.path())?;
        if plaintext.len() != bytes {
            return Err("decrypt_verified returned a short plaintext".into());
        }
        Ok(())
    })?;

    // The primitives alone, in memory (no staging file).
    let rustcrypto_hmac = best_of(3, || {
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&key)?;
        for chunk in ciphertext.chunks(1 << 20) {
            hmac::Mac::update(&mut mac, chunk);
        }
        std::hint::black_box(hmac::Mac::finalize(mac));
        Ok(())
    })?;
    let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let ring_hmac = best_of(3, || {
        let mut context = ring::hmac::Context::with_key(&ring_key);
        for chunk in ciphertext.chunks(1 << 20) {
            context.update(chunk);
        }
        std::hint::black_box(context.sign());
        Ok(())
    })?;
    let mut out = vec![0u8; 1 << 20];
    let aes_ctr = best_of(3, || {
        let mut c = ctr::Ctr128BE::<aes::Aes256>::new(&key.into(), &nonce.into());
        for chunk in ciphertext.chunks(1 << 20) {
            c.apply_keystream_b2b(chunk, &mut out[..chunk.len()])
                .map_err(|e| e.to_string())?;
        }
        std::hint::black_box(&out);
        Ok(())
    })?;
    let two_pass = best_of(2, || {
        layer_key.verify_hmac(&ciphertext[..])?;
        let mut reader = layer_key.decrypting_reader(&ciphertext[..]);
        while reader.read(&mut out)? > 0 {}
        Ok(())
    })?;
    println!(
        "  primitives (256 MiB in memory): HMAC-SHA256 RustCrypto {:.0} MiB/s, ring {:.0} MiB/s; AES-256-CTR RustCrypto {:.0} MiB/s; former two passes (verify, then decrypt) {:.0} MiB/s",
        mib_s(bytes, rustcrypto_hmac),
        mib_s(bytes, ring_hmac),
        mib_s(bytes, aes_ctr),
        mib_s(bytes, two_pass),
    );
    let ours_bps = bytes as f64 / ours.as_secs_f64();
    let aes_bps = openssl_speed(&["-evp", "aes-256-ctr"], "aes-256-ctr")?;
    let hmac_bps = openssl_speed(&["-hmac", "sha256"], "hmac(sha256)")
        .or_else(|_| openssl_speed(&["-evp", "sha256"], "sha256"))?;
    let combined = 1.0 / (1.0 / aes_bps + 1.0 / hmac_bps);
    let mb = |bps: f64| bps / (1 << 20) as f64;
    println!(
        "decrypt+HMAC (pipelined, into a staging file): ours {:.0} MiB/s; openssl aes-256-ctr {:.0} MiB/s, hmac-sha256 {:.0} MiB/s, both in sequence {:.0} MiB/s",
        mb(ours_bps),
        mb(aes_bps),
        mb(hmac_bps),
        mb(combined)
    );
    println!(
        "decrypt+HMAC ratio: {:.2} of the HMAC-SHA256 limit (goal >= 0.8), {:.2} of openssl AES-CTR+HMAC in sequence",
        ours_bps / hmac_bps,
        ours_bps / combined
    );
    Ok(())
}
