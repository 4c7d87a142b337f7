//! Event data against event digests: replay covers only the digests, so a log whose
//! command-line text was changed (digest kept) still replays to the genuine RTMRs. The
//! events whose digest is the SHA-384 of their data must be refused by `verify_against`
//! and `boot_components`, naming the event; the unmodified real logs pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::path::Path;

use measured_boot::MeasureError;
use measured_boot::tdx::eventlog::{Event, EventLog, event_type};

const LOGS: [&str; 5] = [
    "trustee_CCEL_data.gz",
    "trustee_CCEL_data_ovmf.gz",
    "trustee_CCEL_data_grub.gz",
    "trustee_CCEL_data_grub_gke.gz",
    "goeventlog_cos-113-intel-tdx.bin.gz",
];

fn gz_data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Offset of the event data of `e` in the raw log.
fn data_at(e: &Event) -> usize {
    e.offset + 12 + e.digests.iter().map(|d| 2 + d.digest.len()).sum::<usize>() + 4
}

/// The index of the first event matching `pred`.
fn find(log: &EventLog, pred: impl Fn(&Event) -> bool) -> usize {
    log.events.iter().position(pred).unwrap()
}

/// `raw` with the byte at `data_at(event) + at` of event `index` replaced by `f(old)`;
/// asserts that the modified log still parses and replays to the same registers (the
/// digests are untouched), and returns it.
fn tamper(raw: &[u8], index: usize, at: usize, f: impl Fn(u8) -> u8) -> (EventLog, [[u8; 48]; 4]) {
    let log = EventLog::parse(raw).unwrap();
    let genuine = log.replay().unwrap();
    let mut bad = raw.to_vec();
    let pos = data_at(&log.events[index]) + at;
    bad[pos] = f(bad[pos]);
    assert_ne!(bad[pos], raw[pos]);
    let forged = EventLog::parse(&bad).unwrap();
    assert_eq!(
        forged.replay().unwrap(),
        genuine,
        "changing event data must not change the replay (only digests are extended)"
    );
    (forged, genuine)
}

