//! Certificates from PEM files, checked before they are used: the chain
//! parses, the key is the leaf's, the leaf is valid now. A set that fails
//! any check is refused whole, naming the file and why, and whatever was
//! serving keeps serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use super::config::CertificateFile;

/// Why a certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
}

fn refused(path: &Path, problem: impl std::fmt::Display) -> CertError {
    CertError::File {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// One certificate ready to serve, with what the operator needs to know
/// about it.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) key: Arc<CertifiedKey>,
    /// Its DNS subjectAltNames, lowercased: the SNI names it answers.
    pub(crate) names: Vec<String>,
    /// The leaf's notAfter.
    pub(crate) not_after: SystemTime,
    /// What the metric calls it: its first name, or its file.
    pub(crate) label: String,
}

/// The certificates served, by SNI.
#[derive(Debug)]
pub(crate) struct CertSet {
    pub(crate) default: Loaded,
    pub(crate) by_name: HashMap<String, Arc<CertifiedKey>>,
    pub(crate) all: Vec<Loaded>,
}

impl CertSet {
    /// Reads and checks every file; the first is the default.
    pub(crate) fn load(
        files: &[CertificateFile],
        provider: &CryptoProvider,
    ) -> Result<CertSet, CertError> {
        let all = files
            .iter()
            .map(|file| load_one(file, provider))
            .collect::<Result<Vec<_>, _>>()?;
        let mut by_name = HashMap::new();
        // Earlier files win a name two of them share.
        for loaded in all.iter().rev() {
            for name in &loaded.names {
                by_name.insert(name.clone(), Arc::clone(&loaded.key));
            }
        }
        Ok(CertSet {
            default: all[0].clone(),
            by_name,
            all,
        })
    }

    /// The certificate for a client's SNI: the exact name, then the
    /// wildcard one label up, then the default.
    pub(crate) fn for_name(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let found = sni.and_then(|name| {
            let name = name.to_ascii_lowercase();
            self.by_name.get(&name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.by_name.get(&format!("*.{parent}"))
            })
        });
        Arc::clone(found.unwrap_or(&self.default.key))
    }
}

fn load_one(file: &CertificateFile, provider: &CryptoProvider) -> Result<Loaded, CertError> {
    let chain = CertificateDer::pem_file_iter(&file.cert)
        .map_err(|err| refused(&file.cert, err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| refused(&file.cert, format!("not a PEM certificate chain: {err}")))?;
    let Some(leaf) = chain.first() else {
        return Err(refused(&file.cert, "holds no certificate"));
    };
    let key = PrivateKeyDer::from_pem_file(&file.key)
        .map_err(|err| refused(&file.key, format!("not a PEM private key: {err}")))?;
    let certified = CertifiedKey::from_der(chain.clone(), key, provider).map_err(|err| {
        refused(
            &file.key,
            format!("does not fit {}: {err}", file.cert.display()),
        )
    })?;
    let mut not_after = SystemTime::UNIX_EPOCH;
    let mut names = Vec::new();
    for (n, der) in chain.iter().enumerate() {
        let parsed = x509_cert::Certificate::from_der(der)
            .map_err(|err| refused(&file.cert, format!("certificate {n} does not parse: {err}")))?;
        let validity = &parsed.tbs_certificate.validity;
        let (from, until) = (
            validity.not_before.to_system_time(),
            validity.not_after.to_system_time(),
        );
        let now = SystemTime::now();
        if until <= now {
            return Err(refused(&file.cert, format!("certificate {n} has expired")));
        }
        if from > now {
            return Err(refused(
                &file.cert,
                format!("certificate {n} is not valid yet"),
            ));
        }
        if der == leaf {
            not_after = until;
            names = dns_names(&parsed);
        }
    }
    let label = names
        .first()
        .cloned()
        .unwrap_or_else(|| file.cert.display().to_string());
    Ok(Loaded {
        key: Arc::new(certified),
        names,
        not_after,
        label,
    })
}

/// A certificate's DNS subjectAltNames, lowercased.
pub(crate) fn dns_names(cert: &x509_cert::Certificate) -> Vec<String> {
    let Ok(Some((_, SubjectAltName(names)))) = cert.tbs_certificate.get::<SubjectAltName>() else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.as_str().to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Seconds until `not_after`, negative once it has passed.
pub(crate) fn seconds_left(not_after: SystemTime) -> i64 {
    match not_after.duration_since(SystemTime::now()) {
        Ok(left) => left.as_secs() as i64,
        Err(past) => -(past.duration().as_secs() as i64),
    }
}

/// When the files last changed, to notice a new certificate on disk.
pub(crate) fn modified(files: &[CertificateFile]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .flat_map(|file| [&file.cert, &file.key])
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

/// How long a change on disk is left to settle before the files are read,
/// so a pair written in two steps (chain, then key) is read once both are
/// there.
pub(crate) const SETTLE: Duration = Duration::from_millis(300);
