//! SEV-SNP ATTESTATION_REPORT parsed directly from the received bytes
//! (AMD SEV-SNP ABI, "ATTESTATION_REPORT structure"; versions 2..5, 1184 bytes).

use serde::{Deserialize, Serialize};

use crate::AttestationError;

/// Size of the report in bytes.
pub const REPORT_LEN: usize = 1184;
/// End of the signed area: the signature covers bytes `0..SIGNED_LEN`.
pub const SIGNED_LEN: usize = 0x2A0;

/// AMD product generation (decides the TCB encoding and the root of trust).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Product {
    /// EPYC 7003.
    Milan,
    /// EPYC 9004 / 8004 (incl. Bergamo, Siena).
    Genoa,
    /// EPYC 9005.
    Turin,
}

impl Product {
    /// AMD's name, as used in certificate CNs ("SEV-Milan") and KDS URLs.
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Guess from CPUID family/model (reports v3+).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }
}

/// A TCB version (SPL values) decoded for a product generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnpTcb {
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin and later only).
    pub fmc: Option<u8>,
}

impl SnpTcb {
    /// Decode the little-endian 64-bit TCB_VERSION for `product`.
    pub fn decode(raw: [u8; 8], product: Product) -> Self {
        match product {
            Product::Milan | Product::Genoa => SnpTcb {
                bootloader: raw[0],
                tee: raw[1],
                snp: raw[6],
                microcode: raw[7],
                fmc: None,
            },
            Product::Turin => SnpTcb {
                fmc: Some(raw[0]),
                bootloader: raw[1],
                tee: raw[2],
                snp: raw[3],
                microcode: raw[7],
            },
        }
    }

    /// True when every component is >= the same component of `min`.
    pub fn at_least(&self, min: &SnpTcb) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
            && self.fmc.unwrap_or(0) >= min.fmc.unwrap_or(0)
    }
}

impl std::fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )?;
        if let Some(fmc) = self.fmc {
            write!(f, " fmc={fmc}")?;
        }
        Ok(())
    }
}

/// Which key signed the report (KEY_INFO.SIGNING_KEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key.
    Vcek,
    /// Versioned Loaded Endorsement Key.
    Vlek,
    /// Unsigned report (SIGNING_KEY = 7).
    None,
}

/// Guest policy bits (POLICY field).
pub mod policy_bits {
    /// SMT allowed.
    pub const SMT: u64 = 1 << 16;
    /// Association with a migration agent allowed.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Debugging allowed.
    pub const DEBUG: u64 = 1 << 19;
    /// Single socket only.
    pub const SINGLE_SOCKET: u64 = 1 << 20;
}

/// A report view over the received bytes. Field accessors read the bytes in place.
#[derive(Debug, Clone)]
pub struct SnpReport {
    bytes: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

impl SnpReport {
    /// Check size, version and signature algorithm; keep the exact received bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, AttestationError> {
        if bytes.len() != REPORT_LEN {
            return Err(AttestationError::malformed(
                "SNP report",
                format!("expected {REPORT_LEN} bytes, got {}", bytes.len()),
            ));
        }
        let report = SnpReport {
            bytes: bytes.to_vec(),
        };
        if !(2..=5).contains(&report.version()) {
            return Err(AttestationError::malformed(
                "SNP report",
                format!("unsupported version {}", report.version()),
            ));
        }
        if report.sig_algo() != 1 {
            return Err(AttestationError::malformed(
                "SNP report",
                format!(
                    "signature algorithm {} (only 1 = ECDSA P-384 with SHA-384)",
                    report.sig_algo()
                ),
            ));
        }
        Ok(report)
    }

