//! The attestation policy: verified claims → EAR appraisal (trustworthiness vector and
//! status), evaluated on every `/attest` as trustee's attestation service does.
//!
//! * **Shape** (trustee's EAR policies): a Rego `package policy` whose rule
//!   `data.policy.trust_claims` is an object of AR4SI trustworthiness claims
//!   ([`TRUST_CLAIMS`]) to integers in -128..=127. `input` is the verified claims, shaped
//!   like the token's `ear.veraison.annotated-evidence` (`input.<tee>`, `report_data`,
//!   `init_data`, `init_data_claims`, `runtime_data_claims`); `data.reference` is the
//!   configured reference values and `data.appraisal` the `{matched, unchecked}` keys of
//!   the reference-value comparison. See `default-attestation-policy.rego`, the
//!   built-in policy.
//! * **Status**: the worst [`TrustTier`] of the claims (draft-ietf-rats-ar4si tiers:
//!   -1..=1 none, 2..=31 affirming, 32..=95 warning, 96..=127 contraindicated; the
//!   negative bands -32..=-2, -96..=-33 and ..=-97 mirror them). `affirming` and `warning` issue a token carrying the vector,
//!   the status and `ear.appraisal-policy-id`. **`contraindicated` and `none` refuse
//!   the attestation** (AttestationError, no token, session dropped): a KBS that
//!   releases secrets issues no token saying "do not trust" or "nothing known", so no
//!   resource policy, however permissive, can release on one. So do a policy that
//!   fails to evaluate, leaves `trust_claims` undefined, or sets no claim (fail closed).
//! * **Which policy**: guests cannot name one (KBS protocol 0.4.0 has no field for it;
//!   trustee's KBS always asks its attestation service for `default`), so every
//!   attestation is appraised by the policy stored as [`DEFAULT_POLICY_ID`], or the
//!   built-in one until an admin posts it. Trustee's attestation service evaluates
//!   `<id>_cpu` for CPU evidence and trustee's `kbs-client` posts `default_cpu` by
//!   default: an id ending in `_cpu` is stored under the id without it (we appraise
//!   only CPU evidence), so both clients set the same policy; the last post wins.
//!   Policies under other ids are validated and stored but not evaluated.
//! * Posted policies must compile, be `package policy`, and live in memory: a restart
//!   returns to the built-in policy.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

/// The built-in attestation policy (ours; grades sample evidence `warning`).
pub const DEFAULT_ATTESTATION_POLICY: &str = include_str!("default-attestation-policy.rego");

/// The policy id every attestation is appraised with.
pub const DEFAULT_POLICY_ID: &str = "default";

/// The rule producing the trustworthiness claims.
pub const TRUST_CLAIMS_RULE: &str = "data.policy.trust_claims";

/// The package an attestation policy must declare.
pub const POLICY_PACKAGE: &str = "data.policy";

/// The AR4SI trustworthiness claims, by their EAR JSON names.
pub const TRUST_CLAIMS: [&str; 8] = [
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
];

/// The suffix trustee's attestation service appends for CPU-class evidence.
const CPU_CLASS_SUFFIX: &str = "_cpu";

/// An AR4SI trust tier; ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrustTier {
    /// -1..=1: no claim is made.
    None,
    /// 2..=31 or -32..=-2.
    Affirming,
    /// 32..=95 or -96..=-33.
    Warning,
    /// 96..=127 or -128..=-97.
    Contraindicated,
}

impl TrustTier {
    /// The tier of one claim value.
    pub fn of(value: i8) -> Self {
        // The bands are asymmetric around zero, as in draft-ietf-rats-ar4si.
        match value {
            -1..=1 => Self::None,
            -32..=31 => Self::Affirming,
            -96..=95 => Self::Warning,
            _ => Self::Contraindicated,
        }
    }

    /// The `ear.status` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Affirming => "affirming",
            Self::Warning => "warning",
            Self::Contraindicated => "contraindicated",
        }
    }

    /// Whether an attestation with this status gets a token.
    pub fn issues_token(self) -> bool {
        matches!(self, Self::Affirming | Self::Warning)
    }
}

