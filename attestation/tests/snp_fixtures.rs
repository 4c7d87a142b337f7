//! SEV-SNP verification on the real reports in tests/data/snp (see tests/data/README.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestation::snp::{SnpPolicy, SnpVerifyInput, verify_snp};
use attestation::{
    AppraisalPolicy, AttestationError, Claims, ReferenceValues, Tee, VerifyOptions, appraise,
    verify,
};
use common::*;

const SETS: [&str; 4] = [
    "snp/milan-vcek-virtee",
    "snp/milan-vcek-gosevguest",
    "snp/milan-vlek-trustee-aws",
    "snp/genoa-vcek-trustee-coco",
];

struct Set {
    report: Vec<u8>,
    vek: Vec<u8>,
    chain: Vec<Vec<u8>>,
    expected: serde_json::Value,
    valid_from: i64,
    valid_to: i64,
}

fn load(dir: &str) -> Set {
    let expected = json(&format!("{dir}/expected.json"));
    let s = |k: &str| expected[k].as_str().unwrap().to_string();
    Set {
        report: read(&format!("{dir}/{}", s("report_file"))),
        vek: read(&format!("{dir}/{}", s("vek_file"))),
        chain: pem_chain(&resolve(dir, &s("ca_chain_file"))),
        valid_from: t(expected["vek_valid"][0].as_str().unwrap()),
        valid_to: t(expected["vek_valid"][1].as_str().unwrap()),
        expected,
    }
}

fn run(set: &Set, report: &[u8], now: i64, policy: &SnpPolicy) -> Result<Claims, AttestationError> {
    verify_snp(
        SnpVerifyInput {
            report,
            vek: &set.vek,
            chain: Some(&set.chain),
            now,
        },
        policy,
    )
}

fn mid(set: &Set) -> i64 {
    set.valid_from + (set.valid_to - set.valid_from) / 2
}

#[test]
fn every_set_is_accepted_with_the_recorded_fields() {
    for dir in SETS {
        let set = load(dir);
        let e = &set.expected;
        assert_eq!(e["verification"]["expected"], "accept", "{dir}");
        let claims = run(&set, &set.report, mid(&set), &SnpPolicy::permissive())
            .unwrap_or_else(|err| panic!("{dir}: {err}"));
        assert_eq!(claims.tee, Tee::Snp);
        assert_eq!(
            hex::encode(claims.measurement.as_ref().unwrap()),
            e["measurement"],
            "{dir}"
        );
        assert_eq!(hex::encode(&claims.report_data), e["report_data"], "{dir}");
        assert_eq!(
            hex::encode(claims.init_data.as_ref().unwrap()),
            e["host_data"],
            "{dir}"
        );
        assert_eq!(
            hex::encode(claims.platform_id.as_ref().unwrap()),
            e["chip_id"],
            "{dir}"
        );
        assert_eq!(
            claims.debug,
            e["policy_bits"]["debug"].as_bool().unwrap(),
            "{dir}"
        );
        assert_eq!(
            claims.fields["policy"],
            e["policy"].as_str().unwrap(),
            "{dir}"
        );
        assert_eq!(
            claims.fields["version"],
            e["report_version"].to_string(),
            "{dir}"
        );
        assert_eq!(claims.fields["vmpl"], e["vmpl"].to_string(), "{dir}");
        assert_eq!(
            claims.fields["product"],
            e["product"].as_str().unwrap(),
            "{dir}"
        );
        assert_eq!(
            claims.fields["signing_key"],
            e["vek_type"].as_str().unwrap(),
            "{dir}"
        );
        let tcb = &e["reported_tcb"];
        assert_eq!(
            claims.fields["reported_tcb"],
            format!(
                "bl={} tee={} snp={} ucode={}",
                tcb["bootloader"], tcb["tee"], tcb["snp"], tcb["microcode"]
            ),
            "{dir}"
        );
        // The embedded AMD chain gives the same verdict as the fixture chain.
        let embedded = verify_snp(
            SnpVerifyInput {
                report: &set.report,
                vek: &set.vek,
                chain: None,
                now: mid(&set),
            },
            &SnpPolicy::permissive(),
        )
        .unwrap();
        assert_eq!(embedded, claims);
    }
}

#[test]
fn vek_validity_window_edges() {
    for dir in SETS {
        let set = load(dir);
        let p = SnpPolicy::permissive();
        run(&set, &set.report, set.valid_from, &p).unwrap_or_else(|e| panic!("{dir}: {e}"));
        run(&set, &set.report, set.valid_to, &p).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for now in [set.valid_from - 1, set.valid_to + 1] {
            let err = run(&set, &set.report, now, &p).unwrap_err();
            assert!(
                matches!(err, AttestationError::Validity { .. }),
                "{dir} at {now}: {err}"
            );
        }
    }
}

