//! Accepting customers: listeners (with SO_REUSEPORT), the connection limit,
//! client timeouts, the admin server, SIGHUP reloads and graceful shutdown.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::admin;
use crate::config::Config;
use crate::edge::handshakes::{HandshakeLine, HandshakeTurns};
use crate::edge::tls::Terminator;
use crate::edge::{ConnectionRules, Edge};
use crate::gateway::Gateway;
use crate::per_client::{Counted, ShareHeld};
use crate::proxy::{ThreadParts, UpstreamPool};
use crate::threads::{Accepting, Closing};

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("admin server: {0}")]
    Admin(std::io::Error),
    #[error("starting the serving threads: {0}")]
    Worker(std::io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] crate::edge::certs::CertError),
}

/// Binds `addr`, with SO_REUSEPORT when asked so several gateway processes
/// can share the port.
pub fn bind(addr: &str, reuse_port: bool) -> Result<TcpListener, GatewayError> {
    let failed = |source| GatewayError::Bind {
        addr: addr.to_string(),
        source,
    };
    let resolved: SocketAddr = addr
        .to_socket_addrs()
        .map_err(failed)?
        .next()
        .ok_or_else(|| failed(std::io::Error::other("the address resolves to nothing")))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(resolved),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(failed)?;
    socket.set_reuse_address(true).map_err(failed)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(failed)?;
    }
    socket.set_nonblocking(true).map_err(failed)?;
    socket.bind(&resolved.into()).map_err(failed)?;
    socket.listen(4096).map_err(failed)?;
    TcpListener::from_std(socket.into()).map_err(failed)
}

/// The gateway's two sockets.
#[derive(Debug)]
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
    /// The status page apart from customers' traffic (`[status] listen`).
    pub status: Option<TcpListener>,
    /// Plain HTTP redirected to HTTPS (`[tls] redirect_listen`).
    pub redirect: Option<TcpListener>,
}

/// Where the gateway's config came from, to be read again on a reload:
/// the file, and the flags set over it.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub path: Option<PathBuf>,
    pub flags: crate::config::Flags,
}

/// Reads and checks the configured certificates without serving them, so
/// a bad file stops the gateway before it binds (and `--check-config`
/// finds it).
pub fn check_tls(config: &Config) -> Result<(), GatewayError> {
    match &config.tls {
        Some(tls) => check_certificates(tls),
        None => Ok(()),
    }
}

/// Reads and checks the certificates `tls` names: each key matches its
/// chain, every chain parses and none has expired. What a stack checks
/// before it starts a gateway with them.
pub fn check_certificates(tls: &crate::edge::config::TlsRules) -> Result<(), GatewayError> {
    let provider = crate::edge::tls::provider();
    crate::edge::certs::CertSet::load(&tls.certificates, &provider)?;
    if let Some(admin) = &tls.admin {
        crate::edge::tls::admin_config(admin)?;
    }
    Ok(())
}

