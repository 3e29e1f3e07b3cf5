//! `[tls]` and `[http2]` in gateway.toml: the files as written, with
//! defaults, and the rules they validate into.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[tls]`: HTTPS on the customers' listener. Serialized too: `flashguard
/// up` writes its `[tls]` into the gateway's config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// The default certificate chain (PEM, leaf first), served when the
    /// client's SNI names none of `[[tls.certificate]]`.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// More certificates, each chosen when SNI names one of its
    /// subjectAltNames (`*.example.com` covers one label).
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<CertificateFile>,
    /// Plain HTTP here answers `308` to the same URL over HTTPS. Default
    /// none.
    #[serde(default)]
    pub redirect_listen: Option<String>,
    /// `Strict-Transport-Security: max-age=N` on every HTTPS answer; 0 (the
    /// default) sends none. Browsers remember it: start small.
    #[serde(default)]
    pub hsts_max_age_s: u64,
    /// Adds `includeSubDomains` to it. Default false.
    #[serde(default)]
    pub hsts_include_subdomains: bool,
    /// The certificate files are checked for changes this often and
    /// reloaded when they change; 0 turns this off (SIGHUP and
    /// `POST /admin/reload` still reload). Default 2000.
    #[serde(default = "default_watch_ms")]
    pub watch_ms: u64,
    /// A TLS handshake must finish within this. Default 10000.
    #[serde(default = "default_handshake_ms")]
    pub handshake_timeout_ms: u64,
    /// HTTPS, and optionally client certificates, on the admin listener.
    #[serde(default)]
    pub admin: Option<AdminTlsFile>,
}

impl TlsFile {
    /// `tls` serving `cert` and `key` by default: its other settings
    /// kept, or all at their defaults when there was no `[tls]`.
    pub fn set_default_certificate(tls: &mut Option<TlsFile>, cert: PathBuf, key: PathBuf) {
        match tls {
            Some(tls) => (tls.cert, tls.key) = (cert, key),
            None => *tls = Some(TlsFile::new(cert, key)),
        }
    }

    /// HTTPS with one certificate and every other setting at its default.
    pub fn new(cert: PathBuf, key: PathBuf) -> TlsFile {
        TlsFile {
            cert,
            key,
            certificates: Vec::new(),
            redirect_listen: None,
            hsts_max_age_s: 0,
            hsts_include_subdomains: false,
            watch_ms: default_watch_ms(),
            handshake_timeout_ms: default_handshake_ms(),
            admin: None,
        }
    }
}

fn default_watch_ms() -> u64 {
    2_000
}

fn default_handshake_ms() -> u64 {
    10_000
}

/// `[[tls.certificate]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[tls.admin]`: the admin listener over HTTPS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTlsFile {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates (PEM): when set, a client must present a
    /// certificate they signed (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Names a client's certificate must carry, one of them (its subject's
    /// common name or a DNS subjectAltName): for a CA that signs more
    /// certificates than the operators'. Empty (the default): any
    /// certificate `client_ca` signed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_names: Vec<String>,
}

/// `[http2]`: HTTP/2 to clients over TLS (ALPN `h2`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2File {
    /// Offer `h2` in ALPN. Default true.
    pub enabled: bool,
    /// Streams a client may have open at once on one connection; more are
    /// refused (`REFUSED_STREAM`). Default 100.
    pub max_concurrent_streams: u32,
    /// The largest header list, decoded. Default 65536.
    pub max_header_list_bytes: u32,
    /// What a client may send on one stream before it is read. Default
    /// 65535 (RFC 9113's initial window).
    pub stream_window_bytes: u32,
    /// What a client may send on a whole connection before it is read.
    /// Default 1 MiB.
    pub connection_window_bytes: u32,
    /// Answer bytes held per stream for a slow client. Default 16384.
    pub send_buffer_bytes: u32,
    /// Streams of one connection sent on to the shops at once; its other
    /// open streams wait in the connection, in order, and one that waits
    /// as long as a request may wait in the queue (`[queue] timeout_ms`)
    /// gets the queue's 503. An answer keeps its connection to its shop
    /// until the client has taken it, so without this one connection that
    /// opens many streams and reads nothing holds `max_concurrent_streams`
    /// of them for `client_send_ms`, and with them the shops' room for
    /// answers that wait on clients (`[concurrency]
    /// max_waiting_on_clients`). Default 16, more than a browser sends at
    /// once; 0 turns it off.
    pub max_streams_forwarded: u32,
}

impl Default for Http2File {
    fn default() -> Self {
        Http2File {
            enabled: true,
            max_concurrent_streams: 100,
            max_header_list_bytes: 64 * 1024,
            stream_window_bytes: 65_535,
            connection_window_bytes: 1024 * 1024,
            send_buffer_bytes: 16 * 1024,
            max_streams_forwarded: 16,
        }
    }
}

