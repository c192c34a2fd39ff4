//! Admin API authentication: reading the bearer token and comparing it with the configured one.
//!
//! Owns the comparison, which must take the same time wherever the tokens differ (no early
//! exit), so the token cannot be guessed byte by byte. Never logs or returns a token.

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
#[must_use]
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares two byte strings in time that depends only on their lengths.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Fold every byte (padding the shorter with 0) so the loop never exits early; the length
    // difference is folded in too.
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// Whether `authorization` (the header, if any) carries `expected`. An empty or missing
/// configured token never authorises anything.
#[must_use]
pub fn is_authorized(authorization: Option<&str>, expected: Option<&str>) -> bool {
    match (authorization.and_then(bearer_token), expected) {
        (Some(presented), Some(expected)) if !expected.is_empty() => {
            constant_time_eq(presented.as_bytes(), expected.as_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret\0"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn authorization_needs_a_configured_matching_token() {
        assert!(is_authorized(Some("Bearer t0k"), Some("t0k")));
        assert!(!is_authorized(Some("Bearer t0k"), Some("other")));
        assert!(!is_authorized(None, Some("t0k")));
        assert!(!is_authorized(Some("Bearer t0k"), None));
        assert!(!is_authorized(Some("Bearer "), Some("")));
    }
}