/// Serves until `shutdown` completes: then `/readyz` turns 503, no new
/// connections are accepted, and in-flight requests get the grace period.
///
/// Customers are served by `workers` threads, each a single-threaded
/// runtime with its own accept loop and its own pool of backend
/// connections, so a request never hops between threads on its way
/// through (the hops cost more than the proxying on a small machine). Admin,
/// health checks and draining run on the caller's runtime.
pub async fn run(
    listeners: Listeners,
    config: Config,
    source: Source,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let gateway = Gateway::new(&config, source);
    let terminator = match &config.tls {
        Some(rules) => {
            let terminator = Arc::new(Terminator::new(
                rules.clone(),
                Arc::clone(&gateway.metrics.edge),
            )?);
            gateway.serve_tls(Arc::clone(&terminator));
            tokio::spawn(crate::edge::tls::watch(Arc::clone(&terminator)));
            Some(terminator)
        }
        None => None,
    };
    let admin_tls = match config.tls.as_ref().and_then(|tls| tls.admin.as_ref()) {
        Some(admin) => Some(crate::edge::tls::admin_config(admin)?),
        None => None,
    };
    let edge = Edge::new(terminator, Arc::clone(&gateway.metrics.edge));
    for spec in &config.backends {
        gateway.add(spec.clone(), false);
    }
    crate::discovery::start(&gateway, &config);
    // Before the admin listener serves: its first scrape shows the threads
    // that accept (it read 0 when a test scraped before this ran).
    let accepting_gauge = gateway.metrics.serving_threads_accepting.clone();
    let accepting = if config.follow_cpu_quota {
        Accepting::following_quota(config.workers, accepting_gauge)
    } else {
        Accepting::all(config.workers, &accepting_gauge)
    };
    if gateway.source.path.is_some() || config.tls.is_some() {
        tokio::spawn(reload_on_sighup(Arc::clone(&gateway)));
    }
    // Stopping has two steps: listeners close first, so no new connection
    // lands on a gateway that is going; only then are open connections
    // told to close (a client that reconnects then reaches the gateway
    // that stays, through the shared port).
    let (stop_accepting, accepting_stopped) = watch::channel(false);
    let (stop, stopping) = watch::channel(false);
    let (listening, mut listeners_closed) = mpsc::channel::<()>(1);
    if let Some(listener) = listeners.status {
        let app = admin::status_router(Arc::clone(&gateway));
        let mut status_stopping = stopping.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = status_stopping.wait_for(|stop| *stop).await;
                })
                .await
        });
    }
    if let Some(listener) = listeners.redirect {
        let https_port = listeners.proxy.local_addr().map_or(443, |addr| addr.port());
        let app = crate::edge::redirect::router(https_port, Arc::clone(&gateway.metrics.edge));
        let mut redirect_stopping = stopping.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = redirect_stopping.wait_for(|stop| *stop).await;
                })
                .await
        });
    }
    let admin_app = admin::router(Arc::clone(&gateway));
    let mut admin_stopping = stopping.clone();
    let admin_stopped = async move {
        let _ = admin_stopping.wait_for(|stop| *stop).await;
    };
    let admin = match admin_tls {
        None => tokio::spawn(async move {
            axum::serve(
                listeners.admin,
                admin_app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(admin_stopped)
            .await
        }),
        Some(tls) => {
            use axum::serve::ListenerExt;
            let listener = crate::edge::admin::TlsListener::new(
                listeners.admin,
                tls,
                Arc::clone(&gateway.metrics.edge),
            )
            .tap_io(|_| {});
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    admin_app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(admin_stopped)
                .await
            })
        }
    };

    let proxy_listener = listeners.proxy.into_std().map_err(GatewayError::Worker)?;
    let (inboxes, mut handed_over): (Vec<_>, Vec<_>) = (0..config.workers)
        .map(|_| mpsc::unbounded_channel())
        .unzip();
    let worker = Worker {
        gateway: Arc::clone(&gateway),
        accepting: accepting.clone(),
        spread: Arc::new(Spread {
            open: (0..config.workers)
                .map(|n| gateway.metrics.client_connections(n))
                .collect(),
            inboxes,
        }),
        handshake_line: Arc::new(HandshakeLine::new(accepting.clone(), &gateway.metrics.edge)),
        accepting_stopped,
        stopping,
        listening,
        edge,
    };
    let mut threads = Vec::with_capacity(config.workers);
    for (n, inbox) in handed_over.drain(..).enumerate() {
        let listener = proxy_listener.try_clone().map_err(GatewayError::Worker)?;
        let worker = worker.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gateway-{n}"))
            .spawn(move || worker.serve(n, listener, inbox))
            .map_err(GatewayError::Worker)?;
        threads.push(thread);
    }
    drop(proxy_listener);
    drop(worker);

    shutdown.await;
    tracing::info!("shutdown requested; not ready, finishing in-flight requests");
    gateway.stop_being_ready();
    let _ = stop_accepting.send(true);
    // Every serving thread has closed its listener once none holds a sender.
    let _ = listeners_closed.recv().await;
    let _ = stop.send(true);
    let deadline = Instant::now() + config.shutdown_grace;
    while gateway.connections.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Workers stop on their own once their connections are closed or
    // the same grace period is over.
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
    match admin.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(GatewayError::Admin(err)),
        Err(_) => Ok(()),
    }
}

