//! NAT traversal metrics: reachability, reservations, connections by kind,
//! hole punches, and chunk payload bytes by connection kind. The event loop
//! sets them from its NAT state (see `engine::nat`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::client::{NatStats, Reachability};

/// Label of a connection kind: `direct` or `relayed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `direct` or `relayed`.
    pub kind: &'static str,
}

const DIRECT: KindLabels = KindLabels { kind: "direct" };
const RELAYED: KindLabels = KindLabels { kind: "relayed" };

/// The NAT metric handles.
#[derive(Debug, Default)]
pub(crate) struct NatMetrics {
    reachability: Gauge,
    reservations: Gauge,
    connections: Family<KindLabels, Gauge>,
    punches_tried: Counter,
    punches_ok: Counter,
    chunk_bytes: Family<KindLabels, Counter>,
}

impl NatMetrics {
    /// Registers the handles in `r` (already prefixed).
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "nat_reachability",
            "What AutoNAT found: 1 public, 0 unknown, -1 private",
            self.reachability.clone(),
        );
        r.register(
            "nat_reservations",
            "Relays holding a reservation for us",
            self.reservations.clone(),
        );
        r.register(
            "nat_connections",
            "Open connections by kind (direct or relayed)",
            self.connections.clone(),
        );
        r.register(
            "nat_punches_tried",
            "Relayed connections to peers we had no direct connection to (DCUtR punches on each)",
            self.punches_tried.clone(),
        );
        r.register(
            "nat_punches_ok",
            "Relayed connections upgraded to a direct one",
            self.punches_ok.clone(),
        );
        r.register_with_unit(
            "nat_chunk",
            "Chunk payload bytes sent and received, by the kind of connection the peer had",
            Unit::Bytes,
            self.chunk_bytes.clone(),
        );
    }

    /// Sets the gauges from `s`; counters move by what `s` adds to `last`.
    pub(crate) fn set(&self, s: &NatStats, last: &mut (u64, u64)) {
        self.reachability.set(match s.reachability {
            Reachability::Public => 1,
            Reachability::Unknown => 0,
            Reachability::Private => -1,
        });
        self.reservations.set(gauge(s.reservations.len()));
        self.connections
            .get_or_create(&DIRECT)
            .set(gauge(s.conns_direct));
        self.connections
            .get_or_create(&RELAYED)
            .set(gauge(s.conns_relayed));
        self.punches_tried
            .inc_by(s.punches_tried.saturating_sub(last.0));
        self.punches_ok.inc_by(s.punches_ok.saturating_sub(last.1));
        *last = (s.punches_tried, s.punches_ok);
    }

    /// Chunk payload moved with a peer reached over a relay only (`relayed`) or directly.
    pub(crate) fn bytes(&self, relayed: bool, n: u64) {
        let kind = if relayed { &RELAYED } else { &DIRECT };
        self.chunk_bytes.get_or_create(kind).inc_by(n);
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_follow_the_state_and_counters_only_grow_by_the_difference() {
        let m = NatMetrics::default();
        let mut r = Registry::default();
        m.register(&mut r);
        let mut last = (0, 0);
        let mut s = NatStats {
            reachability: Reachability::Private,
            conns_relayed: 2,
            conns_direct: 1,
            punches_tried: 2,
            punches_ok: 1,
            ..NatStats::default()
        };
        m.set(&s, &mut last);
        s.punches_tried = 3;
        m.set(&s, &mut last);
        m.bytes(true, 100);
        m.bytes(false, 7);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for want in [
            "nat_reachability -1",
            "nat_connections{kind=\"relayed\"} 2",
            "nat_connections{kind=\"direct\"} 1",
            "nat_punches_tried_total 3",
            "nat_punches_ok_total 1",
            "nat_chunk_bytes_total{kind=\"relayed\"} 100",
            "nat_chunk_bytes_total{kind=\"direct\"} 7",
        ] {
            assert!(text.contains(want), "no {want:?} in:\n{text}");
        }
    }
}
