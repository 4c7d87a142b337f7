//! The CLI glue: `DiffArgs` / `run_diff` on TDX input files, quotes, register values and
//! event logs, and its errors for bad or mixed input.

use super::*;

fn json_path(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!("{:?}", p.display().to_string()),
        None => "null".into(),
    }
}

fn write_json(fx: &Fixture, name: &str, i: &TdxInputs, extra: &str) -> String {
    let text = format!(
        r#"{{"firmware": {}, "kernel": {}, "initrd": {}, "cmdline": {:?}, "initdata": {}{extra}}}"#,
        json_path(&i.firmware),
        json_path(&i.kernel),
        json_path(&i.initrd),
        i.cmdline.as_deref().unwrap_or(""),
        json_path(&i.initdata),
    );
    fx.write(name, text.as_bytes()).display().to_string()
}

fn run(argv: &[&str]) -> Result<serde_json::Value, MeasureError> {
    let mut full = vec!["x"];
    full.extend_from_slice(argv);
    let d = Diff::try_parse_from(full).unwrap();
    run_diff(&d.args).map(|s| serde_json::from_str(&s).unwrap())
}

fn err_text(argv: &[&str]) -> String {
    run(argv).unwrap_err().to_string()
}

#[test]
fn cli_reports_tdx_diffs_and_observations() {
    let fx = fixture();
    let a = write_json(&fx, "a.json", &fx.inputs, "");
    let b = write_json(
        &fx,
        "b.json",
        &fx.inputs,
        r#", "page_add_order": "two-pass""#,
    );
    let v = run(&[&a, &b]).unwrap();
    assert_eq!(v["platform"], "tdx");
    assert_eq!(v["registers_differing"], serde_json::json!(["MRTD"]));
    assert_eq!(v["differences"][0]["input"], "page_add_order");
    assert_eq!(v["differences"][0]["alone_explains"], true);
    assert!(
        v["summary"][1]
            .as_str()
            .unwrap()
            .contains("page_add_order differs")
    );

    // TOML input with an explicit platform; only the command line differs.
    let toml = fx.write(
        "b.toml",
        format!(
            "platform = \"tdx\"\nfirmware = {:?}\nkernel = {:?}\ninitrd = {:?}\ncmdline = \"quiet\"\ninitdata = {:?}\n",
            OVMF,
            fx.inputs.kernel.as_ref().unwrap().display().to_string(),
            fx.inputs.initrd.as_ref().unwrap().display().to_string(),
            fx.inputs.initdata.as_ref().unwrap().display().to_string(),
        )
        .as_bytes(),
    );
    let v = run(&[&a, &toml.display().to_string()]).unwrap();
    assert_eq!(v["registers_differing"], serde_json::json!(["RTMR2"]));

    // A real quote.
    let quote = data("tdx/v4-uptodate-dcapqvl/quote.bin")
        .display()
        .to_string();
    let v = run(&[&a, "--quote", &quote]).unwrap();
    assert_eq!(v["explanations"][0]["input"], "initdata");
    assert_eq!(v["registers"][0]["status"], "differs");
    assert!(
        v["summary"][0]
            .as_str()
            .unwrap()
            .starts_with("MRTD differs")
    );

    // Registers by hand, and a gzip'd event log.
    let regs = observed_from(&fx.inputs);
    let rtmr1 = hex::encode(regs.rtmr1.unwrap());
    let v = run(&[&a, "--rtmr1", &rtmr1, "--mrconfigid", &"00".repeat(48)]).unwrap();
    assert_eq!(v["matches_expected"], false);
    assert_eq!(v["explanations"][0]["value"], "(none)");
    let log = data("trustee_CCEL_data_ovmf.gz").display().to_string();
    let v = run(&[&a, "--event-log", &log]).unwrap();
    assert_eq!(v["event_log"]["components"][0]["component"], "kernel");
    assert_eq!(v["event_log"]["components"][0]["matches"], false);
}