/// A connection accepted by one serving thread for another.
struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// How connections are spread over the serving threads. Whichever thread
/// the kernel wakes to accept a connection gives it to the thread with the
/// fewest open ones (as HAProxy's listeners do): clients keep their
/// connections for thousands of requests, so an uneven first deal would
/// leave one thread saturated while the other idles, for good.
struct Spread {
    /// Connections open per thread; also exported as
    /// `gateway_client_connections`.
    open: Vec<prometheus_client::metrics::gauge::Gauge>,
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
}

impl Spread {
    /// The thread that should serve the next connection, of the first
    /// `active`, counted as serving it from now on.
    fn choose(&self, accepting: usize, active: usize) -> usize {
        let load = |n: usize| self.open[n].get();
        let least = (0..active.min(self.open.len()))
            .min_by_key(|&n| load(n))
            .unwrap_or(accepting);
        let chosen = if accepting >= active || load(least) < load(accepting) {
            least
        } else {
            accepting
        };
        self.open[chosen].inc();
        chosen
    }

    fn closed(&self, thread: usize) {
        self.open[thread].dec();
    }
}

/// What every serving thread shares.
#[derive(Clone)]
struct Worker {
    gateway: Arc<Gateway>,
    /// Which threads take new connections now.
    accepting: Accepting,
    spread: Arc<Spread>,
    /// Client hellos waiting for a handshake turn, on every thread.
    handshake_line: Arc<HandshakeLine>,
    /// Turns true when the listeners must close.
    accepting_stopped: watch::Receiver<bool>,
    /// Turns true when open connections must close (wakes idle ones).
    stopping: watch::Receiver<bool>,
    /// Held while this thread's listener is open.
    listening: mpsc::Sender<()>,
    /// TLS and HTTP/2, when configured.
    edge: Edge,
}

