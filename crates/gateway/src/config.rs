//! The gateway's settings: an optional TOML file (or `--backend` flags),
//! every field with a default, validated into [`Config`] with errors that
//! name the field. Defaults are chosen for a flash sale on one machine; the
//! README explains each against HAProxy's.

mod flags;
mod start_only;

pub use flags::Flags;
pub use start_only::StartOnly;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The file as written. Every field may be left out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// Where customers connect; `--listen` overrides. Default `127.0.0.1:8000`.
    pub listen: String,
    /// Where the admin API, `/metrics`, `/healthz` and `/readyz` answer.
    /// Default `127.0.0.1:8001`.
    pub admin_listen: String,
    /// Bearer token for `/admin`; `FLASHGUARD_ADMIN_TOKEN` also sets it.
    /// Without one the admin calls answer 403 (metrics and probes stay open).
    pub admin_token: Option<String>,
    /// One structured log line per request. Default off.
    pub access_log: bool,
    /// Let another gateway process listen on the same port (SO_REUSEPORT),
    /// so one can restart without refusing connections. Default on.
    pub reuse_port: bool,
    /// Threads serving customers, each with its own connections to the
    /// backends. 0 (the default): one per CPU the process may run on, of
    /// which as many as its CPU quota allows take new connections,
    /// followed while it runs (`crate::threads`); a number: that many,
    /// all taking connections.
    pub workers: usize,
    /// Peers whose `X-Forwarded-For` is believed (a CDN, another proxy, the
    /// drill): for their requests the client is the last address in that
    /// header not itself trusted. Default none: the client is the peer.
    pub trusted_proxies: Vec<String>,
    /// Networks whose peers may reach the shops' `/admin/*` through the
    /// customers' listener (CIDR, the peer's address, never
    /// `X-Forwarded-For`); everyone else gets 404. Default loopback:
    /// `["127.0.0.0/8", "::1/128"]`. `[]` closes it to all.
    pub admin_allow: Vec<String>,
    pub balance: BalanceFile,
    pub health: HealthFile,
    pub outlier: OutlierFile,
    pub retry: RetryFile,
    pub timeouts: TimeoutsFile,
    pub limits: LimitsFile,
    pub concurrency: ConcurrencyFile,
    pub queue: QueueFile,
    pub waiting_room: crate::room::RoomFile,
    /// The public status page (`/status`).
    pub status: StatusFile,
    #[serde(rename = "backend")]
    pub backends: Vec<BackendFile>,
    /// Backends found by resolving a name (a Kubernetes headless Service):
    /// every address it resolves to, on `port`.
    pub backend_dns: Vec<BackendDnsFile>,
    pub discovery: DiscoveryFile,
    /// HTTPS on the customers' listener; none (the default) serves plain
    /// HTTP/1.1.
    pub tls: Option<crate::edge::config::TlsFile>,
    pub http2: crate::edge::config::Http2File,
}

/// `[[backend_dns]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendDnsFile {
    /// The name resolved, e.g. `shops.flashguard.svc.cluster.local`.
    pub name: String,
    pub port: u16,
    /// `primary` (default) or `backup`.
    #[serde(default)]
    pub pool: Pool,
}

/// `[discovery]`: how `backend_dns` names are resolved.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryFile {
    /// A DNS server, `IP:PORT`; default the system's resolver
    /// (`/etc/resolv.conf`).
    pub dns_server: Option<String>,
    /// Resolved again this often, in ms. Default 5000.
    pub interval_ms: u64,
}

impl Default for DiscoveryFile {
    fn default() -> Self {
        DiscoveryFile {
            dns_server: None,
            interval_ms: 5_000,
        }
    }
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            listen: "127.0.0.1:8000".into(),
            admin_listen: "127.0.0.1:8001".into(),
            admin_token: None,
            access_log: false,
            reuse_port: true,
            workers: 0,
            trusted_proxies: Vec::new(),
            admin_allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            balance: BalanceFile::default(),
            health: HealthFile::default(),
            outlier: OutlierFile::default(),
            retry: RetryFile::default(),
            timeouts: TimeoutsFile::default(),
            limits: LimitsFile::default(),
            concurrency: ConcurrencyFile::default(),
            queue: QueueFile::default(),
            waiting_room: crate::room::RoomFile::default(),
            status: StatusFile::default(),
            backends: Vec::new(),
            backend_dns: Vec::new(),
            discovery: DiscoveryFile::default(),
            tls: None,
            http2: crate::edge::config::Http2File::default(),
        }
    }
}

