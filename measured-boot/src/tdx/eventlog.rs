//! CCEL / TCG2 crypto-agile event logs: parsing, RTMR replay, and the digests
//! of the boot components (kernel, command line, initrd) they record.
//!
//! The log starts with a TCG_PCR_EVENT (SHA-1 format) holding the
//! "Spec ID Event03" that lists the digest algorithms and sizes, followed by
//! TCG_PCR_EVENT2 records. In a CC event log the "PCR index" is the CC
//! measurement-register index: 1..=4 are RTMR0..3 (0 would be MRTD).

use sha2::{Digest, Sha384};

use super::Mr48;
use crate::error::{MeasureError, le_u16, le_u32};

/// TPM_ALG_SHA384.
pub const TPM_ALG_SHA384: u16 = 0x000c;

/// Event types used here (TCG PC Client Platform Firmware Profile).
pub mod event_type {
    /// Not extended into any register.
    pub const EV_NO_ACTION: u32 = 0x3;
    /// Separator between pre-OS and OS-present phases.
    pub const EV_SEPARATOR: u32 = 0x4;
    /// Tagged event (Linux EFI stub: load options, initrd).
    pub const EV_EVENT_TAG: u32 = 0x6;
    /// Platform configuration flags (td-shim: payload info / command line).
    pub const EV_PLATFORM_CONFIG_FLAGS: u32 = 0xa;
    /// Initial program loader data (GRUB commands, command line).
    pub const EV_IPL: u32 = 0xd;
    /// A UEFI application loaded by boot services (shim, GRUB, the kernel).
    pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
    /// An EFI action string.
    pub const EV_EFI_ACTION: u32 = 0x8000_0007;
    /// A firmware blob with a description (td-shim: the payload).
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000a;
}
use event_type::*;

/// One digest of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDigest {
    /// TPM algorithm id.
    pub alg: u16,
    /// The digest bytes.
    pub digest: Vec<u8>,
}

/// One TCG_PCR_EVENT2 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// CC measurement-register index (1..=4 for RTMR0..3).
    pub mr_index: u32,
    /// Event type.
    pub event_type: u32,
    /// Digests, one per algorithm.
    pub digests: Vec<EventDigest>,
    /// Event data.
    pub data: Vec<u8>,
    /// Byte offset of the record in the log.
    pub offset: usize,
}

impl Event {
    /// The SHA-384 digest of the event, if it has one.
    pub fn sha384(&self) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|d| d.alg == TPM_ALG_SHA384)
            .map(|d| d.digest.as_slice())
    }
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    /// (algorithm id, digest size) pairs from the Spec ID event.
    pub algorithms: Vec<(u16, u16)>,
    /// The TCG_PCR_EVENT2 records, in order.
    pub events: Vec<Event>,
}

/// Boot-component digests recorded in a log (all SHA-384, hex).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BootComponents {
    /// The kernel: the last EV_EFI_BOOT_SERVICES_APPLICATION in RTMR1 (OVMF/GRUB
    /// boot; an Authenticode digest), or td-shim's `td_payload` blob.
    pub kernel: Option<String>,
    /// The command line event digest (EV_EVENT_TAG "LOADED_IMAGE::LoadOptions",
    /// or td-shim's `td_payload_info`).
    pub cmdline: Option<String>,
    /// The command line text, when the log carries it (td-shim, GRUB).
    pub cmdline_text: Option<String>,
    /// The initrd (EV_EVENT_TAG "Linux initrd"): SHA-384 of the initrd bytes.
    pub initrd: Option<String>,
}

fn err(msg: String) -> MeasureError {
    MeasureError::EventLog(msg)
}

impl EventLog {
    /// Parses a CCEL / TCG2 crypto-agile log. Trailing padding (0xFF or 0x00
    /// bytes, as in the ACPI CCEL area) ends the log.
    pub fn parse(log: &[u8]) -> Result<Self, MeasureError> {
        // TCG_PCR_EVENT header: pcr u32, type u32, sha1[20], size u32, event.
        let ty = le_u32(log, 4).ok_or_else(|| err("log shorter than its first event".into()))?;
        if ty != EV_NO_ACTION {
            return Err(err(format!(
                "first event has type {ty:#x}, expected EV_NO_ACTION with the Spec ID event"
            )));
        }
        let size = le_u32(log, 28).ok_or_else(|| err("truncated first event".into()))? as usize;
        let spec = log
            .get(32..32 + size)
            .ok_or_else(|| err(format!("first event of {size} bytes is truncated")))?;
        if spec.get(..16) != Some(b"Spec ID Event03\0".as_slice()) {
            return Err(err(
                "first event is not a \"Spec ID Event03\" (not a crypto-agile log)".into(),
            ));
        }
        let count = le_u32(spec, 24).ok_or_else(|| err("truncated Spec ID event".into()))?;
        let mut algorithms = Vec::new();
        for i in 0..count as usize {
            let alg = le_u16(spec, 28 + 4 * i);
            let sz = le_u16(spec, 30 + 4 * i);
            match (alg, sz) {
                (Some(a), Some(s)) => algorithms.push((a, s)),
                _ => return Err(err("truncated Spec ID algorithm list".into())),
            }
        }
        if !algorithms
            .iter()
            .any(|(a, s)| *a == TPM_ALG_SHA384 && *s == 48)
        {
            return Err(err(format!(
                "the log declares no SHA-384 bank (algorithms {algorithms:x?})"
            )));
        }
        let mut events = Vec::new();
        let mut at = 32 + size;
        while at + 8 <= log.len() {
            let offset = at;
            let mr_index = le_u32(log, at).unwrap_or(u32::MAX);
            let event_type = le_u32(log, at + 4).unwrap_or(0);
            if mr_index == u32::MAX || (mr_index == 0 && event_type == 0) {
                break; // padding
            }
            let n = le_u32(log, at + 8)
                .ok_or_else(|| err(format!("event at {offset:#x}: truncated digest count")))?;
            at += 12;
            let mut digests = Vec::new();
            for _ in 0..n {
                let alg = le_u16(log, at)
                    .ok_or_else(|| err(format!("event at {offset:#x}: truncated digests")))?;
                let sz = algorithms
                    .iter()
                    .find(|(a, _)| *a == alg)
                    .map(|(_, s)| usize::from(*s))
                    .ok_or_else(|| {
                        err(format!(
                            "event at {offset:#x}: digest algorithm {alg:#x} not declared in the Spec ID event"
                        ))
                    })?;
                let d = log
                    .get(at + 2..at + 2 + sz)
                    .ok_or_else(|| err(format!("event at {offset:#x}: truncated digest")))?;
                digests.push(EventDigest {
                    alg,
                    digest: d.to_vec(),
                });
                at += 2 + sz;
            }
            let dsize = le_u32(log, at)
                .ok_or_else(|| err(format!("event at {offset:#x}: truncated event size")))?
                as usize;
            let data = log.get(at + 4..at + 4 + dsize).ok_or_else(|| {
                err(format!(
                    "event at {offset:#x}: event data of {dsize} bytes runs past the end of the log"
                ))
            })?;
            at += 4 + dsize;
            events.push(Event {
                mr_index,
                event_type,
                digests,
                data: data.to_vec(),
                offset,
            });
        }
        tracing::debug!(events = events.len(), "parsed CC event log");
        Ok(Self { algorithms, events })
    }

