//! `[waiting_room]` in gateway.toml, and what it validates into.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::line::Order;
use crate::config::ConfigError;
use flashguard_ticket::Key;

/// When the room holds customers in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// No room: no tickets, nobody waits (the default).
    Off,
    /// From `opens_at − pre_queue_s` until `closes_at`.
    Sale,
    /// When the backends are full: every backend at its concurrency limit
    /// and requests waiting in the gateway's queue for `full_after_ms`;
    /// off again once the line is empty and the queue has been quiet for
    /// `calm_after_s`.
    Full,
    /// Always on.
    Always,
}

/// `[waiting_room]` as written. Every field may be left out.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomFile {
    /// Default `off`.
    pub activation: Activation,
    /// `fifo` (default) or `lottery`: customers who arrive before
    /// `opens_at` are placed by a published draw.
    pub mode: Order,
    /// The sale event's name: a ticket of another event is worth nothing
    /// here. Default `flash-sale`.
    pub event: String,
    /// Paths that need a place: exact, or a prefix ending in `*`. Default:
    /// the storefront and the order API.
    pub paths: Vec<String>,
    /// Tickets are signed with this key (HMAC-SHA256);
    /// `FLASHGUARD_ROOM_KEY` also sets it. Gateways with the same key
    /// read each other's tickets. Without one, a random key per process.
    pub key: Option<String>,
    /// Keys still accepted, not used to sign: rotate by moving the old
    /// key here and setting a new `key`; no place is lost.
    pub previous_keys: Vec<String>,
    /// Customers let in per second, at most (the bound). Default 50.
    pub admit_per_s: f64,
    /// And at least, when adaptive. Default 1.
    pub min_admit_per_s: f64,
    /// Where an adaptive rate starts. Default a quarter of `admit_per_s`;
    /// set it to what the shops are known to serve to start there.
    pub initial_admit_per_s: Option<f64>,
    /// Let the rate follow what the backends take (within the bounds).
    /// Default true.
    pub adaptive: bool,
    /// Customers shopping at once, at most (admitted within the session
    /// length). Default 5000.
    pub max_active: u64,
    /// A session lasts this long after the customer's last request, in s.
    /// Default 300.
    pub session_s: u64,
    /// A waiting customer who does not come back within this keeps no
    /// place, in s. Default 300.
    pub keep_place_s: u64,
    /// RFC 3339. For `activation = "sale"`, and the lottery's draw.
    pub opens_at: Option<String>,
    /// RFC 3339. For `activation = "sale"`: the room turns off.
    pub closes_at: Option<String>,
    /// For `activation = "sale"`: the room opens this long before the
    /// sale, in s. Default 900.
    pub pre_queue_s: u64,
    /// For `activation = "full"`: queued this long in a row turns the
    /// room on, in ms. Default 1000.
    pub full_after_ms: u64,
    /// For `activation = "full"`: quiet this long turns it off, in s.
    /// Default 30.
    pub calm_after_s: u64,
    /// The sale's items: when every one is sold out (the shops'
    /// catalogue, polled every second), everyone waiting is told at once.
    pub skus: Vec<String>,
    /// Gateways sharing the room (each with the same key): each admits
    /// `1/gateways` of the rate and of the active sessions. Default 1.
    pub gateways: u32,
    /// New tickets per minute for one client network (/24 or /56);
    /// counted in a fixed-size sketch. 0 turns the limit off. Default 60.
    pub tickets_per_client_per_min: u32,
    /// Tie a ticket to the client network it was issued to: a ticket
    /// copied elsewhere earns no place. Default true.
    pub bind_client: bool,
}

impl Default for RoomFile {
    fn default() -> Self {
        RoomFile {
            activation: Activation::Off,
            mode: Order::Fifo,
            event: "flash-sale".into(),
            paths: vec![
                "/".into(),
                "/products/*".into(),
                "/orders/*".into(),
                "/api/orders*".into(),
            ],
            key: None,
            previous_keys: Vec::new(),
            admit_per_s: 50.0,
            min_admit_per_s: 1.0,
            initial_admit_per_s: None,
            adaptive: true,
            max_active: 5_000,
            session_s: 300,
            keep_place_s: 300,
            opens_at: None,
            closes_at: None,
            pre_queue_s: 900,
            full_after_ms: 1_000,
            calm_after_s: 30,
            skus: Vec::new(),
            gateways: 1,
            tickets_per_client_per_min: 60,
            bind_client: true,
        }
    }
}

/// A guarded path: exact, or every path with this prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Guarded {
    Exact(String),
    Prefix(String),
}