/// `[balance]`: how a backend is chosen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BalanceFile {
    /// `peak-ewma` (power of two choices on peak-EWMA latency × in-flight)
    /// or `round-robin`. Default `peak-ewma`.
    pub policy: Policy,
    /// How fast the latency estimate forgets, in ms. Default 10000.
    pub ewma_decay_ms: u64,
    /// A backend that comes back gets a growing share of traffic over this
    /// window, in ms; 0 turns slow start off. Default 10000.
    pub slow_start_ms: u64,
    /// Orders for one item go to one shop (the item's owner by rendezvous
    /// hashing on its SKU over the primaries that are up), so each item's
    /// orders are batched in one place; browsing and everything else is
    /// balanced as before. Default true.
    pub sku_affinity: bool,
}

impl Default for BalanceFile {
    fn default() -> Self {
        BalanceFile {
            policy: Policy::PeakEwma,
            ewma_decay_ms: 10_000,
            slow_start_ms: 10_000,
            sku_affinity: true,
        }
    }
}

/// `[health]`: active checks of every backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthFile {
    /// Path asked with GET; 2xx means ready. Default `/readyz`.
    pub path: String,
    /// Default 250 ms. Checks start on this beat (a check that waits out its
    /// timeout delays the next one), so with `fall = 2` a dead backend is
    /// down within about half a second, a hung one within about one second.
    pub interval_ms: u64,
    /// Default 500 ms.
    pub timeout_ms: u64,
    /// Successes in a row that bring a down backend up. Default 2.
    pub rise: u32,
    /// Failures in a row that take an up backend down. Default 2. A check
    /// that times out counts only while the backend is also silent (see
    /// `hung_after_ms`): a busy shop that keeps answering is not down.
    pub fall: u32,
    /// A backend is hung when it has sent no byte on any of its
    /// connections for this long, in ms: only then do timed-out checks and
    /// connects count against it. Refused connections always do. Default 2000.
    pub hung_after_ms: u64,
}

impl Default for HealthFile {
    fn default() -> Self {
        HealthFile {
            path: "/readyz".into(),
            interval_ms: 250,
            timeout_ms: 500,
            rise: 2,
            fall: 2,
            hung_after_ms: 2_000,
        }
    }
}

/// `[outlier]`: passive detection from live traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierFile {
    /// Connect failures in a row that eject a backend. Default 1: a refused
    /// connection is unambiguous.
    pub consecutive_connect_failures: u32,
    /// 5xx answers in a row (other than 503, which a shop sends on purpose
    /// when it sheds load) that eject a backend. Default 3.
    pub consecutive_5xx: u32,
    /// First ejection, in ms; each further one doubles it. Default 1000.
    pub base_ejection_ms: u64,
    /// Longest ejection, in ms. Default 30000.
    pub max_ejection_ms: u64,
}

impl Default for OutlierFile {
    fn default() -> Self {
        OutlierFile {
            consecutive_connect_failures: 1,
            consecutive_5xx: 3,
            base_ejection_ms: 1_000,
            max_ejection_ms: 30_000,
        }
    }
}

/// `[retry]`: the safe retry rule and its budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryFile {
    /// Tries per request, the first included, each on another backend. Default 3.
    pub attempts: u32,
    /// Retries allowed as a share of requests, in percent. Default 20.
    pub budget_percent: u32,
    /// Retries allowed per second whatever the traffic. Default 10.
    pub budget_min_per_s: u32,
    /// Request bodies up to this size are buffered so they can be sent
    /// again; larger ones stream and are never retried. Default 65536.
    pub buffer_bytes: usize,
}

impl Default for RetryFile {
    fn default() -> Self {
        RetryFile {
            attempts: 3,
            budget_percent: 20,
            budget_min_per_s: 10,
            buffer_bytes: 64 * 1024,
        }
    }
}

