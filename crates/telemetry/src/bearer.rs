//! Bearer-token checks for the admin APIs every flashguard server has.

use axum::http::{header, HeaderMap};

/// Why an admin call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerRefusal {
    /// No token is configured: the admin API is off (403).
    Disabled,
    /// The token is missing or wrong (401).
    Unauthorized,
}

/// Checks `Authorization: Bearer <token>` against the configured token.
pub fn check_bearer(expected: Option<&str>, headers: &HeaderMap) -> Result<(), BearerRefusal> {
    let Some(expected) = expected else {
        return Err(BearerRefusal::Disabled);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(BearerRefusal::Unauthorized)?;
    if constant_time_eq(presented.trim().as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(BearerRefusal::Unauthorized)
    }
}

/// Compares without stopping at the first difference, so response time does
/// not reveal how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn no_token_configured_means_disabled() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(check_bearer(None, &headers), Err(BearerRefusal::Disabled));
        assert_eq!(check_bearer(Some("x"), &headers), Ok(()));
        assert_eq!(
            check_bearer(Some("y"), &headers),
            Err(BearerRefusal::Unauthorized)
        );
        assert_eq!(
            check_bearer(Some("x"), &HeaderMap::new()),
            Err(BearerRefusal::Unauthorized)
        );
    }
}
