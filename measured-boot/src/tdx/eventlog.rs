//! CCEL / TCG2 crypto-agile event logs: parsing, RTMR replay, and the digests
//! of the boot components (kernel, command line, initrd) they record.
//!
//! The log starts with a TCG_PCR_EVENT (SHA-1 format) holding the
//! "Spec ID Event03" that lists the digest algorithms and sizes, followed by
//! TCG_PCR_EVENT2 records. In a CC event log the "PCR index" is the CC
//! measurement-register index: 1..=4 are RTMR0..3 (0 would be MRTD).
//!
//! Replay only uses the digests, so the event *data* is not covered by the registers.
//! For the event types whose digest is defined as the SHA-384 of (part of) their data,
//! [`EventLog::check_event_data`] checks that relation; [`EventLog::verify_against`] and
//! [`EventLog::boot_components`] run it, so a forged command-line text with the genuine
//! digest is refused. The relations checked, each confirmed by the real logs in
//! `tests/data` (and by the specification or the producer named):
//!
//! | event | digest is SHA-384 of |
//! |---|---|
//! | EV_SEPARATOR | the data (TCG PC Client PFP: the 4-byte separator value) |
//! | EV_EFI_ACTION | the data (the action string, no NUL) |
//! | EV_PLATFORM_CONFIG_FLAGS with td-shim descriptor `td_hob` / `td_payload_info` | the `length` bytes after the 16-byte descriptor and the `u32` length (the HOB list / the command line) |
//! | EV_IPL `kernel_cmdline: TEXT` / `grub_cmd: TEXT` (GRUB 2 `verify_string`) | `TEXT`, without the prefix and the trailing NUL |
//!
//! Other events are not checked: EV_EVENT_TAG (load options, initrd), applications and
//! firmware blobs record the digest of something that is not in the log; the EFI
//! variable and GPT events hash their data in these logs too, but nothing here reads
//! their data.

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
    /// (e.g. from a quote): every register must match ([`MeasureError::ReplayMismatch`]).
    /// Then checks the event data against the digests ([`Self::check_event_data`]), so
    /// that data read from a verified log is what was measured.
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
        self.check_event_data()
    }

    /// Checks, for every event whose digest is defined as the SHA-384 of (part of) its
    /// data (see the module documentation), that the recorded SHA-384 digest is that
    /// hash. The first event that fails is a [`MeasureError::EventDataMismatch`] naming
    /// its index and type.
    pub fn check_event_data(&self) -> Result<(), MeasureError> {
        for (index, e) in self.events.iter().enumerate() {
            if e.event_type == EV_NO_ACTION {
                continue;
            }
            let mismatch = |detail: String| MeasureError::EventDataMismatch {
                index,
                event_type: event_name(e),
                offset: e.offset,
                detail,
            };
            let Some(measured) = measured_data(e).map_err(&mismatch)? else {
                continue;
            };
            let digest = e
                .sha384()
                .ok_or_else(|| mismatch("the event has no SHA-384 digest".into()))?;
            let hashed = Sha384::digest(measured);
            if hashed.as_slice() != digest {
                return Err(mismatch(format!(
                    "the {} hashes to {}, the recorded digest is {}",
                    measured_what(e),
                    hex::encode(hashed),
                    hex::encode(digest)
                )));
            }
        }
        Ok(())
    }

    /// The boot-component digests the log records (see [`BootComponents`]).
    ///
    /// The event data is checked first ([`Self::check_event_data`]): a command-line
    /// text that is not what its digest measured is refused with
    /// [`MeasureError::EventDataMismatch`], never reported. The digests themselves mean
    /// something only for a log that [`Self::verify_against`] accepted.
    pub fn boot_components(&self) -> Result<BootComponents, MeasureError> {
        self.check_event_data()?;
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
                EV_PLATFORM_CONFIG_FLAGS
                    if td_shim_descriptor(&e.data) == Some(b"td_payload_info".as_slice()) =>
                {
                    out.cmdline = hex_of(e);
                    out.cmdline_text = td_shim_info_text(&e.data);
                }
                EV_IPL => {
                    if let Some(t) = grub_cmdline(e) {
                        out.cmdline_text = Some(t);
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// td-shim's platform-config descriptors whose digest covers the info that follows
/// (`TdShimPlatformConfigInfoHeader`: 16-byte descriptor, `u32` length, info).
const TD_SHIM_MEASURED_INFO: [&[u8]; 2] = [b"td_hob", b"td_payload_info"];

/// GRUB 2's `verify_string` prefixes: the event data is `PREFIX TEXT\0`, the digest is
/// of `TEXT`.
const GRUB_MEASURED_PREFIXES: [&[u8]; 2] = [b"kernel_cmdline: ", b"grub_cmd: "];

/// The td-shim descriptor of an EV_PLATFORM_CONFIG_FLAGS event, NUL padding removed.
fn td_shim_descriptor(data: &[u8]) -> Option<&[u8]> {
    let d = data.get(..16)?;
    let end = d.iter().position(|b| *b == 0).unwrap_or(d.len());
    Some(&d[..end])
}

/// The td-shim info bytes after the header, exactly `length` of them.
fn td_shim_info(data: &[u8]) -> Result<&[u8], String> {
    let n = le_u32(data, 16).ok_or("the td-shim header is truncated")? as usize;
    data.get(20..20usize.saturating_add(n)).ok_or_else(|| {
        format!(
            "the td-shim header declares {n} bytes of info, the event carries {}",
            data.len().saturating_sub(20)
        )
    })
}

/// The bytes whose SHA-384 the event's digest must be, for the event types where that
/// relation is defined and confirmed (see the module documentation); `None` otherwise.
fn measured_data(e: &Event) -> Result<Option<&[u8]>, String> {
    Ok(match e.event_type {
        EV_SEPARATOR | EV_EFI_ACTION => Some(&e.data),
        EV_PLATFORM_CONFIG_FLAGS
            if td_shim_descriptor(&e.data).is_some_and(|d| TD_SHIM_MEASURED_INFO.contains(&d)) =>
        {
            Some(td_shim_info(&e.data)?)
        }
        EV_IPL => GRUB_MEASURED_PREFIXES
            .iter()
            .find_map(|p| e.data.strip_prefix(*p))
            .map(|t| t.strip_suffix(&[0]).unwrap_or(t)),
        _ => None,
    })
}

/// What [`measured_data`] hashes, for error messages.
fn measured_what(e: &Event) -> &'static str {
    match e.event_type {
        EV_PLATFORM_CONFIG_FLAGS => "td-shim info after the header",
        EV_IPL => "text after the GRUB prefix",
        _ => "event data",
    }
}

/// The name of an event's type, with the tag that selects the relation checked.
fn event_name(e: &Event) -> String {
    let base = match e.event_type {
        EV_SEPARATOR => "EV_SEPARATOR",
        EV_EFI_ACTION => "EV_EFI_ACTION",
        EV_IPL => "EV_IPL",
        EV_PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
        EV_EVENT_TAG => "EV_EVENT_TAG",
        EV_EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
        EV_EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        t => return format!("event type {t:#x}"),
    };
    let tag = match e.event_type {
        EV_PLATFORM_CONFIG_FLAGS => td_shim_descriptor(&e.data),
        EV_IPL => GRUB_MEASURED_PREFIXES
            .iter()
            .find(|p| e.data.starts_with(p))
            .map(|p| p.trim_ascii_end().strip_suffix(b":").unwrap_or(p)),
        _ => None,
    };
    match tag {
        Some(t) => format!("{base} {:?}", String::from_utf8_lossy(t)),
        None => base.to_string(),
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

/// td-shim platform config info: 16-byte descriptor, u32 length, text (NUL padded).
/// Exactly the `length` bytes the digest covers ([`EventLog::check_event_data`]).
fn td_shim_info_text(data: &[u8]) -> Option<String> {
    let text = td_shim_info(data).ok()?;
    let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
    Some(String::from_utf8_lossy(&text[..end]).into_owned())
}

/// GRUB's measured command line: "kernel_cmdline: TEXT" (checked against the digest
/// by [`EventLog::check_event_data`]). The older "grub_kernel_cmdline TEXT" form is not
/// in any log here, so the relation is not enforced for it; its text is reported only
/// when the digest is the SHA-384 of `TEXT`.
fn grub_cmdline(e: &Event) -> Option<String> {
    let data = e.data.strip_suffix(&[0]).unwrap_or(&e.data);
    let text = std::str::from_utf8(data).ok()?;
    if let Some(t) = text.strip_prefix("kernel_cmdline: ") {
        return Some(t.to_string());
    }
    let t = text.strip_prefix("grub_kernel_cmdline ")?;
    (e.sha384() == Some(Sha384::digest(t.as_bytes()).as_slice())).then(|| t.to_string())
}
