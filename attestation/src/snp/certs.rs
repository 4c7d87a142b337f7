//! AMD certificates: parsing, the VEK -> ASK/ASVK -> ARK chain (RSA-PSS SHA-384),
//! validity at an injected time, and the VEK's TCB / hwID extensions.

use der::{Decode as _, Encode as _, Reader as _};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use serde::{Deserialize, Serialize};
use x509_cert::Certificate;

use super::report::Product;
use crate::AttestationError;
use crate::time::format_rfc3339;

const MILAN_ASK_ARK: &str = include_str!("../../roots/ask_ark_milan.pem");
const MILAN_ASVK_ARK: &str = include_str!("../../roots/asvk_ark_milan.pem");
const GENOA_ASK_ARK: &str = include_str!("../../roots/ask_ark_genoa.pem");
const GENOA_ASVK_ARK: &str = include_str!("../../roots/asvk_ark_genoa.pem");
const TURIN_ASK_ARK: &str = include_str!("../../roots/ask_ark_turin.pem");
const TURIN_ASVK_ARK: &str = include_str!("../../roots/asvk_ark_turin.pem");

const OID_CN: &str = "2.5.4.3";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

/// Versioned endorsement key kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VekKind {
    /// Chip key, signed by the ASK (`SEV-<Gen>`).
    Vcek,
    /// Loaded (CSP) key, signed by the ASVK (`SEV-VLEK-<Gen>`).
    Vlek,
}

/// A certificate with the exact DER it came in.
#[derive(Debug, Clone)]
pub struct AmdCert {
    der: Vec<u8>,
    tbs_raw: Vec<u8>,
    cert: Certificate,
}

/// The AMD-specific extensions of a VCEK/VLEK.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VekExtensions {
    /// productName1 ("Milan-B0", "Genoa", ...).
    pub product_name: Option<String>,
    /// blSPL.
    pub bootloader: Option<u8>,
    /// teeSPL.
    pub tee: Option<u8>,
    /// snpSPL.
    pub snp: Option<u8>,
    /// ucodeSPL.
    pub microcode: Option<u8>,
    /// fmcSPL (Turin).
    pub fmc: Option<u8>,
    /// hwID (VCEK only): 64 bytes, 8 on Turin.
    pub hwid: Option<Vec<u8>>,
    /// cspID (VLEK only).
    pub csp_id: Option<String>,
}

/// Signature checks already passed, keyed by SHA-256 over (signer DER, child DER).
/// The result of an RSA-PSS check depends only on those bytes, so it is safe to
/// remember; validity dates are still checked on every call. Bounded: cleared when full.
static VERIFIED_SIGNATURES: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
> = std::sync::OnceLock::new();
const VERIFIED_SIGNATURES_MAX: usize = 4096;

fn signature_cache_key(signer: &AmdCert, child: &AmdCert) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update((signer.der.len() as u64).to_le_bytes());
    h.update(&signer.der);
    h.update(&child.der);
    h.finalize().into()
}

fn chain_err(msg: impl Into<String>) -> AttestationError {
    AttestationError::CertificateChain(msg.into())
}

impl AmdCert {
    /// Parse one DER certificate, keeping the received TBS bytes for signature checks.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self, AttestationError> {
        let cert = Certificate::from_der(der_bytes)
            .map_err(|e| AttestationError::malformed("certificate", e))?;
        let mut reader = der::SliceReader::new(der_bytes)
            .map_err(|e| AttestationError::malformed("certificate", e))?;
        let outer = der::Header::decode(&mut reader)
            .map_err(|e| AttestationError::malformed("certificate", e))?;
        if outer.tag != der::Tag::Sequence {
            return Err(AttestationError::malformed("certificate", "not a SEQUENCE"));
        }
        let tbs_raw = reader
            .tlv_bytes()
            .map_err(|e| AttestationError::malformed("certificate", e))?
            .to_vec();
        Ok(Self {
            der: der_bytes.to_vec(),
            tbs_raw,
            cert,
        })
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn name_cn(name: &x509_cert::name::Name) -> String {
        for rdn in name.0.iter() {
            for atv in rdn.0.iter() {
                if atv.oid.to_string() == OID_CN {
                    return String::from_utf8_lossy(atv.value.value()).into_owned();
                }
            }
        }
        String::new()
    }

