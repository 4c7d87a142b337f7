//! RTMR1/RTMR2 prediction for an OVMF (TDVF) direct kernel boot (`qemu -kernel
//! -initrd -append`), from the kernel, initrd and command line files.
//!
//! What the firmware and the kernel's EFI stub extend (CC MR index 2 = RTMR1,
//! index 3 = RTMR2), as the real event logs in `tests/data` show:
//!
//! - RTMR1: the kernel's SHA-384 Authenticode digest (EV_EFI_BOOT_SERVICES_APPLICATION),
//!   the EV_EFI_ACTION "Calling EFI Application from Boot Option", on current edk2 an
//!   EV_SEPARATOR (four zero bytes), then "Exit Boot Services Invocation" and "Exit Boot
//!   Services Returned with Success".
//! - RTMR2 (the EFI stub, EV_EVENT_TAG): SHA-384 of the UTF-16LE load options OVMF
//!   builds (`<cmdline> initrd=initrd` plus a UTF-16 NUL; x86 `QemuLoadImageLib`), then
//!   SHA-384 of the initrd bytes.
//!
//! Up to edk2-stable202502, QEMU patched the boot-protocol header of the kernel it
//! handed to OVMF (loader type, heap end, command-line pointer, initrd address and
//! size), so the measured image is not the file: see [`KernelLoad::QemuPatched`].

use sha2::{Digest, Sha384};

use super::Mr48;
use super::pe::authenticode_sha384;
use crate::error::MeasureError;

/// Event data of the EV_EFI_ACTION measured at ReadyToBoot.
pub const CALLING_EFI_APPLICATION: &[u8] = b"Calling EFI Application from Boot Option";
/// Event data of the EV_EFI_ACTION measured when ExitBootServices is called.
pub const EXIT_BOOT_SERVICES_INVOCATION: &[u8] = b"Exit Boot Services Invocation";
/// Event data of the EV_EFI_ACTION measured when ExitBootServices succeeded.
pub const EXIT_BOOT_SERVICES_SUCCESS: &[u8] = b"Exit Boot Services Returned with Success";
/// Event data of an EV_SEPARATOR.
pub const SEPARATOR: [u8; 4] = [0; 4];

/// The order of RTMR1 events, which changed between edk2 releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Rtmr1Layout {
    /// Current edk2 (2023 and later): kernel, "Calling EFI Application", separator,
    /// the two ExitBootServices actions.
    #[default]
    Ovmf,
    /// 2022 TDVF builds (the OVMF log of trustee's test data): kernel, "Calling EFI
    /// Application", the two ExitBootServices actions, no separator in RTMR1.
    TdvfLegacy,
}

/// How the kernel bytes reach the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelLoad {
    /// The kernel file is measured as is (edk2-stable202505 and later load the PE
    /// image through the EFI stub path untouched).
    #[default]
    AsIs,
    /// QEMU patched the Linux boot-protocol header before handing the kernel over
    /// (older OVMF); the patch depends on the guest memory size and QEMU's ACPI area.
    QemuPatched {
        /// Guest RAM in bytes (`-m`).
        memory_bytes: u64,
        /// QEMU's ACPI data size on the machine type (0x28000 on q35).
        acpi_data_size: u32,
    },
}

/// `SHA-384(mr ‖ digest)`: one extend of a measurement register.
pub fn extend(mr: &Mr48, digest: &Mr48) -> Mr48 {
    let mut h = Sha384::new();
    h.update(mr);
    h.update(digest);
    h.finalize().into()
}

/// The register value after extending `digests` in order, from zero.
pub fn replay_digests(digests: &[Mr48]) -> Mr48 {
    digests.iter().fold([0u8; 48], |mr, d| extend(&mr, d))
}

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> Mr48 {
    Sha384::digest(data).into()
}

