//! [`Sha256`]: a SHA-256 digest as the manifest writes it (64 hex digits),
//! validated when made from text, so the source's plans compare and pass digests
//! as a type rather than as strings. The manifest's own format is unchanged: its
//! entries keep the digest as a string.

use std::borrow::Borrow;
use std::fmt;

/// A SHA-256 digest: 64 hex digits, as written (case kept).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(String);

impl Sha256 {
    /// The digest `hex` spells, if it is 64 hex digits.
    pub fn parse(hex: &str) -> Option<Self> {
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(hex.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Lets sets and maps keyed by digest be looked up with the text of one.
impl Borrow<str> for Sha256 {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn only_64_hex_digits_parse() {
        let hex = "0123456789abcdefABCDEF".repeat(3)[..64].to_string();
        assert_eq!(
            Sha256::parse(&hex).map(Sha256::into_string),
            Some(hex.clone())
        );
        assert_eq!(Sha256::parse(&hex[..63]), None);
        assert_eq!(Sha256::parse(&format!("{hex}0")), None);
        assert_eq!(Sha256::parse(&"g".repeat(64)), None);
        assert_eq!(Sha256::parse(""), None);
    }

    #[test]
    fn a_set_of_digests_is_looked_up_by_text() {
        let d = Sha256::parse(&"a".repeat(64)).unwrap();
        let set: HashSet<Sha256> = [d.clone()].into();
        assert!(set.contains("a".repeat(64).as_str()));
        assert!(!set.contains("b".repeat(64).as_str()));
        assert_eq!(d.to_string(), "a".repeat(64));
    }
}