#[test]
fn cli_refuses_bad_and_mixed_input() {
    let fx = fixture();
    let a = write_json(&fx, "a.json", &fx.inputs, "");
    let amd = data("ovmf_AmdSev_suffix.bin").display().to_string();
    let snp = fx
        .write(
            "snp.json",
            format!(r#"{{"ovmf": {amd:?}, "vcpus": 2, "vcpu_type": {{"named": "EPYC-Milan"}}}}"#)
                .as_bytes(),
        )
        .display()
        .to_string();
    let rtmr = "ab".repeat(48);

    // Register length.
    let e = err_text(&[&a, "--rtmr1", &"ab".repeat(47)]);
    assert!(
        e.contains("--rtmr1") && e.contains("48 bytes") && e.contains("got 47"),
        "{e}"
    );
    let e = err_text(&[&a, "--mrtd", "xyz!"]);
    assert!(e.contains("neither hex nor base64"), "{e}");
    // Mixing platforms: observations, files, keys in one file.
    let e = err_text(&[&snp, "--rtmr1", &rtmr]);
    assert!(e.contains("SNP input set") && e.contains("--rtmr1"), "{e}");
    let e = err_text(&[&a, "--observed", &rtmr]);
    assert!(
        e.contains("TDX input set") && e.contains("--observed"),
        "{e}"
    );
    let e = err_text(&[&a, &snp]);
    assert!(e.contains("same platform"), "{e}");
    let e = err_text(&[&snp, &a]);
    assert!(e.contains("same platform"), "{e}");
    let mixed = write_json(&fx, "mixed.json", &fx.inputs, r#", "vcpus": 2"#);
    let e = err_text(&[&mixed, &a]);
    assert!(e.contains("mix SNP and TDX") && e.contains("vcpus"), "{e}");
    let declared = fx.write("declared.json", br#"{"platform": "snp", "firmware": "x"}"#);
    let e = err_text(&[&declared.display().to_string(), &a]);
    assert!(
        e.contains("mix SNP and TDX") && e.contains("firmware"),
        "{e}"
    );
    // Missing files and unknown keys.
    let mut missing = fx.inputs.clone();
    missing.kernel = Some(fx.path("no-such-kernel"));
    let m = write_json(&fx, "missing.json", &missing, "");
    let e = err_text(&[&a, &m]);
    assert!(
        e.contains("cannot read kernel") && e.contains("no-such-kernel"),
        "{e}"
    );
    let e = err_text(&[&fx.path("nope.json").display().to_string(), &a]);
    assert!(e.contains("cannot read inputs"), "{e}");
    let e = err_text(&[&a, "--quote", &fx.path("nope.bin").display().to_string()]);
    assert!(e.contains("cannot read quote"), "{e}");
    let typo = write_json(
        &fx,
        "typo.json",
        &fx.inputs,
        r#", "page_order": "two-pass""#,
    );
    let e = err_text(&[&typo, &a]);
    assert!(e.contains("page_order"), "{e}");
    let bad_order = write_json(&fx, "order.json", &fx.inputs, r#", "page_add_order": "3""#);
    assert!(err_text(&[&bad_order, &a]).contains("single-pass"));
    // An initrd without a kernel; a file that is no event log.
    let no_kernel = fx.write(
        "nokernel.json",
        format!(r#"{{"platform": "tdx", "initrd": {:?}}}"#, OVMF).as_bytes(),
    );
    let e = err_text(&[&no_kernel.display().to_string(), &a]);
    assert!(e.contains("`initrd` needs `kernel`"), "{e}");
    let e = err_text(&[&a, "--event-log", &amd]);
    assert!(e.starts_with("event log:"), "{e}");
    // clap: a quote and hand-given registers together; no B and no observation.
    assert!(Diff::try_parse_from(["x", &a, "--quote", "q", "--rtmr1", &rtmr]).is_err());
    assert!(Diff::try_parse_from(["x", &a]).is_err());
    assert!(Diff::try_parse_from(["x", &a, &a, "--rtmr1", &rtmr]).is_err());
}

#[test]
fn snp_inputs_keep_parsing_and_platform_is_chosen_from_keys() {
    let amd = data("ovmf_AmdSev_suffix.bin").display().to_string();
    let plain =
        format!(r#"{{"ovmf": {amd:?}, "vcpus": 2, "vcpu_type": {{"named": "EPYC-Milan"}}}}"#);
    let s = InputSet::parse(&plain, InputFormat::Json).unwrap();
    assert!(matches!(&s, InputSet::Snp(m) if m.snp.vcpus == 2 && m.initdata.is_none()));
    let tagged = plain.replacen('{', r#"{"tee": "snp", "#, 1);
    assert_eq!(InputSet::parse(&tagged, InputFormat::Json).unwrap(), s);
    let toml = format!("ovmf = {amd:?}\nvcpus = 2\nvcpu_type = {{ named = \"EPYC-Milan\" }}\n");
    assert_eq!(InputSet::parse(&toml, InputFormat::Toml).unwrap(), s);
    // TDX from a TDX-only key, or declared.
    let t = InputSet::parse(r#"{"firmware": "f.fd"}"#, InputFormat::Json).unwrap();
    assert!(matches!(t, InputSet::Tdx(ref i) if i.firmware.is_some()));
    let t = InputSet::parse("tee = \"TDX\"\ninitdata = \"i.toml\"\n", InputFormat::Toml).unwrap();
    assert!(matches!(t, InputSet::Tdx(ref i) if i.initdata.is_some()));
    assert!(InputSet::parse(r#"{"platform": "sev"}"#, InputFormat::Json).is_err());
    assert!(InputSet::parse(r#"{"platform": "tdx", "tee": "snp"}"#, InputFormat::Json).is_err());
    assert!(InputSet::parse("[1]", InputFormat::Json).is_err());
}
