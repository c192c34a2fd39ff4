//! Optional keys on the public routes (`PUBLIC_API_KEYS`): which keys the
//! secret holds, which key a request presents, whether it is one of them
//! (in constant time) and the name it is rate-limited under. Never reads the
//! environment or a request itself, and never says which key was close.

use crate::admin::constant_time_eq;
use crate::document::keys::sha256_hex;

/// Shortest key accepted: a shorter one (a typo, a placeholder) would make
/// the routes guessable, so the whole secret is refused instead.
pub const MIN_PUBLIC_KEY_CHARS: usize = 24;

/// The keys of `PUBLIC_API_KEYS` (comma- or newline-separated).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKeys(Vec<String>);

impl std::fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach a log line.
        write!(f, "PublicKeys({} keys)", self.0.len())
    }
}

/// Why `PUBLIC_API_KEYS` cannot be used (the public routes then refuse
/// every request rather than run open).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeysError {
    /// One entry is shorter than [`MIN_PUBLIC_KEY_CHARS`] (its position, 1-based).
    #[error("PUBLIC_API_KEYS entry {position} is shorter than {MIN_PUBLIC_KEY_CHARS} characters")]
    TooShort {
        /// Which entry.
        position: usize,
    },
}

/// Why a request is refused by the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    /// No `Authorization: Bearer` or `x-api-key` header.
    #[error("this route needs an API key: `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    Missing,
    /// A key that is not one of the configured keys.
    #[error("the API key is not valid")]
    Wrong,
}

impl PublicKeys {
    /// Reads the secret: `None` when it is unset or holds no key (the
    /// routes stay public), an error when an entry is too short.
    pub fn parse(secret: Option<&str>) -> Result<Option<Self>, PublicKeysError> {
        let keys: Vec<String> = secret
            .unwrap_or_default()
            .split([',', '\n'])
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(position) = keys
            .iter()
            .position(|k| k.chars().count() < MIN_PUBLIC_KEY_CHARS)
        {
            return Err(PublicKeysError::TooShort {
                position: position + 1,
            });
        }
        Ok((!keys.is_empty()).then_some(Self(keys)))
    }

    /// How many keys there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an empty secret parses to `None`.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rate-limit name of the presented key when it is one of the keys.
    /// Every key is compared, whatever matched, so the time taken does not
    /// tell which key came close.
    pub fn check(&self, presented: Option<&str>) -> Result<String, AccessDenied> {
        let presented = presented.ok_or(AccessDenied::Missing)?;
        let mut matched = false;
        for key in &self.0 {
            matched |= constant_time_eq(presented.as_bytes(), key.as_bytes());
        }
        if matched {
            Ok(rate_limit_name(presented))
        } else {
            Err(AccessDenied::Wrong)
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>` (OpenAI's and
/// the MCP SDK's clients send that), else `x-api-key`.
#[must_use]
pub fn presented_key<'a>(
    authorization: Option<&'a str>,
    x_api_key: Option<&'a str>,
) -> Option<&'a str> {
    authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .or(x_api_key)
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The name a key is rate-limited under: a digest prefix, so the limiter
/// never holds the key itself.
#[must_use]
pub fn rate_limit_name(key: &str) -> String {
    format!("key:{}", &sha256_hex(key.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa-1";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb-2";

    #[test]
    fn an_unset_or_blank_secret_leaves_the_routes_public() {
        assert_eq!(PublicKeys::parse(None), Ok(None));
        assert_eq!(PublicKeys::parse(Some(" , \n ")), Ok(None));
    }

    #[test]
    fn keys_are_comma_or_newline_separated_and_long_enough() {
        let keys = PublicKeys::parse(Some(&format!(" {A},\n{B}\n")))
            .unwrap()
            .unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            PublicKeys::parse(Some(&format!("{A},short"))),
            Err(PublicKeysError::TooShort { position: 2 })
        );
        assert!(!format!("{keys:?}").contains(A));
    }

    #[test]
    fn only_a_configured_key_passes_and_each_has_its_own_budget() {
        let keys = PublicKeys::parse(Some(&format!("{A},{B}")))
            .unwrap()
            .unwrap();
        let a = keys.check(Some(A)).unwrap();
        let b = keys.check(Some(B)).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("key:") && !a.contains(A));
        assert_eq!(keys.check(None), Err(AccessDenied::Missing));
        assert_eq!(
            keys.check(Some(&A[..A.len() - 1])),
            Err(AccessDenied::Wrong)
        );
        assert_eq!(keys.check(Some(&format!("{A}x"))), Err(AccessDenied::Wrong));
    }

    #[test]
    fn the_key_comes_from_bearer_or_x_api_key() {
        assert_eq!(presented_key(Some("Bearer k1"), Some("k2")), Some("k1"));
        assert_eq!(presented_key(None, Some(" k2 ")), Some("k2"));
        assert_eq!(presented_key(Some("Basic abc"), Some("k2")), Some("k2"));
        assert_eq!(presented_key(Some("Basic abc"), None), None);
        assert_eq!(presented_key(Some("Bearer "), None), None);
    }
}
