//! The settings a running gateway reads once, when it starts: its
//! listeners and threads, the admin token, the shutdown timeouts, the
//! waiting room (but for its rate bounds and `max_active`), the status
//! page, DNS discovery, and `[tls]`'s listeners and file watch. A reload
//! that changes one keeps the running value and names the field
//! (`until_restart` in its answer, and a warning in the log), instead of
//! leaving the operator to believe it took.
//!
//! Everything else a reload applies: the backends; `max_connections` and
//! `max_concurrent_requests` while they are held (`ResizablePermits`); for
//! the connections accepted after it, the client header and idle timeouts
//! and `[http2]` (whether ALPN offers `h2`, and an HTTP/2 connection's
//! streams, header list, windows and send buffer); for the backend
//! connections opened after it, the connect timeout; balancing, health,
//! retries, the per-request timeouts and limits, the concurrency limits,
//! the queue, the admin allow-list, the waiting room's rate bounds and
//! `max_active`, and `[tls]`'s certificates, HSTS and handshake timeout.

use super::{BackendDnsFile, ConfigFile};
use crate::edge::config::AdminTlsFile;
use crate::room::RoomFile;

/// The start-only settings as the file (with the flags over it) gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct StartOnly {
    listen: String,
    admin_listen: String,
    admin_token: Option<String>,
    reuse_port: bool,
    workers: usize,
    shutdown_grace_ms: u64,
    shutdown_idle_grace_ms: u64,
    waiting_room: RoomFile,
    status_enabled: bool,
    status_title: String,
    status_listen: Option<String>,
    backend_dns: Vec<BackendDnsFile>,
    dns_server: Option<String>,
    dns_interval_ms: u64,
    tls_redirect_listen: Option<String>,
    tls_watch_ms: Option<u64>,
    tls_admin: Option<AdminTlsFile>,
}

impl StartOnly {
    pub(super) fn of(file: &ConfigFile) -> StartOnly {
        let tls = file.tls.as_ref();
        StartOnly {
            listen: file.listen.clone(),
            admin_listen: file.admin_listen.clone(),
            admin_token: file.admin_token.clone(),
            reuse_port: file.reuse_port,
            workers: file.workers,
            shutdown_grace_ms: file.timeouts.shutdown_grace_ms,
            shutdown_idle_grace_ms: file.timeouts.shutdown_idle_grace_ms,
            // Its rate's bounds and `max_active` a reload changes
            // (`Room::retune`): they are left out of the comparison.
            waiting_room: RoomFile {
                admit_per_s: 0.0,
                min_admit_per_s: 0.0,
                max_active: 0,
                ..file.waiting_room.clone()
            },
            status_enabled: file.status.enabled,
            status_title: file.status.title.clone(),
            status_listen: file.status.listen.clone(),
            backend_dns: file.backend_dns.clone(),
            dns_server: file.discovery.dns_server.clone(),
            dns_interval_ms: file.discovery.interval_ms,
            tls_redirect_listen: tls.and_then(|tls| tls.redirect_listen.clone()),
            tls_watch_ms: tls.map(|tls| tls.watch_ms),
            tls_admin: tls.and_then(|tls| tls.admin.clone()),
        }
    }

    /// The fields `next` sets otherwise than the running gateway, as
    /// gateway.toml names them.
    pub fn changed(&self, next: &StartOnly) -> Vec<&'static str> {
        let mut changed = Vec::new();
        let mut check = |field: &'static str, same: bool| {
            if !same {
                changed.push(field);
            }
        };
        check("listen", self.listen == next.listen);
        check("admin_listen", self.admin_listen == next.admin_listen);
        check("admin_token", self.admin_token == next.admin_token);
        check("reuse_port", self.reuse_port == next.reuse_port);
        check("workers", self.workers == next.workers);
        check(
            "timeouts.shutdown_grace_ms",
            self.shutdown_grace_ms == next.shutdown_grace_ms,
        );
        check(
            "timeouts.shutdown_idle_grace_ms",
            self.shutdown_idle_grace_ms == next.shutdown_idle_grace_ms,
        );
        check("waiting_room", self.waiting_room == next.waiting_room);
        check("status.enabled", self.status_enabled == next.status_enabled);
        check("status.title", self.status_title == next.status_title);
        check("status.listen", self.status_listen == next.status_listen);
        check("backend_dns", self.backend_dns == next.backend_dns);
        check("discovery.dns_server", self.dns_server == next.dns_server);
        check(
            "discovery.interval_ms",
            self.dns_interval_ms == next.dns_interval_ms,
        );
        check(
            "tls.redirect_listen",
            self.tls_redirect_listen == next.tls_redirect_listen,
        );
        check("tls.watch_ms", self.tls_watch_ms == next.tls_watch_ms);
        check("tls.admin", self.tls_admin == next.tls_admin);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> StartOnly {
        StartOnly::of(&toml::from_str::<ConfigFile>(text).unwrap())
    }

    #[test]
    fn names_each_start_only_field_a_file_changes_and_nothing_else() {
        let running = parsed("workers = 2\n[timeouts]\nshutdown_grace_ms = 500\n");
        assert!(running.changed(&running.clone()).is_empty());
        // Live settings (max_connections, the client idle timeout, retries,
        // the upstream and connect timeouts, HTTP/2's, the room's rate
        // bounds and max_active) are not named.
        let live_only = parsed(
            "workers = 2\n[limits]\nmax_connections = 100\n\
             [retry]\nattempts = 2\n[timeouts]\nshutdown_grace_ms = 500\nconnect_ms = 90\nclient_idle_ms = 9000\nupstream_ms = 900\n\
             [http2]\nenabled = false\nmax_concurrent_streams = 10\n\
             [waiting_room]\nadmit_per_s = 80\nmin_admit_per_s = 2\nmax_active = 900\n",
        );
        assert!(running.changed(&live_only).is_empty());
        let next = parsed(
            "workers = 4\n[timeouts]\nshutdown_grace_ms = 600\n\
             [http2]\nmax_concurrent_streams = 10\n\
             [waiting_room]\nactivation = \"always\"\n",
        );
        assert_eq!(
            running.changed(&next),
            ["workers", "timeouts.shutdown_grace_ms", "waiting_room"]
        );
    }
}