/// Asserts `r` is the data-mismatch error for event `index`, whose type name contains
/// `ty`, and that its message says so.
fn assert_refused<T: std::fmt::Debug>(r: Result<T, MeasureError>, index: usize, ty: &str) {
    match r {
        Err(e @ MeasureError::EventDataMismatch { .. }) => {
            let msg = e.to_string();
            let MeasureError::EventDataMismatch {
                index: i,
                event_type,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(i, index, "{msg}");
            assert!(event_type.contains(ty), "{event_type} / {msg}");
            assert!(msg.contains(&format!("event {index} (")), "{msg}");
            assert!(msg.contains(ty), "{msg}");
            assert!(msg.contains("does not match its SHA-384 digest"), "{msg}");
        }
        other => panic!("forged event {index} ({ty}) not refused: {other:?}"),
    }
}

#[test]
fn unmodified_real_logs_pass_the_data_checks() {
    for name in LOGS {
        let log = EventLog::parse(&gz_data(name)).unwrap();
        log.check_event_data()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let replayed = log.replay().unwrap();
        log.verify_against(&replayed)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        log.boot_components()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The GRUB command line of the COS log is reported (its digest is of the text).
    let c = EventLog::parse(&gz_data("goeventlog_cos-113-intel-tdx.bin.gz"))
        .unwrap()
        .boot_components()
        .unwrap();
    let text = c.cmdline_text.unwrap();
    assert!(
        text.starts_with("/syslinux/vmlinuz.A init=/usr/lib/systemd/systemd"),
        "{text}"
    );
}

/// td-shim: the command line `root=/dev/vda1 console=hvc0 rw` in `td_payload_info`,
/// one character changed (`vda1` -> `vda2`), digest kept.
#[test]
fn forged_td_shim_command_line_is_refused() {
    let raw = gz_data("trustee_CCEL_data.gz");
    let log = EventLog::parse(&raw).unwrap();
    let i = find(&log, |e| {
        e.event_type == event_type::EV_PLATFORM_CONFIG_FLAGS
            && e.data.starts_with(b"td_payload_info")
    });
    let text = b"root=/dev/vda1";
    let at = 20 + text.len() - 1;
    assert_eq!(log.events[i].data[at], b'1');
    let (forged, genuine) = tamper(&raw, i, at, |_| b'2');
    let ty = "EV_PLATFORM_CONFIG_FLAGS \"td_payload_info\"";
    assert_refused(forged.verify_against(&genuine), i, ty);
    assert_refused(forged.boot_components(), i, ty);
    assert_refused(forged.check_event_data(), i, ty);
}

/// td-shim: a descriptor that only starts with `td_payload_info` is another event, so
/// its (unchecked) text is not reported as the command line.
#[test]
fn td_shim_lookalike_descriptor_is_not_the_command_line() {
    let raw = gz_data("trustee_CCEL_data.gz");
    let log = EventLog::parse(&raw).unwrap();
    let i = find(&log, |e| e.data.starts_with(b"td_payload_info"));
    let genuine = log.replay().unwrap();
    let mut bad = raw.clone();
    let at = data_at(&log.events[i]);
    bad[at + 15] = b'X'; // descriptor "td_payload_infoX"
    bad[at + 20 + 13] = b'2'; // command line vda1 -> vda2
    let forged = EventLog::parse(&bad).unwrap();
    assert_eq!(forged.replay().unwrap(), genuine);
    forged.verify_against(&genuine).unwrap();
    let c = forged.boot_components().unwrap();
    assert_eq!(c.cmdline_text, None, "{c:?}");
    assert_eq!(c.cmdline, None, "{c:?}");
}

/// td-shim: a shortened `length` field (the text itself unchanged) changes what the
/// digest covers; a length past the event is malformed. Both are refused.
#[test]
fn forged_td_shim_info_length_is_refused() {
    let raw = gz_data("trustee_CCEL_data.gz");
    let log = EventLog::parse(&raw).unwrap();
    let i = find(&log, |e| e.data.starts_with(b"td_payload_info"));
    let ty = "\"td_payload_info\"";
    // length 4096 = 0x1000: bytes 16..20 are 00 10 00 00.
    let (forged, genuine) = tamper(&raw, i, 17, |_| 0x00);
    assert_refused(forged.verify_against(&genuine), i, ty);
    let (forged, _) = tamper(&raw, i, 17, |_| 0x20);
    let e = forged.boot_components().unwrap_err();
    assert_refused::<()>(Err(e), i, ty);
    let e = forged.check_event_data().unwrap_err().to_string();
    assert!(e.contains("declares 8192 bytes"), "{e}");
}

/// td-shim's `td_hob` event: its digest is of the HOB list after the header.
#[test]
fn forged_td_hob_is_refused() {
    let raw = gz_data("trustee_CCEL_data.gz");
    let log = EventLog::parse(&raw).unwrap();
    let i = find(&log, |e| e.data.starts_with(b"td_hob"));
    let (forged, genuine) = tamper(&raw, i, 40, |b| b ^ 1);
    assert_refused(forged.verify_against(&genuine), i, "\"td_hob\"");
}

/// GRUB (COS 113 on GCE): `kernel_cmdline: /syslinux/vmlinuz.A init=...`, one
/// character changed, digest kept.
#[test]
fn forged_grub_command_line_is_refused() {
    let raw = gz_data("goeventlog_cos-113-intel-tdx.bin.gz");
    let log = EventLog::parse(&raw).unwrap();
    let i = find(&log, |e| {
        e.event_type == event_type::EV_IPL && e.data.starts_with(b"kernel_cmdline: ")
    });
    let at = b"kernel_cmdline: /syslinux/vmlinuz.".len();
    assert_eq!(log.events[i].data[at], b'A');
    let (forged, genuine) = tamper(&raw, i, at, |_| b'B');
    let ty = "EV_IPL \"kernel_cmdline\"";
    assert_refused(forged.verify_against(&genuine), i, ty);
    assert_refused(forged.boot_components(), i, ty);
    // A GRUB command event is checked the same way.
    let j = find(&log, |e| e.data.starts_with(b"grub_cmd: set timeout=0"));
    let (forged, genuine) = tamper(&raw, j, b"grub_cmd: set timeout=".len(), |_| b'9');
    assert_refused(forged.verify_against(&genuine), j, "EV_IPL \"grub_cmd\"");
}

/// EV_EFI_ACTION and EV_SEPARATOR hash their data, in every real log.
#[test]
fn forged_action_and_separator_data_are_refused() {
    for name in LOGS {
        let raw = gz_data(name);
        let log = EventLog::parse(&raw).unwrap();
        let sep = find(&log, |e| e.event_type == event_type::EV_SEPARATOR);
        let (forged, genuine) = tamper(&raw, sep, 0, |b| b ^ 0xff);
        assert_refused(forged.verify_against(&genuine), sep, "EV_SEPARATOR");
        if let Some(act) = log
            .events
            .iter()
            .position(|e| e.event_type == event_type::EV_EFI_ACTION)
        {
            let (forged, genuine) = tamper(&raw, act, 0, |b| b ^ 0x20);
            assert_refused(forged.verify_against(&genuine), act, "EV_EFI_ACTION");
            assert_refused(forged.boot_components(), act, "EV_EFI_ACTION");
        }
    }
}

/// The digests that do not cover data in the log (the EV_EVENT_TAG load options and
/// initrd tags) are not checked: changing their tag text only changes what is found.
#[test]
fn events_without_a_data_relation_are_not_checked() {
    let raw = gz_data("trustee_CCEL_data_ovmf.gz");
    let log = EventLog::parse(&raw).unwrap();
    let i = find(&log, |e| e.event_type == event_type::EV_EVENT_TAG);
    let (forged, genuine) = tamper(&raw, i, 0, |b| b ^ 1);
    forged.verify_against(&genuine).unwrap();
}
