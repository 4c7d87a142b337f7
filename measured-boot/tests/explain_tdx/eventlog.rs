//! Event logs: a synthetic direct-boot log names the differing component; trustee's real
//! OVMF log is checked and its tampered copies fail.

use super::*;

/// A CCEL log (SHA-384 bank only) with the given (MR index, event type, digest, data).
fn ccel(events: &[(u32, u32, [u8; 48], Vec<u8>)]) -> Vec<u8> {
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend(0u32.to_le_bytes()); // platform class
    spec.extend([0, 2, 0, 2]); // version minor, major, errata, uintn size
    spec.extend(1u32.to_le_bytes()); // one algorithm
    spec.extend(0x000cu16.to_le_bytes()); // TPM_ALG_SHA384
    spec.extend(48u16.to_le_bytes());
    spec.push(0); // no vendor info
    let mut log = Vec::new();
    log.extend(0u32.to_le_bytes());
    log.extend(3u32.to_le_bytes()); // EV_NO_ACTION
    log.extend([0u8; 20]);
    log.extend((spec.len() as u32).to_le_bytes());
    log.extend(spec);
    for (mr, ty, digest, d) in events {
        log.extend(mr.to_le_bytes());
        log.extend(ty.to_le_bytes());
        log.extend(1u32.to_le_bytes());
        log.extend(0x000cu16.to_le_bytes());
        log.extend(digest);
        log.extend((d.len() as u32).to_le_bytes());
        log.extend(d);
    }
    log.extend([0xffu8; 64]);
    log
}

/// A tagged event's data (EV_EVENT_TAG): tag id, size, text.
fn tag(text: &[u8]) -> Vec<u8> {
    let mut d = 0x8F3B_22EDu32.to_le_bytes().to_vec();
    d.extend((text.len() as u32).to_le_bytes());
    d.extend(text);
    d
}

/// The log an OVMF direct boot of the synthetic kernel and initrd with `cmdline` writes
/// (current edk2 RTMR1 layout).
fn direct_boot_log(cmdline: &str) -> Vec<u8> {
    let action = |s: &[u8]| (2u32, 0x8000_0007u32, sha384(s), s.to_vec());
    ccel(&[
        (
            2,
            0x8000_0003,
            authenticode_sha384(&bzimage()).unwrap(),
            vec![0; 32],
        ),
        action(b"Calling EFI Application from Boot Option"),
        (2, 0x4, sha384(&[0; 4]), vec![0; 4]),
        (
            3,
            0x6,
            sha384(&utf16z(&format!("{cmdline} initrd=initrd"))),
            tag(b"LOADED_IMAGE::LoadOptions\0"),
        ),
        (3, 0x6, sha384(&initrd_bytes()), tag(b"Linux initrd\0")),
        action(b"Exit Boot Services Invocation"),
        action(b"Exit Boot Services Returned with Success"),
    ])
}

#[test]
fn event_log_names_the_component_that_differs() {
    let fx = fixture();
    let expected = fx.inputs.clone();
    let logged_cmdline = format!("{} console=ttyS0", append());
    let log = EventLog::parse(&direct_boot_log(&logged_cmdline)).unwrap();
    let r = explain_observed_tdx(&expected, &ObservedTdx::default(), Some(&log)).unwrap();
    let l = r.event_log.as_ref().unwrap();
    let c: Vec<(&str, bool)> = l
        .components
        .iter()
        .map(|c| (c.component, c.matches))
        .collect();
    assert_eq!(c, [("kernel", true), ("cmdline", false), ("initrd", true)]);
    assert_eq!(
        l.components[1].reproduced_by,
        [format!("cmdline = {logged_cmdline:?}")]
    );
    assert!(l.replay_checked_against.starts_with("nothing"));
    // RTMR1/RTMR2 come from the replay; RTMR1 is the predicted one.
    let status: Vec<_> = r.registers.iter().map(|f| f.status).collect();
    assert_eq!(
        status,
        [
            RegisterStatus::NotObserved,
            RegisterStatus::Matches,
            RegisterStatus::Differs,
            RegisterStatus::NotObserved
        ]
    );
    assert_eq!(only(&r.explanations).0, "cmdline");
    assert!(
        r.summary
            .iter()
            .any(|s| s.starts_with("event log: cmdline differs") && s.contains("reproduced by")),
        "{:?}",
        r.summary
    );
    // The same log bound to the RTMRs it replays to is accepted; bound to others not.
    let obs = ObservedTdx {
        rtmr2: Some(mr(&rtmr2_of(&logged_cmdline, &initrd_bytes()))),
        ..ObservedTdx::default()
    };
    let r = explain_observed_tdx(&expected, &obs, Some(&log)).unwrap();
    assert_eq!(
        r.event_log.unwrap().replay_checked_against,
        "the given RTMR2"
    );
    let obs = observed_from(&expected);
    match explain_observed_tdx(&expected, &obs, Some(&log)) {
        Err(MeasureError::ReplayMismatch { register, .. }) => assert_eq!(register, "RTMR2"),
        other => panic!("{other:?}"),
    }
    // The log of exactly the expected boot: everything matches.
    let log = EventLog::parse(&direct_boot_log(&append())).unwrap();
    let r = explain_observed_tdx(&expected, &obs, Some(&log)).unwrap();
    assert!(r.matches_expected);
    assert!(r.event_log.unwrap().components.iter().all(|c| c.matches));
}