    /// The received bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The signed area, bytes 0x000..0x29F.
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..SIGNED_LEN]
    }
    /// VERSION.
    pub fn version(&self) -> u32 {
        u32_at(&self.bytes, 0x00)
    }
    /// GUEST_SVN.
    pub fn guest_svn(&self) -> u32 {
        u32_at(&self.bytes, 0x04)
    }
    /// POLICY.
    pub fn policy(&self) -> u64 {
        u64_at(&self.bytes, 0x08)
    }
    /// FAMILY_ID.
    pub fn family_id(&self) -> &[u8] {
        &self.bytes[0x10..0x20]
    }
    /// IMAGE_ID.
    pub fn image_id(&self) -> &[u8] {
        &self.bytes[0x20..0x30]
    }
    /// VMPL.
    pub fn vmpl(&self) -> u32 {
        u32_at(&self.bytes, 0x30)
    }
    /// SIGNATURE_ALGO.
    pub fn sig_algo(&self) -> u32 {
        u32_at(&self.bytes, 0x34)
    }
    /// CURRENT_TCB, raw.
    pub fn current_tcb_raw(&self) -> [u8; 8] {
        self.tcb_raw(0x38)
    }
    /// PLATFORM_INFO.
    pub fn platform_info(&self) -> u64 {
        u64_at(&self.bytes, 0x40)
    }
    /// KEY_INFO word (AUTHOR_KEY_EN, MASK_CHIP_KEY, SIGNING_KEY).
    pub fn key_info(&self) -> u32 {
        u32_at(&self.bytes, 0x48)
    }
    /// The signing key named by KEY_INFO bits 4:2.
    pub fn signing_key(&self) -> Result<SigningKey, AttestationError> {
        match (self.key_info() >> 2) & 0x7 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            7 => Ok(SigningKey::None),
            other => Err(AttestationError::malformed(
                "SNP report",
                format!("reserved SIGNING_KEY value {other}"),
            )),
        }
    }
    /// REPORT_DATA (64 bytes).
    pub fn report_data(&self) -> &[u8] {
        &self.bytes[0x50..0x90]
    }
    /// MEASUREMENT (48 bytes).
    pub fn measurement(&self) -> &[u8] {
        &self.bytes[0x90..0xC0]
    }
    /// HOST_DATA (32 bytes).
    pub fn host_data(&self) -> &[u8] {
        &self.bytes[0xC0..0xE0]
    }
    /// ID_KEY_DIGEST (48 bytes).
    pub fn id_key_digest(&self) -> &[u8] {
        &self.bytes[0xE0..0x110]
    }
    /// AUTHOR_KEY_DIGEST (48 bytes).
    pub fn author_key_digest(&self) -> &[u8] {
        &self.bytes[0x110..0x140]
    }
    /// REPORT_ID.
    pub fn report_id(&self) -> &[u8] {
        &self.bytes[0x140..0x160]
    }
    /// REPORT_ID_MA.
    pub fn report_id_ma(&self) -> &[u8] {
        &self.bytes[0x160..0x180]
    }
    /// REPORTED_TCB, raw.
    pub fn reported_tcb_raw(&self) -> [u8; 8] {
        self.tcb_raw(0x180)
    }
    /// CPUID family, model, stepping (v3+ only).
    pub fn cpuid(&self) -> Option<(u8, u8, u8)> {
        (self.version() >= 3).then(|| (self.bytes[0x188], self.bytes[0x189], self.bytes[0x18A]))
    }
    /// CHIP_ID (64 bytes; zero when masked or VLEK-signed).
    pub fn chip_id(&self) -> &[u8] {
        &self.bytes[0x1A0..0x1E0]
    }
    /// COMMITTED_TCB, raw.
    pub fn committed_tcb_raw(&self) -> [u8; 8] {
        self.tcb_raw(0x1E0)
    }
    /// LAUNCH_TCB, raw.
    pub fn launch_tcb_raw(&self) -> [u8; 8] {
        self.tcb_raw(0x1F0)
    }
    /// Firmware version (major, minor, build) at 0x1E8.
    pub fn current_version(&self) -> (u8, u8, u8) {
        (self.bytes[0x1EA], self.bytes[0x1E9], self.bytes[0x1E8])
    }
    /// Signature R and S as big-endian 48-byte integers, checking that the
    /// zero-extension bytes of each 72-byte little-endian field are zero.
    pub fn signature_rs(&self) -> Result<([u8; 48], [u8; 48]), AttestationError> {
        let field = |off: usize| -> Result<[u8; 48], AttestationError> {
            let le = &self.bytes[off..off + 72];
            if le[48..].iter().any(|b| *b != 0) {
                return Err(AttestationError::Signature(
                    "SNP signature component wider than 384 bits".into(),
                ));
            }
            let mut be = [0u8; 48];
            for (i, b) in le[..48].iter().enumerate() {
                be[47 - i] = *b;
            }
            Ok(be)
        };
        Ok((field(0x2A0)?, field(0x2E8)?))
    }

    fn tcb_raw(&self, off: usize) -> [u8; 8] {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.bytes[off..off + 8]);
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_layouts() {
        let raw = [3, 0, 0, 0, 0, 0, 8, 115];
        assert_eq!(
            SnpTcb::decode(raw, Product::Milan),
            SnpTcb {
                bootloader: 3,
                tee: 0,
                snp: 8,
                microcode: 115,
                fmc: None
            }
        );
        let turin = SnpTcb::decode([1, 2, 3, 4, 0, 0, 0, 9], Product::Turin);
        assert_eq!(
            (
                turin.fmc,
                turin.bootloader,
                turin.tee,
                turin.snp,
                turin.microcode
            ),
            (Some(1), 2, 3, 4, 9)
        );
        assert!(turin.at_least(&SnpTcb {
            bootloader: 2,
            ..Default::default()
        }));
        assert!(!turin.at_least(&SnpTcb {
            microcode: 10,
            ..Default::default()
        }));
    }

    #[test]
    fn rejects_wrong_size_and_version() {
        assert!(SnpReport::parse(&[0u8; 1000]).is_err());
        let mut b = vec![0u8; REPORT_LEN];
        b[0] = 1;
        assert!(SnpReport::parse(&b).is_err());
        b[0] = 2;
        b[0x34] = 1;
        assert!(SnpReport::parse(&b).is_ok());
    }
}
