//! The KBS named by initdata's config files, as CoCo's guest components read them:
//! `cdh.toml`'s `[kbc]` (`name = "cc_kbc"`, `url`, optional `kbs_cert`) first, else
//! `aa.toml`'s `[token_configs.kbs]` (`url`, optional `cert`). Other keys of those files
//! (`socket`, `credentials`, `[image]`, `[token_configs.coco_as]`, ...) are ignored.

use crate::{CC_KBC, CdhError, checked_kbs_url};

/// The `[data]` key of the data hub's config file.
pub const CDH_CONFIG_KEY: &str = "cdh.toml";
/// The `[data]` key of the attestation agent's config file.
pub const AA_CONFIG_KEY: &str = "aa.toml";

/// A KBS named by initdata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitdataKbs {
    /// KBS base URL, without trailing slashes.
    pub url: String,
    /// Extra trusted root (PEM) for an `https://` KBS.
    pub cert: Option<String>,
    /// Where it was found (`"cdh.toml [kbc]"` or `"aa.toml [token_configs.kbs]"`).
    pub source: &'static str,
}

fn bad(file: &'static str, reason: impl Into<String>) -> CdhError {
    CdhError::InvalidInitdataConfig {
        file,
        reason: reason.into(),
    }
}

fn table(file: &'static str, text: &str) -> Result<toml::Table, CdhError> {
    text.parse::<toml::Table>()
        .map_err(|e| bad(file, format!("not TOML: {}", e.message())))
}

/// `table[key]` as a string, when present; anything else is an error naming it.
fn string<'a>(
    file: &'static str,
    section: &str,
    table: &'a toml::Table,
    key: &str,
) -> Result<Option<&'a str>, CdhError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(file, format!("{section}.{key} must be a string"))),
    }
}

/// `table[key]` as a sub-table, when present.
fn section<'a>(
    file: &'static str,
    table: &'a toml::Table,
    key: &str,
) -> Result<Option<&'a toml::Table>, CdhError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::Table(t)) => Ok(Some(t)),
        Some(_) => Err(bad(file, format!("{key} must be a table"))),
    }
}

fn kbs(
    file: &'static str,
    source: &'static str,
    section_name: &str,
    t: &toml::Table,
    cert_key: &str,
) -> Result<Option<InitdataKbs>, CdhError> {
    let Some(url) = string(file, section_name, t, "url")? else {
        return Ok(None);
    };
    let url = checked_kbs_url(url).map_err(|e| bad(file, format!("{section_name}.url: {e}")))?;
    let cert = string(file, section_name, t, cert_key)?
        .filter(|c| !c.trim().is_empty())
        .map(str::to_owned);
    Ok(Some(InitdataKbs { url, cert, source }))
}