/// `[timeouts]`, all in ms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsFile {
    /// Connecting to a backend. Default 250.
    pub connect_ms: u64,
    /// From sending a request to the backend's response headers, and the
    /// longest pause within its body once it comes. Default 5000.
    pub upstream_ms: u64,
    /// A client that takes none of its answer for this long is cut off,
    /// and the backend's slot it held is freed (a client that stops
    /// reading mid-answer would otherwise hold it for as long as its
    /// connection lives). Default 30000.
    pub client_send_ms: u64,
    /// A client's request head must arrive whole within this of its first
    /// byte (a slowloris client is cut off). Default 10000.
    pub client_header_ms: u64,
    /// A keep-alive client connection with no request for this long is
    /// closed. Default 5000. Answers over HTTP/1.1 tell clients a whole
    /// second less (`keep-alive: timeout=4` by default; nothing under
    /// 2000), so that those that read it stop reusing the connection first.
    pub client_idle_ms: u64,
    /// On SIGTERM, in-flight requests get this long to finish. Default 10000.
    pub shutdown_grace_ms: u64,
    /// On SIGTERM, an idle keep-alive connection stays open this long, so a
    /// request its client already sent is answered (with `Connection:
    /// close`) rather than cut off. Default 1000.
    pub shutdown_idle_grace_ms: u64,
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        TimeoutsFile {
            connect_ms: 250,
            upstream_ms: 5_000,
            client_send_ms: 30_000,
            client_header_ms: 10_000,
            client_idle_ms: 5_000,
            shutdown_grace_ms: 10_000,
            shutdown_idle_grace_ms: 1_000,
        }
    }
}

/// `[limits]`: what the gateway takes on before it sheds load.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    /// Largest request body, in bytes. Default 1048576.
    pub max_body_bytes: usize,
    /// Requests in the gateway at once, waiting in the queue included;
    /// more are answered 503 at once. Default 10000 (one per connection).
    pub max_concurrent_requests: usize,
    /// Client connections; more wait in the kernel's accept queue. Default 10000.
    pub max_connections: usize,
    /// `Retry-After` on the gateway's own 503 answers, and on the waiting
    /// room's for a customer let in whom the queue would have refused, in
    /// s. Default 1.
    pub retry_after_secs: u64,
    /// Requests per second one client address may send, answered 429
    /// beyond; 0 (the default) turns the limit off. A flash crowd shares
    /// few addresses behind carrier NAT, so set it with care.
    pub per_client_rps: u32,
    /// Requests a client may send at once above its rate. Default 50.
    pub per_client_burst: u32,
    /// Connections one client address (an IPv6 /64) may hold open at
    /// once; more are closed as soon as they are accepted. 0 (the
    /// default) turns the limit off: behind carrier NAT a flash crowd
    /// shares few addresses, so set it with care. `trusted_proxies` are
    /// never counted.
    pub max_connections_per_client: u32,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_body_bytes: 1024 * 1024,
            max_concurrent_requests: 10_000,
            max_connections: 10_000,
            retry_after_secs: 1,
            per_client_rps: 0,
            per_client_burst: 50,
            max_connections_per_client: 0,
        }
    }
}

/// `[concurrency]`: how many requests each backend is given at once.
/// When every backend is at its limit, requests wait in the queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencyFile {
    /// The limit follows each backend's latency, 503s and timeouts (the
    /// gradient limiter, `backend::limit`); false keeps `initial`. Default true.
    pub adaptive: bool,
    /// Limit per backend at start. Default 32.
    pub initial: u32,
    /// Default 4.
    pub min: u32,
    /// Default 64: measured on three shops over one SQLite file, 32 or 64
    /// at once each carried 5.5–6k orders/s, 256 each only 3.5k (bigger
    /// batches hold the database's lock longer), BENCHMARKS.md.
    pub max: u32,
    /// Answers per backend that may wait on their clients without holding
    /// a slot (`Backend::wait_on_client`): each keeps a connection to the
    /// backend (a file descriptor at both ends), so this bounds them. Past
    /// it, an answer waiting on its client keeps its slot. 0: every answer
    /// keeps its slot until it is relayed whole. Default 256.
    pub max_waiting_on_clients: u32,
}

