//! `cocoon image keyprovider`: an ocicrypt key provider (`cmd` protocol) for the CoCo
//! `attestation-agent` scheme, so that `skopeo copy --encryption-key
//! provider:attestation-agent:keypath=KEK::keyid=kbs:///repo/type/tag` produces images the
//! guest decrypts with a key fetched from the KBS.
//!
//! ocicrypt runs the configured command once per layer and recipient set, writes one JSON
//! document on stdin and reads one on stdout (`containers/ocicrypt: keywrap/keyprovider`):
//!
//! - `{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"attestation-agent":[b64]},...},
//!   "optsdata":b64}}` → `{"keywrapresults":{"annotation":b64}}`. Each `Parameters` value is the
//!   text after `provider:attestation-agent:` on the skopeo command line.
//! - `{"op":"keyunwrap","keyunwrapparams":{"dc":{"Parameters":{...}},"annotation":b64}}` →
//!   `{"keyunwrapresults":{"optsdata":b64}}`.
//!
//! The annotation is the CoCo AnnotationPacket
//! `{"kid","wrapped_data","iv","wrap_type":"A256GCM"}` built by
//! [`guest_image::ocicrypt::keyprovider::wrap_packet`]. Unwrapping here is a development aid
//! with a local KEK file; in the guest the KEK comes from the KBS.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use guest_image::KbsUri;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The provider name ocicrypt passes parameters under (`provider:<name>:...`).
pub const PROVIDER_NAME: &str = "attestation-agent";
/// The only wrap algorithm the guest unwraps.
const WRAP_ALGORITHM: &str = "A256GCM";
/// Upper bound on the protocol document read from stdin.
const MAX_INPUT_BYTES: u64 = 1 << 20;

/// Arguments of `cocoon image keyprovider`.
#[derive(clap::Args, Debug)]
pub struct KeyproviderArgs {
    /// KEK file (32 raw bytes) for `keyunwrap`, when the request names none with `kek-file=`.
    #[arg(long)]
    pub kek_file: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ProtocolInput {
    op: String,
    #[serde(default)]
    keywrapparams: Option<KeyWrapParams>,
    #[serde(default)]
    keyunwrapparams: Option<KeyUnwrapParams>,
}

/// Go's `config.EncryptConfig`/`DecryptConfig` carry no JSON tags: the field is `Parameters`.
#[derive(Deserialize, Default)]
struct GoCryptoConfig {
    #[serde(rename = "Parameters", default)]
    parameters: Option<BTreeMap<String, Option<Vec<String>>>>,
}

#[derive(Deserialize)]
struct KeyWrapParams {
    #[serde(default)]
    ec: Option<GoCryptoConfig>,
    #[serde(default)]
    optsdata: Option<String>,
}

#[derive(Deserialize)]
struct KeyUnwrapParams {
    #[serde(default)]
    dc: Option<GoCryptoConfig>,
    #[serde(default)]
    annotation: Option<String>,
}

#[derive(Serialize)]
struct WrapOutput {
    keywrapresults: AnnotationResult,
}

#[derive(Serialize)]
struct AnnotationResult {
    annotation: String,
}

#[derive(Serialize)]
struct UnwrapOutput {
    keyunwrapresults: OptsDataResult,
}

#[derive(Serialize)]
struct OptsDataResult {
    optsdata: String,
}

#[derive(Deserialize)]
struct PacketKid {
    kid: String,
}

/// Parsed `keypath=...::keyid=...[::algorithm=...]` encryption parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct WrapParameters {
    /// File holding the 32-byte key-encryption key.
    pub keypath: PathBuf,
    /// The KBS resource URI the guest will fetch the KEK from.
    pub keyid: String,
}

/// `cocoon image keyprovider`: answer one ocicrypt request from stdin on stdout.
pub fn run(args: &KeyproviderArgs) -> Result<ExitCode> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut input)
        .context("reading the key provider request from stdin")?;
    if input.len() as u64 > MAX_INPUT_BYTES {
        bail!("key provider request on stdin is larger than {MAX_INPUT_BYTES} bytes");
    }
    let output = handle_request(&input, args.kek_file.as_deref())?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&output)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Answer one protocol request (the JSON document ocicrypt writes); returns the JSON answer.