/// Why an attestation policy could not be stored or did not produce an appraisal.
#[derive(Debug, thiserror::Error)]
pub enum AttestationPolicyError {
    /// The id is not a plain name.
    #[error("policy_id {id:?} is not a plain name: {reason}")]
    BadId {
        /// The id as posted.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Rego text does not compile.
    #[error("attestation {source}")]
    Compile {
        /// The engine's error (names the policy id).
        #[source]
        source: policy::PolicyError,
    },
    /// Evaluation failed.
    #[error("attestation policy {id}: {source}")]
    Eval {
        /// The policy id.
        id: String,
        /// The engine's error.
        #[source]
        source: policy::PolicyError,
    },
    /// The policy declares another package.
    #[error(
        "attestation policy {id} declares {found}; it must be `package policy` \
         (it defines data.policy.trust_claims)"
    )]
    Package {
        /// The policy id.
        id: String,
        /// The package found.
        found: String,
    },
    /// Evaluating `trust_claims` fails outright (on empty claims): most likely the rule
    /// is not defined at all.
    #[error("attestation policy {id} must define data.policy.trust_claims: {source}")]
    Probe {
        /// The policy id.
        id: String,
        /// The engine's error.
        #[source]
        source: policy::PolicyError,
    },
    /// `trust_claims` is undefined for this input.
    #[error("attestation policy {id} defines no data.policy.trust_claims for this evidence")]
    NoTrustClaims {
        /// The policy id.
        id: String,
    },
    /// `trust_claims` has the wrong shape.
    #[error(
        "attestation policy {id}: data.policy.trust_claims must map AR4SI claims ({}) to \
         integers in -128..=127, got {found}",
        TRUST_CLAIMS.join(", ")
    )]
    Shape {
        /// The policy id.
        id: String,
        /// The offending JSON.
        found: String,
    },
    /// `trust_claims` is an empty object.
    #[error("attestation policy {id} sets no trust claim")]
    Empty {
        /// The policy id.
        id: String,
    },
}

/// A compiled attestation policy.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The id it is stored (and reported in tokens) under.
    pub id: String,
    /// The Rego text as posted.
    pub text: String,
    /// The compiled policy.
    pub policy: policy::Policy,
}

impl LoadedPolicy {
    /// Compile `text` as policy `id`; it must be `package policy`, and evaluating
    /// `trust_claims` on empty claims must not fail (undefined is fine: the rule may
    /// depend on the evidence; an error means it does not exist or cannot work).
    pub fn compile(id: &str, text: &str) -> Result<Self, AttestationPolicyError> {
        let policy = policy::Policy::from_rego(id, text)
            .map_err(|source| AttestationPolicyError::Compile { source })?;
        if policy.package() != POLICY_PACKAGE {
            return Err(AttestationPolicyError::Package {
                id: id.to_string(),
                found: policy.package().to_string(),
            });
        }
        let probe_data = serde_json::json!({
            "reference": {},
            "appraisal": {"matched": [], "unchecked": []},
        });
        policy
            .evaluate(TRUST_CLAIMS_RULE, &Value::Object(Map::new()), &probe_data)
            .map_err(|source| AttestationPolicyError::Probe {
                id: id.to_string(),
                source,
            })?;
        Ok(Self {
            id: id.to_string(),
            text: text.to_string(),
            policy,
        })
    }

