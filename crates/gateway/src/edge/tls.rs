//! TLS termination with rustls (ring as the provider: it is already in the
//! build for the monitor's mail, it compiles without cmake, and its P-256
//! and AES-GCM code is assembly on x86-64 and ARM, so an ECDSA handshake
//! is as cheap as aws-lc-rs's within the noise of a gateway's work).
//!
//! One `ServerConfig` lives for the gateway's life, so the session cache
//! and the ticket keys survive a reload; the certificates sit behind a
//! resolver whose set is swapped whole once a new one has been checked.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rustls::crypto::CryptoProvider;
use rustls::server::Acceptor;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::certs::{self, CertError, CertSet};
use super::client_names::NamedClients;
use super::config::{AdminTlsFile, CertificateFile, TlsRules};
use super::handshakes::HandshakeTurns;
use super::metrics::{EdgeMetrics, HandshakeFailure};
use crate::http1::Stream;

/// ALPN's name for HTTP/2.
pub(crate) const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Sessions remembered for TLS 1.2 resumption by id (about 200 bytes
/// each); TLS 1.3 resumes with stateless tickets.
const SESSION_CACHE: usize = 20_000;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in use, swapped whole on reload.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertSet>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()));
        Some(set.for_name(hello.server_name()))
    }
}

/// The customers' listener's TLS.
#[derive(Debug)]
pub(crate) struct Terminator {
    config: Arc<ServerConfig>,
    /// The same, offering HTTP/1.1 only (`[http2] enabled = false`, as the
    /// config read when the connection came); both share the session cache
    /// and ticket keys, so a session resumes across a reload that turns
    /// HTTP/2 off or on.
    config_http1: Arc<ServerConfig>,
    resolver: Arc<Resolver>,
    provider: Arc<CryptoProvider>,
    /// As the gateway started: what a reload does not change (the
    /// redirect and admin listeners, the file watch) is read here.
    pub(crate) rules: TlsRules,
    /// What a reload changes, as last reloaded.
    reloadable: RwLock<Reloadable>,
    metrics: Arc<EdgeMetrics>,
}

/// The part of `[tls]` a reload changes: read once per connection.
#[derive(Debug, Clone)]
struct Reloadable {
    /// The certificate files served, the default first.
    files: Vec<CertificateFile>,
    /// Header lines added to every answer (HSTS).
    added: Bytes,
    handshake_timeout: Duration,
}

impl Reloadable {
    fn of(rules: &TlsRules) -> Reloadable {
        Reloadable {
            files: rules.certificates.clone(),
            added: rules
                .hsts
                .as_ref()
                .map(|hsts| Bytes::from(format!("strict-transport-security: {hsts}\r\n")))
                .unwrap_or_default(),
            handshake_timeout: rules.handshake_timeout,
        }
    }
}

/// HTTP/1.1 over TLS: a byte stream to the request path like a socket.
impl Stream for TlsStream<TcpStream> {}

/// What a finished handshake chose.
pub(crate) struct Accepted {
    pub(crate) stream: TlsStream<TcpStream>,
    pub(crate) h2: bool,
}