/// The UTF-16LE load options OVMF gives the kernel: the command line, then
/// ` initrd=initrd` when there is an initrd, then a UTF-16 NUL. Empty when there is
/// neither (the firmware then passes no load options and nothing is measured).
pub fn ovmf_load_options(cmdline: Option<&str>, has_initrd: bool) -> Vec<u8> {
    let mut text = cmdline.unwrap_or("").to_string();
    if has_initrd {
        text.push_str(" initrd=initrd");
    }
    if text.is_empty() {
        return Vec::new();
    }
    text.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The kernel as older QEMU handed it to OVMF: the boot-protocol header patched the
/// way QEMU's x86 Linux loader patches it (Linux boot protocol fields at 0x1f1..).
pub fn qemu_patched_kernel(
    kernel: &[u8],
    initrd_len: usize,
    memory_bytes: u64,
    acpi_data_size: u32,
) -> Result<Vec<u8>, MeasureError> {
    let mut k = kernel.to_vec();
    if k.len() < 0x1000 {
        return Err(MeasureError::InvalidInput(format!(
            "kernel of {} bytes is too short for a Linux boot-protocol header",
            k.len()
        )));
    }
    let put32 = |k: &mut [u8], at: usize, v: u32| k[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let get32 = |k: &[u8], at: usize| u32::from_le_bytes([k[at], k[at + 1], k[at + 2], k[at + 3]]);
    let protocol = if &k[0x202..0x206] == b"HdrS" {
        u16::from_le_bytes([k[0x206], k[0x207]])
    } else {
        0
    };
    let (real_addr, cmdline_addr) = if protocol < 0x200 || k[0x211] & 1 == 0 {
        (0x9_0000u32, 0x9_a000u32)
    } else {
        (0x1_0000, 0x2_0000)
    };
    if protocol >= 0x200 {
        k[0x210] = 0xb0; // type_of_loader: QEMU
    }
    if protocol >= 0x201 {
        k[0x211] |= 0x80; // CAN_USE_HEAP
        put32(&mut k, 0x224, cmdline_addr - real_addr - 0x200);
    }
    if protocol >= 0x202 {
        put32(&mut k, 0x228, cmdline_addr);
    } else {
        k[0x20..0x22].copy_from_slice(&0xa33fu16.to_le_bytes());
        k[0x22..0x24].copy_from_slice(&((cmdline_addr - real_addr) as u16).to_le_bytes());
    }
    if initrd_len > 0 {
        if protocol < 0x200 {
            return Err(MeasureError::InvalidInput(
                "the kernel's boot protocol is too old for an initrd".into(),
            ));
        }
        let mut initrd_max =
            if protocol >= 0x20c && u16::from_le_bytes([k[0x236], k[0x237]]) & 0x40 != 0 {
                u32::MAX // XLF_CAN_BE_LOADED_ABOVE_4G
            } else if protocol >= 0x203 {
                get32(&k, 0x22c) // initrd_addr_max
            } else {
                0x37ff_ffff
            };
        let lowmem: u64 = if memory_bytes < 0xb000_0000 {
            0xb000_0000
        } else {
            0x8000_0000
        };
        let below_4g = memory_bytes.min(lowmem) as u32;
        let limit = below_4g.saturating_sub(acpi_data_size);
        if initrd_max >= limit {
            initrd_max = limit.saturating_sub(1);
        }
        let len = u32::try_from(initrd_len)
            .ok()
            .filter(|l| *l < initrd_max)
            .ok_or_else(|| {
                MeasureError::InvalidInput(format!(
                    "initrd of {initrd_len} bytes does not fit below {initrd_max:#x}"
                ))
            })?;
        put32(&mut k, 0x218, (initrd_max - len) & !4095);
        put32(&mut k, 0x21c, len);
    }
    Ok(k)
}

/// The digests an OVMF direct boot extends for its kernel, command line and initrd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectBootDigests {
    /// SHA-384 Authenticode digest of the kernel as measured.
    pub kernel: Mr48,
    /// SHA-384 of the UTF-16 load options, if there are any.
    pub load_options: Option<Mr48>,
    /// SHA-384 of the initrd, if there is a non-empty one.
    pub initrd: Option<Mr48>,
}

impl DirectBootDigests {
    /// Computes the digests from the files' bytes.
    pub fn compute(
        kernel: &[u8],
        initrd: Option<&[u8]>,
        cmdline: Option<&str>,
        load: KernelLoad,
    ) -> Result<Self, MeasureError> {
        if kernel.is_empty() {
            return Err(MeasureError::InvalidInput("the kernel is empty".into()));
        }
        let initrd = initrd.filter(|i| !i.is_empty());
        let initrd_len = initrd.map_or(0, <[u8]>::len);
        let (kernel_digest, initrd_digest) = std::thread::scope(|s| {
            let i = s.spawn(|| initrd.map(sha384));
            let k = match load {
                KernelLoad::AsIs => authenticode_sha384(kernel),
                KernelLoad::QemuPatched {
                    memory_bytes,
                    acpi_data_size,
                } => qemu_patched_kernel(kernel, initrd_len, memory_bytes, acpi_data_size)
                    .and_then(|k| authenticode_sha384(&k)),
            };
            (k, i.join().unwrap_or_else(|_| initrd.map(sha384)))
        });
        let options = ovmf_load_options(cmdline, initrd.is_some());
        Ok(Self {
            kernel: kernel_digest?,
            load_options: (!options.is_empty()).then(|| sha384(&options)),
            initrd: initrd_digest,
        })
    }

    /// The RTMR1 event digests in order.
    pub fn rtmr1_events(&self, layout: Rtmr1Layout) -> Vec<Mr48> {
        let mut v = vec![self.kernel, sha384(CALLING_EFI_APPLICATION)];
        if layout == Rtmr1Layout::Ovmf {
            v.push(sha384(&SEPARATOR));
        }
        v.push(sha384(EXIT_BOOT_SERVICES_INVOCATION));
        v.push(sha384(EXIT_BOOT_SERVICES_SUCCESS));
        v
    }

    /// The RTMR2 event digests in order (load options, then initrd).
    pub fn rtmr2_events(&self) -> Vec<Mr48> {
        self.load_options
            .iter()
            .chain(self.initrd.iter())
            .copied()
            .collect()
    }

    /// The predicted RTMR1.
    pub fn rtmr1(&self, layout: Rtmr1Layout) -> Mr48 {
        replay_digests(&self.rtmr1_events(layout))
    }

    /// The predicted RTMR2.
    pub fn rtmr2(&self) -> Mr48 {
        replay_digests(&self.rtmr2_events())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_options_are_utf16_with_initrd_suffix_and_nul() {
        assert_eq!(
            ovmf_load_options(Some("ro"), true),
            "ro initrd=initrd\0"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<_>>()
        );
        assert_eq!(ovmf_load_options(Some("a"), false), b"a\0\0\0".to_vec());
        assert!(ovmf_load_options(None, false).is_empty());
        assert!(ovmf_load_options(Some(""), false).is_empty());
    }

    #[test]
    fn replay_is_a_chain_of_extends() {
        let a = sha384(b"a");
        let b = sha384(b"b");
        assert_eq!(replay_digests(&[a, b]), extend(&extend(&[0; 48], &a), &b));
        assert_ne!(replay_digests(&[a, b]), replay_digests(&[b, a]));
    }
}
