//! A test certificate authority made at test time (rcgen, ECDSA P-256),
//! its certificates as PEM files, and clients that trust it.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};

pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    issuer: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and key written to files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "flashguard test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = issuer.pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        TestCa {
            dir,
            ca_pem,
            issuer,
            key,
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A leaf for `names` (DNS names, and 127.0.0.1), valid for `days`
    /// from `starts_days_ago` days ago, written as `stem.pem` and
    /// `stem.key`.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> CertFiles {
        self.leaf_valid(stem, names, 1, 90)
    }

    pub fn leaf_valid(
        &self,
        stem: &str,
        names: &[&str],
        starts_days_ago: i64,
        days: i64,
    ) -> CertFiles {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(starts_days_ago);
        params.not_after = now + time::Duration::days(days - starts_days_ago);
        let cert = params.signed_by(&key, &self.issuer, &self.key).unwrap();
        let files = CertFiles {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}.key")),
            cert_pem: cert.pem(),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A reqwest client that trusts only this CA; HTTP/2 when `h2`, else
    /// HTTP/1.1 only.
    pub fn client(&self, h2: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(std::time::Duration::from_secs(20));
        let builder = if h2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        };
        builder.build().unwrap()
    }

    /// An HTTP/2 client whose connection to `url` is open already (one GET
    /// answered 200), as a browser tab's is when the sale starts. A fresh
    /// client sent many requests at once can open a second connection:
    /// hyper-util's pool lets a request take the "connecting" lock just
    /// after another request's connection was pooled and released it; that
    /// request then takes the pooled connection and finishes its own in the
    /// background, only to drop it. One more TLS handshake than
    /// connections, the gateway closing none (CI, 2026-12-03: 5 against 4;
    /// 200 fresh clients of 100 requests each: 203).
    pub async fn connected_client(&self, url: &str) -> reqwest::Client {
        let client = self.client(true);
        let answer = client.get(url).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{url} answers before the load");
        client
    }

    /// A rustls client config that trusts this CA and offers `alpn`.
    pub fn rustls_client(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// `args` after the flags that serve HTTPS with `leaf`.
fn with_certificate(leaf: &CertFiles, args: &[&str]) -> Vec<String> {
    let mut all = vec![
        "--tls-cert".to_string(),
        leaf.cert.display().to_string(),
        "--tls-key".to_string(),
        leaf.key.display().to_string(),
    ];
    all.extend(args.iter().map(|arg| arg.to_string()));
    all
}

/// A gateway serving HTTPS with `leaf`, and `args`.
pub async fn gateway(leaf: &CertFiles, args: &[&str]) -> super::gateway::Gateway {
    let all = with_certificate(leaf, args);
    super::gateway::Gateway::start(&all.iter().map(String::as_str).collect::<Vec<_>>()).await
}

/// A gateway serving HTTPS with `leaf`, `toml` as its config file (kept
/// while the returned directory lives), and `args`.
pub async fn gateway_with_config(
    leaf: &CertFiles,
    toml: &str,
    args: &[&str],
) -> (super::gateway::Gateway, tempfile::TempDir) {
    let all = with_certificate(leaf, args);
    super::gateway::Gateway::start_with_config(
        toml,
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await
}

/// A gateway serving HTTPS for `shop.test` (certified by `ca`) in front
/// of an echo backend, `toml` as its config (kept while the returned
/// directory lives); with the address it listens on (HOST:PORT).
pub async fn echo_gateway_with(
    ca: &TestCa,
    toml: &str,
) -> (super::gateway::Gateway, tempfile::TempDir, String) {
    let backend = super::gateway::echo_backend().await;
    let leaf = ca.leaf("shop", &["shop.test"]);
    let (gateway, dir) =
        gateway_with_config(&leaf, toml, &["--backend", &format!("echo={backend}")]).await;
    let addr = gateway.url.trim_start_matches("https://").to_string();
    (gateway, dir, addr)
}

/// Connects over TLS to `addr` (HOST:PORT) naming `sni`.
pub async fn connect(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}