impl Terminator {
    /// Loads the certificates; refused, naming the file, if any is bad.
    pub(crate) fn new(rules: TlsRules, metrics: Arc<EdgeMetrics>) -> Result<Terminator, CertError> {
        let provider = provider();
        let set = CertSet::load(&rules.certificates, &provider)?;
        metrics.certificates(&set);
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(set)),
        });
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|err| CertError::File {
                path: rules.certificates[0].cert.clone(),
                problem: err.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|err| CertError::File {
            path: rules.certificates[0].cert.clone(),
            problem: format!("session tickets: {err}"),
        })?;
        let mut config_http1 = config.clone();
        config_http1.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Terminator {
            config: Arc::new(config),
            config_http1: Arc::new(config_http1),
            resolver,
            provider,
            reloadable: RwLock::new(Reloadable::of(&rules)),
            rules,
            metrics,
        })
    }

    fn now<T>(&self, read: impl FnOnce(&Reloadable) -> T) -> T {
        read(&self.reloadable.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The certificate files served now.
    pub(crate) fn files(&self) -> Vec<CertificateFile> {
        self.now(|now| now.files.clone())
    }

    /// Header lines added to every answer over TLS now (HSTS).
    pub(crate) fn added(&self) -> Bytes {
        self.now(|now| now.added.clone())
    }

    /// Reads the certificate files `rules` names (with `None`, the ones
    /// served now: their contents changed) and, if every one is good,
    /// serves them and takes `rules`' HSTS and handshake timeout for new
    /// connections; otherwise nothing changes and the error says why.
    /// Connections already open keep their session either way.
    pub(crate) fn reload(&self, rules: Option<&TlsRules>) -> Result<usize, CertError> {
        let next = rules.map_or_else(|| self.now(Reloadable::clone), Reloadable::of);
        let set = CertSet::load(&next.files, &self.provider)?;
        let count = set.all.len();
        self.metrics.certificates(&set);
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        *self.reloadable.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(count)
    }

    /// Shows how long until each certificate in use expires.
    pub(crate) fn refresh_expiry(&self) {
        let set = Arc::clone(
            &self
                .resolver
                .current
                .read()
                .unwrap_or_else(|p| p.into_inner()),
        );
        self.metrics.certificates(&set);
    }

    /// The handshake, within the handshake timeout, counted. Its costly
    /// step (the key exchange and the signature, done when the client's
    /// hello is answered) waits for this thread's turn (`HandshakeTurns`).
    /// ALPN offers `h2` when `http2` says so.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        turns: &HandshakeTurns,
        http2: bool,
    ) -> Option<Accepted> {
        let deadline = Instant::now() + self.now(|now| now.handshake_timeout);
        let config = if http2 {
            &self.config
        } else {
            &self.config_http1
        };
        let handshake = async {
            let hello = LazyConfigAcceptor::new(Acceptor::default(), stream).await?;
            let answered = turns.take(|| hello.into_stream(Arc::clone(config))).await;
            answered.await
        };
        let stream = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                self.metrics.handshake_failed(HandshakeFailure::of(&err));
                tracing::debug!(error = %err, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                self.metrics.handshake_failed(HandshakeFailure::Timeout);
                return None;
            }
        };
        let session = stream.get_ref().1;
        let alpn = session.alpn_protocol();
        let h2 = alpn == Some(ALPN_H2);
        let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        self.metrics
            .handshake(session.protocol_version(), alpn, resumed);
        Some(Accepted { stream, h2 })
    }
}

/// Reloads the certificates whenever their files change on disk.
pub(crate) async fn watch(terminator: Arc<Terminator>) {
    // The expiry gauge counts down even when nothing changes.
    const EXPIRY_EVERY: Duration = Duration::from_secs(60);
    let Some(every) = terminator.rules.watch else {
        loop {
            tokio::time::sleep(EXPIRY_EVERY).await;
            terminator.refresh_expiry();
        }
    };
    let mut seen = certs::modified(&terminator.files());
    let mut since_expiry = Duration::ZERO;
    loop {
        tokio::time::sleep(every).await;
        since_expiry += every;
        if since_expiry >= EXPIRY_EVERY {
            since_expiry = Duration::ZERO;
            terminator.refresh_expiry();
        }
        let now = certs::modified(&terminator.files());
        if now == seen {
            continue;
        }
        // A certificate and its key are rarely written at the same
        // instant: give the second a moment before reading both.
        tokio::time::sleep(certs::SETTLE).await;
        seen = certs::modified(&terminator.files());
        match terminator.reload(None) {
            Ok(count) => tracing::info!(
                certificates = count,
                "certificates changed on disk; reloaded"
            ),
            Err(err) => {
                tracing::error!(error = %err, "certificates changed on disk but were refused; the old ones keep serving")
            }
        }
    }
}

/// The admin listener's TLS: its own certificate, and client certificates
/// checked against `client_ca` when set.
pub(crate) fn admin_config(admin: &AdminTlsFile) -> Result<Arc<ServerConfig>, CertError> {
    let provider = provider();
    let file = CertificateFile {
        cert: admin.cert.clone(),
        key: admin.key.clone(),
    };
    let set = CertSet::load(std::slice::from_ref(&file), &provider)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| CertError::File {
            path: admin.cert.clone(),
            problem: err.to_string(),
        })?;
    let builder = match &admin.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let refused = |problem: String| CertError::File {
                path: path.clone(),
                problem,
            };
            let mut roots = rustls::RootCertStore::empty();
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|err| refused(err.to_string()))?
            {
                let cert = cert.map_err(|err| refused(err.to_string()))?;
                roots.add(cert).map_err(|err| refused(err.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| refused(err.to_string()))?;
            if admin.client_names.is_empty() {
                builder.with_client_cert_verifier(verifier)
            } else {
                let named = NamedClients::new(verifier, &admin.client_names);
                builder.with_client_cert_verifier(Arc::new(named))
            }
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver {
        current: RwLock::new(Arc::new(set)),
    }));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}
