//! Finding peers: bootstrap dials, listen addresses, identify, Kademlia
//! provider lookups and announcements, and peer exchange.

use std::time::Instant;

use libp2p::kad::{self, GetProvidersOk, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::ConnectionId;
use libp2p::{identify, Multiaddr, PeerId};
use protocol::wire::{PeerRecord, MAX_ADDRS_PER_PEER, MAX_PEERS_PER_MESSAGE};
use protocol::ContentId;
use serde_bytes::ByteBuf;
use tokio::sync::oneshot;

use super::content::{Content, Phase};
use super::session::Pending;
use super::Engine;
use crate::behaviour::KAD_PROTOCOL;
use crate::client::GetEvent;

impl Engine {
    pub(super) fn start_bootstrap(&mut self) {
        for addr in self.config.bootstrap.clone() {
            let peer = addr.iter().find_map(|p| match p {
                Protocol::P2p(id) => Some(id),
                _ => None,
            });
            if let Some(peer) = peer {
                let bare: Multiaddr = addr
                    .iter()
                    .filter(|p| !matches!(p, Protocol::P2p(_)))
                    .collect();
                self.swarm.behaviour_mut().kad.add_address(&peer, bare);
            }
            let opts = match peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            let cid = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.bootstrap_dials.insert(cid);
                }
                Err(e) => self.bootstrap_failed.push(format!("{addr}: {e}")),
            }
        }
        self.check_bootstrap_done();
    }

    pub(super) fn check_bootstrap_done(&mut self) {
        if !self.bootstrap_dials.is_empty() {
            return;
        }
        let result = if !self.config.bootstrap.is_empty() && self.bootstrap_ok == 0 {
            Err(format!(
                "could not reach any bootstrap peer: {}",
                self.bootstrap_failed.join("; ")
            ))
        } else {
            Ok(self.bootstrap_ok)
        };
        for w in self.bootstrap_waiters.drain(..) {
            let _ = w.send(result.clone());
        }
    }

    pub(super) fn on_bootstrap_connected(&mut self, connection: ConnectionId) {
        if self.bootstrap_dials.remove(&connection) {
            self.bootstrap_ok += 1;
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
            self.check_bootstrap_done();
        }
    }

    pub(super) fn on_bootstrap_failed(&mut self, connection: ConnectionId, error: String) {
        if self.bootstrap_dials.remove(&connection) {
            self.bootstrap_failed.push(error);
            self.check_bootstrap_done();
        }
    }

    fn full_addrs(&self) -> Vec<Multiaddr> {
        let me = *self.swarm.local_peer_id();
        self.listen_addrs
            .iter()
            .map(|a| a.clone().with_p2p(me).unwrap_or_else(|a| a))
            .collect()
    }

    pub(super) fn on_listen_addrs_wanted(&mut self, reply: oneshot::Sender<Vec<Multiaddr>>) {
        if self.listen_addrs.is_empty() {
            self.listen_waiters.push(reply);
        } else {
            let _ = reply.send(self.full_addrs());
        }
    }

    pub(super) fn on_new_listen_addr(&mut self, address: Multiaddr) {
        tracing::info!("listening on {address}");
        if self.config.listen_addrs_are_external {
            self.swarm.add_external_address(address.clone());
        }
        self.listen_addrs.push(address);
        let addrs = self.full_addrs();
        for w in self.listen_waiters.drain(..) {
            let _ = w.send(addrs.clone());
        }
    }

    pub(super) fn on_identify(&mut self, ev: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = ev else {
            return;
        };
        let speaks_kad = info.protocols.contains(&KAD_PROTOCOL);
        let addrs: Vec<Multiaddr> = info
            .listen_addrs
            .into_iter()
            .take(MAX_ADDRS_PER_PEER)
            .collect();
        if speaks_kad {
            for a in &addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, a.clone());
            }
        }
        if self.peer_addrs.len() < self.config.max_known_peer_addrs
            || self.peer_addrs.contains_key(&peer_id)
        {
            self.peer_addrs.insert(peer_id, addrs);
        }
    }

    pub(super) fn on_kad(&mut self, ev: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id: qid,
            result,
            step,
            stats,
        } = ev
        else {
            return;
        };
        if step.last {
            let kind = match &result {
                QueryResult::Bootstrap(_) => "bootstrap",
                QueryResult::GetClosestPeers(_) => "closest-peers",
                QueryResult::GetProviders(_) => "get-providers",
                QueryResult::StartProviding(_) => "start-providing",
                QueryResult::RepublishProvider(_) => "republish-provider",
                _ => "other",
            };
            tracing::debug!(kind, requests = stats.num_requests(), "kad query done");
        }
        if let QueryResult::GetProviders(r) = &result {
            if matches!(r, Ok(GetProvidersOk::FoundProviders { .. })) {
                self.metrics.lookup_found(qid);
            }
            if step.last {
                self.metrics.lookup_finished(qid);
            }
        }
        match result {
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) => {
                let Some(&id) = self.provider_queries.get(&qid) else {
                    return;
                };
                let me = *self.swarm.local_peer_id();
                let fresh: Vec<PeerId> = providers
                    .into_iter()
                    .filter(|p| *p != me && !self.banned_set.contains(p))
                    .collect();
                if let Some(ev) = self.contents.get(&id).and_then(|c| c.events.as_ref()) {
                    let _ = ev.try_send(GetEvent::ProvidersFound(fresh.len()));
                }
                // Stop the lookup at its first answer with providers once we are
                // connected to all of them: that answer comes from a node holding
                // the key's records, so it lists them all (up to the store's cap),
                // and asking on costs every node that answers a walk of its routing
                // table (~25 requests per lookup) and finds no one new. A provider
                // we still have to dial keeps it running: the lookup holds the
                // addresses its answers gave, and sessions dial later.
                // (Our own record, found locally before any request, is not such an answer.)
                let all_connected =
                    !fresh.is_empty() && fresh.iter().all(|p| self.connected.contains(p));
                for p in fresh {
                    self.add_swarm_peer(id, p);
                }
                if all_connected {
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&qid) {
                        q.finish();
                    }
                }
            }
            QueryResult::GetProviders(_) => {
                if step.last {
                    if let Some(id) = self.provider_queries.remove(&qid) {
                        if let Some(c) = self.contents.get_mut(&id) {
                            c.schedule.on_search_done();
                        }
                    }
                }
            }
            QueryResult::StartProviding(res) => {
                let Some(id) = self.announce_queries.remove(&qid) else {
                    return;
                };
                let stored = if res.is_ok() {
                    stats.num_successes()
                } else {
                    0
                };
                if stored > 0 {
                    tracing::info!(%id, peers = stored, "announced as provider");
                } else {
                    // No peer stored the record (e.g. empty routing table yet): retry soon.
                    tracing::debug!(%id, "provider record not stored yet; will retry");
                }
                if let Some(c) = self.contents.get_mut(&id) {
                    c.schedule.on_announced(Instant::now(), stored);
                }
            }
            _ => {}
        }
    }

    /// Starts a DHT provider lookup for `id` unless one runs.
    pub(super) fn search(&mut self, id: ContentId) {
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        if !c.schedule.on_search(Instant::now()) {
            return;
        }
        let qid = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(kad::RecordKey::new(id.as_bytes()));
        self.metrics.lookup_started(qid);
        self.provider_queries.insert(qid, id);
    }

    /// Announces us as a provider of `id`.
    pub(super) fn announce(&mut self, id: ContentId) {
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        c.schedule.on_announce(Instant::now());
        match self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(kad::RecordKey::new(id.as_bytes()))
        {
            Ok(qid) => {
                self.announce_queries.insert(qid, id);
            }
            Err(e) => tracing::warn!(%id, "cannot announce: {e}"),
        }
    }

    /// Offers a have exchange to a connected peer that may be in the swarm of
    /// an unfinished download; one that is not ignores it. Other leechers are
    /// found this way as soon as we are connected, long before their provider
    /// records turn up in a search.
    pub(super) fn probe_swarm_peer(&mut self, id: ContentId, peer: PeerId) {
        if peer == *self.swarm.local_peer_id() || self.banned_set.contains(&peer) {
            return;
        }
        let wanted = self.config.wanted_peers;
        let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) else {
            return;
        };
        if a.finished || a.transfer.peer_count() >= wanted {
            return;
        }
        a.transfer.handle_peer_connected(Instant::now(), peer);
        self.drive(id);
    }

    /// A peer that is (probably) in swarm `id`: get its manifest or start exchanging.
    pub(super) fn add_swarm_peer(&mut self, id: ContentId, peer: PeerId) {
        if peer == *self.swarm.local_peer_id() || self.banned_set.contains(&peer) {
            return;
        }
        let Some(c) = self.contents.get_mut(&id) else {
            return;
        };
        c.providers.insert(peer);
        if c.providers.len() > self.config.max_providers_per_content {
            c.providers.remove(&peer);
        }
        match &mut c.phase {
            Phase::Searching { asked, .. } => {
                if asked.len() < self.config.max_manifest_asks && asked.insert(peer) {
                    self.limits.expect_manifest(peer);
                    self.ask(peer, Pending::Manifest(id));
                }
            }
            Phase::Opening { .. } => {}
            Phase::Active(a) => {
                if a.transfer.peer_count() < self.config.wanted_peers * 2 {
                    a.transfer.handle_peer_connected(Instant::now(), peer);
                    self.drive(id);
                }
            }
        }
    }

    /// Asks one random neighbour in swarm `id` for more members.
    pub(super) fn exchange_peers(&mut self, id: ContentId) {
        let Some(a) = self.contents.get_mut(&id).and_then(Content::active_mut) else {
            return;
        };
        let peers: Vec<PeerId> = a.transfer.peers().collect();
        if peers.is_empty() {
            return;
        }
        let k = rand::random_range(0..peers.len());
        self.ask(peers[k], Pending::Peers(id));
    }

    /// The members of swarm `id` we can tell `asker` about, with addresses.
    pub(super) fn peer_records(&self, id: &ContentId, asker: PeerId) -> Vec<PeerRecord> {
        let Some(Phase::Active(a)) = self.contents.get(id).map(|c| &c.phase) else {
            return Vec::new();
        };
        a.transfer
            .peers()
            .filter(|p| *p != asker)
            .filter_map(|p| {
                let addrs = self.peer_addrs.get(&p)?;
                Some(PeerRecord {
                    peer: p.to_bytes(),
                    addrs: addrs
                        .iter()
                        .take(MAX_ADDRS_PER_PEER)
                        .map(|a| ByteBuf::from(a.to_vec()))
                        .collect(),
                })
            })
            .take(MAX_PEERS_PER_MESSAGE)
            .collect()
    }

    /// Members of swarm `id` a neighbour told us about.
    pub(super) fn on_peer_records(&mut self, id: ContentId, records: Vec<PeerRecord>) {
        for rec in records {
            let Ok(p) = PeerId::from_bytes(&rec.peer) else {
                continue;
            };
            for a in rec.addrs.iter().take(MAX_ADDRS_PER_PEER) {
                if let Ok(addr) = Multiaddr::try_from(a.to_vec()) {
                    self.swarm.add_peer_address(p, addr);
                }
            }
            self.add_swarm_peer(id, p);
        }
    }
}
