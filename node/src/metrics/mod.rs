//! Prometheus metrics of a node: kadswarm's own (bytes per content and in
//! total, chunks, peers, bans, DHT lookup latency, session bytes by kind)
//! NAT traversal (reachability, reservations, connections by kind, hole
//! punches) and libp2p's swarm, Kademlia, identify, relay, DCUtR and
//! transport bandwidth metrics,
//! in one registry encoded as OpenMetrics text.
//!
//! Counters are atomics the event loop bumps (the per-chunk path takes no
//! lock); byte totals are read at scrape time from the same [`Counters`]
//! the stats file reports, so the two always agree. [`http`] serves them.

pub mod http;
mod nat;
mod tracker;
mod wire;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

pub use http::{serve_metrics, start_metrics_server, CONTENT_TYPE};
pub(crate) use tracker::Tracker;

use crate::wire::Counters;

/// Prefix of every kadswarm metric name.
pub const PREFIX: &str = "kadswarm";

/// The label set of per-content metrics: the content ID in hex.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContentLabels {
    /// Content ID, lowercase hex (as `share` prints it).
    pub content: String,
}

/// A node's metrics registry and the handles the event loop updates.
pub struct Metrics {
    registry: Registry,
    pub(crate) libp2p: libp2p::metrics::Metrics,
    pub(crate) content_uploaded: Family<ContentLabels, Counter>,
    pub(crate) content_downloaded: Family<ContentLabels, Counter>,
    pub(crate) chunks_verified: Counter,
    pub(crate) chunks_rejected: Counter,
    pub(crate) chunks_duplicate: Counter,
    pub(crate) peers_connected: Gauge,
    pub(crate) peers_unchoked: Gauge,
    pub(crate) contents: Gauge,
    pub(crate) bans: Counter,
    pub(crate) lookup_first: Histogram,
    pub(crate) lookup_done: Histogram,
    pub(crate) nat: nat::NatMetrics,
}

impl Metrics {
    /// Registers kadswarm's and libp2p's metrics in `registry` (which may
    /// already hold the transport's bandwidth counters); byte totals are read
    /// from `counters`.
    pub fn new(mut registry: Registry, counters: Arc<Counters>) -> Self {
        let libp2p = libp2p::metrics::Metrics::new(&mut registry);
        // Lookups on loopback take milliseconds; across the internet seconds,
        // up to the 30 s query timeout: 5 ms .. 41 s.
        let lookup_buckets = || Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let mut m = Self {
            registry,
            libp2p,
            content_uploaded: Family::default(),
            content_downloaded: Family::default(),
            chunks_verified: Counter::default(),
            chunks_rejected: Counter::default(),
            chunks_duplicate: Counter::default(),
            peers_connected: Gauge::default(),
            peers_unchoked: Gauge::default(),
            contents: Gauge::default(),
            bans: Counter::default(),
            lookup_first: lookup_buckets(),
            lookup_done: lookup_buckets(),
            nat: nat::NatMetrics::default(),
        };
        let r = m.registry.sub_registry_with_prefix(PREFIX);
        r.register_collector(Box::new(wire::Totals(counters)));
        r.register_with_unit(
            "content_uploaded",
            "Chunk payload bytes written to peers, per content (dropped contents disappear)",
            Unit::Bytes,
            m.content_uploaded.clone(),
        );
        r.register_with_unit(
            "content_downloaded",
            "Chunk payload bytes received in answer to our asks, per content, verified or not",
            Unit::Bytes,
            m.content_downloaded.clone(),
        );
        r.register(
            "chunks_verified",
            "Received chunks that verified against the content ID and were new",
            m.chunks_verified.clone(),
        );
        r.register(
            "chunks_rejected",
            "Received chunks that failed verification (their sender is banned)",
            m.chunks_rejected.clone(),
        );
        r.register(
            "chunks_duplicate",
            "Received chunks that verified but were already held or being stored",
            m.chunks_duplicate.clone(),
        );
        r.register(
            "peers_connected",
            "Peers with at least one open connection",
            m.peers_connected.clone(),
        );
        r.register(
            "peers_unchoked",
            "Peers we unchoke in at least one content's swarm",
            m.peers_unchoked.clone(),
        );
        r.register(
            "contents",
            "Contents held: shared, downloading or searching",
            m.contents.clone(),
        );
        r.register("bans", "Peers banned for bad data", m.bans.clone());
        r.register_with_unit(
            "dht_provider_lookup_first",
            "Time from a DHT provider lookup's start to its first result",
            Unit::Seconds,
            m.lookup_first.clone(),
        );
        r.register_with_unit(
            "dht_provider_lookup",
            "Time from a DHT provider lookup's start to its end",
            Unit::Seconds,
            m.lookup_done.clone(),
        );
        m.nat.register(r);
        m
    }

    /// The metrics in OpenMetrics text (served as [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial text.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests;
