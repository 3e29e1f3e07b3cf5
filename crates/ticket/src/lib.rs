//! A customer's place in the waiting room, carried by the customer: a
//! signed ticket (HMAC-SHA256 under the room's key), as a cookie for
//! browsers and a header for API clients. It holds everything the gateway
//! needs to decide — when the customer arrived, whether and when they were
//! admitted, when they were last seen, who they are — so the gateway keeps
//! no state per customer, and every gateway with the same key reads it the
//! same way.
//!
//! This crate is the format alone: the gateway signs and checks tickets,
//! the drill's oracle reads their stamps (`Ticket::read`) to judge the
//! line's fairness, and `draw` lets anyone recompute a lottery from its
//! revealed seed.
//!
//! It is signed, not encrypted: the customer may read their own arrival
//! stamp (the drill's oracle does, to check fairness), and cannot change a
//! byte of it. Keys rotate without losing places: the first key signs,
//! every key listed verifies, and the ticket names the key it was signed
//! with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the signature kept: 128 bits.
const MAC_LEN: usize = 16;
const VERSION: u8 = 1;
/// version, key, flags, room, nonce, client, issued, seen, admitted, first
/// eta, line.
const BODY_LEN: usize = 1 + 1 + 1 + 4 + 8 + 4 + 8 + 8 + 8 + 4 + 4;

/// What a ticket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The room (sale event) it is for: a ticket of another event is worth
    /// nothing here.
    pub room: u32,
    /// Random: what makes two tickets of one instant distinct, and what the
    /// lottery draws on.
    pub nonce: u64,
    /// The client it was issued to (a hash of its address's network).
    pub client: u32,
    /// When the gateway first saw the customer, in unix ms: their place.
    pub issued_ms: u64,
    /// When it was last shown, in unix ms: a place is kept only so long
    /// after the last visit.
    pub seen_ms: u64,
    /// When the customer was let in (0: still waiting), in unix ms.
    pub admitted_ms: u64,
    /// The wait first shown to them, in seconds, to judge the estimates.
    pub first_eta_s: u32,
    /// Arrived before the sale opened: placed by the lottery.
    pub presale: bool,
    /// The line that counts this customer (a gateway process's): another
    /// gateway, or this one after a restart, counts them in its own.
    pub line: u32,
}

/// A signing key and its id.
#[derive(Debug, Clone)]
pub struct Key {
    pub id: u8,
    pub secret: Vec<u8>,
}

/// Why a presented ticket is worth nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not a ticket")]
    Malformed,
    #[error("signed with a key this gateway does not know")]
    UnknownKey,
    #[error("the signature does not match: forged or altered")]
    Forged,
}

fn mac(key: &Key, body: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.secret).expect("HMAC takes any key length");
    mac.update(body);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