impl Guarded {
    fn matches(&self, path: &str) -> bool {
        match self {
            Guarded::Exact(exact) => path == exact,
            Guarded::Prefix(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

/// The room's rules, validated.
#[derive(Debug, Clone)]
pub struct RoomRules {
    pub activation: Activation,
    pub mode: Order,
    pub(crate) room_id: u32,
    pub(crate) paths: Vec<Guarded>,
    /// The first signs.
    pub(crate) keys: Vec<Key>,
    /// Whether the key was set (not random).
    pub(crate) keyed: bool,
    pub admit_per_s: f64,
    pub min_admit_per_s: f64,
    pub initial_admit_per_s: f64,
    pub adaptive: bool,
    pub max_active: u64,
    pub session: Duration,
    pub keep_place: Duration,
    /// Unix ms.
    pub opens_ms: Option<u64>,
    pub closes_ms: Option<u64>,
    pub pre_queue: Duration,
    pub full_after: Duration,
    pub calm_after: Duration,
    pub skus: Vec<String>,
    pub gateways: u32,
    pub tickets_per_client_per_min: u32,
    pub bind_client: bool,
}

/// Never queue, whatever `paths` says: probes, metrics, the room's own
/// pages, static assets.
const NEVER_GUARDED: [&str; 5] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/waiting-room",
    "/static/",
];

impl RoomRules {
    /// How long a ticket's cookie is kept: the longer of a session and a
    /// kept place, in s.
    pub(crate) fn keep_s(&self) -> u64 {
        self.session.max(self.keep_place).as_secs()
    }

    /// Whether a request for `path` needs a place.
    pub(crate) fn guards(&self, path: &str) -> bool {
        if self.activation == Activation::Off
            || NEVER_GUARDED.iter().any(|never| path.starts_with(never))
        {
            return false;
        }
        self.paths.iter().any(|guarded| guarded.matches(path))
    }
}

fn refuse(field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: format!("waiting_room.{field}"),
        problem: problem.into(),
    }
}

fn rfc3339_ms(field: &str, text: &str) -> Result<u64, ConfigError> {
    let at = flashguard_telemetry::parse_rfc3339(text).map_err(|problem| refuse(field, problem))?;
    u64::try_from(at).map_err(|_| refuse(field, "must be after 1970"))
}

/// A key from its secret: the id is the secret's hash's first byte, so
/// gateways with the same secret agree on it without configuring one.
fn key_of(secret: &str) -> Key {
    Key {
        id: Sha256::digest(secret.as_bytes())[0],
        secret: secret.as_bytes().to_vec(),
    }
}

impl RoomFile {
    /// Validates; `env_key` is `FLASHGUARD_ROOM_KEY`, which wins over the
    /// file's.
    pub fn validate(&self, env_key: Option<String>) -> Result<RoomRules, ConfigError> {
        if self.event.trim().is_empty() || self.event.len() > 64 {
            return Err(refuse("event", "must be 1 to 64 characters"));
        }
        let mut paths = Vec::with_capacity(self.paths.len());
        for (i, path) in self.paths.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(refuse(&format!("paths[{i}]"), "must start with /"));
            }
            paths.push(match path.strip_suffix('*') {
                Some(prefix) if prefix.contains('*') => {
                    return Err(refuse(&format!("paths[{i}]"), "only a final * is allowed"))
                }
                Some(prefix) => Guarded::Prefix(prefix.to_string()),
                None if path.contains('*') => {
                    return Err(refuse(&format!("paths[{i}]"), "only a final * is allowed"))
                }
                None => Guarded::Exact(path.clone()),
            });
        }
        let secret = env_key
            .filter(|key| !key.trim().is_empty())
            .or_else(|| self.key.clone().filter(|key| !key.trim().is_empty()));
        if let Some(secret) = &secret {
            if secret.len() < 16 {
                return Err(refuse("key", "must be at least 16 characters"));
            }
        }
        let keyed = secret.is_some();
        let signing = match secret {
            Some(secret) => key_of(&secret),
            None => {
                let mut random = [0u8; 32];
                getrandom::getrandom(&mut random)
                    .map_err(|err| refuse("key", format!("no randomness for a key: {err}")))?;
                Key {
                    id: random[0],
                    secret: random.to_vec(),
                }
            }
        };
        let mut keys = vec![signing];
        keys.extend(self.previous_keys.iter().map(|secret| key_of(secret)));
        if !(self.admit_per_s > 0.0 && self.admit_per_s <= 1_000_000.0) {
            return Err(refuse("admit_per_s", "must be above 0 and at most 1000000"));
        }
        if !(self.min_admit_per_s > 0.0 && self.min_admit_per_s <= self.admit_per_s) {
            return Err(refuse(
                "min_admit_per_s",
                "must be above 0 and at most waiting_room.admit_per_s",
            ));
        }
        let initial_admit_per_s = self
            .initial_admit_per_s
            .unwrap_or((self.admit_per_s / 4.0).max(self.min_admit_per_s));
        if !(self.min_admit_per_s..=self.admit_per_s).contains(&initial_admit_per_s) {
            return Err(refuse(
                "initial_admit_per_s",
                "must be between waiting_room.min_admit_per_s and waiting_room.admit_per_s",
            ));
        }
        if self.max_active < 1 {
            return Err(refuse("max_active", "must be at least 1"));
        }
        if !(10..=86_400).contains(&self.session_s) {
            return Err(refuse("session_s", "must be between 10 and 86400 (a day)"));
        }
        if !(10..=86_400).contains(&self.keep_place_s) {
            return Err(refuse(
                "keep_place_s",
                "must be between 10 and 86400 (a day)",
            ));
        }
        let opens_ms = self
            .opens_at
            .as_deref()
            .map(|text| rfc3339_ms("opens_at", text))
            .transpose()?;
        let closes_ms = self
            .closes_at
            .as_deref()
            .map(|text| rfc3339_ms("closes_at", text))
            .transpose()?;
        if let (Some(opens), Some(closes)) = (opens_ms, closes_ms) {
            if closes <= opens {
                return Err(refuse("closes_at", "must be after waiting_room.opens_at"));
            }
        }
        if self.activation == Activation::Sale && opens_ms.is_none() {
            return Err(refuse(
                "opens_at",
                "activation = \"sale\" needs the sale's opening",
            ));
        }
        if self.mode == Order::Lottery && opens_ms.is_none() {
            return Err(refuse(
                "opens_at",
                "mode = \"lottery\" draws among those who arrive before the opening: set it",
            ));
        }
        if self.gateways < 1 {
            return Err(refuse("gateways", "must be at least 1"));
        }
        if self.gateways > 1 && !keyed {
            return Err(refuse(
                "key",
                "gateways sharing a room must share a key (or FLASHGUARD_ROOM_KEY)",
            ));
        }
        for (i, sku) in self.skus.iter().enumerate() {
            let fine = !sku.is_empty()
                && sku.len() <= 64
                && sku
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !fine {
                return Err(refuse(
                    &format!("skus[{i}]"),
                    "must be 1 to 64 letters, digits, '-', '_' or '.'",
                ));
            }
        }
        let room_id = u32::from_be_bytes(
            Sha256::digest(self.event.as_bytes())[..4]
                .try_into()
                .expect("4 bytes"),
        );
        Ok(RoomRules {
            activation: self.activation,
            mode: self.mode,
            room_id,
            paths,
            keys,
            keyed,
            admit_per_s: self.admit_per_s,
            min_admit_per_s: self.min_admit_per_s,
            initial_admit_per_s,
            adaptive: self.adaptive,
            max_active: self.max_active,
            session: Duration::from_secs(self.session_s),
            keep_place: Duration::from_secs(self.keep_place_s),
            opens_ms,
            closes_ms,
            pre_queue: Duration::from_secs(self.pre_queue_s),
            full_after: Duration::from_millis(self.full_after_ms),
            calm_after: Duration::from_secs(self.calm_after_s),
            skus: self.skus.clone(),
            gateways: self.gateways,
            tickets_per_client_per_min: self.tickets_per_client_per_min,
            bind_client: self.bind_client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        match flashguard_telemetry::parse_toml::<RoomFile>(text) {
            Ok(file) => file
                .validate(None)
                .expect_err("must be refused")
                .to_string(),
            Err(err) => err,
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert!(refused("mode = \"random\"").contains("mode"));
        assert!(refused("paths = [\"products\"]").starts_with("waiting_room.paths[0]:"));
        assert!(refused("paths = [\"/a*b\"]").starts_with("waiting_room.paths[0]:"));
        assert!(refused("key = \"short\"").starts_with("waiting_room.key:"));
        assert!(refused("activation = \"sale\"").starts_with("waiting_room.opens_at:"));
        assert!(refused("mode = \"lottery\"").starts_with("waiting_room.opens_at:"));
        assert!(refused("opens_at = \"tomorrow\"").starts_with("waiting_room.opens_at:"));
        assert!(refused("gateways = 2").starts_with("waiting_room.key:"));
        assert!(refused("admit_per_s = 0").starts_with("waiting_room.admit_per_s:"));
        assert!(refused("skus = [\"a b\"]").starts_with("waiting_room.skus[0]:"));
    }

    #[test]
    fn probes_metrics_and_the_room_itself_are_never_guarded() {
        let file = RoomFile {
            activation: Activation::Always,
            paths: vec!["/*".into()],
            ..RoomFile::default()
        };
        let rules = file.validate(None).unwrap();
        assert!(rules.guards("/api/orders"));
        assert!(rules.guards("/"));
        for never in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/waiting-room.json",
            "/static/a.css",
        ] {
            assert!(!rules.guards(never), "{never}");
        }
        let defaults = RoomFile {
            activation: Activation::Always,
            ..RoomFile::default()
        }
        .validate(None)
        .unwrap();
        assert!(defaults.guards("/products/hot-1"));
        assert!(defaults.guards("/api/orders/17"));
        assert!(!defaults.guards("/api/products"));
        // The same secret gives the same key id on every gateway.
        let a = RoomFile::default()
            .validate(Some("a-shared-secret-key".into()))
            .unwrap();
        let b = RoomFile::default()
            .validate(Some("a-shared-secret-key".into()))
            .unwrap();
        assert_eq!(a.keys[0].id, b.keys[0].id);
        assert_eq!(a.room_id, b.room_id);
    }
}
