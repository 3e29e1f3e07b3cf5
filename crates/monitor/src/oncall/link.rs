//! The one-click acknowledgement link in every page: signed (HMAC-SHA256
//! under the monitor's link key), expiring, for one incident and one
//! person, and good once. The signature is its only authentication, so it
//! works from a phone without the admin token, and it can do nothing but
//! acknowledge that incident as that person.
//!
//! `incident.person.expires_ms.nonce`, base64url, then `.` and the
//! signature. A GET of the link only shows a page with a button; the
//! acknowledgement is its POST, because mail scanners and chat previews
//! fetch links on their own.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Links used, remembered until they expire, at most.
const MOST_REMEMBERED: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckLink {
    pub incident: i64,
    pub person: String,
    pub expires_ms: i64,
    nonce: u64,
}

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    #[error("this link is not one the monitor signed")]
    Forged,
    #[error("this link has expired")]
    Expired,
    #[error("this link was used already")]
    Used,
}

impl LinkRefusal {
    pub fn code(self) -> &'static str {
        match self {
            LinkRefusal::Forged => "link_invalid",
            LinkRefusal::Expired => "link_expired",
            LinkRefusal::Used => "link_used",
        }
    }
}

#[derive(Debug)]
pub struct Links {
    key: Vec<u8>,
    /// Nonces used, with when their link expires.
    used: Mutex<HashMap<u64, i64>>,
}

impl Links {
    pub fn new(key: Vec<u8>) -> Links {
        Links {
            key,
            used: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length")
    }

    /// A link's token for `person` to acknowledge `incident`.
    pub fn sign(&self, incident: i64, person: &str, expires_ms: i64) -> String {
        let nonce = fastrand::u64(..);
        let body = format!(
            "{incident}.{}.{expires_ms}.{nonce}",
            URL_SAFE_NO_PAD.encode(person)
        );
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{}.{signature}", URL_SAFE_NO_PAD.encode(body))
    }

    /// What a token says, if the monitor signed it and it has not
    /// expired; it is not used up (`spend` does that).
    pub fn open(&self, token: &str, now_ms: i64) -> Result<AckLink, LinkRefusal> {
        let (body, signature) = token.split_once('.').ok_or(LinkRefusal::Forged)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| LinkRefusal::Forged)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| LinkRefusal::Forged)?;
        let mut mac = self.mac();
        mac.update(&body);
        // Constant time, through the hmac crate.
        mac.verify_slice(&signature)
            .map_err(|_| LinkRefusal::Forged)?;
        let body = String::from_utf8(body).map_err(|_| LinkRefusal::Forged)?;
        let parts: Vec<&str> = body.split('.').collect();
        let [incident, person, expires, nonce] = parts[..] else {
            return Err(LinkRefusal::Forged);
        };
        let link = AckLink {
            incident: incident.parse().map_err(|_| LinkRefusal::Forged)?,
            person: URL_SAFE_NO_PAD
                .decode(person)
                .ok()
                .and_then(|p| String::from_utf8(p).ok())
                .ok_or(LinkRefusal::Forged)?,
            expires_ms: expires.parse().map_err(|_| LinkRefusal::Forged)?,
            nonce: nonce.parse().map_err(|_| LinkRefusal::Forged)?,
        };
        if now_ms >= link.expires_ms {
            return Err(LinkRefusal::Expired);
        }
        if self.lock().contains_key(&link.nonce) {
            return Err(LinkRefusal::Used);
        }
        Ok(link)
    }

    /// Uses the link up; false when it was already.
    pub fn spend(&self, link: &AckLink, now_ms: i64) -> bool {
        let mut used = self.lock();
        if used.len() >= MOST_REMEMBERED {
            used.retain(|_, expires| *expires > now_ms);
        }
        used.insert(link.nonce, link.expires_ms).is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, i64>> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_once_before_it_expires_and_never_when_tampered() {
        let links = Links::new(b"a key of sixteen or more".to_vec());
        let token = links.sign(7, "ana", 10_000);
        let link = links.open(&token, 9_999).unwrap();
        assert_eq!((link.incident, link.person.as_str()), (7, "ana"));
        assert_eq!(links.open(&token, 10_000), Err(LinkRefusal::Expired));
        assert!(links.spend(&link, 5_000));
        assert_eq!(links.open(&token, 5_001), Err(LinkRefusal::Used));
        assert!(!links.spend(&link, 5_002));

        // Another incident, another person, a later expiry: each byte is
        // signed.
        let fresh = links.sign(7, "ana", 10_000);
        let (body, signature) = fresh.split_once('.').unwrap();
        let plain = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        for tampered in [
            plain.replacen("7.", "8.", 1),
            plain.replace(".10000.", ".99999999."),
        ] {
            let token = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(tampered));
            assert_eq!(links.open(&token, 1), Err(LinkRefusal::Forged));
        }
        assert_eq!(links.open("nonsense", 1), Err(LinkRefusal::Forged));
        // Another monitor's key.
        let other = Links::new(b"another key, sixteen+".to_vec());
        assert_eq!(other.open(&fresh, 1), Err(LinkRefusal::Forged));
    }
}
