//! The pending cap of a listener: connections accepted whose first request's headers are not complete yet,
//! counted in total and by client address ([`client_key`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::IntGauge;

use super::{Limits, ListenerMetrics};

/// The pending connections of one listener, in total and by client address.
#[derive(Debug)]
pub(super) struct Pending {
    counts: Mutex<PendingCounts>,
    per_address: usize,
    total: usize,
    gauge: IntGauge,
}

#[derive(Debug, Default)]
struct PendingCounts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Pending {
    pub(super) fn new(limits: &Limits, gauge: IntGauge) -> Self {
        Pending {
            counts: Mutex::default(),
            per_address: limits.per_address,
            total: limits.total,
            gauge,
        }
    }

    /// A new connection from `ip`, counted as pending until the guard is dropped; `None` (counted) past a
    /// limit.
    pub(super) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        metrics: &ListenerMetrics,
    ) -> Option<PendingGuard> {
        let key = client_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let from_address = counts.by_address.get(&key).copied().unwrap_or(0);
        if from_address >= self.per_address {
            metrics.refused_address.inc();
            return None;
        }
        if counts.total >= self.total {
            metrics.refused_total.inc();
            return None;
        }
        counts.total += 1;
        counts.by_address.insert(key, from_address + 1);
        self.gauge.inc();
        Some(PendingGuard {
            pending: self.clone(),
            key,
        })
    }
}

/// One pending connection; dropping it (headers complete, or the connection closed) stops counting it.
#[derive(Debug)]
pub(super) struct PendingGuard {
    pending: Arc<Pending>,
    key: IpAddr,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        let mut counts = self
            .pending
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.by_address.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.by_address.remove(&self.key);
            }
        }
        self.pending.gauge.dec();
    }
}

/// The address limits count by: an IPv4 address, or an IPv6 one's /64 (one subscriber's usual allocation,
/// which a client can otherwise walk through). Ingest's per-address rate limit counts by it too.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}