impl Ticket {
    /// The ticket as the customer carries it: base64url of the body and
    /// its signature.
    pub fn seal(&self, key: &Key) -> String {
        let mut bytes = Vec::with_capacity(BODY_LEN + MAC_LEN);
        bytes.push(VERSION);
        bytes.push(key.id);
        bytes.push(u8::from(self.presale));
        bytes.extend_from_slice(&self.room.to_be_bytes());
        bytes.extend_from_slice(&self.nonce.to_be_bytes());
        bytes.extend_from_slice(&self.client.to_be_bytes());
        bytes.extend_from_slice(&self.issued_ms.to_be_bytes());
        bytes.extend_from_slice(&self.seen_ms.to_be_bytes());
        bytes.extend_from_slice(&self.admitted_ms.to_be_bytes());
        bytes.extend_from_slice(&self.first_eta_s.to_be_bytes());
        bytes.extend_from_slice(&self.line.to_be_bytes());
        let signature = mac(key, &bytes);
        bytes.extend_from_slice(&signature);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads and verifies a ticket against the keys (any with its id).
    pub fn open(text: &str, keys: &[Key]) -> Result<Ticket, Invalid> {
        let bytes = decode(text)?;
        let (body, signature) = bytes.split_at(BODY_LEN);
        let mut known = false;
        for key in keys.iter().filter(|k| k.id == body[1]) {
            known = true;
            let mut check = Hmac::<Sha256>::new_from_slice(&key.secret).expect("any key length");
            check.update(body);
            // Constant time: the signature is compared by the MAC library.
            if check.verify_truncated_left(signature).is_ok() {
                return Ok(Ticket::of(body));
            }
        }
        Err(if known {
            Invalid::Forged
        } else {
            Invalid::UnknownKey
        })
    }

    /// What a ticket says, unverified: for its holder and auditors, who
    /// have no key. The gateway never decides on this.
    pub fn read(text: &str) -> Result<Ticket, Invalid> {
        let bytes = decode(text)?;
        Ok(Ticket::of(&bytes[..BODY_LEN]))
    }

    fn of(body: &[u8]) -> Ticket {
        let u32_at = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        Ticket {
            presale: body[2] != 0,
            room: u32_at(3),
            nonce: u64_at(7),
            client: u32_at(15),
            issued_ms: u64_at(19),
            seen_ms: u64_at(27),
            admitted_ms: u64_at(35),
            first_eta_s: u32_at(43),
            line: u32_at(47),
        }
    }
}

fn decode(text: &str) -> Result<Vec<u8>, Invalid> {
    if text.len() > 128 {
        return Err(Invalid::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|_| Invalid::Malformed)?;
    if bytes.len() != BODY_LEN + MAC_LEN || bytes[0] != VERSION {
        return Err(Invalid::Malformed);
    }
    Ok(bytes)
}

/// A lottery entrant's draw: the first 8 bytes of `HMAC-SHA256(seed,
/// nonce as 8 big-endian bytes)`, as a big-endian number. Lower draws go
/// first; anyone can recompute it from the revealed seed.
pub fn draw(seed: &[u8], nonce: u64) -> u64 {
    let mut mac = Hmac::<Sha256>::new_from_slice(seed).expect("any key length");
    mac.update(&nonce.to_be_bytes());
    let out = mac.finalize().into_bytes();
    u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
}

/// Lower-case hex, as the room publishes seeds and commitments.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8, secret: &str) -> Key {
        Key {
            id,
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn ticket() -> Ticket {
        Ticket {
            room: 7,
            nonce: 0x0123_4567_89ab_cdef,
            client: 42,
            issued_ms: 1_800_000_000_000,
            seen_ms: 1_800_000_005_000,
            admitted_ms: 0,
            first_eta_s: 30,
            presale: true,
            line: 9,
        }
    }

    #[test]
    fn a_sealed_ticket_opens_to_what_was_sealed() {
        let k = key(1, "room-secret");
        let sealed = ticket().seal(&k);
        assert!(sealed.len() < 128, "{}", sealed.len());
        assert_eq!(
            Ticket::open(&sealed, std::slice::from_ref(&k)),
            Ok(ticket())
        );
        // Its holder can read it without the key.
        assert_eq!(Ticket::read(&sealed), Ok(ticket()));
    }

    #[test]
    fn a_forged_or_altered_ticket_is_worth_nothing() {
        let k = key(1, "room-secret");
        let sealed = ticket().seal(&k);
        // Every byte of the body matters: move the arrival stamp earlier.
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        bytes[20] ^= 0x01;
        let altered = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(Ticket::open(&altered, &[k.clone()]), Err(Invalid::Forged));
        // Signed with another secret under the same key id.
        let forged = ticket().seal(&key(1, "guessed"));
        assert_eq!(Ticket::open(&forged, &[k.clone()]), Err(Invalid::Forged));
        assert_eq!(
            Ticket::open("not-a-ticket", &[k.clone()]),
            Err(Invalid::Malformed)
        );
        assert_eq!(Ticket::open("", &[k]), Err(Invalid::Malformed));
    }

    #[test]
    fn keys_rotate_without_losing_places() {
        let (old, new) = (key(1, "old-secret"), key(2, "new-secret"));
        let sealed_before = ticket().seal(&old);
        // After rotation the new key signs, the old one still verifies.
        let keys = [new.clone(), old.clone()];
        assert_eq!(Ticket::open(&sealed_before, &keys), Ok(ticket()));
        // Once the old key is dropped, its tickets are refused.
        assert_eq!(
            Ticket::open(&sealed_before, std::slice::from_ref(&new)),
            Err(Invalid::UnknownKey)
        );
    }
}
