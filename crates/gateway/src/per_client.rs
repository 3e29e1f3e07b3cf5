//! How many connections one client may hold open at once
//! (`limits.max_connections_per_client`): what HAProxy does with a stick
//! table on `src_conn_cur` and nginx with `limit_conn`. Without it one
//! address can take every one of `max_connections` (a thousand idle
//! keep-alive connections cost it nothing) and lock the crowd out.
//!
//! A client is its address; an IPv6 client its /64, which one host is
//! usually given whole. Off by default, as `per_client_rps` is: behind
//! carrier NAT a flash crowd shares few addresses. Addresses in
//! `trusted_proxies` are never counted (every customer comes through
//! them). A connection beyond the limit is closed as soon as it is
//! accepted, before a byte is read or a handshake is paid for.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open connections per client; only clients with at least one are kept.
#[derive(Debug, Default)]
pub(crate) struct PerClient {
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// Why a connection was refused: its client holds its share already.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ShareHeld;

/// One connection counted for its client until it is dropped.
#[derive(Debug)]
pub(crate) struct Counted {
    owner: Arc<PerClient>,
    client: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// The key a client is counted under.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl PerClient {
    /// Counts a connection from `peer` if its client holds fewer than
    /// `most`.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr, most: u32) -> Result<Counted, ShareHeld> {
        let client = client_of(peer);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(client).or_insert(0);
        if *count >= most {
            return Err(ShareHeld);
        }
        *count += 1;
        Ok(Counted {
            owner: Arc::clone(self),
            client,
        })
    }

    /// Clients with a connection open.
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.open.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_and_a_place_back_when_one_closes() {
        let counts = Arc::new(PerClient::default());
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let (a, _b) = (counts.admit(one, 2).unwrap(), counts.admit(one, 2).unwrap());
        assert!(counts.admit(one, 2).is_err(), "a third is refused");
        assert!(counts.admit(other, 2).is_ok(), "another client is not");
        drop(a);
        assert!(counts.admit(one, 2).is_ok(), "a place came back");
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64_and_a_mapped_v4_as_v4() {
        let counts = Arc::new(PerClient::default());
        let held = counts.admit("2001:db8:1:2::1".parse().unwrap(), 1).unwrap();
        assert!(counts
            .admit("2001:db8:1:2::ffff".parse().unwrap(), 1)
            .is_err());
        assert!(counts.admit("2001:db8:1:3::1".parse().unwrap(), 1).is_ok());
        let v4 = counts.admit("198.51.100.7".parse().unwrap(), 1).unwrap();
        assert!(counts
            .admit("::ffff:198.51.100.7".parse().unwrap(), 1)
            .is_err());
        drop((held, v4));
    }

    #[test]
    fn no_client_is_kept_once_its_connections_closed() {
        let counts = Arc::new(PerClient::default());
        let all: Vec<Counted> = (0..100u8)
            .map(|n| counts.admit(IpAddr::from([10, 0, 0, n]), 5).unwrap())
            .collect();
        assert_eq!(counts.clients(), 100);
        drop(all);
        assert_eq!(counts.clients(), 0, "memory follows the clients connected");
    }
}
