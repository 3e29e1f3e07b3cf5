//! The shops' admin API (`/admin/*`: every order, product and stock
//! change) through the customers' listener: only for peers in
//! `admin_allow`. Everyone else gets the 404 any unknown page gets, so
//! the internet does not even learn it is there.

use http::StatusCode;

use crate::room::page::{Answer, Shape};

/// Whether a path reaches the shops' admin API, however it is spelled:
/// percent-encoded letters, doubled slashes and case are seen through
/// (a backend may normalise what the gateway did not).
pub(super) fn is_admin(path: &str) -> bool {
    let decoded = percent_decoded(path).to_ascii_lowercase();
    let rest = decoded.trim_start_matches('/');
    rest == "admin" || rest.starts_with("admin/") || rest.starts_with("admin?")
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