/// The KBS named by `cdh_toml` (preferred) or `aa_toml`, the initdata `[data]` entries;
/// `None` when neither names one. A file that is not TOML, a `[kbc]` of another KBC than
/// `cc_kbc`, or a URL that is not `http(s)://host...` is an error naming the file.
pub fn kbs_from_initdata(
    cdh_toml: Option<&str>,
    aa_toml: Option<&str>,
) -> Result<Option<InitdataKbs>, CdhError> {
    let cdh = cdh_toml.map(|t| table(CDH_CONFIG_KEY, t)).transpose()?;
    let aa = aa_toml.map(|t| table(AA_CONFIG_KEY, t)).transpose()?;
    if let Some(kbc) = cdh
        .as_ref()
        .map(|t| section(CDH_CONFIG_KEY, t, "kbc"))
        .transpose()?
        .flatten()
    {
        match string(CDH_CONFIG_KEY, "kbc", kbc, "name")? {
            Some(CC_KBC) | None => {}
            Some(other) => {
                return Err(bad(
                    CDH_CONFIG_KEY,
                    format!("kbc.name {other:?}: only {CC_KBC} (the KBS protocol) is supported"),
                ));
            }
        }
        if let Some(found) = kbs(CDH_CONFIG_KEY, "cdh.toml [kbc]", "kbc", kbc, "kbs_cert")? {
            return Ok(Some(found));
        }
    }
    let token_kbs = match &aa {
        Some(t) => section(AA_CONFIG_KEY, t, "token_configs")?
            .map(|tc| section(AA_CONFIG_KEY, tc, "kbs"))
            .transpose()?
            .flatten(),
        None => None,
    };
    match token_kbs {
        Some(t) => kbs(
            AA_CONFIG_KEY,
            "aa.toml [token_configs.kbs]",
            "token_configs.kbs",
            t,
            "cert",
        ),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDH: &str = "socket = \"unix:///run/confidential-containers/cdh.sock\"\ncredentials = []\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://10.0.2.101:8080/\"\n[image]\nmax_concurrent_layer_downloads_per_image = 3\n";
    const AA: &str = "[token_configs]\n[token_configs.coco_as]\nurl = \"http://as:50004\"\n[token_configs.kbs]\nurl = \"https://kbs.example:8080\"\ncert = \"-----BEGIN CERTIFICATE-----\\nMII\\n-----END CERTIFICATE-----\"\n";

    #[test]
    fn cdh_kbc_first_then_aa_token_config() {
        let k = kbs_from_initdata(Some(CDH), Some(AA)).unwrap().unwrap();
        assert_eq!(
            k,
            InitdataKbs {
                url: "http://10.0.2.101:8080".into(),
                cert: None,
                source: "cdh.toml [kbc]",
            }
        );
        let k = kbs_from_initdata(None, Some(AA)).unwrap().unwrap();
        assert_eq!(k.url, "https://kbs.example:8080");
        assert_eq!(k.source, "aa.toml [token_configs.kbs]");
        assert!(k.cert.unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        // A cdh.toml without [kbc] (or without its url) leaves the choice to aa.toml.
        let k = kbs_from_initdata(Some("socket = \"x\"\n"), Some(AA))
            .unwrap()
            .unwrap();
        assert_eq!(k.source, "aa.toml [token_configs.kbs]");
        let k = kbs_from_initdata(Some("[kbc]\nname = \"cc_kbc\"\n"), Some(AA))
            .unwrap()
            .unwrap();
        assert_eq!(k.source, "aa.toml [token_configs.kbs]");
        let cert = "[kbc]\nurl = \"https://k\"\nkbs_cert = \"PEM\"\n";
        assert_eq!(
            kbs_from_initdata(Some(cert), None).unwrap().unwrap().cert,
            Some("PEM".into())
        );
        assert_eq!(kbs_from_initdata(None, None).unwrap(), None);
        assert_eq!(
            kbs_from_initdata(Some("socket = \"x\"\n"), Some("[token_configs]\n")).unwrap(),
            None
        );
    }

    #[test]
    fn unusable_files_are_errors_naming_the_file() {
        for (cdh, aa, want) in [
            (Some("[kbc\n"), None, "initdata cdh.toml: not TOML"),
            (
                Some("[kbc]\nname = \"offline_fs_kbc\"\nurl = \"http://k\"\n"),
                None,
                "initdata cdh.toml: kbc.name \"offline_fs_kbc\"",
            ),
            (
                Some("[kbc]\nurl = \"10.0.2.101:8080\"\n"),
                None,
                "initdata cdh.toml: kbc.url: the KBS URL must start with http",
            ),
            (
                Some("kbc = 1\n"),
                None,
                "initdata cdh.toml: kbc must be a table",
            ),
            (
                Some("[kbc]\nurl = 5\n"),
                None,
                "initdata cdh.toml: kbc.url must be a string",
            ),
            (
                None,
                Some("[token_configs.kbs]\nurl = \"http://\"\n"),
                "initdata aa.toml: token_configs.kbs.url: the KBS URL has no usable host",
            ),
            (None, Some("= x"), "initdata aa.toml: not TOML"),
        ] {
            let e = kbs_from_initdata(cdh, aa).unwrap_err().to_string();
            assert!(e.starts_with(want), "{want}: {e}");
        }
    }
}
