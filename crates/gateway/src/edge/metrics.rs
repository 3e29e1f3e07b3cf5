//! The edge's metrics: TLS handshakes and certificates, HTTP/2 streams,
//! resets, GOAWAYs and floods.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::ProtocolVersion;

use super::certs::{seconds_left, CertSet};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    version: &'static str,
    alpn: &'static str,
    /// `full`, or `resumed` from a session ticket or id.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

/// Why a handshake failed, as the metric labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// No protocol version or cipher suite both sides accept (TLS 1.1 and
    /// older land here).
    Incompatible,
    /// The client's certificate was missing or not trusted (admin mTLS).
    ClientCertificate,
    /// The client sent something that is not TLS, or broken TLS.
    Malformed,
    /// The client gave up with an alert (often: it did not trust ours).
    AlertReceived,
    /// The connection closed mid-handshake.
    Closed,
    Timeout,
    Other,
}

impl HandshakeFailure {
    pub(crate) fn of(err: &std::io::Error) -> HandshakeFailure {
        use rustls::Error as E;
        let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<E>()) else {
            return match err.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe => HandshakeFailure::Closed,
                std::io::ErrorKind::InvalidData => HandshakeFailure::Malformed,
                _ => HandshakeFailure::Other,
            };
        };
        match tls {
            E::PeerIncompatible(_) => HandshakeFailure::Incompatible,
            E::NoCertificatesPresented | E::InvalidCertificate(_) => {
                HandshakeFailure::ClientCertificate
            }
            E::InvalidMessage(_)
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_) => HandshakeFailure::Malformed,
            E::AlertReceived(_) => HandshakeFailure::AlertReceived,
            _ => HandshakeFailure::Other,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::ClientCertificate => "client_certificate",
            HandshakeFailure::Malformed => "malformed",
            HandshakeFailure::AlertReceived => "alert_received",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Other => "other",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct EdgeMetrics {
    handshakes: Family<HandshakeLabels, Counter>,
    handshake_failures: Family<ReasonLabels, Counter>,
    expiry: Family<NameLabels, Gauge>,
    pub(crate) h2_connections: Gauge,
    pub(crate) h2_streams: Counter,
    pub(crate) h2_streams_deferred: Counter,
    pub(crate) h2_streams_deferred_timed_out: Counter,
    pub(crate) h2_resets_received: Counter,
    h2_goaways: Family<ReasonLabels, Counter>,
    h2_floods: Family<KindLabels, Counter>,
    pub(crate) redirects: Counter,
    pub(crate) hellos_waiting: Gauge,
    pub(crate) accept_pauses: Counter,
}

impl EdgeMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_tls_handshakes",
            "TLS handshakes completed, by protocol version, the ALPN protocol chosen, and whether a session was resumed",
            self.handshakes.clone(),
        );
        registry.register(
            "gateway_tls_handshake_failures",
            "TLS handshakes that failed, by reason",
            self.handshake_failures.clone(),
        );
        registry.register(
            "gateway_tls_hellos_waiting",
            "Client hellos waiting for their serving thread's handshake turn",
            self.hellos_waiting.clone(),
        );
        registry.register(
            "gateway_tls_accept_pauses",
            "Times the customers' listener stopped accepting while the handshake line was full",
            self.accept_pauses.clone(),
        );
        registry.register(
            "gateway_tls_certificate_expiry_seconds",
            "Seconds until each certificate served expires (negative once expired)",
            self.expiry.clone(),
        );
        registry.register(
            "gateway_h2_connections",
            "HTTP/2 client connections open",
            self.h2_connections.clone(),
        );
        registry.register(
            "gateway_h2_streams",
            "HTTP/2 streams (requests) accepted",
            self.h2_streams.clone(),
        );
        registry.register(
            "gateway_h2_streams_deferred",
            "HTTP/2 streams that waited in their connection for one of its max_streams_forwarded places",
            self.h2_streams_deferred.clone(),
        );
        registry.register(
            "gateway_h2_streams_deferred_timed_out",
            "HTTP/2 streams that waited in their connection as long as a request may wait in the queue, answered 503 queue_timeout",
            self.h2_streams_deferred_timed_out.clone(),
        );
        registry.register(
            "gateway_h2_resets_received",
            "HTTP/2 streams the client reset (RST_STREAM) before their answer was complete; those the gateway reset first are not counted",
            self.h2_resets_received.clone(),
        );
        registry.register(
            "gateway_h2_goaways",
            "GOAWAY frames sent to HTTP/2 clients, by error code",
            self.h2_goaways.clone(),
        );
        registry.register(
            "gateway_h2_floods",
            "HTTP/2 connections closed for abuse, by the kind of flood",
            self.h2_floods.clone(),
        );
        registry.register(
            "gateway_tls_redirects",
            "Plain HTTP requests redirected to HTTPS",
            self.redirects.clone(),
        );
    }

    pub(crate) fn handshake(
        &self,
        version: Option<ProtocolVersion>,
        alpn: Option<&[u8]>,
        resumed: bool,
    ) {
        let version = match version {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "other",
        };
        let alpn = match alpn {
            Some(b"h2") => "h2",
            Some(b"http/1.1") => "http/1.1",
            Some(_) => "other",
            None => "none",
        };
        self.handshakes
            .get_or_create(&HandshakeLabels {
                version,
                alpn,
                kind: if resumed { "resumed" } else { "full" },
            })
            .inc();
    }

    pub(crate) fn handshake_failed(&self, reason: HandshakeFailure) {
        self.handshake_failures
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub(crate) fn certificates(&self, set: &CertSet) {
        self.expiry.clear();
        for loaded in &set.all {
            self.expiry
                .get_or_create(&NameLabels {
                    name: loaded.label.clone(),
                })
                .set(seconds_left(loaded.not_after));
        }
    }

    pub(crate) fn goaway(&self, reason: super::h2::frame::Reason) {
        let reason = reason.as_str();
        self.h2_goaways
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn flood(&self, kind: &'static str) {
        self.h2_floods.get_or_create(&KindLabels { kind }).inc();
    }
}
