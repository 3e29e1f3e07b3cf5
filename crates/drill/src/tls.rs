//! HTTPS to the target: the drill's customers speak HTTP/1.1 over TLS to a
//! storefront behind an HTTPS edge (flashguard's gateway with `[tls]`, or
//! any other), checked against the public roots and, for a store's own CA
//! (or a test's), the certificates of one more file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The TLS every connection of the drill to an `https://` target uses:
/// the public roots, and `ca_cert`'s certificates when given. Refused,
/// naming the file, when it holds no certificate rustls takes as a root.
pub fn trust(ca_cert: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_cert {
        let shown = path.display();
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("{shown}: not a PEM certificate file"))?;
        if certificates.is_empty() {
            bail!("{shown}: holds no certificate");
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .with_context(|| format!("{shown}: not a CA certificate"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS 1.2 and 1.3 with ring")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // HTTP/1.1 for the set-up calls (reqwest); the customers' client
    // offers h2 first on its own copy (`client`).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