impl Default for ConcurrencyFile {
    fn default() -> Self {
        ConcurrencyFile {
            adaptive: true,
            initial: 32,
            min: 4,
            max: 64,
            max_waiting_on_clients: 256,
        }
    }
}

/// `[queue]`: where requests wait while every backend is at its limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueFile {
    /// Requests waiting at most; more are answered 503 `queue_full` at
    /// once. Default 10000.
    pub max_waiting: usize,
    /// Longest wait, in ms; then 503 `queue_timeout` with `Retry-After`.
    /// Default 5000.
    pub timeout_ms: u64,
}

impl Default for QueueFile {
    fn default() -> Self {
        QueueFile {
            max_waiting: 10_000,
            timeout_ms: 5_000,
        }
    }
}

/// `[[backend]]`: one shop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    pub name: String,
    /// `IP:PORT`.
    pub addr: String,
    /// `primary` (default) or `backup`.
    #[serde(default)]
    pub pool: Pool,
}

/// Which pool a backend belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// Takes traffic.
    #[default]
    Primary,
    /// Takes traffic only when no primary can.
    Backup,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Primary => "primary",
            Pool::Backup => "backup",
        }
    }
}

/// The balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Power of two choices on peak-EWMA latency × requests in flight.
    PeakEwma,
    /// Weighted round robin (weights from slow start).
    RoundRobin,
}

/// A backend's concurrency limit: its bounds and start (`[concurrency]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRules {
    pub adaptive: bool,
    pub initial: u32,
    pub min: u32,
    pub max: u32,
    pub max_waiting_on_clients: u32,
}

/// A backend as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub name: String,
    pub addr: SocketAddr,
    pub pool: Pool,
}

/// Settings that a reload may change while the gateway runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    pub ewma_decay: Duration,
    pub slow_start: Duration,
    pub sku_affinity: bool,
    pub health_path: String,
    pub health_interval: Duration,
    pub health_timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub hung_after: Duration,
    pub eject_after_connect_failures: u32,
    pub eject_after_5xx: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub attempts: u32,
    pub buffer_bytes: usize,
    pub upstream_timeout: Duration,
    /// How long a new connection to a backend may take.
    pub connect_timeout: Duration,
    /// How long a client may take none of its answer.
    pub client_send_timeout: Duration,
    pub max_body_bytes: usize,
    pub retry_after_secs: u64,
    pub per_client_rps: u32,
    pub per_client_burst: u32,
    pub max_connections_per_client: u32,
    pub access_log: bool,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub admin_allow: Vec<ipnet::IpNet>,
    pub limit: LimitRules,
    pub queue_max_waiting: usize,
    pub queue_timeout: Duration,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub admin_listen: String,
    pub admin_token: Option<String>,
    pub reuse_port: bool,
    pub workers: usize,
    /// `workers` was left at 0: the threads that accept follow the CPU
    /// quota.
    pub follow_cpu_quota: bool,
    pub settings: Settings,
    pub budget_percent: u32,
    pub budget_min_per_s: u32,
    pub client_header_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub shutdown_idle_grace: Duration,
    pub max_concurrent_requests: usize,
    pub max_connections: usize,
    pub room: crate::room::RoomRules,
    /// The status page's title, when it is served.
    pub status_title: Option<String>,
    /// Where the status page is served apart from customers' listener.
    pub status_listen: Option<String>,
    pub backends: Vec<BackendSpec>,
    pub backend_dns: Vec<BackendDnsFile>,
    /// None: the system's resolver.
    pub dns_server: Option<SocketAddr>,
    pub dns_interval: Duration,
    pub tls: Option<crate::edge::config::TlsRules>,
    pub http2: crate::edge::config::Http2File,
    /// What a reload does not change, as given.
    pub start_only: StartOnly,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] flashguard_telemetry::ConfigFileError),
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}

