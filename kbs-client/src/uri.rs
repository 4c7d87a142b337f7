//! `kbs:///repo/type/tag` resource URIs (guest-components `RESOURCE_URI.md`).
//!
//! Form: `kbs[+plugin]://[host[:port]]/<seg>/<seg>/...[?query]`; the authority is
//! ignored (the client talks to its configured KBS). The default plugin is `resource`,
//! whose path must have exactly three segments `repository/type/tag`.

use crate::KbsClientError;

/// A parsed resource URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUri {
    /// Plugin name (`resource` unless `kbs+<plugin>://`).
    pub plugin: String,
    /// Path segments after the authority.
    pub segments: Vec<String>,
    /// Raw query string (without `?`), if any.
    pub query: Option<String>,
}

fn invalid(uri: &str, reason: impl Into<String>) -> KbsClientError {
    KbsClientError::InvalidUri {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

/// Check one path segment: non-empty, no `/`, not `.`/`..`, no NUL or control
/// characters, URL-safe characters only (`A-Za-z0-9-_.`).
pub fn validate_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("empty path segment".into());
    }
    if segment == "." || segment == ".." {
        return Err(format!("path segment {segment:?} is not allowed"));
    }
    if let Some(c) = segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "path segment {segment:?} contains {c:?} (allowed: A-Z a-z 0-9 - _ .)"
        ));
    }
    Ok(())
}

impl ResourceUri {
    /// Parse `kbs:///repo/type/tag` (also `kbs://host:port/...`, `kbs+plugin://...`).
    pub fn parse(uri: &str) -> Result<Self, KbsClientError> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| invalid(uri, "missing scheme (expected kbs://)"))?;
        let plugin = match scheme {
            "kbs" => "resource".to_string(),
            s => match s.strip_prefix("kbs+") {
                Some(p) if !p.is_empty() => {
                    validate_segment(p).map_err(|r| invalid(uri, r))?;
                    p.to_string()
                }
                _ => return Err(invalid(uri, format!("scheme {s:?} is not kbs"))),
            },
        };
        let (rest, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (rest, None),
        };
        // The authority (host[:port]) runs to the first '/'; it is ignored.
        let path = match rest.find('/') {
            Some(i) => &rest[i + 1..],
            None => return Err(invalid(uri, "no resource path")),
        };
        Self::from_parts(&plugin, path, query).map_err(|e| match e {
            KbsClientError::InvalidUri { reason, .. } => invalid(uri, reason),
            other => other,
        })
    }

    /// A `resource` plugin URI from a `repo/type/tag` path (the CLI's `--path`).
    pub fn from_resource_path(path: &str) -> Result<Self, KbsClientError> {
        Self::from_parts("resource", path.trim_start_matches('/'), None)
    }

    fn from_parts(plugin: &str, path: &str, query: Option<String>) -> Result<Self, KbsClientError> {
        let segments: Vec<String> = path.split('/').map(str::to_string).collect();
        for s in &segments {
            validate_segment(s).map_err(|r| invalid(path, r))?;
        }
        if plugin == "resource" && segments.len() != 3 {
            return Err(invalid(
                path,
                format!(
                    "a resource path has 3 segments repository/type/tag, found {}",
                    segments.len()
                ),
            ));
        }
        Ok(Self {
            plugin: plugin.to_string(),
            segments,
            query,
        })
    }

    /// `repo/type/tag`.
    pub fn resource_path(&self) -> String {
        self.segments.join("/")
    }

    /// The request path on the KBS: `/kbs/v0/<plugin>/<segments>[?query]`.
    pub fn kbs_path(&self) -> String {
        let mut p = format!(
            "{}/{}/{}",
            crate::KBS_PREFIX,
            self.plugin,
            self.resource_path()
        );
        if let Some(q) = &self.query {
            p.push('?');
            p.push_str(q);
        }
        p
    }
}

impl std::fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.plugin == "resource" {
            write!(f, "kbs:///{}", self.resource_path())?;
        } else {
            write!(f, "kbs+{}:///{}", self.plugin, self.resource_path())?;
        }
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let u = ResourceUri::parse("kbs:///default/key/key_id1").unwrap();
        assert_eq!(u.plugin, "resource");
        assert_eq!(u.segments, ["default", "key", "key_id1"]);
        assert_eq!(u.kbs_path(), "/kbs/v0/resource/default/key/key_id1");
        assert_eq!(u.to_string(), "kbs:///default/key/key_id1");
        let h = ResourceUri::parse("kbs://kbs.example:8080/a/b/c").unwrap();
        assert_eq!(h.resource_path(), "a/b/c");
        let p = ResourceUri::parse("kbs+plugin1:///para/meters?version=1.0.0").unwrap();
        assert_eq!(p.kbs_path(), "/kbs/v0/plugin1/para/meters?version=1.0.0");
        assert_eq!(
            ResourceUri::from_resource_path("r/t/g").unwrap().kbs_path(),
            "/kbs/v0/resource/r/t/g"
        );
    }

    #[test]
    fn refuses_bad_uris() {
        for bad in [
            "http:///a/b/c",
            "kbs:///a/b",
            "kbs:///a/b/c/d",
            "kbs:///a/../c",
            "kbs:///a//c",
            "kbs:///a/b/c%2f",
            "kbs:///a/b/\0",
            "kbs:",
            "kbs://host",
        ] {
            assert!(ResourceUri::parse(bad).is_err(), "{bad}");
        }
        assert!(ResourceUri::from_resource_path("../etc/passwd").is_err());
        assert!(ResourceUri::from_resource_path("a/b/..").is_err());
    }
}
