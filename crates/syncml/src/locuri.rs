//! `LocUri`: an OMA-DM node address or a server URL, rejected when the protocol forbids its form.

use std::fmt;

/// A LocURI as it appears in Target/Source. Built only through [`LocUri::parse`].
///
/// Rules (ITPRO oma-dm-protocol-support.md, "LocURI"): not empty; must not start with `/`; `.` is a
/// segment only as the first one; segments are not empty and not `*`; no control characters.
/// Absolute URLs (the server address in a SyncHdr) and bare device IDs are also LocURIs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocUri(String);

/// Why a LocURI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocUriError {
    #[error("LocURI is empty")]
    Empty,
    #[error("LocURI `{0}` starts with `/`")]
    LeadingSlash(String),
    #[error("LocURI `{0}` has an empty segment")]
    EmptySegment(String),
    #[error("LocURI `{0}` has `.` or `*` as a segment")]
    ForbiddenSegment(String),
    #[error("LocURI `{0}` contains a control character")]
    ControlCharacter(String),
}

impl LocUri {
    pub fn parse(s: impl Into<String>) -> Result<Self, LocUriError> {
        let s: String = s.into();
        if s.is_empty() {
            return Err(LocUriError::Empty);
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(LocUriError::ControlCharacter(s));
        }
        if s.contains("://") {
            // A server URL (SyncHdr Target/Source): not a node path.
            return Ok(LocUri(s));
        }
        if s.starts_with('/') {
            return Err(LocUriError::LeadingSlash(s));
        }
        let trimmed = s.strip_suffix('/').unwrap_or(&s);
        for (i, seg) in trimmed.split('/').enumerate() {
            if seg.is_empty() {
                return Err(LocUriError::EmptySegment(s.clone()));
            }
            if seg == "*" || (seg == "." && i != 0) || seg == ".." {
                return Err(LocUriError::ForbiddenSegment(s.clone()));
            }
        }
        Ok(LocUri(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LocUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for LocUri {
    type Error = LocUriError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        LocUri::parse(s)
    }
}

impl AsRef<str> for LocUri {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
