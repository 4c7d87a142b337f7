//! Rego policies evaluated with [regorus](https://github.com/microsoft/regorus).
//!
//! This is the only crate of the workspace that links a Rego engine. It is pure: no
//! I/O besides what the caller hands in, no network built-ins (`http.send`, `net.*`
//! and `opa.runtime` are compiled out).
//!
//! Two users are designed for:
//!
//! * the KBS resource policy: `data.policy.allow` with `input` = attestation token
//!   claims and `data` = `{"plugin", "resource-path", "query"}` → a bool
//!   ([`Policy::evaluate_bool`]);
//! * the in-guest agent policy (Kata `data.agent_policy.<Request>`): a bool or
//!   `{"allowed": bool, "ops": [JSON Patch]}` ([`Policy::evaluate_decision`]).
//!
//! Length limits are raised like the Kata agent does (64 KiB per line, 16 MiB per
//! file, 200 000 lines) because generated policies exceed regorus' defaults.
#![forbid(unsafe_code)]

use std::num::{NonZeroU32, NonZeroUsize};

use regorus::{Engine, PolicyLengthConfig, Value};
use sha2::{Digest, Sha256};

/// Why a policy could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The Rego text does not parse or compile.
    #[error("policy {name}: cannot load: {reason}")]
    Load {
        /// Name given to the policy (file name or id).
        name: String,
        /// The engine's message.
        reason: String,
    },
    /// `input` or `data` could not be handed to the engine.
    #[error("policy {what}: {reason}")]
    Document {
        /// `input` or `data`.
        what: &'static str,
        /// The engine's message.
        reason: String,
    },
    /// Evaluation failed (runtime error, unknown rule path, ...).
    #[error("policy rule {rule}: evaluation failed: {reason}")]
    Eval {
        /// The rule path, e.g. `data.policy.allow`.
        rule: String,
        /// The engine's message.
        reason: String,
    },
    /// The rule produced no value and has no default.
    #[error("policy rule {rule} is undefined (add a `default` for it)")]
    Undefined {
        /// The rule path.
        rule: String,
    },
    /// The rule produced a value of the wrong shape.
    #[error("policy rule {rule}: expected {expected}, got {found}")]
    Shape {
        /// The rule path.
        rule: String,
        /// What was expected.
        expected: &'static str,
        /// The JSON that was produced.
        found: String,
    },
}

/// Rego language version of a policy text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegoVersion {
    /// Rego v1 (`if`/`contains` required); regorus' default.
    #[default]
    V1,
    /// Rego v0 (older policies, e.g. without `if`).
    V0,
}

/// Parser limits for policy texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Longest line, in bytes.
    pub max_line_bytes: u32,
    /// Largest policy text, in bytes.
    pub max_file_bytes: usize,
    /// Most lines.
    pub max_lines: usize,
}

impl Default for PolicyLimits {
    /// The Kata agent's raised limits: 64 KiB per line, 16 MiB per file, 200 000 lines.
    fn default() -> Self {
        Self {
            max_line_bytes: 64 * 1024,
            max_file_bytes: 16 * 1024 * 1024,
            max_lines: 200_000,
        }
    }
}

impl PolicyLimits {
    fn to_regorus(self) -> Result<PolicyLengthConfig, String> {
        Ok(PolicyLengthConfig {
            max_col: NonZeroU32::new(self.max_line_bytes).ok_or("max_line_bytes is 0")?,
            max_file_bytes: NonZeroUsize::new(self.max_file_bytes).ok_or("max_file_bytes is 0")?,
            max_lines: NonZeroUsize::new(self.max_lines).ok_or("max_lines is 0")?,
        })
    }
}

/// A decision of a rule that returns a bool or `{"allowed": bool, "ops": [...]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// JSON Patch operations to apply to the caller's policy state (empty when none).
    pub ops: Vec<serde_json::Value>,
}

/// SHA-256 of the exact policy text, lowercase hex (what gets logged and measured).
pub fn policy_digest(rego: &str) -> String {
    hex::encode(Sha256::digest(rego.as_bytes()))
}

/// A loaded policy. Evaluation works on a clone of the prepared engine, so one
/// `Policy` can be shared (`&self`) and evaluated concurrently from many threads.
#[derive(Debug, Clone)]
pub struct Policy {
    engine: Engine,
    name: String,
    package: String,
    digest: String,
}

impl Policy {
    /// Load a Rego v1 text with the default (raised) limits.
    pub fn from_rego(name: &str, rego: &str) -> Result<Self, PolicyError> {
        Self::with_options(name, rego, RegoVersion::V1, PolicyLimits::default())
    }

