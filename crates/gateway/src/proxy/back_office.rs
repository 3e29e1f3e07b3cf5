//! The shops' admin API (`/admin/*`: every order, product and stock
//! change) through the customers' listener: only for peers in
//! `admin_allow`. Everyone else gets the 404 any unknown page gets, so
//! the internet does not even learn it is there.

use http::StatusCode;

use crate::room::page::{Answer, Shape};

/// Whether a path reaches the shops' admin API, however it is spelled:
/// percent-encoded letters, doubled slashes and case are seen through
/// (a backend may normalise what the gateway did not).
/// Every request asks, so the usual path (nothing percent-encoded) takes
/// no allocation.
pub(super) fn is_admin(path: &str) -> bool {
    if !path.contains('%') {
        return starts_with_admin(path.trim_start_matches('/').as_bytes());
    }
    let decoded = percent_decoded(path);
    starts_with_admin(decoded.trim_start_matches('/').as_bytes())
}

fn starts_with_admin(rest: &[u8]) -> bool {
    rest.len() >= 5
        && rest[..5].eq_ignore_ascii_case(b"admin")
        && matches!(rest.get(5), None | Some(b'/') | Some(b'?'))
}

fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn not_found() -> Answer {
    Answer {
        status: StatusCode::NOT_FOUND,
        shape: Shape::Json,
        body: flashguard_telemetry::json_error_body("not_found", "no such page"),
        ticket: None,
        retry_after_s: None,
        media: None,
    }
}

#[cfg(test)]
mod tests {
    use super::is_admin;

    #[test]
    fn every_spelling_of_the_admin_api_is_seen() {
        for path in [
            "/admin",
            "/admin/orders",
            "//admin/orders",
            "/%61dmin/orders",
            "/ADMIN/products/x",
            "/admin?x=1",
        ] {
            assert!(is_admin(path), "{path}");
        }
        for path in [
            "/",
            "/administrator",
            "/products/admin",
            "/api/orders",
            "/status",
        ] {
            assert!(!is_admin(path), "{path}");
        }
    }
}