#[test]
fn vlek_accepted_while_valid_and_rejected_after_expiry() {
    let set = load("snp/milan-vlek-trustee-aws");
    let p = SnpPolicy::permissive();
    let claims = run(&set, &set.report, t("2025-06-01T00:00:00Z"), &p).unwrap();
    assert_eq!(claims.fields["csp_id"], "CN=cc-us-east-2.amazonaws.com");
    let err = run(&set, &set.report, t("2026-01-01T00:00:00Z"), &p).unwrap_err();
    assert!(matches!(err, AttestationError::Validity { .. }), "{err}");
}

#[test]
fn debug_policy_is_enforced_after_the_signature() {
    let set = load("snp/milan-vcek-gosevguest");
    let err = run(&set, &set.report, mid(&set), &SnpPolicy::default()).unwrap_err();
    assert!(
        matches!(err, AttestationError::Policy(ref m) if m.contains("DEBUG")),
        "{err}"
    );
    // The non-debug Milan report passes the strict default policy...
    let ok = load("snp/milan-vcek-virtee");
    run(&ok, &ok.report, mid(&ok), &SnpPolicy::default()).unwrap();
    // ...but not a policy forbidding SMT, nor an unreachable minimum TCB.
    let no_smt = SnpPolicy {
        allow_smt: false,
        ..SnpPolicy::default()
    };
    assert!(matches!(
        run(&ok, &ok.report, mid(&ok), &no_smt),
        Err(AttestationError::Policy(_))
    ));
    let high_tcb = SnpPolicy {
        min_tcb: Some(attestation::snp::SnpTcb {
            bootloader: 3,
            tee: 0,
            snp: 9,
            microcode: 115,
            fmc: None,
        }),
        ..SnpPolicy::default()
    };
    assert!(matches!(
        run(&ok, &ok.report, mid(&ok), &high_tcb),
        Err(AttestationError::Policy(_))
    ));
    let exact_tcb = SnpPolicy {
        min_tcb: Some(attestation::snp::SnpTcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        }),
        ..SnpPolicy::default()
    };
    run(&ok, &ok.report, mid(&ok), &exact_tcb).unwrap();
}

#[test]
fn tampered_files_are_rejected_with_the_right_error() {
    let base = load("snp/milan-vcek-virtee");
    let now = mid(&base);
    let cases = json("snp/invalid/expected.json");
    let mut seen = 0;
    for case in cases["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let bytes = read(&format!("snp/invalid/{file}"));
        let strict = SnpPolicy::default();
        let result = if file.ends_with(".der") {
            verify_snp(
                SnpVerifyInput {
                    report: &base.report,
                    vek: &bytes,
                    chain: Some(&base.chain),
                    now,
                },
                &strict,
            )
        } else {
            run(&base, &bytes, now, &strict)
        };
        let err = result.expect_err(file);
        let ok = match file {
            "milan_report_truncated_1000_bytes.bin" => {
                matches!(err, AttestationError::Malformed { ref reason, .. } if reason.contains("expected 1184 bytes, got 1000"))
            }
            "milan_vcek_signature_byte_flipped.der" => {
                matches!(err, AttestationError::CertificateChain(_))
            }
            _ => matches!(err, AttestationError::Signature(_)),
        };
        assert!(ok, "{file}: wrong error kind: {err}");
        seen += 1;
    }
    assert_eq!(seen, 6);
}

#[test]
fn reserved_byte_flips_inside_the_signed_area_fail() {
    let base = load("snp/milan-vcek-virtee");
    // 0x4C: reserved after KEY_INFO; 0x190: reserved before CHIP_ID; 0x1EB: reserved byte
    // between versions; 0x250: reserved tail of the signed area.
    for off in [0x4C, 0x190, 0x1EB, 0x250] {
        let mut r = base.report.clone();
        r[off] ^= 0x01;
        let err = run(&base, &r, mid(&base), &SnpPolicy::permissive()).unwrap_err();
        assert!(
            matches!(err, AttestationError::Signature(_)),
            "offset {off:#x}: {err}"
        );
    }
    // A non-zero byte in R's zero-extension is not a valid signature encoding either.
    let mut r = base.report.clone();
    r[0x2A0 + 60] = 1;
    assert!(matches!(
        run(&base, &r, mid(&base), &SnpPolicy::permissive()),
        Err(AttestationError::Signature(_))
    ));
}

