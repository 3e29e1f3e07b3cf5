//! Backends found through DNS (`[[backend_dns]]`, `--backend-dns
//! NAME:PORT`): what a Kubernetes headless Service gives, one address per
//! ready pod. Each name is resolved again every `discovery.interval_ms`
//! (the resolver's cache is off, so a pod that left is not served from a
//! stale answer); an address that appears becomes a backend, ramped in
//! with slow start; one that is gone from the answer is drained (its
//! requests finish, then it is removed). A failed lookup changes nothing:
//! a DNS outage must not empty the pool.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

use crate::config::{BackendDnsFile, BackendSpec, Config};
use crate::gateway::Gateway;

/// Starts watching every `backend_dns` name; nothing when there is none.
pub(crate) fn start(gateway: &Arc<Gateway>, config: &Config) {
    if config.backend_dns.is_empty() {
        return;
    }
    let resolver = match resolver(config.dns_server) {
        Ok(resolver) => resolver,
        Err(err) => {
            tracing::error!(%err, "no DNS resolver: backend_dns names are not followed");
            return;
        }
    };
    let gateway = Arc::clone(gateway);
    let (names, every) = (config.backend_dns.clone(), config.dns_interval);
    tokio::spawn(async move {
        let mut found: HashMap<String, BTreeSet<SocketAddr>> = HashMap::new();
        loop {
            for dns in &names {
                follow(
                    &gateway,
                    &resolver,
                    dns,
                    found.entry(dns.name.clone()).or_default(),
                )
                .await;
            }
            tokio::time::sleep(every).await;
        }
    });
}

fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, hickory_resolver::ResolveError> {
    let mut builder = match server {
        Some(server) => TokioResolver::builder_with_config(
            ResolverConfig::from_parts(
                None,
                Vec::new(),
                NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true),
            ),
            TokioConnectionProvider::default(),
        ),
        None => TokioResolver::builder_tokio()?,
    };
    builder.options_mut().cache_size = 0;
    Ok(builder.build())
}

/// One lookup of `dns`; `known` is what the last one found.
async fn follow(
    gateway: &Arc<Gateway>,
    resolver: &TokioResolver,
    dns: &BackendDnsFile,
    known: &mut BTreeSet<SocketAddr>,
) {
    let answer = match resolver.lookup_ip(dns.name.as_str()).await {
        Ok(answer) => answer,
        Err(err) => {
            tracing::warn!(name = %dns.name, %err, "DNS lookup failed; the backends found before stay");
            return;
        }
    };
    let now: BTreeSet<SocketAddr> = answer
        .iter()
        .map(|ip| SocketAddr::new(ip, dns.port))
        .collect();
    for addr in now.difference(known) {
        let spec = BackendSpec {
            name: backend_name(&dns.name, *addr),
            addr: *addr,
            pool: dns.pool,
        };
        let name = spec.name.clone();
        if gateway.add(spec, true) {
            tracing::info!(backend = %name, dns = %dns.name, "found in DNS");
        }
    }
    for addr in known.difference(&now) {
        gateway.drain_now(&backend_name(&dns.name, *addr));
    }
    *known = now;
}

/// `shops-10.1.2.3-8080`: the name's first label, the address and port
/// (within the 64 characters a backend's name may have).
fn backend_name(name: &str, addr: SocketAddr) -> String {
    let label = name.split('.').next().unwrap_or(name);
    let label = &label[..label.len().min(20)];
    let ip = addr.ip().to_string().replace(':', ".");
    format!("{label}-{ip}-{}", addr.port())
}

#[cfg(test)]
mod tests {
    use super::backend_name;

    #[test]
    fn names_are_valid_backend_names_for_both_families() {
        assert_eq!(
            backend_name(
                "shops.flashguard.svc.cluster.local",
                "10.1.2.3:8080".parse().unwrap()
            ),
            "shops-10.1.2.3-8080"
        );
        let v6 = backend_name(
            "a-very-long-service-name-indeed.x",
            "[fd00::1:2]:80".parse().unwrap(),
        );
        assert!(v6.len() <= 64 && !v6.contains(':'), "{v6}");
    }
}
