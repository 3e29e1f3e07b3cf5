//! What a proxy must tell the next hop (RFC 9110 §7.6): the request line
//! and the client's end-to-end headers, copied as they came, then who the
//! client was and the request's id. Hop-by-hop headers are left out (see
//! `http1::ConnectionOptions`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::http1::request::RequestHead;
use crate::http1::{put_field, Known};

const FORWARDED_PROTO: &str = "x-forwarded-proto";
const REQUEST_ID: &str = "x-request-id";

/// The peer of a client connection, its address written out once for
/// all the requests the connection carries (and shared by the streams of
/// an HTTP/2 connection).
#[derive(Clone)]
pub(crate) struct PeerIp {
    pub(crate) addr: SocketAddr,
    text: Arc<str>,
}

impl PeerIp {
    pub(crate) fn of(addr: SocketAddr) -> PeerIp {
        PeerIp {
            addr,
            text: addr.ip().to_string().into(),
        }
    }
}

/// The client a request comes from: the peer, or, when the peer is a
/// trusted proxy, the last address in `X-Forwarded-For` that is not itself
/// trusted (the right-most is the one our trusted neighbour saw).
pub(crate) fn client_ip(peer: IpAddr, request: &RequestHead, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let chain: Vec<IpAddr> = request
        .head
        .values(Known::ForwardedFor)
        .filter_map(|v| std::str::from_utf8(v).ok())
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

/// The request's id: the client's `X-Request-Id` when usable, else 128
/// random bits from a fast generator (a UUID v4 would read the OS's
/// random source on every request).
pub(crate) fn request_id(request: &RequestHead) -> Bytes {
    match request.head.get(Known::RequestId) {
        Some(id) if !id.is_empty() && id.len() <= 128 => Bytes::copy_from_slice(id),
        _ => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let random = fastrand::u128(..);
            let id: Vec<u8> = (0..32)
                .map(|n| HEX[((random >> (124 - 4 * n)) & 0xf) as usize])
                .collect();
            Bytes::from(id)
        }
    }
}

/// The head a backend gets, without the blank line that ends it (each try
/// adds `Host` when the client sent none, and the body's framing): the
/// request line in origin form, the client's end-to-end headers, then
/// `X-Forwarded-For` with the peer appended, `X-Forwarded-Proto`,
/// `X-Request-Id`, and `Flashguard-Status` when the status page says
/// something is wrong (a client's copy is never passed on).
pub(crate) fn upstream_head(
    out: &mut BytesMut,
    request: &RequestHead,
    peer: &PeerIp,
    request_id: &[u8],
    store_status: Option<&[u8]>,
) {
    let head = &request.head;
    out.clear();
    out.put_slice(request.method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(&request.target);
    out.put_slice(b" HTTP/1.1\r\n");
    let mut earlier_hops: Vec<&[u8]> = Vec::new();
    for field in &head.fields {
        if field.known == Known::ForwardedFor {
            let value = head.value(field).trim_ascii();
            if !value.is_empty() {
                earlier_hops.push(value);
            }
            continue;
        }
        if matches!(
            field.known,
            Known::ForwardedProto | Known::RequestId | Known::StoreStatus
        ) || !request.connection.copied(head, field)
        {
            continue;
        }
        match (&request.authority, field.known) {
            // An absolute-form target's authority replaces Host.
            (Some(authority), Known::Host) => put_field(out, head.name(field), authority),
            _ => put_field(out, head.name(field), head.value(field)),
        }
    }
    if let (Some(authority), false) = (&request.authority, head.has(Known::Host)) {
        put_field(out, b"host", authority);
    }
    out.put_slice(b"x-forwarded-for: ");
    for hop in earlier_hops {
        out.put_slice(hop);
        out.put_slice(b", ");
    }
    out.put_slice(peer.text.as_bytes());
    out.put_slice(b"\r\n");
    put_field(out, FORWARDED_PROTO.as_bytes(), b"http");
    put_field(out, REQUEST_ID.as_bytes(), request_id);
    if let Some(status) = store_status {
        put_field(out, b"flashguard-status", status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::request::parse_request;

    fn request(text: &str) -> RequestHead {
        parse_request(&mut BytesMut::from(text)).unwrap().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let r =
            request("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7, 10.0.0.2\r\n\r\n");
        let (peer, cdn): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(client_ip(peer, &r, &[]), peer, "off by default");
        let trusted = [peer, cdn];
        assert_eq!(
            client_ip(peer, &r, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "203.0.113.1".parse().unwrap();
        assert_eq!(client_ip(stranger, &r, &trusted), stranger);
    }

    #[test]
    fn the_backend_gets_end_to_end_headers_and_the_forwarding_ones() {
        let r = request(
            "POST http://shop/api/orders HTTP/1.1\r\nHost: shop\r\nConnection: keep-alive, X-Secret\r\n\
             X-Secret: 1\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\
             X-Request-Id: abc\r\nContent-Length: 2\r\nIdempotency-Key: k\r\n\r\n",
        );
        let id = request_id(&r);
        assert_eq!(&id[..], b"abc", "a given id is kept");
        let peer = PeerIp::of("127.0.0.1:5000".parse().unwrap());
        let mut head = BytesMut::new();
        upstream_head(&mut head, &r, &peer, &id, None);
        assert_eq!(
            std::str::from_utf8(&head).unwrap(),
            "POST /api/orders HTTP/1.1\r\nHost: shop\r\nIdempotency-Key: k\r\n\
             x-forwarded-for: 203.0.113.9, 127.0.0.1\r\nx-forwarded-proto: http\r\nx-request-id: abc\r\n"
        );
        let fresh = request_id(&request("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(fresh.len(), 32, "128 random bits in hex");
        assert!(fresh.iter().all(u8::is_ascii_hexdigit));
        assert_ne!(
            fresh,
            request_id(&request("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        );
        let absolute = request("GET http://shop.example/a HTTP/1.1\r\nHost: elsewhere\r\n\r\n");
        let mut head = BytesMut::new();
        upstream_head(&mut head, &absolute, &peer, b"id", None);
        let text = std::str::from_utf8(&head).unwrap();
        assert!(
            text.starts_with("GET /a HTTP/1.1\r\nHost: shop.example\r\n"),
            "{text}"
        );
        assert!(!text.contains("elsewhere"), "{text}");
    }

    #[test]
    fn only_the_gateway_tells_the_shops_the_store_s_status() {
        let forged =
            request("GET / HTTP/1.1\r\nHost: x\r\nFlashguard-Status: major_outage\r\n\r\n");
        let peer = PeerIp::of("127.0.0.1:5000".parse().unwrap());
        let mut head = BytesMut::new();
        upstream_head(&mut head, &forged, &peer, b"id", None);
        assert!(!String::from_utf8_lossy(&head)
            .to_lowercase()
            .contains("flashguard-status"));
        upstream_head(&mut head, &forged, &peer, b"id", Some(b"under_maintenance"));
        let text = String::from_utf8_lossy(&head).to_lowercase();
        assert_eq!(text.matches("flashguard-status").count(), 1, "{text}");
        assert!(
            text.ends_with("flashguard-status: under_maintenance\r\n"),
            "{text}"
        );
    }
}