pub fn handle_request(input: &[u8], default_kek_file: Option<&Path>) -> Result<Vec<u8>> {
    let request: ProtocolInput = serde_json::from_slice(input)
        .context("key provider request is not ocicrypt's protocol JSON")?;
    match request.op.as_str() {
        "keywrap" => {
            let params = request
                .keywrapparams
                .ok_or_else(|| anyhow!("keywrap request without keywrapparams"))?;
            let annotation = key_wrap(&params)?;
            Ok(serde_json::to_vec(&WrapOutput {
                keywrapresults: AnnotationResult { annotation },
            })?)
        }
        "keyunwrap" => {
            let params = request
                .keyunwrapparams
                .ok_or_else(|| anyhow!("keyunwrap request without keyunwrapparams"))?;
            let optsdata = key_unwrap(&params, default_kek_file)?;
            Ok(serde_json::to_vec(&UnwrapOutput {
                keyunwrapresults: OptsDataResult { optsdata },
            })?)
        }
        other => bail!("unknown key provider op {other:?} (expected keywrap or keyunwrap)"),
    }
}

/// The decoded values ocicrypt passed for our provider name.
fn provider_parameters(config: Option<&GoCryptoConfig>) -> Result<Vec<String>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let values = config
        .and_then(|c| c.parameters.as_ref())
        .and_then(|p| p.get(PROVIDER_NAME))
        .and_then(|v| v.as_ref());
    let Some(values) = values else {
        return Ok(Vec::new());
    };
    values
        .iter()
        .map(|v| {
            let raw = b64
                .decode(v)
                .with_context(|| format!("{PROVIDER_NAME} parameter is not base64"))?;
            String::from_utf8(raw)
                .map_err(|_| anyhow!("{PROVIDER_NAME} parameter is not UTF-8 text"))
        })
        .collect()
}

/// Split `a=1::b=2` into pairs; every item must be `name=value`.
fn parse_pairs(text: &str) -> Result<BTreeMap<&str, &str>> {
    let mut out = BTreeMap::new();
    for item in text.split("::").filter(|i| !i.is_empty()) {
        let (name, value) = item.split_once('=').ok_or_else(|| {
            anyhow!(
                "{PROVIDER_NAME} parameter {item:?} is not name=value (items are separated by ::)"
            )
        })?;
        if out.insert(name, value).is_some() {
            bail!("{PROVIDER_NAME} parameter {name:?} given twice");
        }
    }
    Ok(out)
}

/// Parse the text after `provider:attestation-agent:` of `--encryption-key`.
pub fn parse_wrap_parameters(text: &str) -> Result<WrapParameters> {
    // ocicrypt passes `Enabled` for a bare `provider:attestation-agent`.
    let pairs = parse_pairs(if text == "Enabled" { "" } else { text })?;
    for name in pairs.keys() {
        if !["keypath", "keyid", "algorithm"].contains(name) {
            bail!(
                "unknown {PROVIDER_NAME} parameter {name:?} (expected keypath, keyid, algorithm)"
            );
        }
    }
    if let Some(alg) = pairs.get("algorithm")
        && *alg != WRAP_ALGORITHM
    {
        bail!("algorithm {alg:?} is not supported: the guest unwraps {WRAP_ALGORITHM} only");
    }
    let keyid = pairs
        .get("keyid")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            anyhow!("missing keyid=kbs:///<repository>/<type>/<tag> in {PROVIDER_NAME} parameters")
        })?;
    keyid
        .parse::<KbsUri>()
        .map_err(|e| anyhow!("keyid {keyid:?} is not a KBS resource URI: {e}"))?;
    let keypath = pairs
        .get("keypath")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            anyhow!("missing keypath=<32-byte KEK file> in {PROVIDER_NAME} parameters")
        })?;
    Ok(WrapParameters {
        keypath: PathBuf::from(keypath),
        keyid: (*keyid).to_owned(),
    })
}