impl Http2File {
    /// The most a connection can hold buffered: what the client may send
    /// unread, what is held for it unsent (twice `send_buffer_bytes` a
    /// stream), and the frames owed to it before it is no longer read
    /// from (1 MiB).
    pub fn buffered_bound(&self) -> u64 {
        u64::from(self.connection_window_bytes)
            + 2 * u64::from(self.max_concurrent_streams) * u64::from(self.send_buffer_bytes)
            + 1024 * 1024
    }
}

/// `[tls]`, validated (the files are read when the gateway starts, and
/// again on every reload).
#[derive(Debug, Clone)]
pub struct TlsRules {
    /// The default first.
    pub certificates: Vec<CertificateFile>,
    pub redirect_listen: Option<String>,
    /// The whole header line, when HSTS is on.
    pub hsts: Option<String>,
    pub watch: Option<Duration>,
    pub handshake_timeout: Duration,
    pub admin: Option<AdminTlsFile>,
}

fn invalid(field: &str, problem: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl TlsFile {
    pub fn validate(&self) -> Result<TlsRules, ConfigError> {
        if self.handshake_timeout_ms < 100 {
            return Err(invalid("tls.handshake_timeout_ms", "must be at least 100"));
        }
        if self.watch_ms != 0 && self.watch_ms < 100 {
            return Err(invalid("tls.watch_ms", "must be 0 (off) or at least 100"));
        }
        if let Some(admin) = &self.admin {
            if !admin.client_names.is_empty() && admin.client_ca.is_none() {
                return Err(invalid(
                    "tls.admin.client_names",
                    "needs tls.admin.client_ca: names are read from certificates it signed",
                ));
            }
            if admin.client_names.iter().any(|name| name.trim().is_empty()) {
                return Err(invalid(
                    "tls.admin.client_names",
                    "must not hold an empty name",
                ));
            }
        }
        let hsts = (self.hsts_max_age_s > 0).then(|| {
            let mut line = format!("max-age={}", self.hsts_max_age_s);
            if self.hsts_include_subdomains {
                line.push_str("; includeSubDomains");
            }
            line
        });
        let mut certificates = vec![CertificateFile {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }];
        certificates.extend(self.certificates.iter().cloned());
        Ok(TlsRules {
            certificates,
            redirect_listen: self.redirect_listen.clone(),
            hsts,
            watch: (self.watch_ms > 0).then(|| Duration::from_millis(self.watch_ms)),
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            admin: self.admin.clone(),
        })
    }
}

impl Http2File {
    /// Itself, once every limit is checked.
    pub fn validate(&self) -> Result<Http2File, ConfigError> {
        let at_least = |value: u32, min: u32, field: &str| {
            if value < min {
                Err(invalid(field, &format!("must be at least {min}")))
            } else {
                Ok(())
            }
        };
        at_least(
            self.max_concurrent_streams,
            1,
            "http2.max_concurrent_streams",
        )?;
        at_least(
            self.max_header_list_bytes,
            1024,
            "http2.max_header_list_bytes",
        )?;
        // RFC 9113 6.9.2: a window is at most 2^31 - 1, and this gateway
        // never offers less than the RFC's initial one.
        let max_window = (1 << 31) - 1;
        at_least(
            self.stream_window_bytes,
            65_535,
            "http2.stream_window_bytes",
        )?;
        at_least(
            self.connection_window_bytes,
            self.stream_window_bytes,
            "http2.connection_window_bytes",
        )?;
        if self.connection_window_bytes > max_window {
            return Err(invalid(
                "http2.connection_window_bytes",
                "must be below 2^31",
            ));
        }
        at_least(self.send_buffer_bytes, 1024, "http2.send_buffer_bytes")?;
        Ok(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_admin(client_ca: Option<&str>, client_names: &[&str]) -> TlsFile {
        let mut tls = TlsFile::new("leaf.pem".into(), "leaf.key".into());
        tls.admin = Some(AdminTlsFile {
            cert: "admin.pem".into(),
            key: "admin.key".into(),
            client_ca: client_ca.map(PathBuf::from),
            client_names: client_names.iter().map(|n| n.to_string()).collect(),
        });
        tls
    }

    #[test]
    fn client_names_need_a_client_ca_and_no_empty_name() {
        assert!(with_admin(Some("ops-ca.pem"), &["ops"]).validate().is_ok());
        assert!(with_admin(None, &[]).validate().is_ok());
        let refused = |tls: TlsFile| tls.validate().unwrap_err().to_string();
        let without_ca = refused(with_admin(None, &["ops"]));
        assert!(
            without_ca.starts_with("tls.admin.client_names: needs"),
            "{without_ca}"
        );
        let empty = refused(with_admin(Some("ops-ca.pem"), &["ops", " "]));
        assert!(empty.contains("empty name"), "{empty}");
    }
}