    /// Evaluate the policy on verified claims (`input`) with `data`.
    pub fn appraise(
        &self,
        input: &Value,
        data: &Value,
    ) -> Result<PolicyAppraisal, AttestationPolicyError> {
        let id = || self.id.clone();
        let result = self
            .policy
            .evaluate(TRUST_CLAIMS_RULE, input, data)
            .map_err(|source| AttestationPolicyError::Eval { id: id(), source })?
            .ok_or_else(|| AttestationPolicyError::NoTrustClaims { id: id() })?;
        let shape = |found: &Value| AttestationPolicyError::Shape {
            id: id(),
            found: found.to_string(),
        };
        let claims = result.as_object().ok_or_else(|| shape(&result))?;
        if claims.is_empty() {
            return Err(AttestationPolicyError::Empty { id: id() });
        }
        let mut vector = BTreeMap::new();
        for (name, value) in claims {
            let name = TRUST_CLAIMS
                .iter()
                .copied()
                .find(|&n| n == name.as_str())
                .ok_or_else(|| shape(&result))?;
            let value = value
                .as_i64()
                .and_then(|v| i8::try_from(v).ok())
                .ok_or_else(|| shape(&result))?;
            vector.insert(name, value);
        }
        let status = vector
            .values()
            .map(|&v| TrustTier::of(v))
            .max()
            .unwrap_or(TrustTier::None);
        Ok(PolicyAppraisal {
            policy_id: self.id.clone(),
            policy_digest: self.policy.digest().to_string(),
            vector,
            status,
        })
    }
}

/// The outcome of an attestation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAppraisal {
    /// The id of the policy evaluated (`ear.appraisal-policy-id`).
    pub policy_id: String,
    /// SHA-256 of the policy text.
    pub policy_digest: String,
    /// The claims the policy set.
    pub vector: BTreeMap<&'static str, i8>,
    /// The worst tier of the claims (`ear.status`).
    pub status: TrustTier,
}

impl PolicyAppraisal {
    /// `ear.trustworthiness-vector`: every AR4SI claim, unset ones as 0 ("no claim").
    pub fn vector_json(&self) -> Value {
        let map: Map<String, Value> = TRUST_CLAIMS
            .iter()
            .map(|&n| {
                (
                    n.to_string(),
                    self.vector.get(n).copied().unwrap_or(0).into(),
                )
            })
            .collect();
        Value::Object(map)
    }
}

/// Attestation policies by id, plus the built-in one.
#[derive(Debug)]
pub struct AttestationPolicies {
    builtin: Arc<LoadedPolicy>,
    stored: RwLock<BTreeMap<String, Arc<LoadedPolicy>>>,
}

impl AttestationPolicies {
    /// The store with the built-in policy compiled.
    pub fn new() -> Result<Self, AttestationPolicyError> {
        Ok(Self {
            builtin: Arc::new(LoadedPolicy::compile(
                DEFAULT_POLICY_ID,
                DEFAULT_ATTESTATION_POLICY,
            )?),
            stored: RwLock::new(BTreeMap::new()),
        })
    }

    /// The id a posted `policy_id` is stored under: validated, `<id>_cpu` → `<id>`.
    pub fn storage_id(posted: &str) -> Result<String, AttestationPolicyError> {
        kbs_client::uri::validate_segment(posted).map_err(|reason| {
            AttestationPolicyError::BadId {
                id: posted.to_string(),
                reason,
            }
        })?;
        Ok(match posted.strip_suffix(CPU_CLASS_SUFFIX) {
            Some(base) if !base.is_empty() => base.to_string(),
            _ => posted.to_string(),
        })
    }

    /// Compile and store a posted policy; on any error nothing is stored.
    pub fn set(
        &self,
        posted_id: &str,
        text: &str,
    ) -> Result<Arc<LoadedPolicy>, AttestationPolicyError> {
        let id = Self::storage_id(posted_id)?;
        let loaded = Arc::new(LoadedPolicy::compile(&id, text)?);
        self.stored
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, loaded.clone());
        Ok(loaded)
    }

    /// A stored policy (by the id it is stored under).
    pub fn get(&self, id: &str) -> Option<Arc<LoadedPolicy>> {
        self.stored
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The policy attestations are appraised with: the stored `default`, else the built-in.
    pub fn for_attestation(&self) -> Arc<LoadedPolicy> {
        self.get(DEFAULT_POLICY_ID)
            .unwrap_or_else(|| self.builtin.clone())
    }
}

#[cfg(test)]
mod tests;
