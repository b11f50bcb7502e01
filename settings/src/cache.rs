//! The guest's cache policy (virtiofsd's `--cache`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long the guest may cache entries and attributes, and whether it may cache file data.
///
/// Mirrors virtiofsd's `--cache`; the timeouts chosen for each variant are those virtiofsd uses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// No caching: every access goes to the host (direct I/O, zero timeouts). Use when the host
    /// changes the directory behind the guest's back.
    Never,
    /// Cache with a short (1 s) timeout and revalidate on open.
    #[default]
    Auto,
    /// Cache aggressively (one day): the guest is assumed to be the only writer.
    Always,
}

impl CachePolicy {
    /// Entry and attribute timeout handed to the guest for this policy.
    pub fn timeout(self) -> Duration {
        match self {
            CachePolicy::Never => Duration::ZERO,
            CachePolicy::Auto => Duration::from_secs(1),
            CachePolicy::Always => Duration::from_secs(86400),
        }
    }
}

/// A cache policy string that is none of `never`, `auto`, `always`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cache policy {0:?}: expected one of \"never\", \"auto\", \"always\"")]
pub struct ParseCachePolicyError(pub String);

impl FromStr for CachePolicy {
    type Err = ParseCachePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "never" => Ok(CachePolicy::Never),
            "auto" => Ok(CachePolicy::Auto),
            "always" => Ok(CachePolicy::Always),
            _ => Err(ParseCachePolicyError(s.to_owned())),
        }
    }
}

impl fmt::Display for CachePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CachePolicy::Never => "never",
            CachePolicy::Auto => "auto",
            CachePolicy::Always => "always",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_policy_parse_and_display() {
        for (s, p) in [
            ("never", CachePolicy::Never),
            ("auto", CachePolicy::Auto),
            ("always", CachePolicy::Always),
        ] {
            assert_eq!(s.parse::<CachePolicy>().unwrap(), p);
            assert_eq!(p.to_string(), s);
        }
        let err = "sometimes".parse::<CachePolicy>().unwrap_err();
        assert_eq!(err, ParseCachePolicyError("sometimes".into()));
        let msg = err.to_string();
        assert!(msg.contains("sometimes") && msg.contains("never"), "{msg}");
        assert!("".parse::<CachePolicy>().is_err());
        assert!("Auto".parse::<CachePolicy>().is_err());
        assert_eq!(CachePolicy::default(), CachePolicy::Auto);
    }

    #[test]
    fn timeouts_follow_virtiofsd() {
        assert_eq!(CachePolicy::Never.timeout(), Duration::ZERO);
        assert_eq!(CachePolicy::Auto.timeout(), Duration::from_secs(1));
        assert_eq!(CachePolicy::Always.timeout(), Duration::from_secs(86400));
    }
}
