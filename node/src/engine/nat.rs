//! NAT traversal in the event loop: feeds swarm events to the sans-IO
//! [`NatState`] and carries out what it decides (dial a relay, reserve a
//! slot, close a relayed connection made redundant by a hole punch, switch
//! Kademlia's mode with reachability), re-announces our contents once a
//! relayed address exists, and logs what happened.
//!
//! A node with no relay configured and no NAT does nothing here beyond
//! counting: no dial, no listen, no timer.

mod state;

use std::time::Instant;

use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{identify, kad, relay};
use protocol::wire::{Answer, Message};
use protocol::ContentId;

pub use state::{is_circuit, Action, NatConfig, NatState};

use super::content::Phase;
use super::Engine;
use crate::behaviour::BehaviourEvent;
use crate::client::Reachability;
use crate::wire::streams::StreamEvent;

impl Engine {
    /// Applies `--external` and starts on the configured relays.
    pub(super) fn start_nat(&mut self) {
        for a in self.config.nat.external.clone() {
            self.swarm.add_external_address(a);
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        if !self.config.nat.external.is_empty() {
            tracing::info!("reachability: public (--external)");
            kad.set_mode(Some(kad::Mode::Server));
        } else if !self.config.nat.relays.is_empty() {
            // Told to use a relay: a DHT client until AutoNAT finds us reachable,
            // so peers do not fill their routing tables with an address they cannot dial.
            kad.set_mode(Some(kad::Mode::Client));
        }
        let acts = self.nat.poll(Instant::now());
        self.nat_apply(acts);
        self.metrics.nat(&self.nat.stats());
    }

    /// Retries relays whose wait is over.
    pub(super) fn nat_timer(&mut self, now: Instant) {
        if self.nat.poll_timeout().is_some_and(|t| t <= now) {
            let acts = self.nat.poll(now);
            self.nat_apply(acts);
        }
    }

    /// Looks at a swarm event before the loop handles it.
    pub(super) fn nat_observe(&mut self, ev: &SwarmEvent<BehaviourEvent>) {
        let now = Instant::now();
        let acts = match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let relayed = endpoint.is_relayed();
                let dialed = match endpoint {
                    ConnectedPoint::Dialer { address, .. } if !relayed => Some(address.clone()),
                    _ => None,
                };
                self.nat
                    .connected(now, *connection_id, *peer_id, relayed, dialed)
            }
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.nat.closed(now, *connection_id)
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                ..
            } => self.nat.dial_failed(now, *peer),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let (relay, acts) = self.nat.listener_closed(now, *listener_id);
                if let Some(relay) = relay {
                    match reason {
                        Ok(()) => tracing::info!("reservation on {relay} ended; trying again"),
                        Err(e) => tracing::warn!(
                            "reservation on {relay} failed: {e}; trying again (check that it runs `node join --relay` and has an external address)"
                        ),
                    }
                }
                acts
            }
            SwarmEvent::NewListenAddr { address, .. } if is_circuit(address) => {
                // Our relayed address: others reach us there, so identify and our
                // provider records must carry it (re-announced now, not in minutes).
                self.swarm.add_external_address(address.clone());
                self.announce_held();
                Vec::new()
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let hop = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                self.nat.identified(now, *peer_id, hop, &info.listen_addrs)
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => {
                if let Some(addr) = self.nat.reserved(*relay_peer_id) {
                    tracing::info!("reserved slot on {addr}");
                }
                Vec::new()
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(ev)) => {
                let peer = ev.remote_peer_id;
                match &ev.result {
                    Ok(_) => tracing::debug!(%peer, "DCUtR reports a direct connection"),
                    Err(e) => {
                        if self.nat.punch_result(peer, false) {
                            tracing::info!("hole punch to {peer}: failed ({e})");
                        } else {
                            tracing::debug!(%peer, "DCUtR: {e}");
                        }
                    }
                }
                Vec::new()
            }
            SwarmEvent::Behaviour(BehaviourEvent::AutonatClient(ev)) => {
                match &ev.result {
                    Ok(()) => {
                        tracing::debug!(addr = %ev.tested_addr, server = %ev.server, "AutoNAT: reachable")
                    }
                    Err(e) => {
                        tracing::debug!(addr = %ev.tested_addr, server = %ev.server, "AutoNAT: not reachable: {e}")
                    }
                }
                self.nat
                    .tested(now, ev.tested_addr.clone(), ev.result.is_ok())
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(ev)) => {
                tracing::debug!("relay server: {ev:?}");
                Vec::new()
            }
            _ => return,
        };
        self.nat_apply(acts);
        self.metrics.nat(&self.nat.stats());
    }

    /// Counts chunk payload by connection kind, before the loop handles the event.
    pub(super) fn nat_count(&mut self, ev: &StreamEvent) {
        match ev {
            StreamEvent::Received {
                peer,
                msg:
                    Message::Answer {
                        answer: Answer::Chunk { data, .. },
                        ..
                    },
                ..
            } => {
                let n = data.len() as u64;
                let relayed = self.nat.count_bytes(peer, n);
                self.metrics.nat_bytes(relayed, n);
            }
            StreamEvent::Sent { peer, token } => {
                let Some((id, index)) = self.delivering.get(token) else {
                    return;
                };
                if let Some(Phase::Active(a)) = self.contents.get(id).map(|c| &c.phase) {
                    let n = u64::from(a.transfer.manifest().chunk_len(*index));
                    let relayed = self.nat.count_bytes(peer, n);
                    self.metrics.nat_bytes(relayed, n);
                }
            }
            _ => {}
        }
    }

    /// Announces every content we hold a chunk of again (our addresses changed).
    fn announce_held(&mut self) {
        let ids: Vec<ContentId> = self
            .contents
            .iter()
            .filter(|(_, c)| match &c.phase {
                Phase::Active(a) => a.transfer.have().count_ones() > 0,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.announce(id);
        }
    }

    fn nat_apply(&mut self, acts: Vec<Action>) {
        let mut queue = std::collections::VecDeque::from(acts);
        while let Some(act) = queue.pop_front() {
            let now = Instant::now();
            match act {
                Action::Dial { peer, addr } => {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(vec![addr.clone()])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    match self.swarm.dial(opts) {
                        Ok(()) => tracing::debug!("dialling relay {addr}"),
                        // Already connected or dialling (a bootstrap peer): its event comes.
                        Err(DialError::DialPeerConditionFalse(_)) => {}
                        Err(e) => {
                            tracing::warn!("cannot dial relay {addr}: {e}");
                            queue.extend(self.nat.dial_failed(now, peer));
                        }
                    }
                }
                Action::DialDirect { peer, addrs } => {
                    let opts = DialOpts::peer_id(peer)
                        .addresses(addrs)
                        .condition(PeerCondition::NotDialing)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, "no direct dial: {e}");
                    }
                }
                Action::Reserve { peer, addr } => {
                    let circuit = addr.clone().with(Protocol::P2pCircuit);
                    match self.swarm.listen_on(circuit) {
                        Ok(listener) => self.nat.reserving(peer, listener),
                        Err(e) => {
                            tracing::warn!("cannot reserve a slot on {addr}: {e}");
                            self.nat.reserve_failed(now, peer);
                        }
                    }
                }
                Action::Close(conn) => {
                    self.swarm.close_connection(conn);
                }
                Action::Reachability(r) => {
                    tracing::info!("reachability: {}", r.as_str());
                    let mode = match r {
                        Reachability::Public => Some(kad::Mode::Server),
                        Reachability::Private => Some(kad::Mode::Client),
                        Reachability::Unknown => None,
                    };
                    if mode.is_some() {
                        self.swarm.behaviour_mut().kad.set_mode(mode);
                    }
                }
                Action::PunchOk(peer) => tracing::info!("hole punch to {peer}: ok"),
                Action::Direct(peer) => tracing::info!("direct connection to {peer}"),
                Action::Resume(peer) => {
                    // The session streams died with the relayed connection; as
                    // after a reconnect, the session starts over on the direct one.
                    tracing::debug!(%peer, "relayed connection closed; session resumes on the direct one");
                    self.on_peer_gone(peer);
                    let ids: Vec<ContentId> = self.contents.keys().copied().collect();
                    for id in ids {
                        self.probe_swarm_peer(id, peer);
                    }
                }
            }
        }
    }
}
