//! The SNP evidence JSON the guest sends (`SnpEvidence::from_report_bytes`, as the
//! SNP attester builds it after SNP_GET_EXT_REPORT), parsed back by the verifier's
//! `parse_snp_evidence` and verified, on every real report in tests/data/snp.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestation::evidence::{SnpCertKind, parse_snp_evidence};
use attestation::{AttestationError, SnpEvidence, SnpPolicy, Tee, VerifyOptions, verify};
use common::*;
use sev::firmware::host::{CertTableEntry, CertType};

const SETS: [&str; 4] = [
    "snp/milan-vcek-virtee",
    "snp/milan-vcek-gosevguest",
    "snp/milan-vlek-trustee-aws",
    "snp/genoa-vcek-trustee-coco",
];

struct Set {
    dir: &'static str,
    report: Vec<u8>,
    vek: Vec<u8>,
    vek_type: CertType,
    vek_kind: SnpCertKind,
    chain: Vec<Vec<u8>>,
    expected: serde_json::Value,
    now: i64,
}

fn load(dir: &'static str) -> Set {
    let expected = json(&format!("{dir}/expected.json"));
    let s = |k: &str| expected[k].as_str().unwrap().to_string();
    let (vek_type, vek_kind) = match s("vek_type").as_str() {
        "VLEK" => (CertType::VLEK, SnpCertKind::Vlek),
        _ => (CertType::VCEK, SnpCertKind::Vcek),
    };
    let from = t(expected["vek_valid"][0].as_str().unwrap());
    let to = t(expected["vek_valid"][1].as_str().unwrap());
    Set {
        dir,
        report: read(&format!("{dir}/{}", s("report_file"))),
        vek: read(&format!("{dir}/{}", s("vek_file"))),
        vek_type,
        vek_kind,
        chain: pem_chain(&resolve(dir, &s("ca_chain_file"))),
        now: from + (to - from) / 2,
        expected,
    }
}

/// What the guest sends: the JSON text of `SnpEvidence` with the VEK in the cert table.
fn guest_evidence(set: &Set) -> String {
    let table = vec![CertTableEntry {
        cert_type: set.vek_type.clone(),
        data: set.vek.clone(),
    }];
    let evidence = SnpEvidence::from_report_bytes(&set.report, Some(table)).unwrap();
    serde_json::to_string(&evidence).unwrap()
}

fn options(set: &Set) -> VerifyOptions {
    VerifyOptions {
        now: Some(set.now),
        chain: Some(set.chain.clone()),
        snp_policy: SnpPolicy::permissive(),
        ..VerifyOptions::default()
    }
}

fn hexfield(set: &Set, key: &str) -> Vec<u8> {
    hex::decode(set.expected[key].as_str().unwrap()).unwrap()
}

#[test]
fn guest_json_round_trips_through_the_verifier_parser() {
    for dir in SETS {
        let set = load(dir);
        let text = guest_evidence(&set);
        // The CoCo shape: exactly these two top-level keys.
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["attestation_report", "cert_chain"], "{dir}");

        let input = parse_snp_evidence(text.as_bytes()).unwrap();
        assert!(input.from_json, "{dir}");
        assert_eq!(
            input.report, set.report,
            "{dir}: report re-encoded from the JSON differs from report.bin"
        );
        assert_eq!(input.certs, vec![(set.vek_kind, set.vek.clone())], "{dir}");

        // The `sev` serde fields carry the recorded values.
        let parsed: SnpEvidence = serde_json::from_str(&text).unwrap();
        let r = &parsed.attestation_report;
        assert_eq!(
            r.measurement.to_vec(),
            hexfield(&set, "measurement"),
            "{dir}"
        );
        assert_eq!(
            r.report_data.to_vec(),
            hexfield(&set, "report_data"),
            "{dir}"
        );
        assert_eq!(r.host_data.to_vec(), hexfield(&set, "host_data"), "{dir}");
        assert_eq!(r.chip_id.to_vec(), hexfield(&set, "chip_id"), "{dir}");
        assert_eq!(
            u64::from(r.vmpl),
            set.expected["vmpl"].as_u64().unwrap(),
            "{dir}"
        );
        assert_eq!(
            format!("{:#x}", u64::from(r.policy)),
            set.expected["policy"].as_str().unwrap(),
            "{dir}"
        );
    }
}

#[test]
fn guest_json_is_accepted_with_the_recorded_values() {
    for dir in SETS {
        let set = load(dir);
        let text = guest_evidence(&set);
        let report_data = hexfield(&set, "report_data");
        // VEK from the evidence's cert table (no --vek), recorded report_data.
        let claims = verify(
            Tee::Snp,
            text.as_bytes(),
            &options(&set),
            Some(&report_data),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", set.dir));
        assert_eq!(claims.tee, Tee::Snp);
        assert_eq!(
            claims.measurement.as_deref(),
            Some(hexfield(&set, "measurement").as_slice()),
            "{dir}"
        );
        assert_eq!(claims.report_data, report_data, "{dir}");
        assert_eq!(claims.init_data, Some(hexfield(&set, "host_data")), "{dir}");
        assert_eq!(claims.platform_id, Some(hexfield(&set, "chip_id")), "{dir}");
        assert_eq!(
            claims.fields["signing_key"],
            set.expected["vek_type"].as_str().unwrap(),
            "{dir}"
        );
        // Same claims as the raw report with the VEK supplied out of band.
        let raw = VerifyOptions {
            vek: Some(set.vek.clone()),
            ..options(&set)
        };
        assert_eq!(
            verify(Tee::Snp, &set.report, &raw, Some(&report_data)).unwrap(),
            claims,
            "{dir}"
        );
    }
}

#[test]
fn guest_json_with_a_changed_field_or_nonce_is_refused() {
    let set = load("snp/milan-vcek-virtee");
    let text = guest_evidence(&set);
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Bump the first byte of the measurement inside the JSON: the signature no longer holds.
    let m = &mut value["attestation_report"]["measurement"][0];
    *m = serde_json::Value::from((m.as_u64().unwrap() + 1) % 256);
    let tampered = serde_json::to_vec(&value).unwrap();
    let report_data = hexfield(&set, "report_data");
    let err = verify(Tee::Snp, &tampered, &options(&set), Some(&report_data)).unwrap_err();
    assert!(matches!(err, AttestationError::Signature(_)), "{err}");
    // The genuine JSON with another expected nonce binding.
    let mut other = report_data.clone();
    other[0] ^= 1;
    let err = verify(Tee::Snp, text.as_bytes(), &options(&set), Some(&other)).unwrap_err();
    assert!(
        matches!(err, AttestationError::ReportDataMismatch { .. }),
        "{err}"
    );
}
