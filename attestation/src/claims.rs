//! The typed claims a verifier extracts from accepted evidence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Tee;

/// Serialise `Vec<u8>` as lowercase hex.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// `Option<Vec<u8>>` as hex or null.
pub(crate) mod opt_hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| hex::decode(t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Claims of verified evidence. Byte fields serialise as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Which TEE produced the evidence.
    pub tee: Tee,
    /// Launch measurement: SNP MEASUREMENT or TDX MRTD (None for sample).
    #[serde(with = "opt_hex_bytes")]
    pub measurement: Option<Vec<u8>>,
    /// TDX RTMR0..3 (empty for other TEEs).
    #[serde(default)]
    pub rtmrs: Vec<String>,
    /// Host-provided init-data binding: TDX MRCONFIGID (48 bytes) or SNP HOST_DATA (32 bytes).
    #[serde(with = "opt_hex_bytes")]
    pub init_data: Option<Vec<u8>>,
    /// The evidence's report_data (64 bytes for TDX/SNP, as carried for sample).
    #[serde(with = "hex_bytes")]
    pub report_data: Vec<u8>,
    /// TCB status: Intel's status for TDX ("UpToDate", ...), "VekMatchesReport" for
    /// SNP (the VEK's TCB equals REPORTED_TCB), "None" for sample.
    pub tcb_status: String,
    /// Intel security advisories for the platform/QE TCB level (TDX).
    #[serde(default)]
    pub advisory_ids: Vec<String>,
    /// True when the guest is debuggable (SNP policy DEBUG, TDX TD_ATTRIBUTES.DEBUG).
    pub debug: bool,
    /// Platform identifier: SNP CHIP_ID (zero for VLEK) or TDX FMSPC.
    #[serde(with = "opt_hex_bytes")]
    pub platform_id: Option<Vec<u8>>,
    /// Every parsed field by name, as hex or decimal text.
    pub fields: BTreeMap<String, String>,
}

impl Claims {
    /// The claims as pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        // Serialising plain strings and maps cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