impl Worker {
    fn serve(
        self,
        me: usize,
        listener: std::net::TcpListener,
        inbox: mpsc::UnboundedReceiver<Handoff>,
    ) {
        crate::queue::serving_thread(me);
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(error = %err, "a serving thread could not start its runtime");
                return;
            }
        };
        runtime.block_on(self.accept_loop(me, listener, inbox));
    }

    async fn accept_loop(
        self,
        me: usize,
        listener: std::net::TcpListener,
        mut inbox: mpsc::UnboundedReceiver<Handoff>,
    ) {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!(error = %err, "a serving thread could not use the listener");
                return;
            }
        };
        let thread = ThreadParts {
            upstream: Arc::new(UpstreamPool::new()),
            handshakes: Arc::new(HandshakeTurns::new(Arc::clone(&self.handshake_line))),
            traffic: self.gateway.traffic_window(),
        };
        // Ends with this thread's runtime.
        tokio::spawn(crate::stall::watch(
            self.gateway.metrics.serving_stalls.clone(),
        ));
        let mut open = tokio::task::JoinSet::new();
        let mut accepting = self.accepting.clone();
        let closing = Closing::of_thread(me, accepting.clone(), self.stopping.clone());
        loop {
            // A connection handed over was counted for this thread by the
            // one that accepted it.
            let (stream, peer, permit) = tokio::select! {
                handed = inbox.recv() => match handed {
                    Some(Handoff { stream, peer, permit }) => match TcpStream::from_std(stream) {
                        Ok(stream) => (stream, peer, permit),
                        Err(err) => {
                            tracing::warn!(error = %err, "a handed-over connection could not be served");
                            self.spread.closed(me);
                            continue;
                        }
                    },
                    None => break,
                },
                // Not while this thread is beyond the CPU quota's share,
                // nor while the TLS handshakes' line is full.
                accepted = async {
                    self.handshake_line.room().await;
                    self.accept(&listener, (&mut accepting, me)).await
                } => match accepted {
                    Some((stream, peer, permit)) => {
                        let chosen = self.spread.choose(me, accepting.now());
                        if chosen != me {
                            self.hand_over(chosen, stream, peer, permit);
                            continue;
                        }
                        (stream, peer, permit)
                    }
                    None => break,
                },
            };
            let Ok(counted) = self.count_client(peer) else {
                // Closed at once: its client holds its share.
                drop(stream);
                self.spread.closed(me);
                continue;
            };
            let proxy = Arc::clone(&self.gateway.proxy);
            let closing = closing.clone();
            // As the config reads when the connection came.
            let rules = ConnectionRules {
                limits: *self.gateway.client_limits.get(),
                http2: *self.gateway.http2.get(),
            };
            let thread = thread.clone();
            let spread = Arc::clone(&self.spread);
            let edge = self.edge.clone();
            open.spawn(async move {
                edge.serve(stream, peer, proxy, thread, rules, closing)
                    .await;
                spread.closed(me);
                drop((permit, counted));
            });
            while open.try_join_next().is_some() {}
        }
        drop(listener);
        drop(self.listening);
        let grace = tokio::time::sleep(self.gateway.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = open.join_next() => if next.is_none() { break },
                () = &mut grace => break,
            }
        }
    }
}

impl Worker {
    fn hand_over(
        &self,
        thread: usize,
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) {
        let handed = stream.into_std().map(|stream| Handoff {
            stream,
            peer,
            permit,
        });
        let sent = match handed {
            Ok(handoff) => self.spread.inboxes[thread].send(handoff).is_ok(),
            Err(_) => false,
        };
        if !sent {
            // The connection is dropped (closed); the client reconnects.
            self.spread.closed(thread);
        }
    }

    /// The connection from `peer` counted for its client (`None` when the
    /// limit is off or the client is a trusted proxy), or refused, and
    /// counted in the metrics, when its client holds its share already.
    fn count_client(&self, peer: SocketAddr) -> Result<Option<Counted>, ShareHeld> {
        let live = self.gateway.proxy.live();
        let most = live.settings.max_connections_per_client;
        if most == 0 || live.settings.trusted_proxies.contains(&peer.ip()) {
            return Ok(None);
        }
        let counted = self.gateway.per_client.admit(peer.ip(), most);
        if counted.is_err() {
            self.gateway.metrics.per_client_refused.inc();
        }
        counted.map(Some)
    }

    /// The next customer connection with its permit, or `None` once the
    /// gateway is stopping.
    async fn accept(
        &self,
        listener: &TcpListener,
        (accepting, me): (&mut Accepting, usize),
    ) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
        let mut stopping = self.accepting_stopped.clone();
        loop {
            tokio::select! {
                () = accepting.until_accepting(me) => {}
                _ = stopping.wait_for(|stop| *stop) => return None,
            }
            let permit = tokio::select! {
                permit = self.gateway.connections.admit() => permit?,
                _ = stopping.wait_for(|stop| *stop) => return None,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopping.wait_for(|stop| *stop) => return None,
            };
            match accepted {
                Ok((stream, peer)) => return Some((stream, peer, permit)),
                Err(err) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn reload_on_sighup(gateway: Arc<Gateway>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; reload through the admin API");
        return;
    };
    while hangups.recv().await.is_some() {
        match gateway.reload() {
            Ok(reloaded) => tracing::info!(?reloaded, "reloaded on SIGHUP"),
            Err(err) => tracing::error!(error = %err, "reload refused; the running config stays"),
        }
    }
}
