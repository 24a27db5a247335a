//! Addresses of peers learned outside Kademlia's routing table (peer exchange,
//! identify, provider lookups: anything passed to `Swarm::add_peer_address`),
//! offered whenever such a peer is dialled by its ID.
//!
//! libp2p keeps an address only where some behaviour stores it: Kademlia does
//! for peers in its routing table, which holds DHT servers alone. A `get` runs
//! Kademlia as a client, so without this book a swarm member heard of through
//! peer exchange could not be dialled ("no addresses for peer").

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::PeerAddresses;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// A bounded, least-recently-used book of peers' addresses (libp2p keeps at
/// most 10 per peer); an address whose dial failed is dropped.
pub struct AddressBook {
    addrs: PeerAddresses,
}

impl AddressBook {
    /// A book remembering the addresses of up to `peers` peers.
    pub fn new(peers: NonZeroUsize) -> Self {
        Self {
            addrs: PeerAddresses::new(peers),
        }
    }
}

impl NetworkBehaviour for AddressBook {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        _addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        // Bare, as Kademlia gives them: the swarm drops exact duplicates only,
        // and the same address with and without `/p2p/<id>` was dialled twice
        // (two handshakes per dial: 200 idle nodes joining a testnet cost
        // twice the CPU).
        Ok(maybe_peer
            .map(|p| self.addrs.get(&p).map(without_peer_id).collect())
            .unwrap_or_default())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.addrs.on_swarm_event(&event);
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// `addr` without a trailing `/p2p/<id>` (libp2p's book stores it with one).
fn without_peer_id(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::swarm::behaviour::NewExternalAddrOfPeer;
    use libp2p::swarm::{DialError, DialFailure};

    fn dial_addrs(book: &mut AddressBook, peer: PeerId) -> Vec<Multiaddr> {
        book.handle_pending_outbound_connection(
            ConnectionId::new_unchecked(1),
            Some(peer),
            &[],
            Endpoint::Dialer,
        )
        .unwrap_or_default()
    }

    #[test]
    fn an_address_heard_of_is_offered_when_its_peer_is_dialled_until_a_dial_fails() {
        let mut book = AddressBook::new(NonZeroUsize::MIN.saturating_add(1));
        let peer = PeerId::random();
        let other = PeerId::random();
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        assert!(dial_addrs(&mut book, peer).is_empty());
        book.on_swarm_event(FromSwarm::NewExternalAddrOfPeer(NewExternalAddrOfPeer {
            peer_id: peer,
            addr: &addr,
        }));
        // Bare, so the swarm can tell it from Kademlia's copy of the same address.
        assert_eq!(dial_addrs(&mut book, peer), vec![addr.clone()]);
        assert!(
            dial_addrs(&mut book, other).is_empty(),
            "only its own peer's"
        );
        let error = DialError::Transport(vec![(
            addr.clone(),
            libp2p::TransportError::Other(std::io::Error::other("refused")),
        )]);
        book.on_swarm_event(FromSwarm::DialFailure(DialFailure {
            peer_id: Some(peer),
            error: &error,
            connection_id: ConnectionId::new_unchecked(2),
        }));
        assert!(
            dial_addrs(&mut book, peer).is_empty(),
            "a failed address is dropped"
        );
    }

    #[test]
    fn the_book_forgets_the_least_recently_used_peer_beyond_its_size() {
        let mut book = AddressBook::new(NonZeroUsize::MIN.saturating_add(1));
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for p in &peers {
            book.on_swarm_event(FromSwarm::NewExternalAddrOfPeer(NewExternalAddrOfPeer {
                peer_id: *p,
                addr: &addr,
            }));
        }
        assert!(dial_addrs(&mut book, peers[0]).is_empty());
        assert_eq!(dial_addrs(&mut book, peers[2]), vec![addr]);
    }
}
