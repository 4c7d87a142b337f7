//! Shared test helpers: the `sev-snp-measure` oracle and a builder of firmware
//! images made from the OVMF metadata formats.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Path of the `sev-snp-measure` oracle, or `None` when skipping is allowed and it is missing.
/// Panics with install instructions when it is missing and skipping is not allowed.
pub fn oracle() -> Option<PathBuf> {
    let path = std::env::var_os("SEV_SNP_MEASURE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/cocoon-tools/venv/bin/sev-snp-measure"));
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "the sev-snp-measure oracle is missing at {}. Install it with:\n  \
         python3 -m venv /opt/cocoon-tools/venv && /opt/cocoon-tools/venv/bin/pip install sev-snp-measure==0.0.13\n\
         or point SEV_SNP_MEASURE at it (COCOON_ALLOW_SKIP_ORACLE=1 skips these tests)",
        path.display()
    );
    if std::env::var("COCOON_ALLOW_SKIP_ORACLE").as_deref() == Ok("1") {
        eprintln!("SKIPPING: {msg}");
        return None;
    }
    panic!("{msg}");
}

/// Runs the oracle with `args` and returns its trimmed stdout, or its stderr as the error.
pub fn run_oracle(oracle: &Path, args: &[String]) -> Result<String, String> {
    let out = Command::new(oracle)
        .args(args)
        .output()
        .expect("spawn sev-snp-measure");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Deterministic pseudo-random bytes (xorshift), so generated inputs are reproducible.
pub fn det_bytes(seed: u64, len: usize) -> Vec<u8> {
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

/// A GUID in on-disk byte order from its text form.
pub fn guid(text: &str) -> [u8; 16] {
    let h: String = text.chars().filter(|c| *c != '-').collect();
    let r = hex::decode(h).unwrap();
    [
        r[3], r[2], r[1], r[0], r[5], r[4], r[7], r[6], r[8], r[9], r[10], r[11], r[12], r[13],
        r[14], r[15],
    ]
}

pub const FOOTER: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
pub const SEV_META: &str = "dc886566-984a-4798-a75e-5585a7bf67cc";
pub const RESET_BLOCK: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
pub const HASH_TABLE: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
pub const TDX_META: &str = "e47a6535-984a-4798-865e-4685a7bf8ec2";

/// Builds the footer GUID table: `entries` are (GUID text, data), written so the
/// first entry ends up nearest the footer. Returns the bytes to place so they end
/// 32 bytes before the image end.
pub fn footer_table(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (g, data) in entries.iter().rev() {
        body.extend_from_slice(data);
        body.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
        body.extend_from_slice(&guid(g));
    }
    let total = body.len() + 18;
    body.extend_from_slice(&(total as u16).to_le_bytes());
    body.extend_from_slice(&guid(FOOTER));
    body
}

/// An SEV metadata section: (gpa, size, type).
pub type Section = (u32, u32, u32);

/// A synthetic SEV firmware image of `pages` pages with the given metadata sections,
/// AP reset EIP and hashes-table GPA (if any).
pub fn sev_image(
    pages: usize,
    sections: &[Section],
    reset_eip: Option<u32>,
    hash_table_gpa: Option<u32>,
    seed: u64,
) -> Vec<u8> {
    let len = pages * 4096;
    let mut img = det_bytes(seed, len);
    // SEV metadata at offset len - 0x800.
    let meta_off = len - 0x800;
    let mut meta = Vec::new();
    meta.extend_from_slice(b"ASEV");
    meta.extend_from_slice(&((16 + 12 * sections.len()) as u32).to_le_bytes());
    meta.extend_from_slice(&1u32.to_le_bytes());
    meta.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for (gpa, size, t) in sections {
        meta.extend_from_slice(&gpa.to_le_bytes());
        meta.extend_from_slice(&size.to_le_bytes());
        meta.extend_from_slice(&t.to_le_bytes());
    }
    img[meta_off..meta_off + meta.len()].copy_from_slice(&meta);
    let mut entries: Vec<(&str, Vec<u8>)> =
        vec![(SEV_META, ((len - meta_off) as u32).to_le_bytes().to_vec())];
    if let Some(eip) = reset_eip {
        let mut d = eip.to_le_bytes().to_vec();
        d.extend_from_slice(&[0u8; 4]);
        entries.push((RESET_BLOCK, d));
    }
    if let Some(gpa) = hash_table_gpa {
        let mut d = gpa.to_le_bytes().to_vec();
        d.extend_from_slice(&0x400u32.to_le_bytes());
        entries.push((HASH_TABLE, d));
    }
    let table = footer_table(&entries);
    let end = len - 32;
    img[end - table.len()..end].copy_from_slice(&table);
    img
}

/// The section list of an AmdSev build (edk2-stable202405 layout), plus an SVSM CAA page.
pub fn amdsev_like_sections() -> Vec<Section> {
    vec![
        (0x800000, 0x9000, 1),
        (0x80a000, 0x1000, 4),
        (0x80b000, 0x1000, 2),
        (0x80c000, 0x1000, 3),
        (0x80d000, 0x1000, 0x10),
        (0x80e000, 0x2000, 1),
    ]
}

/// Layout of a synthetic PE32+ EFI application built by [`pe_image`].
pub struct PeLayout {
    /// Seed of the deterministic filler bytes.
    pub seed: u64,
    /// File length.
    pub len: usize,
    /// Bytes 0x80..zero_to are zeroed before the headers are written.
    pub zero_to: usize,
    /// Optional header fields.
    pub size_of_code: u32,
    pub size_of_image: u32,
    pub size_of_headers: u32,
    pub checksum: u32,
    /// Section table: (name, virtual address, file offset, size).
    pub sections: Vec<([u8; 8], u32, u32, u32)>,
}

/// A small x86-64 PE32+ EFI application (DOS stub, PE header at 0x80, sections as given).
pub fn pe_image(l: &PeLayout) -> Vec<u8> {
    let mut img = det_bytes(l.seed, l.len);
    img[..0x80].fill(0);
    img[..2].copy_from_slice(b"MZ");
    img[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    let put16 =
        |img: &mut Vec<u8>, at: usize, v: u16| img[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |img: &mut Vec<u8>, at: usize, v: u32| img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    img[0x80..l.zero_to].fill(0);
    img[0x80..0x84].copy_from_slice(b"PE\0\0");
    let coff = 0x84;
    put16(&mut img, coff, 0x8664);
    put16(&mut img, coff + 2, l.sections.len() as u16);
    put16(&mut img, coff + 16, 0xf0);
    put16(&mut img, coff + 18, 0x22);
    let opt = coff + 20;
    put16(&mut img, opt, 0x20b);
    put32(&mut img, opt + 4, l.size_of_code);
    put32(&mut img, opt + 16, 0x1000); // entry point
    put32(&mut img, opt + 20, 0x1000); // BaseOfCode
    put32(&mut img, opt + 32, 0x1000); // SectionAlignment
    put32(&mut img, opt + 36, 0x200); // FileAlignment
    put32(&mut img, opt + 56, l.size_of_image);
    put32(&mut img, opt + 60, l.size_of_headers);
    if l.checksum != 0 {
        put32(&mut img, opt + 64, l.checksum); // excluded from the digest
    }
    put16(&mut img, opt + 68, 10); // EFI application
    put32(&mut img, opt + 108, 16);
    let table = opt + 0xf0;
    for (i, (name, va, ptr, size)) in l.sections.iter().enumerate() {
        let s = table + i * 40;
        img[s..s + 8].copy_from_slice(name);
        put32(&mut img, s + 8, *size);
        put32(&mut img, s + 12, *va);
        put32(&mut img, s + 16, *size);
        put32(&mut img, s + 20, *ptr);
        put32(&mut img, s + 36, 0x6000_0020);
    }
    img
}