#[test]
fn cross_pairings_are_rejected() {
    let virtee = load("snp/milan-vcek-virtee");
    let gosev = load("snp/milan-vcek-gosevguest");
    let vlek = load("snp/milan-vlek-trustee-aws");
    let now = mid(&virtee);
    let p = SnpPolicy::permissive();
    // A genuine VCEK of another chip: its chain verifies, the report signature does not.
    let err = verify_snp(
        SnpVerifyInput {
            report: &virtee.report,
            vek: &gosev.vek,
            chain: Some(&virtee.chain),
            now,
        },
        &p,
    )
    .unwrap_err();
    assert!(matches!(err, AttestationError::Signature(_)), "{err}");
    // Milan VCEK against the Genoa chain.
    let genoa = pem_chain("snp/certs/genoa/ask_ark_genoa.pem");
    let err = verify_snp(
        SnpVerifyInput {
            report: &virtee.report,
            vek: &virtee.vek,
            chain: Some(&genoa),
            now,
        },
        &p,
    )
    .unwrap_err();
    assert!(
        matches!(err, AttestationError::CertificateChain(_)),
        "{err}"
    );
    // Genoa VCEK against the Milan chain.
    let g = load("snp/genoa-vcek-trustee-coco");
    let err = verify_snp(
        SnpVerifyInput {
            report: &g.report,
            vek: &g.vek,
            chain: Some(&virtee.chain),
            now: mid(&g),
        },
        &p,
    )
    .unwrap_err();
    assert!(
        matches!(err, AttestationError::CertificateChain(_)),
        "{err}"
    );
    // A VLEK checked against the ASK instead of the ASVK.
    let ask = pem_chain("snp/certs/milan/ask_ark_milan.pem");
    let err = verify_snp(
        SnpVerifyInput {
            report: &vlek.report,
            vek: &vlek.vek,
            chain: Some(&ask),
            now: mid(&vlek),
        },
        &p,
    )
    .unwrap_err();
    assert!(
        matches!(err, AttestationError::CertificateChain(_)),
        "{err}"
    );
    // A VCEK offered for a VLEK-signed report (key_info says VLEK).
    let err = verify_snp(
        SnpVerifyInput {
            report: &vlek.report,
            vek: &virtee.vek,
            chain: None,
            now: mid(&vlek),
        },
        &p,
    )
    .unwrap_err();
    assert!(
        matches!(err, AttestationError::CertificateChain(_)),
        "{err}"
    );
}

#[test]
fn coco_json_evidence_is_accepted_and_matches_the_binary_report() {
    let set = load("snp/genoa-vcek-trustee-coco");
    let evidence = read("snp/genoa-vcek-trustee-coco/evidence.json");
    let parsed = attestation::evidence::parse_snp_evidence(&evidence).unwrap();
    assert!(parsed.from_json);
    assert_eq!(
        parsed.report, set.report,
        "re-encoded JSON report differs from report.bin"
    );
    let options = VerifyOptions {
        now: Some(mid(&set)),
        snp_policy: SnpPolicy::default(),
        ..Default::default()
    };
    let expected_rd = hex::decode(set.expected["report_data"].as_str().unwrap()).unwrap();
    // VCEK taken from the evidence's cert_chain, AMD chain from the embedded roots.
    let claims = verify(Tee::Snp, &evidence, &options, Some(&expected_rd)).unwrap();
    assert_eq!(
        hex::encode(claims.measurement.as_ref().unwrap()),
        set.expected["measurement"]
    );
    // A different expected report_data is refused.
    let mut wrong = expected_rd.clone();
    wrong[0] ^= 1;
    assert!(matches!(
        verify(Tee::Snp, &evidence, &options, Some(&wrong)),
        Err(AttestationError::ReportDataMismatch { .. })
    ));
    // Raw binary without a VEK: the caller must supply one.
    assert!(matches!(
        verify(Tee::Snp, &set.report, &options, None),
        Err(AttestationError::MissingInput(_))
    ));
}

#[test]
fn expected_report_data_padding_rule() {
    let set = load("snp/milan-vcek-gosevguest");
    let options = VerifyOptions {
        now: Some(mid(&set)),
        vek: Some(set.vek.clone()),
        snp_policy: SnpPolicy::permissive(),
        ..Default::default()
    };
    // The report carries 0102030405 || 59 zero bytes: the short value is zero-padded.
    verify(Tee::Snp, &set.report, &options, Some(&[1, 2, 3, 4, 5])).unwrap();
    assert!(matches!(
        verify(Tee::Snp, &set.report, &options, Some(&[1, 2, 3, 4, 6])),
        Err(AttestationError::ReportDataMismatch { .. })
    ));
}

