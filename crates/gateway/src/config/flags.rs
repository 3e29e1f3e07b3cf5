//! What the command line sets over gateway.toml. Applied when the gateway
//! starts and again on every reload, so that a reload re-reads the file
//! without losing what the flags gave: the `--backend` shops above all
//! (`flashguard up` names its shops so). Before, a reload of a gateway
//! started with `--config` and `--backend` drained every flagged shop.

use std::path::PathBuf;

use super::{BackendDnsFile, BackendFile, ConfigFile};
use crate::edge::config::TlsFile;

/// The flags of `flashguard gateway`, parsed.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<String>,
    /// Added to the file's.
    pub trusted_proxies: Vec<String>,
    /// Added to the file's.
    pub backends: Vec<BackendFile>,
    /// Added to the file's.
    pub backend_dns: Vec<BackendDnsFile>,
    pub dns_server: Option<String>,
    /// `--tls-cert` and `--tls-key`: `[tls]`'s default certificate.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Flags {
    /// `file` with the flags over it.
    pub fn apply(&self, file: &mut ConfigFile) {
        if let Some(listen) = &self.listen {
            file.listen.clone_from(listen);
        }
        if let Some(admin_listen) = &self.admin_listen {
            file.admin_listen.clone_from(admin_listen);
        }
        if self.admin_token.is_some() {
            file.admin_token.clone_from(&self.admin_token);
        }
        file.trusted_proxies
            .extend(self.trusted_proxies.iter().cloned());
        file.backends.extend(self.backends.iter().cloned());
        file.backend_dns.extend(self.backend_dns.iter().cloned());
        if self.dns_server.is_some() {
            file.discovery.dns_server.clone_from(&self.dns_server);
        }
        if let Some((cert, key)) = &self.tls {
            TlsFile::set_default_certificate(&mut file.tls, cert.clone(), key.clone());
        }
    }
}
