//! The admin listener's allow-list of client certificates
//! (`[tls.admin] client_names`): rustls's verifier checks the chain, then
//! the certificate must carry one of the names, its subject's common name
//! or a DNS subjectAltName. A certificate not on the list fails the
//! handshake with a TLS alert, counted as a `client_certificate` failure,
//! as one from another CA is.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_cert::der::oid::db::rfc4519::COMMON_NAME;
use x509_cert::der::Decode;

use super::certs::dns_names;

#[derive(Debug)]
pub(crate) struct NamedClients {
    chain: Arc<dyn ClientCertVerifier>,
    /// Lowercased.
    names: Vec<String>,
}

impl NamedClients {
    pub(crate) fn new(chain: Arc<dyn ClientCertVerifier>, names: &[String]) -> NamedClients {
        NamedClients {
            chain,
            names: names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    fn allows(&self, certificate: &CertificateDer<'_>) -> bool {
        let Ok(parsed) = x509_cert::Certificate::from_der(certificate) else {
            return false;
        };
        names_of(&parsed)
            .iter()
            .any(|name| self.names.iter().any(|allowed| allowed == name))
    }
}

/// The subject's common names and the DNS subjectAltNames, lowercased.
fn names_of(certificate: &x509_cert::Certificate) -> Vec<String> {
    let subject = certificate.tbs_certificate.subject.0.iter();
    let mut names: Vec<String> = subject
        .flat_map(|set| set.0.iter())
        .filter(|attribute| attribute.oid == COMMON_NAME)
        .filter_map(|attribute| std::str::from_utf8(attribute.value.value()).ok())
        .map(str::to_ascii_lowercase)
        .collect();
    names.extend(dns_names(certificate));
    names
}

impl ClientCertVerifier for NamedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        if !self.allows(end_entity) {
            return Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}
