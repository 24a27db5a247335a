//! The NAT traversal decisions, sans IO: which relays to reserve a slot on
//! and when, when a relayed connection has become redundant, what AutoNAT's
//! answers add up to, and the counters the stats report. Events and the
//! time come in; [`Action`]s come out.
//!
//! Every collection is bounded: relays by [`MAX_RELAYS`], AutoNAT answers
//! by [`MAX_TESTS`], connections by the swarm's connection limit (an entry
//! lives exactly as long as its connection).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use crate::client::{NatStats, Reachability};

/// Most relays remembered: those given with `--relay ADDR` plus candidates
/// found among connected peers.
pub const MAX_RELAYS: usize = 8;
/// Most AutoNAT answers remembered (the newest win).
pub const MAX_TESTS: usize = 16;
/// Most addresses of a peer dialled directly while we reach it over a relay.
pub const MAX_DIRECT_ADDRS: usize = 8;
/// First wait before trying a relay again after a failed dial or reservation.
const RETRY_FIRST: Duration = Duration::from_secs(5);
/// Longest wait between tries.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// How long a punch outlives its relayed connection (see `PeerConns::linger_until`).
const PUNCH_LINGER: Duration = Duration::from_secs(10);

/// What the state needs to know from the command line.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Relays to reserve a slot on whatever our reachability (`--relay
    /// ADDR`), each ending in `/p2p/<relay id>`.
    pub relays: Vec<Multiaddr>,
    /// Addresses others reach us at (`--external`): confirmed as external,
    /// and reachability is public.
    pub external: Vec<Multiaddr>,
    /// Most relays we hold a reservation on at once.
    pub max_reservations: usize,
    /// When AutoNAT says private, reserve on connected peers that offer the relay protocol.
    pub auto_relay: bool,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            relays: Vec::new(),
            external: Vec::new(),
            max_reservations: 2,
            auto_relay: true,
        }
    }
}

/// What the engine should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Connect to a relay (its address ends in `/p2p/<peer>`).
    Dial { peer: PeerId, addr: Multiaddr },
    /// Dial a peer we reach only over a relay at the direct addresses it
    /// told us: a public peer answers at once (DCUtR cannot punch to a peer
    /// that knows no observed address of its own), a NATed one fails fast.
    DialDirect { peer: PeerId, addrs: Vec<Multiaddr> },
    /// Listen on `addr/p2p-circuit` to reserve a slot; report the listener with [`NatState::reserving`].
    Reserve { peer: PeerId, addr: Multiaddr },
    /// Close this relayed connection: a direct one to the same peer exists.
    Close(ConnectionId),
    /// Reachability changed: log it, set Kademlia's mode.
    Reachability(Reachability),
    /// A hole punch to `peer` succeeded: a direct connection came while relayed.
    PunchOk(PeerId),
    /// The first direct connection to `peer`, which we had reached over a relay only.
    Direct(PeerId),
    /// `peer`'s last relayed connection closed while a direct one stays:
    /// restart its session, so it resumes on the direct connection now
    /// rather than at the next periodic have exchange.
    Resume(PeerId),
}

/// Where we are with one relay.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Nothing under way.
    Idle,
    /// We dialled it and wait for the connection.
    Dialing,
    /// A listen on its circuit address is under way or holds a slot.
    Listening {
        listener: ListenerId,
        reserved: bool,
    },
    /// It failed; try again at this time.
    Waiting(Instant),
}

#[derive(Clone, Debug)]
struct Relay {
    peer: PeerId,
    /// Its address, ending in `/p2p/<peer>`.
    addr: Multiaddr,
    /// Given with `--relay ADDR` (used whatever our reachability).
    explicit: bool,
    connected: bool,
    /// Identify arrived from it: DCUtR has our observed addresses (NATLAB fact 2).
    identified: bool,
    step: Step,
    failures: u32,
}

/// One open connection.
#[derive(Clone, Debug)]
struct Conn {
    peer: PeerId,
    relayed: bool,
    /// The address we dialled, if we dialled it directly.
    dialed: Option<Multiaddr>,
}

/// Connections to one peer, by kind.
#[derive(Clone, Debug, Default)]
struct PeerConns {
    direct: u32,
    relayed: u32,
    /// A relayed connection came while no direct one existed: DCUtR is punching.
    punching: bool,
    /// We dialled the direct addresses it told us (once per peer and punch).
    dialed_direct: bool,
    /// Its relayed connections are gone while a punch was under way: the
    /// entry stays until then, because the peer closes the relayed
    /// connection as soon as it sees the direct one, which may reach us
    /// after that close.
    linger_until: Option<Instant>,
}

