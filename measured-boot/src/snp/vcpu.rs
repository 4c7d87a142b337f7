//! vCPU signatures (CPUID Fn0000_0001_EAX) of the QEMU AMD EPYC models.

use crate::error::MeasureError;

/// The CPUID family/model/stepping signature (AMD CPUID spec #25481).
pub const fn cpu_sig(family: u32, model: u32, stepping: u32) -> u32 {
    let (family_low, family_high) = if family > 0xf {
        (0xf, (family - 0xf) & 0xff)
    } else {
        (family, 0)
    };
    (family_high << 20)
        | (((model >> 4) & 0xf) << 16)
        | (family_low << 8)
        | ((model & 0xf) << 4)
        | (stepping & 0xf)
}

const EPYC: u32 = cpu_sig(23, 1, 2);
const ROME: u32 = cpu_sig(23, 49, 0);
const MILAN: u32 = cpu_sig(25, 1, 1);
const GENOA: u32 = cpu_sig(25, 17, 0);
const TURIN: u32 = cpu_sig(26, 0, 0);

/// The QEMU vCPU model names accepted by `--vcpu-type`, with their signatures.
pub const VCPU_TYPES: &[(&str, u32)] = &[
    ("EPYC", EPYC),
    ("EPYC-v1", EPYC),
    ("EPYC-v2", EPYC),
    ("EPYC-IBPB", EPYC),
    ("EPYC-v3", EPYC),
    ("EPYC-v4", EPYC),
    ("EPYC-Rome", ROME),
    ("EPYC-Rome-v1", ROME),
    ("EPYC-Rome-v2", ROME),
    ("EPYC-Rome-v3", ROME),
    ("EPYC-Milan", MILAN),
    ("EPYC-Milan-v1", MILAN),
    ("EPYC-Milan-v2", MILAN),
    ("EPYC-Genoa", GENOA),
    ("EPYC-Genoa-v1", GENOA),
    ("EPYC-Turin", TURIN),
];

/// The signature of the QEMU vCPU model `name`.
pub fn vcpu_type_sig(name: &str) -> Result<u32, MeasureError> {
    VCPU_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| MeasureError::UnknownVcpuType {
            name: name.to_string(),
            known: VCPU_TYPES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_signatures() {
        // Milan family 0x19 model 1 stepping 1 -> 0x00a00f11
        assert_eq!(vcpu_type_sig("EPYC-Milan").unwrap(), 0x00a0_0f11);
        assert_eq!(vcpu_type_sig("EPYC-v4").unwrap(), 0x0080_0f12);
        assert_eq!(vcpu_type_sig("EPYC-Genoa").unwrap(), 0x00a1_0f10);
        let e = vcpu_type_sig("EPYC-Bogus").unwrap_err().to_string();
        assert!(e.contains("EPYC-Bogus") && e.contains("EPYC-Milan"), "{e}");
    }
}
