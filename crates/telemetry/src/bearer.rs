//! Bearer-token checks for the admin APIs every flashguard server has.

use axum::http::{header, HeaderMap};
use subtle::ConstantTimeEq;

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
        .and_then(bearer_token)
        .ok_or(BearerRefusal::Unauthorized)?;
    // Compared without stopping at the first difference, so response time
    // does not reveal how much of a guessed token was right.
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(BearerRefusal::Unauthorized)
    }
}

/// The token of `Bearer <token>`; the scheme is case-insensitive (RFC 9110
/// §11.1), one or more spaces follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn tokens_compare_exactly() {
        assert_eq!(check_bearer(Some("secret"), &with("Bearer secret")), Ok(()));
        for wrong in [
            "Bearer secreT",
            "Bearer secret2",
            "Bearer ",
            "Basic secret",
            "secret",
        ] {
            assert_eq!(
                check_bearer(Some("secret"), &with(wrong)),
                Err(BearerRefusal::Unauthorized),
                "{wrong}"
            );
        }
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let headers = with(&format!("{scheme} secret"));
            assert_eq!(check_bearer(Some("secret"), &headers), Ok(()), "{scheme}");
        }
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