/// The NAT traversal state of one node.
#[derive(Debug)]
pub struct NatState {
    config: NatConfig,
    relays: Vec<Relay>,
    tests: VecDeque<(Multiaddr, bool)>,
    reachability: Reachability,
    conns: HashMap<ConnectionId, Conn>,
    peers: HashMap<PeerId, PeerConns>,
    punches_tried: u64,
    punches_ok: u64,
    first_relayed_at: Option<Instant>,
    first_direct_ms: Option<u64>,
    bytes_relayed: u64,
    bytes_direct: u64,
}

/// The relay's peer ID: the last `/p2p/` of `addr`.
pub fn relay_peer(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// True for an address through a relay.
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// True for an address a peer could dial directly: IP or DNS, not through a relay.
fn is_testable(addr: &Multiaddr) -> bool {
    matches!(
        addr.iter().next(),
        Some(
            Protocol::Ip4(_)
                | Protocol::Ip6(_)
                | Protocol::Dns(_)
                | Protocol::Dns4(_)
                | Protocol::Dns6(_)
        )
    ) && !is_circuit(addr)
}

impl NatState {
    /// The state at start; explicit relays without a peer ID are skipped
    /// (the command line refuses them).
    pub fn new(config: NatConfig) -> Self {
        let relays = config
            .relays
            .iter()
            .filter_map(|addr| {
                Some(Relay {
                    peer: relay_peer(addr)?,
                    addr: addr.clone(),
                    explicit: true,
                    connected: false,
                    identified: false,
                    step: Step::Idle,
                    failures: 0,
                })
            })
            .take(MAX_RELAYS)
            .collect();
        let reachability = if config.external.is_empty() {
            Reachability::Unknown
        } else {
            Reachability::Public
        };
        Self {
            config,
            relays,
            tests: VecDeque::new(),
            reachability,
            conns: HashMap::new(),
            peers: HashMap::new(),
            punches_tried: 0,
            punches_ok: 0,
            first_relayed_at: None,
            first_direct_ms: None,
            bytes_relayed: 0,
            bytes_direct: 0,
        }
    }

    /// True if any relay is configured or known: only then is there
    /// anything to retry on a timer.
    fn wants_relays(&self) -> bool {
        self.relays.iter().any(|r| self.wanted(r))
    }

    fn wanted(&self, r: &Relay) -> bool {
        r.explicit || (self.config.auto_relay && self.reachability == Reachability::Private)
    }

    /// A connection opened. `dialed` is the address if we dialled it directly.
    pub fn connected(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        peer: PeerId,
        relayed: bool,
        dialed: Option<Multiaddr>,
    ) -> Vec<Action> {
        self.conns.insert(
            conn,
            Conn {
                peer,
                relayed,
                dialed,
            },
        );
        let mut out = Vec::new();
        let p = self.peers.entry(peer).or_default();
        p.linger_until = None;
        if relayed {
            p.relayed += 1;
            if p.direct == 0 && !p.punching {
                p.punching = true;
                self.punches_tried += 1;
            }
            self.first_relayed_at.get_or_insert(now);
        } else {
            p.direct += 1;
            if p.relayed > 0 || p.punching {
                if std::mem::take(&mut p.punching) {
                    self.punches_ok += 1;
                    out.push(Action::PunchOk(peer));
                }
                if p.direct == 1 {
                    out.push(Action::Direct(peer));
                }
                if self.first_direct_ms.is_none() {
                    if let Some(t) = self.first_relayed_at {
                        let ms = now.saturating_duration_since(t).as_millis();
                        self.first_direct_ms = Some(u64::try_from(ms).unwrap_or(u64::MAX));
                    }
                }
                // Session streams reopen on the direct connection once the relayed one is gone.
                out.extend(
                    self.conns
                        .iter()
                        .filter(|(_, c)| c.peer == peer && c.relayed)
                        .map(|(id, _)| Action::Close(*id)),
                );
            }
            if let Some(r) = self.relays.iter_mut().find(|r| r.peer == peer) {
                r.connected = true;
                if r.step == Step::Dialing {
                    r.step = Step::Idle;
                }
            }
        }
        out.extend(self.poll(now));
        out
    }

    /// A connection closed.
    pub fn closed(&mut self, now: Instant, conn: ConnectionId) -> Vec<Action> {
        let Some(c) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(p) = self.peers.get_mut(&c.peer) {
            if c.relayed {
                p.relayed = p.relayed.saturating_sub(1);
                if p.relayed == 0 && p.direct > 0 {
                    out.push(Action::Resume(c.peer));
                }
            } else {
                p.direct = p.direct.saturating_sub(1);
            }
            if p.relayed == 0 {
                p.dialed_direct = false;
                if p.punching && p.direct == 0 {
                    p.linger_until = Some(now + PUNCH_LINGER);
                }
            }
        }
        // Entries live as long as their connections, or a lingering punch.
        self.peers
            .retain(|_, p| p.direct + p.relayed > 0 || p.linger_until.is_some_and(|t| t > now));
        if !c.relayed && !self.conns.values().any(|o| o.peer == c.peer && !o.relayed) {
            if let Some(r) = self.relays.iter_mut().find(|r| r.peer == c.peer) {
                r.connected = false;
                r.identified = false;
            }
        }
        out.extend(self.poll(now));
        out
    }

    /// A dial to `peer` failed.
    pub fn dial_failed(&mut self, now: Instant, peer: PeerId) -> Vec<Action> {
        if let Some(r) = self.relays.iter_mut().find(|r| r.peer == peer) {
            if r.step == Step::Dialing {
                r.failures += 1;
                r.step = Step::Waiting(now + backoff(r.failures));
            }
        }
        self.poll(now)
    }

    /// Identify arrived from `peer`, telling its `listen_addrs`; `offers_hop`
    /// if it runs a relay server.
    pub fn identified(
        &mut self,
        now: Instant,
        peer: PeerId,
        offers_hop: bool,
        listen_addrs: &[Multiaddr],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(p) = self.peers.get_mut(&peer) {
            if p.relayed > 0 && p.direct == 0 && !p.dialed_direct {
                p.dialed_direct = true;
                let addrs: Vec<Multiaddr> = listen_addrs
                    .iter()
                    .filter(|a| !is_circuit(a))
                    .take(MAX_DIRECT_ADDRS)
                    .cloned()
                    .collect();
                if !addrs.is_empty() {
                    out.push(Action::DialDirect { peer, addrs });
                }
            }
        }
        if let Some(r) = self.relays.iter_mut().find(|r| r.peer == peer) {
            r.identified = true;
            r.connected = true;
        } else if offers_hop && self.config.auto_relay && self.relays.len() < MAX_RELAYS {
            // Only a peer we dialled directly: its address is one we can reach.
            let dialed = self
                .conns
                .values()
                .find(|c| c.peer == peer && !c.relayed)
                .and_then(|c| c.dialed.clone());
            if let Some(addr) = dialed {
                let addr = addr.with_p2p(peer).unwrap_or_else(|a| a);
                self.relays.push(Relay {
                    peer,
                    addr,
                    explicit: false,
                    connected: true,
                    identified: true,
                    step: Step::Idle,
                    failures: 0,
                });
            }
        }
        out.extend(self.poll(now));
        out
    }

    /// The listen on `peer`'s circuit address started as `listener`.
    pub fn reserving(&mut self, peer: PeerId, listener: ListenerId) {
        if let Some(r) = self.relays.iter_mut().find(|r| r.peer == peer) {
            r.step = Step::Listening {
                listener,
                reserved: false,
            };
        }
    }

    /// The listen on `peer`'s circuit address could not start.
    pub fn reserve_failed(&mut self, now: Instant, peer: PeerId) {
        if let Some(r) = self.relays.iter_mut().find(|r| r.peer == peer) {
            r.failures += 1;
            r.step = Step::Waiting(now + backoff(r.failures));
        }
    }

    /// The relay accepted our reservation; its address if the reservation
    /// is new (not a renewal).
    pub fn reserved(&mut self, relay: PeerId) -> Option<Multiaddr> {
        let r = self.relays.iter_mut().find(|r| r.peer == relay)?;
        match &mut r.step {
            Step::Listening { reserved, .. } if !*reserved => {
                *reserved = true;
                r.failures = 0;
                Some(r.addr.clone())
            }
            _ => None,
        }
    }

    /// A listener closed; if it was a reservation, it is lost and tried
    /// again later. Returns the relay's address if it was one of ours.
    pub fn listener_closed(
        &mut self,
        now: Instant,
        listener: ListenerId,
    ) -> (Option<Multiaddr>, Vec<Action>) {
        let Some(r) = self
            .relays
            .iter_mut()
            .find(|r| matches!(r.step, Step::Listening { listener: l, .. } if l == listener))
        else {
            return (None, Vec::new());
        };
        r.failures += 1;
        r.step = Step::Waiting(now + backoff(r.failures));
        let addr = r.addr.clone();
        (Some(addr), self.poll(now))
    }

    /// AutoNAT tested `addr`: reachable or not.
    pub fn tested(&mut self, now: Instant, addr: Multiaddr, ok: bool) -> Vec<Action> {
        if !is_testable(&addr) {
            // A peer observed us over a relay (`/p2p/<us>`, or the relay's
            // circuit address): that says nothing about our own reachability.
            return Vec::new();
        }
        self.tests.retain(|(a, _)| *a != addr);
        self.tests.push_back((addr, ok));
        while self.tests.len() > MAX_TESTS {
            self.tests.pop_front();
        }
        let now_says = if !self.config.external.is_empty() || self.tests.iter().any(|(_, ok)| *ok) {
            Reachability::Public
        } else {
            Reachability::Private
        };
        let mut out = Vec::new();
        if now_says != self.reachability {
            self.reachability = now_says;
            out.push(Action::Reachability(now_says));
        }
        out.extend(self.poll(now));
        out
    }

    /// DCUtR reported on a hole punch to `peer`; true if this settles it as
    /// failed (a success is settled by the direct connection itself).
    pub fn punch_result(&mut self, peer: PeerId, ok: bool) -> bool {
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        // Already settled by a direct connection (QUIC brings two, NATLAB fact 5),
        // or about to be by the direct connection's own event.
        if !p.punching || ok || p.direct > 0 {
            return false;
        }
        p.punching = false;
        true
    }

    /// `bytes` of chunk payload went to or came from `peer`; true if it
    /// counted as relayed (the peer had only relayed connections).
    pub fn count_bytes(&mut self, peer: &PeerId, bytes: u64) -> bool {
        match self.peers.get(peer) {
            Some(p) if p.direct == 0 && p.relayed > 0 => {
                self.bytes_relayed += bytes;
                true
            }
            _ => {
                self.bytes_direct += bytes;
                false
            }
        }
    }

    /// Relays to dial or reserve on now.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let private = self.reachability == Reachability::Private;
        let auto = self.config.auto_relay;
        let mut busy = self
            .relays
            .iter()
            .filter(|r| matches!(r.step, Step::Listening { .. }))
            .count();
        let mut out = Vec::new();
        // Explicit relays first, in the order given; then candidates in the order found.
        let mut order: Vec<usize> = (0..self.relays.len()).collect();
        order.sort_by_key(|&i| !self.relays[i].explicit);
        for i in order {
            if busy >= self.config.max_reservations {
                break;
            }
            let r = &mut self.relays[i];
            if !(r.explicit || (auto && private)) {
                continue;
            }
            match r.step {
                Step::Listening { .. } | Step::Dialing => continue,
                Step::Waiting(at) if at > now => continue,
                Step::Waiting(_) | Step::Idle => {}
            }
            if r.identified {
                r.step = Step::Dialing; // replaced by `reserving` or `reserve_failed`
                busy += 1;
                out.push(Action::Reserve {
                    peer: r.peer,
                    addr: r.addr.clone(),
                });
            } else if !r.connected {
                r.step = Step::Dialing;
                out.push(Action::Dial {
                    peer: r.peer,
                    addr: r.addr.clone(),
                });
            } else {
                // Connected, identify still on its way: its arrival polls again.
                r.step = Step::Idle;
            }
        }
        out
    }

    /// When [`Self::poll`] has something to retry; None when no relay is wanted.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.wants_relays() {
            return None;
        }
        self.relays
            .iter()
            .filter(|r| self.wanted(r))
            .filter_map(|r| match r.step {
                Step::Waiting(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// The counters as the stats report them.
    pub fn stats(&self) -> NatStats {
        let relayed = self.conns.values().filter(|c| c.relayed).count();
        NatStats {
            reachability: self.reachability,
            reservations: self
                .relays
                .iter()
                .filter(|r| matches!(r.step, Step::Listening { reserved: true, .. }))
                .map(|r| r.addr.clone())
                .collect(),
            conns_direct: self.conns.len() - relayed,
            conns_relayed: relayed,
            punches_tried: self.punches_tried,
            punches_ok: self.punches_ok,
            first_direct_ms: self.first_direct_ms,
            bytes_relayed: self.bytes_relayed,
            bytes_direct: self.bytes_direct,
        }
    }
}

/// Wait before the `failures`th retry: doubling from [`RETRY_FIRST`] up to [`RETRY_MAX`].
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(10);
    (RETRY_FIRST * 2u32.pow(doublings)).min(RETRY_MAX)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
