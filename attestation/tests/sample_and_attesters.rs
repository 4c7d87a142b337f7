//! Sample evidence (fixture) and the attesters: configfs-tsm against a fake tree
//! with an emulated kernel, the sample attester, and the no-fallback rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use attestation::attester::tdx::TdxAttester;
use attestation::attester::tsm::{TsmHook, TsmReport, TsmStep};
use attestation::attester::{Attester, SampleFallback};
use attestation::evidence::parse_tdx_evidence;
use attestation::{
    AppraisalPolicy, AttestationError, ReferenceValues, Tee, VerifyOptions, appraise, verify,
};
use common::*;

#[test]
fn sample_fixture_accepted_only_with_its_report_data() {
    let e = json("sample/expected.json");
    let evidence = read("sample/sample_evidence.json");
    let want = hex::decode(e["report_data_hex"].as_str().unwrap()).unwrap();
    let claims = verify(
        Tee::Sample,
        &evidence,
        &VerifyOptions::default(),
        Some(&want),
    )
    .unwrap();
    assert_eq!(claims.report_data, b"xxxx");
    assert_eq!(claims.fields["svn"], e["svn"].as_str().unwrap());
    let err = verify(
        Tee::Sample,
        &evidence,
        &VerifyOptions::default(),
        Some(b"xxxy"),
    )
    .unwrap_err();
    assert!(matches!(err, AttestationError::ReportDataMismatch { .. }));
    // Exact compare: no zero padding for sample.
    let err = verify(
        Tee::Sample,
        &evidence,
        &VerifyOptions::default(),
        Some(b"xxxx\0"),
    )
    .unwrap_err();
    assert!(matches!(err, AttestationError::ReportDataMismatch { .. }));
    // The default appraisal policy refuses sample evidence; coco-dev opts in.
    assert!(
        appraise(
            &claims,
            &ReferenceValues::default(),
            &AppraisalPolicy::default()
        )
        .is_err()
    );
    let dev = AppraisalPolicy {
        allow_sample: true,
        ..AppraisalPolicy::default()
    };
    appraise(&claims, &ReferenceValues::default(), &dev).unwrap();
}

#[cfg(feature = "sample")]
#[test]
fn sample_attester_round_trip_with_kbs_report_data() {
    use attestation::attester::sample::SampleAttester;
    use attestation::{HashAlgorithm, TeePubKey, runtime_data_digest};
    let key = TeePubKey::EC {
        crv: "P-256".into(),
        alg: "ECDH-ES+A256KW".into(),
        x: "eA".into(),
        y: "eQ".into(),
    };
    let digest = runtime_data_digest("nonce-1", &key, "", HashAlgorithm::Sha384).unwrap();
    assert_eq!(digest.len(), 48);
    let evidence = SampleAttester.evidence(&digest).unwrap();
    let claims = verify(
        Tee::Sample,
        evidence.as_bytes(),
        &VerifyOptions::default(),
        Some(&digest),
    )
    .unwrap();
    assert_eq!(claims.report_data, digest);
    let other = runtime_data_digest("nonce-2", &key, "", HashAlgorithm::Sha384).unwrap();
    assert!(
        verify(
            Tee::Sample,
            evidence.as_bytes(),
            &VerifyOptions::default(),
            Some(&other)
        )
        .is_err()
    );
}

/// Emulates the kernel side of configfs-tsm on a plain directory.
fn fake_kernel(
    provider: &'static str,
    generation_after_write: u32,
    calls: Arc<AtomicU32>,
) -> TsmHook {
    Box::new(move |step, dir| {
        calls.fetch_add(1, Ordering::SeqCst);
        match step {
            TsmStep::Created => {
                std::fs::write(dir.join("provider"), format!("{provider}\n")).unwrap();
                std::fs::write(dir.join("generation"), "0\n").unwrap();
            }
            TsmStep::InblobWritten => {
                let inblob = std::fs::read(dir.join("inblob")).unwrap();
                assert_eq!(inblob.len(), 64, "the kernel expects exactly 64 bytes");
                let mut quote = b"FAKE-QUOTE:".to_vec();
                quote.extend_from_slice(&inblob);
                std::fs::write(dir.join("outblob"), quote).unwrap();
                std::fs::write(
                    dir.join("generation"),
                    format!("{generation_after_write}\n"),
                )
                .unwrap();
            }
            TsmStep::Removing => {
                for f in ["provider", "generation", "inblob", "outblob"] {
                    let _ = std::fs::remove_file(dir.join(f));
                }
            }
        }
    })
}

