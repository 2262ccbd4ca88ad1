//! How many connections may be open: all clients together (`max_connections`) and one client
//! address (`max_connections_per_ip`). An accepted connection is admitted or refused here; an
//! [`Admission`] counts until it is dropped, so every way a connection task ends gives its
//! place back.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Which cap a connection was over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections`.
    Total,
    /// `max_connections_per_ip`.
    PerClient,
}

impl Refusal {
    /// The label on `/metrics` (`redeploy_connections_refused_total{cap}`).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerClient => "max_connections_per_ip",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// The caps and what is open now. Shared by the accept loop and every [`Admission`].
#[derive(Debug)]
pub struct ConnectionCaps {
    max_total: usize,
    /// 0 = no per-client cap.
    max_per_client: usize,
    /// Addresses without a per-client cap (trusted reverse proxies carry many clients).
    exempt: Vec<IpAddr>,
    counts: Mutex<Counts>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Admission {
    caps: Arc<ConnectionCaps>,
    client: Option<IpAddr>,
}

/// The key a client is counted under: its address, an IPv6 client's /64 (one host usually
/// holds a whole /64, so counting single addresses would let it open 2^64 × the cap), an
/// IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl ConnectionCaps {
    /// Caps of `max_total` connections (at least 1) and `max_per_client` per client (0: none),
    /// with `exempt` addresses counted only in the total.
    pub fn new(max_total: usize, max_per_client: usize, exempt: &[IpAddr]) -> Arc<Self> {
        Arc::new(ConnectionCaps {
            max_total: max_total.max(1),
            max_per_client,
            exempt: exempt.iter().map(IpAddr::to_canonical).collect(),
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admits one more connection from `peer`, or says which cap it is over.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Admission, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let client = (self.max_per_client > 0 && !self.exempt.contains(&peer.to_canonical()))
            .then(|| client_key(peer));
        if let Some(key) = client {
            let open = counts.per_client.entry(key).or_insert(0);
            if *open >= self.max_per_client {
                return Err(Refusal::PerClient);
            }
            *open += 1;
        }
        counts.total += 1;
        Ok(Admission {
            caps: Arc::clone(self),
            client,
        })
    }

    /// Connections open now (all clients together).
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self.caps.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(key) = self.client {
            if let Some(open) = counts.per_client.get_mut(&key) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    counts.per_client.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_per_client_cap_refuses_one_client_and_not_another() {
        let caps = ConnectionCaps::new(100, 2, &[]);
        let a1 = caps.admit(ip("10.0.0.1")).unwrap();
        let _a2 = caps.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(caps.admit(ip("10.0.0.1")).unwrap_err(), Refusal::PerClient);
        let _b = caps.admit(ip("10.0.0.2")).expect("another client");
        drop(a1);
        let _a3 = caps.admit(ip("10.0.0.1")).expect("a place was given back");
        assert_eq!(caps.open(), 3);
    }

    #[test]
    fn the_total_cap_holds_for_all_clients_and_places_come_back() {
        let caps = ConnectionCaps::new(3, 0, &[]);
        let held: Vec<_> = (1..=3)
            .map(|i| caps.admit(ip(&format!("10.0.0.{i}"))).unwrap())
            .collect();
        assert_eq!(caps.admit(ip("10.0.0.9")).unwrap_err(), Refusal::Total);
        drop(held);
        assert_eq!(caps.open(), 0);
        assert!(caps.admit(ip("10.0.0.9")).is_ok());
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_proxies_are_exempt() {
        let caps = ConnectionCaps::new(100, 1, &[ip("192.0.2.10")]);
        let _a = caps.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            caps.admit(ip("2001:db8:1:2:ffff::7")).unwrap_err(),
            Refusal::PerClient,
            "same /64"
        );
        let _b = caps.admit(ip("2001:db8:1:3::1")).expect("another /64");
        let _v4 = caps.admit(ip("198.51.100.1")).unwrap();
        assert_eq!(
            caps.admit(ip("::ffff:198.51.100.1")).unwrap_err(),
            Refusal::PerClient,
            "IPv4-mapped is the IPv4 client"
        );
        let proxied: Vec<_> = (0..5).map(|_| caps.admit(ip("192.0.2.10"))).collect();
        assert!(
            proxied.iter().all(Result::is_ok),
            "a trusted proxy has no per-client cap"
        );
    }
}
