//! [`Secret`]: an upstream provider's API key, read from the environment or a file, that never prints.
//!
//! Its `Debug` says only that a key is there, it has no `Display` and no `Serialize`, so neither a log
//! line, an error message, an audit record nor `GET /v1/providers` can carry it by accident; the one way
//! to read it is [`Secret::expose`], called where the `Authorization` header is built.

use std::fmt;
use std::path::Path;

/// A credential. Cloning copies it; dropping it does not wipe memory (the process holds it for its life).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key (from an environment substitution).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads a key from a file: its content with surrounding whitespace (a trailing newline) removed.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        Ok(Self(std::fs::read_to_string(path)?.trim().to_string()))
    }

    /// The key itself, for the request header that carries it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let key = Secret::new("sk-live-1234");
        assert_eq!(format!("{key:?}"), "Secret([redacted])");
        assert_eq!(format!("{:?}", Some(&key)), "Some(Secret([redacted]))");
        assert_eq!(key.expose(), "sk-live-1234");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "sk-from-file\n").unwrap();
        assert_eq!(Secret::from_file(&file).unwrap().expose(), "sk-from-file");
    }
}