#[test]
fn configfs_tsm_quote_on_a_fake_tree() {
    let root = tempfile::tempdir().unwrap();
    let ccel = root.path().join("CCEL");
    std::fs::write(&ccel, b"ccel-bytes").unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let tsm = TsmReport::new(root.path(), "tdx_guest").with_hook(fake_kernel(
        "tdx_guest",
        1,
        calls.clone(),
    ));
    let attester = TdxAttester::with_paths(tsm, &ccel);
    let evidence = attester.evidence(&[0xAB; 48]).unwrap();
    let parsed = parse_tdx_evidence(evidence.as_bytes()).unwrap();
    let mut want = b"FAKE-QUOTE:".to_vec();
    want.extend_from_slice(&[0xAB; 48]);
    want.extend_from_slice(&[0; 16]);
    assert_eq!(parsed.quote, want);
    assert_eq!(parsed.cc_eventlog.as_deref(), Some(&b"ccel-bytes"[..]));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        1,
        "entry removed, only CCEL left"
    );
    // No CCEL: cc_eventlog is null.
    let tsm = TsmReport::new(root.path(), "tdx_guest").with_hook(fake_kernel(
        "tdx_guest",
        1,
        calls.clone(),
    ));
    let evidence = TdxAttester::with_paths(tsm, root.path().join("none"))
        .evidence(b"x")
        .unwrap();
    assert!(evidence.contains("\"cc_eventlog\":null"));
}

#[test]
fn configfs_tsm_generation_mismatch_and_wrong_provider_fail() {
    let root = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let tsm = TsmReport::new(root.path(), "tdx_guest").with_hook(fake_kernel(
        "tdx_guest",
        2,
        calls.clone(),
    ));
    let err = tsm.request(&[0; 64]).unwrap_err();
    assert!(
        matches!(err, AttestationError::Device(ref m) if m.contains("generation is 2")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "entry removed on error"
    );
    let tsm =
        TsmReport::new(root.path(), "tdx_guest").with_hook(fake_kernel("sev_guest", 1, calls));
    let err = tsm.request(&[0; 64]).unwrap_err();
    assert!(
        matches!(err, AttestationError::Device(ref m) if m.contains("sev_guest")),
        "{err}"
    );
    // Missing root: a device error naming the path.
    let err = TsmReport::new(root.path().join("nope"), "tdx_guest")
        .request(&[0; 64])
        .unwrap_err();
    assert!(matches!(err, AttestationError::Device(_)));
    // Over-long report data is refused before touching the device.
    let tsm = TsmReport::new(root.path(), "tdx_guest");
    assert!(
        TdxAttester::with_paths(tsm, "/nonexistent")
            .evidence(&[0; 65])
            .is_err()
    );
}

#[test]
fn no_silent_fallback_without_a_tee() {
    // This machine has no TEE device (CI and dev boxes); detection says so.
    if attestation::detect_tee().is_some() {
        eprintln!("TEE present: skipping the no-TEE assertions");
        return;
    }
    assert!(matches!(
        attestation::attester::select_attester(None, SampleFallback::Forbid),
        Err(AttestationError::NoTee)
    ));
    let snp =
        attestation::attester::select_attester(Some(Tee::Snp), SampleFallback::Forbid).unwrap();
    assert!(matches!(
        snp.evidence(&[0; 48]),
        Err(AttestationError::Device(_))
    ));
    #[cfg(feature = "sample")]
    {
        let a = attestation::attester::select_attester(None, SampleFallback::Allow).unwrap();
        assert_eq!(a.tee(), Tee::Sample);
    }
}