fn trustee_ovmf_log() -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(data("trustee_CCEL_data_ovmf.gz")).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn real_direct_boot_log_is_checked_and_tampering_fails() {
    let fx = fixture();
    let mut expected = fx.inputs.clone();
    expected.rtmr1_layout = Rtmr1Layout::TdvfLegacy;
    let raw = trustee_ovmf_log();
    let log = EventLog::parse(&raw).unwrap();
    let replayed = log.replay().unwrap();
    // Bound to its own RTMR1/RTMR2: accepted; every component differs from ours.
    let obs = ObservedTdx {
        rtmr1: Some(replayed[1]),
        rtmr2: Some(replayed[2]),
        ..ObservedTdx::default()
    };
    let r = explain_observed_tdx(&expected, &obs, Some(&log)).unwrap();
    let l = r.event_log.as_ref().unwrap();
    assert_eq!(l.replay_checked_against, "the given RTMR1, the given RTMR2");
    assert!(
        l.components
            .iter()
            .all(|c| !c.matches && c.logged.is_some())
    );
    assert_eq!(l.replayed_rtmrs[1], hex::encode(replayed[1]));
    for c in ["kernel", "cmdline", "initrd"] {
        assert!(
            r.summary
                .iter()
                .any(|s| s.starts_with(&format!("event log: {c} differs"))),
            "{c}: {:?}",
            r.summary
        );
    }

    // One digest byte of the kernel event flipped: the replay no longer gives RTMR1.
    let kernel = log
        .events
        .iter()
        .find(|e| e.event_type == 0x8000_0003 && e.mr_index == 2)
        .unwrap();
    let at = kernel.offset + find(&raw[kernel.offset..], kernel.sha384().unwrap());
    let mut tampered = raw.clone();
    tampered[at] ^= 0x01;
    let tlog = EventLog::parse(&tampered).unwrap();
    match explain_observed_tdx(&expected, &obs, Some(&tlog)) {
        Err(MeasureError::ReplayMismatch { register, .. }) => assert_eq!(register, "RTMR1"),
        other => panic!("{other:?}"),
    }
    // An EV_EFI_ACTION text changed: its data no longer matches its digest.
    let mut tampered = raw.clone();
    let at = find(&raw, b"Calling EFI Application from Boot Option");
    tampered[at] = b'c';
    let tlog = EventLog::parse(&tampered).unwrap();
    assert!(matches!(
        explain_observed_tdx(&expected, &ObservedTdx::default(), Some(&tlog)),
        Err(MeasureError::EventDataMismatch { .. })
    ));
    // Checked against a real quote of another TD: refused.
    let quote = std::fs::read(data("tdx/v4-uptodate-dcapqvl/quote.bin")).unwrap();
    let obs = ObservedTdx::from_quote(&quote).unwrap();
    match explain_observed_tdx(&expected, &obs, Some(&log)) {
        // All four RTMRs are checked, RTMR0 first.
        Err(MeasureError::ReplayMismatch { register, .. }) => assert_eq!(register, "RTMR0"),
        other => panic!("{other:?}"),
    }
}
