//! The event loop's side of the metrics: per-content counters cached by
//! content ID (no label string built per chunk), label sets dropped with
//! their content, and the start times of DHT provider lookups.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::kad;
use libp2p::metrics::Recorder;
use libp2p::swarm::SwarmEvent;
use libp2p::PeerId;
use prometheus_client::metrics::counter::Counter;
use protocol::ContentId;

use super::{ContentLabels, Metrics};
use crate::behaviour::BehaviourEvent;

/// Per-content counters and lookup timers, owned by the event loop.
pub(crate) struct Tracker {
    metrics: Arc<Metrics>,
    contents: HashMap<ContentId, PerContent>,
    lookups: Lookups<kad::QueryId>,
    /// Contents held at the last prune.
    held: usize,
    /// When the unchoked peers were last counted.
    unchoked_at: Option<Instant>,
    /// Punches tried and succeeded at the last NAT update.
    nat_last: (u64, u64),
}

struct PerContent {
    labels: ContentLabels,
    uploaded: Counter,
    downloaded: Counter,
}

impl Tracker {
    /// A tracker updating `metrics`.
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            contents: HashMap::new(),
            lookups: Lookups::default(),
            held: 0,
            unchoked_at: None,
            nat_last: (0, 0),
        }
    }

    fn content(&mut self, id: ContentId) -> &PerContent {
        let m = &self.metrics;
        self.contents.entry(id).or_insert_with(|| {
            let labels = ContentLabels {
                content: id.to_string(),
            };
            PerContent {
                uploaded: m.content_uploaded.get_or_create_owned(&labels),
                downloaded: m.content_downloaded.get_or_create_owned(&labels),
                labels,
            }
        })
    }

    /// `bytes` of chunk payload of `id` were written to a peer.
    pub(crate) fn uploaded(&mut self, id: ContentId, bytes: u64) {
        self.content(id).uploaded.inc_by(bytes);
    }

    /// `bytes` of chunk payload of `id` arrived in answer to our ask.
    pub(crate) fn downloaded(&mut self, id: ContentId, bytes: u64) {
        self.content(id).downloaded.inc_by(bytes);
    }

    /// A received chunk verified and is new.
    pub(crate) fn chunk_verified(&self) {
        self.metrics.chunks_verified.inc();
    }

    /// A received chunk verified but was held already.
    pub(crate) fn chunk_duplicate(&self) {
        self.metrics.chunks_duplicate.inc();
    }

    /// A received chunk failed verification.
    pub(crate) fn chunk_rejected(&self) {
        self.metrics.chunks_rejected.inc();
    }

    /// A peer was banned.
    pub(crate) fn banned(&self) {
        self.metrics.bans.inc();
    }

    /// Now `n` peers are connected.
    pub(crate) fn set_connected(&self, n: usize) {
        self.metrics.peers_connected.set(gauge(n));
    }

    /// Records a swarm event in libp2p's metrics (connections, Kademlia, identify).
    pub(crate) fn record_swarm(&self, ev: &SwarmEvent<BehaviourEvent>) {
        let m = &self.metrics.libp2p;
        m.record(ev);
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => m.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => m.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => m.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => m.record(e),
            _ => {}
        }
    }

    /// Sets the NAT metrics from the NAT state's counters.
    pub(crate) fn nat(&mut self, s: &crate::client::NatStats) {
        self.metrics.nat.set(s, &mut self.nat_last);
    }

    /// Chunk payload moved with a peer reached over a relay only (`relayed`) or directly.
    pub(crate) fn nat_bytes(&self, relayed: bool, n: u64) {
        self.metrics.nat.bytes(relayed, n);
    }

    /// A provider lookup started.
    pub(crate) fn lookup_started(&mut self, qid: kad::QueryId) {
        self.lookups.started(qid, Instant::now());
    }

    /// A provider lookup reported providers; its first report is timed.
    pub(crate) fn lookup_found(&mut self, qid: kad::QueryId) {
        if let Some(secs) = self.lookups.found(&qid, Instant::now()) {
            self.metrics.lookup_first.observe(secs);
        }
    }

    /// A provider lookup ended (found all it will, or timed out).
    pub(crate) fn lookup_finished(&mut self, qid: kad::QueryId) {
        if let Some(secs) = self.lookups.finished(&qid, Instant::now()) {
            self.metrics.lookup_done.observe(secs);
        }
    }

    /// Prunes if the number of contents held changed, or fewer are held than
    /// tracked. Cheap enough for every event; a content dropped and another
    /// added in one event waits for `on_tick`'s [`Self::prune`].
    pub(crate) fn prune_if_changed<V>(&mut self, held: &HashMap<ContentId, V>) {
        if self.held != held.len() || self.contents.len() > held.len() {
            self.prune(held);
        }
    }

    /// Drops the label sets of contents no longer held; sets the content gauge.
    pub(crate) fn prune<V>(&mut self, held: &HashMap<ContentId, V>) {
        let m = &self.metrics;
        self.contents.retain(|id, c| {
            let keep = held.contains_key(id);
            if !keep {
                m.content_uploaded.remove(&c.labels);
                m.content_downloaded.remove(&c.labels);
            }
            keep
        });
        self.held = held.len();
        m.contents.set(gauge(held.len()));
        if held.is_empty() {
            // The tick that counts unchoked peers stops with the last content.
            m.peers_unchoked.set(0);
        }
    }

    /// True at most once a second: counting unchoked peers walks every swarm.
    pub(crate) fn unchoked_due(&mut self, now: Instant) -> bool {
        let due = self
            .unchoked_at
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if due {
            self.unchoked_at = Some(now);
        }
        due
    }

    /// Sets the unchoked-peers gauge from the peers unchoked in any swarm.
    pub(crate) fn set_unchoked(&self, peers: impl Iterator<Item = PeerId>) {
        let distinct: HashSet<PeerId> = peers.collect();
        self.metrics.peers_unchoked.set(gauge(distinct.len()));
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Lookups under way: when each started and whether it has reported a
/// result yet. Bounded by the lookups Kademlia runs (each ends, at the
/// latest, at its query timeout).
pub(super) struct Lookups<Q> {
    started: HashMap<Q, (Instant, bool)>,
}

impl<Q> Default for Lookups<Q> {
    fn default() -> Self {
        Self {
            started: HashMap::new(),
        }
    }
}

impl<Q: std::hash::Hash + Eq> Lookups<Q> {
    /// Lookup `q` started at `now`.
    pub(super) fn started(&mut self, q: Q, now: Instant) {
        self.started.insert(q, (now, false));
    }

    /// Seconds since `q` started, the first time it reports a result; else None.
    pub(super) fn found(&mut self, q: &Q, now: Instant) -> Option<f64> {
        let (start, reported) = self.started.get_mut(q)?;
        if *reported {
            return None;
        }
        *reported = true;
        Some(now.saturating_duration_since(*start).as_secs_f64())
    }

    /// Seconds since `q` started, as it ends; None for a lookup not seen starting.
    pub(super) fn finished(&mut self, q: &Q, now: Instant) -> Option<f64> {
        let (start, _) = self.started.remove(q)?;
        Some(now.saturating_duration_since(start).as_secs_f64())
    }

    /// Lookups under way.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.started.len()
    }
}