#[test]
fn appraisal_reports_each_mismatching_field() {
    let set = load("snp/milan-vcek-virtee");
    let claims = run(&set, &set.report, mid(&set), &SnpPolicy::default()).unwrap();
    let m = set.expected["measurement"].as_str().unwrap();
    let good = ReferenceValues::from_json(
        format!(
            r#"{{"snp_launch_measurement":["00","{m}"],"init_data":["{}"],"tdx_mrtd":["ff"]}}"#,
            "00".repeat(32)
        )
        .as_bytes(),
    )
    .unwrap();
    let appraisal = appraise(&claims, &good, &AppraisalPolicy::default()).unwrap();
    assert_eq!(appraisal.matched, ["snp_launch_measurement", "init_data"]);
    let bad =
        ReferenceValues::from_json(br#"{"snp_launch_measurement":["aa"],"init_data":["bb"]}"#)
            .unwrap();
    match appraise(&claims, &bad, &AppraisalPolicy::default()) {
        Err(AttestationError::Appraisal(list)) => {
            let fields: Vec<_> = list.iter().map(|m| m.field.as_str()).collect();
            assert_eq!(fields, ["snp_launch_measurement", "init_data"]);
        }
        other => panic!("expected appraisal failure, got {other:?}"),
    }
    let strict = AppraisalPolicy {
        require_all: true,
        ..AppraisalPolicy::default()
    };
    assert!(appraise(&claims, &ReferenceValues::default(), &strict).is_err());
    assert!(ReferenceValues::from_json(br#"{"snp_measurement":["aa"]}"#).is_err());
}

#[test]
fn turin_vcek_chains_to_the_embedded_turin_roots() {
    use attestation::snp::{Product, VekKind, verify_vek_chain};
    let vek = read("snp/certs/turin/vcek_turin_no_report.der");
    let now = t("2025-06-01T00:00:00Z");
    let v = verify_vek_chain(&vek, None, now).unwrap();
    assert_eq!((v.product, v.kind), (Product::Turin, VekKind::Vcek));
    assert_eq!(
        hex::encode(v.extensions.hwid.as_ref().unwrap()),
        "1e550a8ee5cf9f4d"
    );
    assert!(v.extensions.fmc.is_some(), "Turin VCEKs carry an FMC SPL");
    let fixture_chain = pem_chain("snp/certs/turin/ask_ark_turin.pem");
    verify_vek_chain(&vek, Some(&fixture_chain), now).unwrap();
    // Outside its validity (2024-11-06 .. 2031-11-06).
    assert!(matches!(
        verify_vek_chain(&vek, None, t("2024-01-01T00:00:00Z")),
        Err(AttestationError::Validity { .. })
    ));
    // The Turin ASVK chain does not sign a VCEK.
    let asvk = pem_chain("snp/certs/turin/asvk_ark_turin.pem");
    assert!(matches!(
        verify_vek_chain(&vek, Some(&asvk), now),
        Err(AttestationError::CertificateChain(_))
    ));
}

/// Cross-check our offset-based parser against the `sev` crate's independent decoder.
#[test]
fn report_parser_agrees_with_the_sev_crate() {
    use attestation::snp::{Product, SnpReport, SnpTcb};
    use sev::parser::ByteParser as _;
    for dir in SETS {
        let set = load(dir);
        let ours = SnpReport::parse(&set.report).unwrap();
        let theirs = sev::firmware::guest::AttestationReport::from_bytes(&set.report).unwrap();
        assert_eq!(ours.version(), theirs.version, "{dir}");
        assert_eq!(ours.guest_svn(), theirs.guest_svn, "{dir}");
        assert_eq!(ours.vmpl(), theirs.vmpl, "{dir}");
        assert_eq!(ours.measurement(), theirs.measurement, "{dir}");
        assert_eq!(ours.report_data(), theirs.report_data, "{dir}");
        assert_eq!(ours.host_data(), theirs.host_data, "{dir}");
        assert_eq!(ours.chip_id(), theirs.chip_id, "{dir}");
        assert_eq!(ours.id_key_digest(), theirs.id_key_digest, "{dir}");
        assert_eq!(ours.report_id(), theirs.report_id, "{dir}");
        let product = if dir.contains("genoa") {
            Product::Genoa
        } else {
            Product::Milan
        };
        for (raw, t) in [
            (ours.reported_tcb_raw(), theirs.reported_tcb),
            (ours.current_tcb_raw(), theirs.current_tcb),
            (ours.committed_tcb_raw(), theirs.committed_tcb),
            (ours.launch_tcb_raw(), theirs.launch_tcb),
        ] {
            let tcb = SnpTcb::decode(raw, product);
            assert_eq!(
                (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode, tcb.fmc),
                (t.bootloader, t.tee, t.snp, t.microcode, t.fmc),
                "{dir}"
            );
        }
        let (r, s) = ours.signature_rs().unwrap();
        let mut r_le = r;
        r_le.reverse();
        let mut s_le = s;
        s_le.reverse();
        assert_eq!(&theirs.signature.r()[..48], &r_le, "{dir}");
        assert_eq!(&theirs.signature.s()[..48], &s_le, "{dir}");
    }
}
