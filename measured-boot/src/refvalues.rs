//! Reference values: the JSON map our KBS consumes, and trustee RVPS "sample"
//! provenance messages.
//!
//! Our KBS map (documented in the crate README): every key maps to a list of
//! accepted lower-case hex values.
//! `snp_launch_measurement`, `snp_host_data`, `tdx_mrtd`, `tdx_rtmr0`..`tdx_rtmr3`,
//! `tdx_mrconfigid`, `init_data` (the initdata digest with its own algorithm).
//!
//! Trustee's RVPS takes a message `{"version": "0.1.0", "type": "sample",
//! "payload": base64(json)}` whose payload maps reference-value names to lists
//! of values; its default policy reads `snp_launch_measurement`, `mr_td`,
//! `rtmr_0`..`rtmr_3` and so on.

use std::collections::BTreeMap;

use base64::Engine as _;

/// A set of reference values: name → accepted hex values (sorted, de-duplicated).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReferenceValues(pub BTreeMap<String, Vec<String>>);

/// Key names of our KBS reference-value map.
pub mod keys {
    /// SNP MEASUREMENT (48 bytes).
    pub const SNP_LAUNCH_MEASUREMENT: &str = "snp_launch_measurement";
    /// SNP HOST_DATA (32 bytes).
    pub const SNP_HOST_DATA: &str = "snp_host_data";
    /// TDX MRTD.
    pub const TDX_MRTD: &str = "tdx_mrtd";
    /// TDX MRCONFIGID.
    pub const TDX_MRCONFIGID: &str = "tdx_mrconfigid";
    /// The initdata digest with its declared algorithm.
    pub const INIT_DATA: &str = "init_data";
    /// TDX RTMR `i` (0..=3).
    pub fn tdx_rtmr(i: usize) -> String {
        format!("tdx_rtmr{i}")
    }
}

impl ReferenceValues {
    /// Adds an accepted value (bytes, stored as hex) under `name`.
    pub fn add(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let v = self.0.entry(name.to_string()).or_default();
        let h = hex::encode(value);
        if !v.contains(&h) {
            v.push(h);
            v.sort();
        }
        self
    }

    /// Merges another set into this one.
    pub fn merge(&mut self, other: &ReferenceValues) {
        for (k, vs) in &other.0 {
            for v in vs {
                if let Ok(b) = hex::decode(v) {
                    self.add(k, &b);
                }
            }
        }
    }

    /// The JSON map our KBS consumes.
    pub fn to_kbs_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }

    /// The same values under trustee's reference-value names.
    pub fn to_rvps_sample(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &self.0 {
            let name = match k.as_str() {
                keys::SNP_LAUNCH_MEASUREMENT => "snp_launch_measurement".to_string(),
                keys::SNP_HOST_DATA => "snp_host_data".to_string(),
                keys::TDX_MRTD => "mr_td".to_string(),
                keys::TDX_MRCONFIGID => "mr_config_id".to_string(),
                keys::INIT_DATA => "init_data".to_string(),
                other => match other.strip_prefix("tdx_rtmr") {
                    Some(i) => format!("rtmr_{i}"),
                    None => other.to_string(),
                },
            };
            out.insert(name, v.clone());
        }
        out
    }

    /// A trustee RVPS registration message (`rvps-tool register --path <file>`).
    pub fn to_rvps_message(&self) -> serde_json::Value {
        let payload = serde_json::to_vec(&self.to_rvps_sample()).unwrap_or_default();
        serde_json::json!({
            "version": "0.1.0",
            "type": "sample",
            "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        })
    }
}

/// Reference values for an SNP guest: its launch measurement and, with initdata,
/// its HOST_DATA and initdata digest.
pub fn snp_reference_values(
    inputs: &crate::snp::SnpInputs,
    initdata: Option<&crate::initdata::Initdata>,
) -> Result<ReferenceValues, crate::MeasureError> {
    let mut r = ReferenceValues::default();
    r.add(keys::SNP_LAUNCH_MEASUREMENT, &inputs.digest()?.0);
    if let Some(d) = initdata {
        r.add(keys::SNP_HOST_DATA, &d.snp_host_data());
        r.add(keys::INIT_DATA, &d.digest());
    }
    Ok(r)
}

/// Reference values for a TDX guest: MRTD from its firmware, RTMRs replayed from
/// an event log of a known-good boot (if given), and the initdata forms.
pub fn tdx_reference_values(
    mrtd: Option<&crate::tdx::Mr48>,
    rtmrs: Option<&[crate::tdx::Mr48; 4]>,
    initdata: Option<&crate::initdata::Initdata>,
) -> ReferenceValues {
    let mut r = ReferenceValues::default();
    if let Some(m) = mrtd {
        r.add(keys::TDX_MRTD, m);
    }
    if let Some(rs) = rtmrs {
        for (i, v) in rs.iter().enumerate() {
            r.add(&keys::tdx_rtmr(i), v);
        }
    }
    if let Some(d) = initdata {
        r.add(keys::TDX_MRCONFIGID, &d.tdx_mrconfigid());
        r.add(keys::INIT_DATA, &d.digest());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kbs_and_rvps_shapes() {
        let mut r = ReferenceValues::default();
        r.add(keys::SNP_LAUNCH_MEASUREMENT, &[0xab; 48]);
        r.add(keys::SNP_LAUNCH_MEASUREMENT, &[0xab; 48]);
        r.add(keys::SNP_LAUNCH_MEASUREMENT, &[0x01; 48]);
        r.add(&keys::tdx_rtmr(2), &[2; 48]);
        let j = r.to_kbs_json();
        assert_eq!(j["snp_launch_measurement"].as_array().unwrap().len(), 2);
        assert_eq!(j["tdx_rtmr2"][0].as_str().unwrap(), hex::encode([2u8; 48]));
        let m = r.to_rvps_message();
        assert_eq!(m["type"], "sample");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(m["payload"].as_str().unwrap())
            .unwrap();
        let inner: BTreeMap<String, Vec<String>> = serde_json::from_slice(&payload).unwrap();
        assert_eq!(inner["rtmr_2"], vec![hex::encode([2u8; 48])]);
        assert_eq!(inner["snp_launch_measurement"].len(), 2);
    }
}
