//! The running gateway's shared state and the operations the admin API and
//! signals trigger: add, drain and remove backends, reload the config.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Backend, State};
use crate::balance::{Backends, Change};
use crate::checker::{self, CheckClient};
use crate::config::{BackendSpec, Config, ConfigError, ConfigFile};
use crate::metrics::GatewayMetrics;
use crate::proxy::client::ClientLimits;
use crate::proxy::{Live, Proxy};
use crate::published::Published;
use crate::queue::WaitQueue;
use crate::room::{Notice, Pressure, Room};
use crate::server::Source;
use crate::traffic::{History, Window};

/// The room's notices on the event log.
fn record_notice(backends: &Backends, notice: Notice) {
    let (change, why) = match notice {
        Notice::On(why) => (Change::RoomOn, why),
        Notice::Off(why) => (Change::RoomOff, why),
        Notice::Rate(why) => (Change::RoomRate, why),
        Notice::SoldOut(why) => (Change::SoldOut, why),
        Notice::SaleEnded(why) => (Change::SaleEnded, why),
    };
    backends.record("waiting-room", change, why);
}

#[derive(Debug)]
pub(crate) struct Gateway {
    pub(crate) backends: Arc<Backends>,
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) metrics: Arc<GatewayMetrics>,
    pub(crate) admin_token: Option<String>,
    /// The file and flags a reload reads again.
    pub(crate) source: Source,
    /// The backends the config (file and flags) names, as last applied: a
    /// reload drains those it no longer names, and leaves alone those
    /// added through the admin API or found in DNS.
    configured: Mutex<Vec<String>>,
    pub(crate) shutdown_grace: Duration,
    /// `limits.max_connections`, resized by a reload.
    pub(crate) connections: crate::permits::ResizablePermits,
    /// Connections open per client (`limits.max_connections_per_client`).
    pub(crate) per_client: Arc<crate::per_client::PerClient>,
    /// The client header and idle timeouts, for connections accepted from
    /// now on (a reload changes them; the idle grace at shutdown is read
    /// only at start).
    pub(crate) client_limits: Published<ClientLimits>,
    /// `[http2]`, for the connections after the last reload.
    pub(crate) http2: Published<crate::edge::config::Http2File>,
    /// What a reload does not change, as the gateway started.
    start_only: crate::config::StartOnly,
    checks: CheckClient,
    ready: AtomicBool,
    /// Each serving thread's current second of traffic.
    windows: Mutex<Vec<Arc<Mutex<Window>>>>,
    /// The last seconds, merged.
    pub(crate) traffic: Arc<Mutex<History>>,
    /// The customers' listener's TLS, when on: reloaded with the config.
    tls: std::sync::OnceLock<Arc<crate::edge::tls::Terminator>>,
}

/// What a reload changed.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Reloaded {
    /// Backends added, replaced or drained (none without a config file).
    pub(crate) backend_changes: Option<usize>,
    /// Certificates now served (none without TLS).
    pub(crate) certificates: Option<usize>,
    /// Settings the file changed that keep their running value until a
    /// restart, as gateway.toml names them (`StartOnly`).
    pub(crate) until_restart: Vec<&'static str>,
}

/// Why a reload was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    #[error("the gateway was started without --config; there is nothing to reload")]
    NoConfigFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("certificates refused; the old ones keep serving: {0}")]
    Certificates(#[from] crate::edge::certs::CertError),
}

/// A reload that would turn TLS on or off: the listener is HTTPS or not
/// for the gateway's life.
fn tls_until_restart(change: &str) -> ReloadError {
    ReloadError::Config(ConfigError::Invalid {
        field: "tls".into(),
        problem: format!(
            "{change}, but the customers' listener keeps its protocol until a restart; \
             nothing was reloaded"
        ),
    })
}

