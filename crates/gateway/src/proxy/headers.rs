//! What a proxy must do to headers (RFC 9110 §7.6.1): drop hop-by-hop
//! headers, including any the `Connection` header names, and say who the
//! client was.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, CONNECTION};
use http::HeaderMap;

/// Headers that describe one connection, never forwarded. Names, not
/// strings: a lookup by string parses the name first, on every request.
const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

pub(crate) const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop headers. `Transfer-Encoding` goes too: hyper frames
/// each side's body itself.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(http::header::TRANSFER_ENCODING);
}

/// The client a request comes from: the peer, or, when the peer is a
/// trusted proxy, the last address in `X-Forwarded-For` that is not itself
/// trusted (the right-most is the one our trusted neighbour saw).
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all(&FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ip| ip.trim().parse().ok())
        .collect();
    chain
        .iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .copied()
        .unwrap_or(peer)
}

/// Adds the client to `X-Forwarded-For`, sets `X-Forwarded-Proto`, and
/// makes sure the request has an `X-Request-Id`; returns that id.
pub(crate) fn add_forwarding(headers: &mut HeaderMap, client: IpAddr) -> HeaderValue {
    let chain = match headers.get(&FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(FORWARDED_FOR, value);
    }
    headers.insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
    let usable = headers
        .get(&REQUEST_ID)
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .cloned();
    // 128 random bits from a fast generator: a UUID v4 would read the OS's
    // random source on every request.
    let id = usable.unwrap_or_else(|| {
        HeaderValue::from_str(&format!("{:032x}", fastrand::u128(..)))
            .expect("hex is a header value")
    });
    headers.insert(REQUEST_ID, id.clone());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("host", HeaderValue::from_static("shop.example"));
        headers.insert("idempotency-key", HeaderValue::from_static("k"));
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["host", "idempotency-key"]);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 10.0.0.2"),
        );
        let (peer, cdn): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(client_ip(peer, &headers, &[]), peer, "off by default");
        let trusted = [peer, cdn];
        assert_eq!(
            client_ip(peer, &headers, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
    }

    #[test]
    fn forwarding_appends_the_client_and_keeps_a_given_request_id() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        headers.insert("x-request-id", HeaderValue::from_static("abc"));
        let id = add_forwarding(&mut headers, "127.0.0.1".parse().unwrap());
        assert_eq!(id, "abc");
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        let mut fresh = HeaderMap::new();
        let id = add_forwarding(&mut fresh, "10.0.0.1".parse().unwrap());
        assert_eq!(id.len(), 32, "128 random bits in hex");
        assert_eq!(fresh["x-forwarded-for"], "10.0.0.1");
    }
}