    /// Load a policy with an explicit language version and limits.
    pub fn with_options(
        name: &str,
        rego: &str,
        version: RegoVersion,
        limits: PolicyLimits,
    ) -> Result<Self, PolicyError> {
        let load_err = |reason: String| PolicyError::Load {
            name: name.to_string(),
            reason,
        };
        let mut engine = Engine::new();
        engine.set_rego_v0(version == RegoVersion::V0);
        engine.set_policy_length_config(limits.to_regorus().map_err(load_err)?);
        // A failing built-in is an evaluation error, not a silently undefined rule.
        engine.set_strict_builtin_errors(true);
        let package = engine
            .add_policy(name.to_string(), rego.to_string())
            .map_err(|e| load_err(format!("{e:#}")))?;
        tracing::debug!(policy = name, %package, "Rego policy loaded");
        Ok(Self {
            engine,
            name: name.to_string(),
            package,
            digest: policy_digest(rego),
        })
    }

    /// The name given at load time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy's package as a data path, e.g. `data.policy`.
    pub fn package(&self) -> &str {
        &self.package
    }

    /// [`policy_digest`] of the loaded text.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Evaluate `rule` (a full path such as `data.policy.allow`) with `input` and
    /// `data` documents; returns the rule's JSON value, or None when undefined.
    pub fn evaluate(
        &self,
        rule: &str,
        input: &serde_json::Value,
        data: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, PolicyError> {
        let mut engine = self.engine.clone();
        engine.set_input(to_regorus(input, "input")?);
        if !data.is_null() {
            engine
                .add_data(to_regorus(data, "data")?)
                .map_err(|e| PolicyError::Document {
                    what: "data",
                    reason: format!("{e:#}"),
                })?;
        }
        let value = engine
            .eval_rule(rule.to_string())
            .map_err(|e| PolicyError::Eval {
                rule: rule.to_string(),
                reason: format!("{e:#}"),
            })?;
        if value == Value::Undefined {
            return Ok(None);
        }
        let json = value.to_json_str().map_err(|e| PolicyError::Eval {
            rule: rule.to_string(),
            reason: format!("result not representable as JSON: {e:#}"),
        })?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| PolicyError::Eval {
                rule: rule.to_string(),
                reason: format!("result not representable as JSON: {e}"),
            })
    }

    /// Evaluate a rule that must produce a bool. Undefined is an error (the caller
    /// decides whether that means deny); so is any non-bool value.
    pub fn evaluate_bool(
        &self,
        rule: &str,
        input: &serde_json::Value,
        data: &serde_json::Value,
    ) -> Result<bool, PolicyError> {
        match self.evaluate(rule, input, data)? {
            None => Err(PolicyError::Undefined {
                rule: rule.to_string(),
            }),
            Some(serde_json::Value::Bool(b)) => Ok(b),
            Some(other) => Err(PolicyError::Shape {
                rule: rule.to_string(),
                expected: "a bool",
                found: other.to_string(),
            }),
        }
    }

    /// Evaluate a rule that produces a bool or `{"allowed": bool, "ops": [...]}`
    /// (the Kata agent policy's two result shapes).
    pub fn evaluate_decision(
        &self,
        rule: &str,
        input: &serde_json::Value,
        data: &serde_json::Value,
    ) -> Result<Decision, PolicyError> {
        let shape_err = |found: &serde_json::Value| PolicyError::Shape {
            rule: rule.to_string(),
            expected: "a bool or {\"allowed\": bool, \"ops\": [...]}",
            found: found.to_string(),
        };
        match self.evaluate(rule, input, data)? {
            None => Err(PolicyError::Undefined {
                rule: rule.to_string(),
            }),
            Some(serde_json::Value::Bool(allowed)) => Ok(Decision {
                allowed,
                ops: Vec::new(),
            }),
            Some(serde_json::Value::Object(map)) => {
                let value = serde_json::Value::Object(map.clone());
                let allowed = map
                    .get("allowed")
                    .and_then(serde_json::Value::as_bool)
                    .ok_or_else(|| shape_err(&value))?;
                let ops = match map.get("ops") {
                    None | Some(serde_json::Value::Null) => Vec::new(),
                    Some(serde_json::Value::Array(ops)) => ops.clone(),
                    Some(_) => return Err(shape_err(&value)),
                };
                Ok(Decision { allowed, ops })
            }
            Some(other) => Err(shape_err(&other)),
        }
    }
}

fn to_regorus(value: &serde_json::Value, what: &'static str) -> Result<Value, PolicyError> {
    let text = serde_json::to_string(value).map_err(|e| PolicyError::Document {
        what,
        reason: e.to_string(),
    })?;
    Value::from_json_str(&text).map_err(|e| PolicyError::Document {
        what,
        reason: format!("{e:#}"),
    })
}

#[cfg(test)]
mod tests;