impl Gateway {
    pub(crate) fn new(config: &Config, source: Source) -> Arc<Gateway> {
        let backends = Arc::new(Backends::default());
        let traffic = Arc::new(Mutex::new(History::default()));
        let queue = Arc::new(WaitQueue::default());
        let metrics = Arc::new(GatewayMetrics::new(
            Arc::clone(&backends),
            Arc::clone(&queue),
            Arc::clone(&traffic),
        ));
        let proxy = Arc::new(Proxy::new(
            config,
            Arc::clone(&backends),
            queue,
            Arc::clone(&metrics),
        ));
        let gateway = Arc::new(Gateway {
            backends,
            proxy,
            metrics,
            admin_token: config.admin_token.clone(),
            source,
            configured: Mutex::new(config.backends.iter().map(|b| b.name.clone()).collect()),
            shutdown_grace: config.shutdown_grace,
            connections: crate::permits::ResizablePermits::new(config.max_connections),
            per_client: Arc::default(),
            client_limits: Published::new(ClientLimits {
                header: config.client_header_timeout,
                idle: config.client_idle_timeout,
                stop_grace: config.shutdown_idle_grace,
            }),
            http2: Published::new(config.http2),
            start_only: config.start_only.clone(),
            checks: checker::check_client(),
            ready: AtomicBool::new(true),
            windows: Mutex::new(Vec::new()),
            traffic,
            tls: std::sync::OnceLock::new(),
        });
        gateway.metrics.set_ready(true);
        // Once a second, every thread's window becomes one second of history.
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                let windows = gateway
                    .windows
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let mut second = Window::default();
                for window in windows {
                    let taken =
                        std::mem::take(&mut *window.lock().unwrap_or_else(|p| p.into_inner()));
                    second.merge(&taken);
                }
                gateway
                    .traffic
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(second);
            }
        });
        // Slots are handed to waiting requests as they free up; this beat
        // also catches room that appears another way (a backend added, a
        // limit raised on another thread's sample) within 100 ms.
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                if gateway.proxy.queue.waiting() > 0 {
                    for backend in gateway.backends.snapshot().iter() {
                        backend.offer_room();
                    }
                }
            }
        });
        if let Some(room) = gateway.proxy.room.clone() {
            gateway.watch_room(&room);
        }
        // The per-client limiter keeps a cell per address it has seen:
        // forget quiet ones so a crowd of addresses cannot grow it forever.
        let weak = Arc::downgrade(&gateway);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                if let Some(limiter) = &gateway.proxy.live().limiter {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        });
        gateway
    }

    /// The waiting room's beat (every 100 ms: on or off, the rate, the
    /// admissions earned) and its watch on the stock; what changes goes on
    /// the event log, under the name `waiting-room`.
    fn watch_room(self: &Arc<Self>, room: &Arc<Room>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                let Some(room) = &gateway.proxy.room else {
                    return;
                };
                let queue = &gateway.proxy.queue;
                let now = Instant::now();
                let serving = gateway.backends.snapshot();
                let serving = serving.iter().filter(|b| b.state(now) == State::Up);
                let (in_flight, limit) = serving.fold((0, 0), |(used, limit), b| {
                    (used + b.inflight(), limit + u64::from(b.limit()))
                });
                let pressure = Pressure {
                    queued: queue.waiting(),
                    queue_refusals: queue.refusals(),
                    in_flight,
                    limit,
                };
                for notice in room.tick(pressure) {
                    record_notice(&gateway.backends, notice);
                }
            }
        });
        let backends = Arc::downgrade(&self.backends);
        crate::room::watch_stock(room, &self.backends, self.checks.clone(), move |notice| {
            if let Some(backends) = backends.upgrade() {
                record_notice(&backends, notice);
            }
        });
    }

    /// Adds and starts checking a backend; `false` if the name is taken.
    pub(crate) fn add(&self, spec: BackendSpec, fresh: bool) -> bool {
        let backend = Backend::new(
            spec,
            &self.proxy.live().settings,
            fresh,
            Arc::clone(&self.proxy.queue),
        );
        if !self.backends.add(Arc::clone(&backend)) {
            return false;
        }
        checker::watch(&backend, &self.backends, &self.proxy, self.checks.clone());
        true
    }

    /// `drain`, giving its requests twice the upstream timeout in force.
    pub(crate) fn drain_now(self: &Arc<Self>, name: &str) -> bool {
        let deadline = self.proxy.live().settings.upstream_timeout * 2;
        self.drain(name, deadline)
    }

    /// No new requests for the backend; once its in-flight requests finish
    /// (or `deadline` passes) it is removed.
    pub(crate) fn drain(self: &Arc<Self>, name: &str, deadline: Duration) -> bool {
        let Some(backend) = self.backends.get(name) else {
            return false;
        };
        backend.start_draining();
        self.backends.record(
            name,
            Change::Draining,
            format!("{} in flight", backend.inflight()),
        );
        let gateway = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            let until = Instant::now() + deadline;
            // Answers waiting on their clients still use its connections.
            let busy = || backend.inflight() + backend.waiting_on_clients() > 0;
            while busy() && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Only if it is still the same backend (not re-added meanwhile).
            if gateway
                .backends
                .get(&name)
                .is_some_and(|current| Arc::ptr_eq(&current, &backend))
            {
                gateway.backends.remove(&name);
            }
        });
        true
    }

    /// Reloads the certificates with the customers' listener.
    pub(crate) fn serve_tls(&self, terminator: Arc<crate::edge::tls::Terminator>) {
        let _ = self.tls.set(terminator);
    }

    /// Re-reads the config file, with the flags over it as at start, and
    /// the certificates it names (`[tls]`: a certificate added, removed or
    /// moved is served from now on, and new connections get its HSTS and
    /// handshake timeout); a bad one of either changes nothing. TLS cannot
    /// be turned on or off without a restart. The settings read only at
    /// start keep their running values, and the answer names those the
    /// file changed (`until_restart`).
    pub(crate) fn reload(self: &Arc<Self>) -> Result<Reloaded, ReloadError> {
        let config = match &self.source.path {
            Some(path) => {
                let mut file = ConfigFile::load(path)?;
                self.source.flags.apply(&mut file);
                Some(file.validate()?)
            }
            None if self.tls.get().is_some() => None,
            None => return Err(ReloadError::NoConfigFile),
        };
        let named = config.as_ref().map(|config| config.tls.as_ref());
        let certificates = match (self.tls.get(), named) {
            (Some(tls), Some(Some(rules))) => Some(tls.reload(Some(rules))?),
            // No config file: the files served, their contents changed.
            (Some(tls), None) => Some(tls.reload(None)?),
            (Some(_), Some(None)) => return Err(tls_until_restart("is gone")),
            (None, Some(Some(_))) => return Err(tls_until_restart("is new")),
            (None, _) => None,
        };
        let until_restart = config
            .as_ref()
            .map(|config| self.start_only.changed(&config.start_only))
            .unwrap_or_default();
        if !until_restart.is_empty() {
            tracing::warn!(
                fields = ?until_restart,
                "reloaded, but these settings keep their running values until a restart"
            );
        }
        let backend_changes = config.map(|config| self.apply(&config));
        Ok(Reloaded {
            backend_changes,
            certificates,
            until_restart,
        })
    }

    /// Swaps the settings, and adds, replaces (address or pool changed) or
    /// drains the configured backends. Backends added through the admin
    /// API or found in DNS are not the config's to drain. The settings
    /// read only at start (`StartOnly`) keep their values until restart.
    fn apply(self: &Arc<Self>, config: &crate::config::Config) -> usize {
        self.proxy
            .set_live(Live::new(config.settings.clone(), config));
        self.connections.resize(config.max_connections);
        self.proxy.admission.resize(config.max_concurrent_requests);
        self.client_limits.update(|now| ClientLimits {
            header: config.client_header_timeout,
            idle: config.client_idle_timeout,
            stop_grace: now.stop_grace,
        });
        self.http2.update(|_| config.http2);
        if let Some(room) = &self.proxy.room {
            room.retune(&config.room);
        }
        let current = self.backends.snapshot();
        for backend in current.iter() {
            backend.set_decay(config.settings.ewma_decay);
        }
        let named: Vec<String> = config.backends.iter().map(|b| b.name.clone()).collect();
        let configured = std::mem::replace(
            &mut *self.configured.lock().unwrap_or_else(|p| p.into_inner()),
            named,
        );
        let mut changes = 0;
        for backend in current.iter() {
            let wanted = config.backends.iter().find(|s| s.name == backend.name());
            let ours = configured.iter().any(|name| name == backend.name());
            if wanted.is_none() && !ours {
                continue;
            }
            if wanted != Some(&backend.spec) {
                changes += 1;
                if wanted.is_some() {
                    self.backends.remove(backend.name());
                } else {
                    self.drain(backend.name(), config.settings.upstream_timeout * 2);
                }
            }
        }
        for spec in &config.backends {
            if self.backends.get(&spec.name).is_none() {
                changes += usize::from(!current.iter().any(|b| b.name() == spec.name));
                self.add(spec.clone(), true);
            }
        }
        tracing::info!(changes, "config reloaded");
        changes
    }

    /// A new serving thread's traffic window, merged every second.
    pub(crate) fn traffic_window(&self) -> Arc<Mutex<Window>> {
        let window = Arc::new(Mutex::new(Window::default()));
        self.windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&window));
        window
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub(crate) fn stop_being_ready(&self) {
        self.ready.store(false, Ordering::Relaxed);
        self.metrics.set_ready(false);
    }
}