/// Read a raw 32-byte key-encryption key.
pub fn read_kek(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("reading KEK file {}", path.display()))?,
    );
    if bytes.len() != 32 {
        bail!(
            "KEK file {} holds {} bytes; an A256GCM key is exactly 32 raw bytes",
            path.display(),
            bytes.len()
        );
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn key_wrap(params: &KeyWrapParams) -> Result<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let texts = provider_parameters(params.ec.as_ref())?;
    let text = match texts.as_slice() {
        [one] => one,
        [] => bail!(
            "no {PROVIDER_NAME} parameters in the request: use --encryption-key \
             provider:{PROVIDER_NAME}:keypath=KEK::keyid=kbs:///repo/type/tag"
        ),
        _ => bail!(
            "{} {PROVIDER_NAME} encryption keys given; this provider wraps one per image",
            texts.len()
        ),
    };
    let wrap = parse_wrap_parameters(text)?;
    let optsdata = Zeroizing::new(
        b64.decode(params.optsdata.as_deref().unwrap_or_default())
            .context("keywrap optsdata is not base64")?,
    );
    if optsdata.is_empty() {
        bail!("keywrap request carries no optsdata to wrap");
    }
    let kek = read_kek(&wrap.keypath)?;
    let mut iv = [0u8; 12];
    getrandom::getrandom(&mut iv).map_err(|e| anyhow!("no randomness for the GCM nonce: {e}"))?;
    let packet_b64 =
        guest_image::ocicrypt::keyprovider::wrap_packet(&wrap.keyid, &kek, &iv, &optsdata)?;
    tracing::debug!(kid = %wrap.keyid, "wrapped layer key options");
    // `annotation` is Go []byte: ocicrypt decodes this base64 to the packet JSON and stores
    // base64 of it, i.e. this very string, in the layer annotation the guest reads.
    Ok(packet_b64)
}