    /// Subject common name.
    pub fn subject_cn(&self) -> String {
        Self::name_cn(&self.cert.tbs_certificate.subject)
    }

    /// Issuer common name.
    pub fn issuer_cn(&self) -> String {
        Self::name_cn(&self.cert.tbs_certificate.issuer)
    }

    /// (notBefore, notAfter) in Unix seconds.
    pub fn validity(&self) -> (i64, i64) {
        let v = &self.cert.tbs_certificate.validity;
        (
            v.not_before.to_unix_duration().as_secs() as i64,
            v.not_after.to_unix_duration().as_secs() as i64,
        )
    }

    /// Error unless `now` lies inside [notBefore, notAfter].
    pub fn check_validity(&self, now: i64) -> Result<(), AttestationError> {
        let (nb, na) = self.validity();
        let reason = if now < nb {
            format!(
                "{} is not valid before {}",
                self.subject_cn(),
                format_rfc3339(nb)
            )
        } else if now > na {
            format!("{} expired at {}", self.subject_cn(), format_rfc3339(na))
        } else {
            return Ok(());
        };
        Err(AttestationError::Validity {
            now: format_rfc3339(now),
            reason,
        })
    }

    fn spki_der(&self) -> Result<Vec<u8>, AttestationError> {
        self.cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| AttestationError::malformed("certificate public key", e))
    }

    /// Verify that this (RSA) certificate's key signed `child` with RSASSA-PSS SHA-384.
    /// Successful checks are remembered (see `VERIFIED_SIGNATURES`).
    pub fn verify_signed(&self, child: &AmdCert) -> Result<(), AttestationError> {
        let key = signature_cache_key(self, child);
        let cache = VERIFIED_SIGNATURES.get_or_init(Default::default);
        if cache.lock().map(|c| c.contains(&key)).unwrap_or(false) {
            return Ok(());
        }
        self.verify_signed_uncached(child)?;
        if let Ok(mut c) = cache.lock() {
            if c.len() >= VERIFIED_SIGNATURES_MAX {
                c.clear();
            }
            c.insert(key);
        }
        Ok(())
    }

    /// [`AmdCert::verify_signed`] without the cache.
    pub fn verify_signed_uncached(&self, child: &AmdCert) -> Result<(), AttestationError> {
        if child.cert.signature_algorithm.oid.to_string() != OID_RSASSA_PSS {
            return Err(chain_err(format!(
                "{} is not signed with RSASSA-PSS",
                child.subject_cn()
            )));
        }
        let key = rsa::RsaPublicKey::from_public_key_der(&self.spki_der()?)
            .map_err(|e| chain_err(format!("{} has no RSA key: {e}", self.subject_cn())))?;
        let verifier = rsa::pss::VerifyingKey::<sha2::Sha384>::new(key);
        let sig = child.cert.signature.as_bytes().ok_or_else(|| {
            AttestationError::malformed("certificate", "signature has unused bits")
        })?;
        let sig = rsa::pss::Signature::try_from(sig)
            .map_err(|e| AttestationError::malformed("certificate signature", e))?;
        verifier.verify(&child.tbs_raw, &sig).map_err(|_| {
            chain_err(format!(
                "{} does not sign {} (RSA-PSS SHA-384 signature invalid)",
                self.subject_cn(),
                child.subject_cn()
            ))
        })
    }

    /// The P-384 ECDSA key of a VCEK/VLEK.
    pub fn p384_key(&self) -> Result<p384::ecdsa::VerifyingKey, AttestationError> {
        let spki = &self.cert.tbs_certificate.subject_public_key_info;
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| AttestationError::malformed("VEK public key", "unused bits"))?;
        p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|e| {
            AttestationError::malformed("VEK public key", format!("not a P-384 point: {e}"))
        })
    }

    /// The AMD extensions (absent ones are None).
    pub fn vek_extensions(&self) -> Result<VekExtensions, AttestationError> {
        let mut out = VekExtensions::default();
        let bad = |what: &str, e: der::Error| {
            AttestationError::malformed(format!("VEK extension {what}"), e)
        };
        for ext in self.cert.tbs_certificate.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            let spl = |name: &str| -> Result<Option<u8>, AttestationError> {
                let v = u32::from_der(value).map_err(|e| bad(name, e))?;
                u8::try_from(v).map(Some).map_err(|_| {
                    AttestationError::malformed(format!("VEK extension {name}"), "value > 255")
                })
            };
            match ext.extn_id.to_string().as_str() {
                OID_PRODUCT_NAME => {
                    let s = der::asn1::Ia5StringRef::from_der(value)
                        .map_err(|e| bad("productName", e))?;
                    out.product_name = Some(s.as_str().to_string());
                }
                OID_BL_SPL => out.bootloader = spl("blSPL")?,
                OID_TEE_SPL => out.tee = spl("teeSPL")?,
                OID_SNP_SPL => out.snp = spl("snpSPL")?,
                OID_UCODE_SPL => out.microcode = spl("ucodeSPL")?,
                OID_FMC_SPL => out.fmc = spl("fmcSPL")?,
                OID_HWID => {
                    // Normally a DER OCTET STRING; accept the bare bytes too.
                    let id = der::asn1::OctetStringRef::from_der(value)
                        .map(|o| o.as_bytes().to_vec())
                        .unwrap_or_else(|_| value.to_vec());
                    out.hwid = Some(id);
                }
                OID_CSP_ID => {
                    let s = der::asn1::Ia5StringRef::from_der(value)
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|_| String::from_utf8_lossy(value).into_owned());
                    out.csp_id = Some(s);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Split a PEM bundle into DER certificates.
pub fn pem_chain_to_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, AttestationError> {
    let certs = Certificate::load_pem_chain(pem)
        .map_err(|e| AttestationError::malformed("PEM certificate chain", e))?;
    certs
        .iter()
        .map(|c| {
            c.to_der()
                .map_err(|e| AttestationError::malformed("certificate", e))
        })
        .collect()
}

/// Read a certificate given as DER or PEM (first certificate).
pub fn cert_from_der_or_pem(bytes: &[u8]) -> Result<Vec<u8>, AttestationError> {
    if bytes.starts_with(b"-----BEGIN") {
        pem_chain_to_der(bytes)?
            .into_iter()
            .next()
            .ok_or_else(|| AttestationError::malformed("certificate", "empty PEM"))
    } else {
        Ok(bytes.to_vec())
    }
}

/// The embedded AMD chain (intermediate, ARK) for a product and key kind.
pub fn embedded_chain(product: Product, kind: VekKind) -> Result<Vec<Vec<u8>>, AttestationError> {
    let pem = match (product, kind) {
        (Product::Milan, VekKind::Vcek) => MILAN_ASK_ARK,
        (Product::Milan, VekKind::Vlek) => MILAN_ASVK_ARK,
        (Product::Genoa, VekKind::Vcek) => GENOA_ASK_ARK,
        (Product::Genoa, VekKind::Vlek) => GENOA_ASVK_ARK,
        (Product::Turin, VekKind::Vcek) => TURIN_ASK_ARK,
        (Product::Turin, VekKind::Vlek) => TURIN_ASVK_ARK,
    };
    pem_chain_to_der(pem.as_bytes())
}

/// The outcome of a chain check.
#[derive(Debug, Clone)]
pub struct VerifiedVek {
    /// Product generation named by the chain.
    pub product: Product,
    /// VCEK or VLEK.
    pub kind: VekKind,
    /// The endorsement key certificate.
    pub vek: AmdCert,
    /// Its AMD extensions.
    pub extensions: VekExtensions,
}

fn product_from_issuer(issuer: &str) -> Option<(Product, VekKind)> {
    let (kind, gen_name) = match issuer.strip_prefix("SEV-VLEK-") {
        Some(g) => (VekKind::Vlek, g),
        None => (VekKind::Vcek, issuer.strip_prefix("SEV-")?),
    };
    let product = match gen_name {
        "Milan" => Product::Milan,
        "Genoa" => Product::Genoa,
        "Turin" => Product::Turin,
        _ => return None,
    };
    Some((product, kind))
}

/// Check VEK -> ASK/ASVK -> ARK. `chain` is the (intermediate, ARK) pair in any
/// order; when None the embedded AMD chain for the VEK's product is used. In
/// every case the ARK must be the embedded ARK of that product (trust anchor).
pub fn verify_vek_chain(
    vek_der: &[u8],
    chain: Option<&[Vec<u8>]>,
    now: i64,
) -> Result<VerifiedVek, AttestationError> {
    let vek = AmdCert::from_der(vek_der)?;
    let kind = match vek.subject_cn().as_str() {
        "SEV-VCEK" => VekKind::Vcek,
        "SEV-VLEK" => VekKind::Vlek,
        other => {
            return Err(chain_err(format!(
                "VEK subject CN {other:?} is neither SEV-VCEK nor SEV-VLEK"
            )));
        }
    };
    let issuer = vek.issuer_cn();
    let (product, issuer_kind) = product_from_issuer(&issuer)
        .ok_or_else(|| chain_err(format!("unknown VEK issuer {issuer:?}")))?;
    if issuer_kind != kind {
        return Err(chain_err(format!(
            "{kind:?} certificate issued by {issuer}"
        )));
    }
    let trusted = embedded_chain(product, kind)?;
    let given = match chain {
        Some(c) => c.to_vec(),
        None => trusted.clone(),
    };
    let parsed = given
        .iter()
        .map(|d| AmdCert::from_der(d))
        .collect::<Result<Vec<_>, _>>()?;
    let ark = parsed
        .iter()
        .find(|c| c.subject_cn().starts_with("ARK-"))
        .ok_or_else(|| chain_err("chain has no ARK certificate"))?;
    let intermediate = parsed
        .iter()
        .find(|c| !c.subject_cn().starts_with("ARK-"))
        .ok_or_else(|| chain_err("chain has no ASK/ASVK certificate"))?;
    let trusted_ark = AmdCert::from_der(
        trusted
            .get(1)
            .ok_or_else(|| chain_err("embedded chain lacks its ARK"))?,
    )?;
    if ark.spki_der()? != trusted_ark.spki_der()? {
        return Err(chain_err(format!(
            "ARK {:?} is not AMD's ARK-{} (embedded trust anchor)",
            ark.subject_cn(),
            product.name()
        )));
    }
    if intermediate.subject_cn() != issuer {
        return Err(chain_err(format!(
            "VEK is issued by {issuer} but the chain's intermediate is {}",
            intermediate.subject_cn()
        )));
    }
    ark.verify_signed(ark)?;
    ark.verify_signed(intermediate)?;
    intermediate.verify_signed(&vek)?;
    for cert in [ark, intermediate, &vek] {
        cert.check_validity(now)?;
    }
    let extensions = vek.vek_extensions()?;
    Ok(VerifiedVek {
        product,
        kind,
        vek,
        extensions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    #[test]
    fn embedded_arks_have_the_published_fingerprints() {
        let want = [
            (
                Product::Milan,
                "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
            ),
            (
                Product::Genoa,
                "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
            ),
            (
                Product::Turin,
                "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
            ),
        ];
        for (product, fp) in want {
            for kind in [VekKind::Vcek, VekKind::Vlek] {
                let chain = embedded_chain(product, kind).unwrap();
                assert_eq!(chain.len(), 2);
                assert_eq!(hex::encode(sha2::Sha256::digest(&chain[1])), fp);
                let ark = AmdCert::from_der(&chain[1]).unwrap();
                let ask = AmdCert::from_der(&chain[0]).unwrap();
                ark.verify_signed(&ark).unwrap();
                ark.verify_signed(&ask).unwrap();
                let expected_cn = match kind {
                    VekKind::Vcek => format!("SEV-{}", product.name()),
                    VekKind::Vlek => format!("SEV-VLEK-{}", product.name()),
                };
                assert_eq!(ask.subject_cn(), expected_cn);
            }
        }
    }
}