fn refuse(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Refuses `field` unless `ok`.
fn require(ok: bool, field: &str, problem: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(refuse(field, problem))
    }
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        Ok(flashguard_telemetry::read_toml(path)?)
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let start_only = StartOnly::of(&self);
        let (b, h, o, r, t, l) = (
            &self.balance,
            &self.health,
            &self.outlier,
            &self.retry,
            &self.timeouts,
            &self.limits,
        );
        let (c, q) = (&self.concurrency, &self.queue);
        require(c.min >= 1, "concurrency.min", "must be at least 1")?;
        require(
            c.max >= c.min,
            "concurrency.max",
            "must be at least concurrency.min",
        )?;
        require(
            (c.min..=c.max).contains(&c.initial),
            "concurrency.initial",
            "must be between concurrency.min and concurrency.max",
        )?;
        require(q.timeout_ms >= 1, "queue.timeout_ms", "must be at least 1")?;
        require(
            h.hung_after_ms >= 100,
            "health.hung_after_ms",
            "must be at least 100",
        )?;
        require(
            b.ewma_decay_ms >= 100,
            "balance.ewma_decay_ms",
            "must be at least 100",
        )?;
        require(h.path.starts_with('/'), "health.path", "must start with /")?;
        require(
            h.interval_ms >= 10,
            "health.interval_ms",
            "must be at least 10",
        )?;
        require(
            h.timeout_ms >= 10,
            "health.timeout_ms",
            "must be at least 10",
        )?;
        require(h.rise >= 1, "health.rise", "must be at least 1")?;
        require(h.fall >= 1, "health.fall", "must be at least 1")?;
        require(
            o.consecutive_connect_failures >= 1,
            "outlier.consecutive_connect_failures",
            "must be at least 1",
        )?;
        require(
            o.consecutive_5xx >= 1,
            "outlier.consecutive_5xx",
            "must be at least 1",
        )?;
        require(
            o.base_ejection_ms >= 10,
            "outlier.base_ejection_ms",
            "must be at least 10",
        )?;
        require(
            o.max_ejection_ms >= o.base_ejection_ms,
            "outlier.max_ejection_ms",
            "must be at least outlier.base_ejection_ms",
        )?;
        require(
            (1..=10).contains(&r.attempts),
            "retry.attempts",
            "must be 1 to 10",
        )?;
        require(
            r.budget_percent <= 1000,
            "retry.budget_percent",
            "must be at most 1000",
        )?;
        require(
            t.connect_ms >= 1,
            "timeouts.connect_ms",
            "must be at least 1",
        )?;
        require(
            t.upstream_ms >= 1,
            "timeouts.upstream_ms",
            "must be at least 1",
        )?;
        require(
            (100..=3_600_000).contains(&t.client_send_ms),
            "timeouts.client_send_ms",
            "must be between 100 and 3600000 (an hour)",
        )?;
        require(
            t.client_header_ms >= 100,
            "timeouts.client_header_ms",
            "must be at least 100",
        )?;
        require(
            (100..=3_600_000).contains(&t.client_idle_ms),
            "timeouts.client_idle_ms",
            "must be between 100 and 3600000 (an hour)",
        )?;
        require(
            t.shutdown_idle_grace_ms <= t.shutdown_grace_ms,
            "timeouts.shutdown_idle_grace_ms",
            "must be at most timeouts.shutdown_grace_ms",
        )?;
        require(
            l.max_body_bytes >= 1,
            "limits.max_body_bytes",
            "must be at least 1",
        )?;
        require(
            r.buffer_bytes <= l.max_body_bytes,
            "retry.buffer_bytes",
            "must be at most limits.max_body_bytes",
        )?;
        require(
            l.max_concurrent_requests >= 1,
            "limits.max_concurrent_requests",
            "must be at least 1",
        )?;
        require(
            l.max_connections >= 1,
            "limits.max_connections",
            "must be at least 1",
        )?;
        let mut trusted_proxies = Vec::with_capacity(self.trusted_proxies.len());
        for (i, text) in self.trusted_proxies.iter().enumerate() {
            let ip = text.parse().map_err(|_| {
                refuse(
                    format!("trusted_proxies[{i}]"),
                    format!("{text:?} is not an IP address"),
                )
            })?;
            trusted_proxies.push(ip);
        }
        let mut admin_allow = Vec::with_capacity(self.admin_allow.len());
        for (i, text) in self.admin_allow.iter().enumerate() {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    refuse(
                        format!("admin_allow[{i}]"),
                        format!("{text:?} is not a network (CIDR) or an address"),
                    )
                })?;
            admin_allow.push(net);
        }
        let mut backends = Vec::with_capacity(self.backends.len());
        for (i, backend) in self.backends.iter().enumerate() {
            let spec = backend
                .to_spec()
                .map_err(|(field, problem)| refuse(format!("backend[{i}].{field}"), problem))?;
            if backends.iter().any(|b: &BackendSpec| b.name == spec.name) {
                return Err(refuse(
                    format!("backend[{i}].name"),
                    format!("{} is used by an earlier backend", spec.name),
                ));
            }
            backends.push(spec);
        }
        for (i, dns) in self.backend_dns.iter().enumerate() {
            let host = dns.name.trim_end_matches('.');
            let valid = !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !valid {
                return Err(refuse(
                    format!("backend_dns[{i}].name"),
                    format!("{:?} is not a DNS name", dns.name),
                ));
            }
            if dns.port == 0 {
                return Err(refuse(
                    format!("backend_dns[{i}].port"),
                    "must be 1 to 65535",
                ));
            }
        }
        let dns_server =
            match &self.discovery.dns_server {
                None => None,
                Some(text) => Some(text.parse::<SocketAddr>().map_err(|_| {
                    refuse("discovery.dns_server", format!("{text:?} is not IP:PORT"))
                })?),
            };
        if !(100..=3_600_000).contains(&self.discovery.interval_ms) {
            return Err(refuse("discovery.interval_ms", "must be 100 to 3600000"));
        }
        let room_key = std::env::var("FLASHGUARD_ROOM_KEY").ok();
        let room = self.waiting_room.validate(room_key)?;
        let ms = Duration::from_millis;
        Ok(Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            admin_token: self.admin_token.filter(|token| !token.trim().is_empty()),
            reuse_port: self.reuse_port,
            workers: match self.workers {
                0 => crate::threads::cpus_to_run_on(),
                n => n,
            },
            follow_cpu_quota: self.workers == 0,
            settings: Settings {
                policy: b.policy,
                ewma_decay: ms(b.ewma_decay_ms),
                slow_start: ms(b.slow_start_ms),
                sku_affinity: b.sku_affinity,
                health_path: h.path.clone(),
                health_interval: ms(h.interval_ms),
                health_timeout: ms(h.timeout_ms),
                rise: h.rise,
                fall: h.fall,
                hung_after: ms(h.hung_after_ms),
                eject_after_connect_failures: o.consecutive_connect_failures,
                eject_after_5xx: o.consecutive_5xx,
                base_ejection: ms(o.base_ejection_ms),
                max_ejection: ms(o.max_ejection_ms),
                attempts: r.attempts,
                buffer_bytes: r.buffer_bytes,
                upstream_timeout: ms(t.upstream_ms),
                connect_timeout: ms(t.connect_ms),
                client_send_timeout: ms(t.client_send_ms),
                max_body_bytes: l.max_body_bytes,
                retry_after_secs: l.retry_after_secs,
                per_client_rps: l.per_client_rps,
                per_client_burst: l.per_client_burst,
                max_connections_per_client: l.max_connections_per_client,
                access_log: self.access_log,
                trusted_proxies,
                admin_allow,
                limit: LimitRules {
                    adaptive: c.adaptive,
                    initial: c.initial,
                    min: c.min,
                    max: c.max,
                    max_waiting_on_clients: c.max_waiting_on_clients,
                },
                queue_max_waiting: q.max_waiting,
                queue_timeout: ms(q.timeout_ms),
            },
            budget_percent: r.budget_percent,
            budget_min_per_s: r.budget_min_per_s,
            client_header_timeout: ms(t.client_header_ms),
            client_idle_timeout: ms(t.client_idle_ms),
            shutdown_grace: ms(t.shutdown_grace_ms),
            shutdown_idle_grace: ms(t.shutdown_idle_grace_ms),
            max_concurrent_requests: l.max_concurrent_requests,
            max_connections: l.max_connections,
            room,
            status_title: self.status.enabled.then(|| self.status.title.clone()),
            status_listen: self.status.listen.clone(),
            backends,
            backend_dns: self.backend_dns.clone(),
            dns_server,
            dns_interval: ms(self.discovery.interval_ms),
            tls: self.tls.as_ref().map(|tls| tls.validate()).transpose()?,
            http2: self.http2.validate()?,
            start_only,
        })
    }
}