fn key_unwrap(params: &KeyUnwrapParams, default_kek_file: Option<&Path>) -> Result<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut kek_file = default_kek_file.map(Path::to_path_buf);
    for text in provider_parameters(params.dc.as_ref())? {
        if text == "Enabled" {
            continue; // a bare `--decryption-key provider:attestation-agent`
        }
        let pairs = parse_pairs(&text)?;
        for (name, value) in pairs {
            match name {
                "kek-file" => kek_file = Some(PathBuf::from(value)),
                other => bail!(
                    "unknown {PROVIDER_NAME} decryption parameter {other:?} (expected kek-file)"
                ),
            }
        }
    }
    let kek_file = kek_file.ok_or_else(|| {
        anyhow!(
            "no local KEK for keyunwrap: pass --decryption-key \
             provider:{PROVIDER_NAME}:kek-file=FILE or `cocoon image keyprovider --kek-file FILE` \
             (development only; in the guest the KEK comes from the KBS)"
        )
    })?;
    // Go []byte: base64 of the packet JSON, the same text as the layer annotation.
    let packet_b64 = params.annotation.as_deref().unwrap_or_default().trim();
    let packet_json = b64
        .decode(packet_b64)
        .context("keyunwrap annotation is not base64")?;
    let kid = serde_json::from_slice::<PacketKid>(&packet_json)
        .context("annotation is not an attestation-agent packet")?
        .kid;
    let kek = read_kek(&kek_file)?;
    let mut resolver = guest_image::InMemoryKeyResolver::new();
    resolver.insert(&kid, kek.to_vec())?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let optsdata = runtime.block_on(guest_image::ocicrypt::keyprovider::unwrap_packet(
        packet_b64, &resolver,
    ))?;
    Ok(b64.encode(&optsdata[..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn wrap_request(param: &str, optsdata: &[u8]) -> Vec<u8> {
        serde_json::json!({
            "op": "keywrap",
            "keywrapparams": {
                "ec": {"Parameters": {"attestation-agent": [b64(param.as_bytes())]},
                       "DecryptConfig": {"Parameters": {}}},
                "optsdata": b64(optsdata)
            },
            "keyunwrapparams": {"dc": null, "annotation": null}
        })
        .to_string()
        .into_bytes()
    }

    fn unwrap_request(annotation_b64: &str, param: Option<&str>) -> Vec<u8> {
        let dc = match param {
            Some(p) => {
                serde_json::json!({"Parameters": {"attestation-agent": [b64(p.as_bytes())]}})
            }
            None => serde_json::json!({"Parameters": {}}),
        };
        serde_json::json!({
            "op": "keyunwrap",
            "keywrapparams": {"ec": null, "optsdata": null},
            "keyunwrapparams": {"dc": dc, "annotation": annotation_b64}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn wrap_parameters_parse_and_reject() {
        let p = parse_wrap_parameters("keypath=/k::keyid=kbs:///default/key/k1").unwrap();
        assert_eq!(p.keypath, PathBuf::from("/k"));
        assert_eq!(p.keyid, "kbs:///default/key/k1");
        assert!(parse_wrap_parameters("keyid=kbs:///a/b/c::keypath=/k::algorithm=A256GCM").is_ok());
        for (bad, why) in [
            ("keypath=/k", "missing keyid"),
            ("keypath=/k::keyid=", "missing keyid"),
            ("keyid=kbs:///a/b/c", "missing keypath"),
            ("keypath=/k::keyid=kbs:///a/b", "not a KBS resource URI"),
            (
                "keypath=/k::keyid=https://x/a/b/c",
                "not a KBS resource URI",
            ),
            (
                "keypath=/k::keyid=kbs:///a/b/c::algorithm=A256CTR",
                "not supported",
            ),
            ("keypath=/k::keyid=kbs:///a/b/c::colour=red", "unknown"),
            (
                "keypath=/k::keyid=kbs:///a/b/c::keyid=kbs:///a/b/d",
                "twice",
            ),
            ("sample", "not name=value"),
        ] {
            let err = format!("{:#}", parse_wrap_parameters(bad).unwrap_err());
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn wrap_then_unwrap_round_trips_through_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let kek = dir.path().join("kek");
        std::fs::write(&kek, [0x42u8; 32]).unwrap();
        let opts = br#"{"symkey":"AAAA","digest":"sha256:00","cipheroptions":{"nonce":"AA=="}}"#;
        let req = wrap_request(
            &format!("keypath={}::keyid=kbs:///default/key/k1", kek.display()),
            opts,
        );
        let out: serde_json::Value =
            serde_json::from_slice(&handle_request(&req, None).unwrap()).unwrap();
        // ocicrypt stores exactly this string in the layer annotation: base64(packet JSON).
        let annotation = out["keywrapresults"]["annotation"].as_str().unwrap();
        let packet: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(annotation)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(packet["kid"], "kbs:///default/key/k1");
        assert_eq!(packet["wrap_type"], "A256GCM");

        let out: serde_json::Value = serde_json::from_slice(
            &handle_request(
                &unwrap_request(annotation, Some(&format!("kek-file={}", kek.display()))),
                None,
            )
            .unwrap(),
        )
        .unwrap();
        let got = base64::engine::general_purpose::STANDARD
            .decode(out["keyunwrapresults"]["optsdata"].as_str().unwrap())
            .unwrap();
        assert_eq!(got, opts);

        // The --kek-file default works too; a wrong KEK and a missing KEK fail clearly.
        let req = unwrap_request(annotation, None);
        assert!(handle_request(&req, Some(&kek)).is_ok());
        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, [0x43u8; 32]).unwrap();
        let err = format!("{:#}", handle_request(&req, Some(&wrong)).unwrap_err());
        assert!(err.contains("does not unwrap"), "{err}");
        let err = format!("{:#}", handle_request(&req, None).unwrap_err());
        assert!(err.contains("no local KEK"), "{err}");
    }

    #[test]
    fn bad_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, [1u8; 16]).unwrap();
        let err = format!(
            "{:#}",
            handle_request(
                &wrap_request(
                    &format!("keypath={}::keyid=kbs:///a/b/c", short.display()),
                    b"{}"
                ),
                None
            )
            .unwrap_err()
        );
        assert!(err.contains("16 bytes"), "{err}");
        let err = format!(
            "{:#}",
            handle_request(br#"{"op":"sign"}"#, None).unwrap_err()
        );
        assert!(err.contains("unknown key provider op"), "{err}");
        let err = format!("{:#}", handle_request(b"not json", None).unwrap_err());
        assert!(err.contains("protocol JSON"), "{err}");
        let none = serde_json::json!({"op":"keywrap","keywrapparams":{"ec":{"Parameters":{"other":["eA=="]}},"optsdata":"eA=="}});
        let err = format!(
            "{:#}",
            handle_request(none.to_string().as_bytes(), None).unwrap_err()
        );
        assert!(err.contains("no attestation-agent parameters"), "{err}");
    }
}