    /// Replays the log: RTMR[i] = SHA-384(RTMR[i] ‖ event digest) for every
    /// event except EV_NO_ACTION, starting from zero.
    pub fn replay(&self) -> Result<[Mr48; 4], MeasureError> {
        let mut rtmrs = [[0u8; 48]; 4];
        for e in &self.events {
            if e.event_type == EV_NO_ACTION {
                continue;
            }
            let slot = match e.mr_index {
                1..=4 => (e.mr_index - 1) as usize,
                i => {
                    return Err(err(format!(
                        "event at {:#x} extends CC MR index {i}; only 1..=4 (RTMR0..3) can be extended",
                        e.offset
                    )));
                }
            };
            let d = e
                .sha384()
                .ok_or_else(|| err(format!("event at {:#x} has no SHA-384 digest", e.offset)))?;
            let mut h = Sha384::new();
            h.update(rtmrs[slot]);
            h.update(d);
            rtmrs[slot].copy_from_slice(&h.finalize());
        }
        Ok(rtmrs)
    }

    /// Replays the log and checks the result against reported RTMR values
    /// (e.g. from a quote). Every register must match.
    pub fn verify_against(&self, reported: &[Mr48; 4]) -> Result<(), MeasureError> {
        let replayed = self.replay()?;
        for (i, (r, q)) in replayed.iter().zip(reported).enumerate() {
            if r != q {
                return Err(MeasureError::ReplayMismatch {
                    register: format!("RTMR{i}"),
                    replayed: hex::encode(r),
                    reported: hex::encode(q),
                });
            }
        }
        Ok(())
    }

    /// The boot-component digests the log records (see [`BootComponents`]).
    pub fn boot_components(&self) -> BootComponents {
        let mut out = BootComponents::default();
        let hex_of = |e: &Event| e.sha384().map(hex::encode);
        for e in &self.events {
            match e.event_type {
                EV_EFI_BOOT_SERVICES_APPLICATION if e.mr_index == 2 => out.kernel = hex_of(e),
                EV_EFI_PLATFORM_FIRMWARE_BLOB2
                    if blob2_description(&e.data) == Some(b"td_payload") =>
                {
                    out.kernel = hex_of(e);
                }
                EV_EVENT_TAG if contains(&e.data, b"LOADED_IMAGE::LoadOptions") => {
                    out.cmdline = hex_of(e);
                }
                EV_EVENT_TAG if contains(&e.data, b"Linux initrd") => out.initrd = hex_of(e),
                EV_PLATFORM_CONFIG_FLAGS if e.data.starts_with(b"td_payload_info") => {
                    out.cmdline = hex_of(e);
                    out.cmdline_text = td_shim_info_text(&e.data);
                }
                EV_IPL => {
                    if let Some(t) = grub_cmdline(&e.data) {
                        out.cmdline_text = Some(t);
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// UEFI_PLATFORM_FIRMWARE_BLOB2: u8 description size, description, u64 base, u64 length.
fn blob2_description(data: &[u8]) -> Option<&[u8]> {
    let n = usize::from(*data.first()?);
    let d = data.get(1..1 + n)?;
    Some(d.strip_suffix(&[0]).unwrap_or(d))
}

/// td-shim platform config info: 16-byte descriptor, u32 length, text.
fn td_shim_info_text(data: &[u8]) -> Option<String> {
    let n = le_u32(data, 16)? as usize;
    let text = data.get(20..20 + n).unwrap_or(data.get(20..)?);
    let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
    let text = &text[..end];
    Some(String::from_utf8_lossy(text).into_owned())
}

/// GRUB's measured command line: "kernel_cmdline: ..." (or "grub_kernel_cmdline ...").
fn grub_cmdline(data: &[u8]) -> Option<String> {
    let text = data.strip_suffix(&[0]).unwrap_or(data);
    let text = std::str::from_utf8(text).ok()?;
    text.strip_prefix("kernel_cmdline: ")
        .or_else(|| text.strip_prefix("grub_kernel_cmdline "))
        .map(str::to_string)
}