/// `[status]`: the public status page, served by the gateway so that it
/// answers when every shop is dead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusFile {
    /// Serve `/status`, `/status.json`, `/status/feed.atom` and
    /// `/api/v2/summary.json` on the customers' listener. Default true.
    pub enabled: bool,
    /// The page's title. Default `Shop`.
    pub title: String,
    /// Also serve them here, apart from customers' traffic (as Statuspage
    /// hosts pages apart from the site). Default none.
    pub listen: Option<String>,
}

impl Default for StatusFile {
    fn default() -> Self {
        StatusFile {
            enabled: true,
            title: "Shop".into(),
            listen: None,
        }
    }
}

impl BackendFile {
    /// The spec, or the field that is wrong and why.
    pub fn to_spec(&self) -> Result<BackendSpec, (&'static str, String)> {
        let name = self.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err((
                "name",
                "must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        let addr = self
            .addr
            .parse::<SocketAddr>()
            .map_err(|_| ("addr", format!("{:?} is not IP:PORT", self.addr)))?;
        Ok(BackendSpec {
            name: name.to_string(),
            addr,
            pool: self.pool,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        ConfigFile::default()
            .validate()
            .expect("the built-in defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why `text` is refused, whether as it is parsed (a choice that is
    /// not one of its values) or as it is validated.
    fn refused(text: &str) -> String {
        match flashguard_telemetry::parse_toml::<ConfigFile>(text) {
            Ok(file) => file.validate().expect_err("must be refused").to_string(),
            Err(err) => err,
        }
    }

    #[test]
    fn defaults_detect_a_dead_backend_within_about_a_second_and_a_hung_one_within_three() {
        let config = Config::default();
        let s = &config.settings;
        // Refused: one beat per check.
        assert!(s.health_interval * s.fall <= Duration::from_millis(600));
        // Hung: silent for hung_after, then each check waits its timeout.
        let hung = s.hung_after + s.health_interval.max(s.health_timeout) * s.fall;
        assert!(hung <= Duration::from_millis(3_100), "{hung:?}");
    }

    #[test]
    fn errors_name_the_field() {
        assert!(refused("[balance]\npolicy = \"random\"").starts_with("balance.policy:"));
        assert!(refused("[retry]\nattempts = 0").starts_with("retry.attempts:"));
        assert!(refused("[timeouts]\nclient_idle_ms = 20").starts_with("timeouts.client_idle_ms:"));
        assert!(refused("[timeouts]\nclient_send_ms = 20").starts_with("timeouts.client_send_ms:"));
        let text = "[[backend]]\nname = \"a\"\naddr = \"127.0.0.1:1\"\n\
                    [[backend]]\nname = \"b\"\naddr = \"localhost\"";
        assert!(
            refused(text).starts_with("backend[1].addr:"),
            "{}",
            refused(text)
        );
        let text = "[[backend]]\nname = \"a\"\naddr = \"127.0.0.1:1\"\n\
                    [[backend]]\nname = \"a\"\naddr = \"127.0.0.1:2\"";
        assert!(refused(text).starts_with("backend[1].name:"));
        assert!(refused("trusted_proxies = [\"cdn\"]").starts_with("trusted_proxies[0]:"));
        let text = "[[backend]]\nname = \"a\"\naddr = \"127.0.0.1:1\"\npool = \"spare\"";
        assert!(refused(text).starts_with("backend[0].pool:"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<ConfigFile>("[health]\nintervall_ms = 5").unwrap_err();
        assert!(err.to_string().contains("intervall_ms"), "{err}");
    }
}
