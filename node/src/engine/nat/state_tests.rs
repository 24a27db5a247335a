//! The NAT state on a virtual clock: which relay gets a reservation and
//! when, what closes a relayed connection, what AutoNAT's answers add up to.

use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

use super::*;

fn relay_addr(peer: PeerId, port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
        .parse()
        .unwrap()
}

fn conn(n: usize) -> ConnectionId {
    ConnectionId::new_unchecked(n)
}

fn with_relays(relays: Vec<Multiaddr>) -> NatState {
    NatState::new(NatConfig {
        relays,
        ..NatConfig::default()
    })
}

fn reserves(acts: &[Action]) -> Vec<PeerId> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Reserve { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn no_relay_and_no_nat_means_nothing_to_do() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    assert!(s.poll(t0).is_empty());
    assert_eq!(s.poll_timeout(), None, "no timer without relays");
    let peer = PeerId::random();
    let acts = s.connected(t0, conn(1), peer, false, Some(relay_addr(peer, 1)));
    assert!(acts.is_empty(), "{acts:?}");
    // A peer offering the relay protocol is remembered but not used while reachability is unknown.
    assert!(s.identified(t0, peer, true, &[]).is_empty());
    assert_eq!(s.poll_timeout(), None);
    let st = s.stats();
    assert_eq!(st.reachability, Reachability::Unknown);
    assert_eq!((st.conns_direct, st.conns_relayed), (1, 0));
}

#[test]
fn an_explicit_relay_is_dialled_and_reserved_only_after_identify() {
    let t0 = Instant::now();
    let relay = PeerId::random();
    let addr = relay_addr(relay, 4001);
    let mut s = with_relays(vec![addr.clone()]);
    assert_eq!(
        s.poll(t0),
        vec![Action::Dial {
            peer: relay,
            addr: addr.clone()
        }]
    );
    // Connected but not identified: DCUtR would lack our observed address (NATLAB fact 2).
    let acts = s.connected(t0, conn(1), relay, false, Some(addr.clone()));
    assert!(reserves(&acts).is_empty(), "{acts:?}");
    let acts = s.identified(t0, relay, true, &[]);
    assert_eq!(reserves(&acts), vec![relay]);
    let listener = ListenerId::next();
    s.reserving(relay, listener);
    // Identify again (push, periodic): no second reservation.
    assert!(reserves(&s.identified(t0, relay, true, &[])).is_empty());
    assert!(s.stats().reservations.is_empty(), "not accepted yet");
    assert_eq!(s.reserved(relay), Some(addr.clone()));
    assert_eq!(s.reserved(relay), None, "a renewal is not new");
    assert_eq!(s.stats().reservations, vec![addr]);
}

#[test]
fn a_lost_reservation_is_retried_with_growing_waits() {
    let t0 = Instant::now();
    let relay = PeerId::random();
    let addr = relay_addr(relay, 4001);
    let mut s = with_relays(vec![addr.clone()]);
    s.poll(t0);
    s.connected(t0, conn(1), relay, false, Some(addr.clone()));
    s.identified(t0, relay, true, &[]);
    let l1 = ListenerId::next();
    s.reserving(relay, l1);
    s.reserved(relay);
    let (lost, acts) = s.listener_closed(t0, l1);
    assert_eq!(lost, Some(addr.clone()));
    assert!(reserves(&acts).is_empty(), "waits before retrying");
    let retry = s.poll_timeout().expect("a retry is scheduled");
    assert!(retry > t0);
    assert!(reserves(&s.poll(retry - Duration::from_millis(1))).is_empty());
    assert_eq!(reserves(&s.poll(retry)), vec![relay]);
    let l2 = ListenerId::next();
    s.reserving(relay, l2);
    let (_, _) = s.listener_closed(retry, l2);
    let second = s.poll_timeout().unwrap();
    assert!(
        second - retry > retry - t0,
        "the second wait is longer than the first"
    );
    // An unknown listener (say, a TCP one) is none of ours.
    assert_eq!(s.listener_closed(t0, ListenerId::next()).0, None);
}

#[test]
fn a_failed_dial_to_a_relay_waits_then_dials_again() {
    let t0 = Instant::now();
    let relay = PeerId::random();
    let addr = relay_addr(relay, 4001);
    let mut s = with_relays(vec![addr.clone()]);
    assert_eq!(s.poll(t0).len(), 1);
    assert!(s.dial_failed(t0, relay).is_empty());
    let at = s.poll_timeout().unwrap();
    assert_eq!(s.poll(at), vec![Action::Dial { peer: relay, addr }]);
}

#[test]
fn private_reachability_reserves_on_connected_relays_up_to_the_limit() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    let relays: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    for (i, r) in relays.iter().enumerate() {
        s.connected(
            t0,
            conn(i),
            *r,
            false,
            Some(relay_addr(*r, 4000 + i as u16)),
        );
        assert!(
            s.identified(t0, *r, true, &[]).is_empty(),
            "reachability unknown yet"
        );
    }
    // A peer we did not dial (inbound) is no candidate: we may not reach it.
    let inbound = PeerId::random();
    s.connected(t0, conn(9), inbound, false, None);
    s.identified(t0, inbound, true, &[]);
    let addr: Multiaddr = "/ip4/198.51.100.7/tcp/4001".parse().unwrap();
    let acts = s.tested(t0, addr, false);
    assert!(acts.contains(&Action::Reachability(Reachability::Private)));
    let picked = reserves(&acts);
    assert_eq!(picked.len(), 2, "two reservations at most: {acts:?}");
    assert!(!picked.contains(&inbound));
    for p in &picked {
        s.reserving(*p, ListenerId::next());
    }
    assert!(reserves(&s.poll(t0)).is_empty(), "the limit holds");
}

#[test]
fn explicit_relays_come_before_candidates() {
    let t0 = Instant::now();
    let explicit = PeerId::random();
    let mut s = NatState::new(NatConfig {
        relays: vec![relay_addr(explicit, 4001)],
        max_reservations: 1,
        ..NatConfig::default()
    });
    let cand = PeerId::random();
    s.connected(t0, conn(1), cand, false, Some(relay_addr(cand, 4002)));
    s.identified(t0, cand, true, &[]);
    s.tested(t0, "/ip4/198.51.100.7/tcp/1".parse().unwrap(), false);
    s.connected(t0, conn(2), explicit, false, None);
    let acts = s.identified(t0, explicit, true, &[]);
    assert_eq!(reserves(&acts), vec![explicit]);
}

#[test]
fn reachability_is_public_once_any_address_is_reachable() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    let a: Multiaddr = "/ip4/198.51.100.7/tcp/1".parse().unwrap();
    let b: Multiaddr = "/ip4/198.51.100.7/udp/1/quic-v1".parse().unwrap();
    assert_eq!(
        s.tested(t0, a.clone(), false),
        vec![Action::Reachability(Reachability::Private)]
    );
    assert_eq!(
        s.tested(t0, b, true),
        vec![Action::Reachability(Reachability::Public)]
    );
    assert!(s.tested(t0, a, false).is_empty(), "still public");
    // `--external` is public whatever AutoNAT says.
    let mut e = NatState::new(NatConfig {
        external: vec!["/ip4/198.51.100.1/tcp/4001".parse().unwrap()],
        ..NatConfig::default()
    });
    assert_eq!(e.stats().reachability, Reachability::Public);
    assert!(e
        .tested(t0, "/ip4/198.51.100.1/tcp/9".parse().unwrap(), false)
        .is_empty());
}

#[test]
fn autonat_answers_are_bounded() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    for port in 0..100u16 {
        let a: Multiaddr = format!("/ip4/198.51.100.7/tcp/{port}").parse().unwrap();
        s.tested(t0, a, false);
    }
    assert!(s.tests.len() <= MAX_TESTS);
}

#[test]
fn a_direct_connection_closes_the_relayed_one_and_counts_the_punch() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    let peer = PeerId::random();
    let other = PeerId::random();
    assert!(s.connected(t0, conn(1), peer, true, None).is_empty());
    s.connected(t0, conn(2), other, true, None);
    let st = s.stats();
    assert_eq!((st.punches_tried, st.conns_relayed), (2, 2));
    s.count_bytes(&peer, 1000);
    let t1 = t0 + Duration::from_millis(42);
    let acts = s.connected(t1, conn(3), peer, false, None);
    assert!(acts.contains(&Action::PunchOk(peer)));
    assert!(acts.contains(&Action::Direct(peer)));
    assert!(acts.contains(&Action::Close(conn(1))));
    assert!(
        !acts.contains(&Action::Close(conn(2))),
        "another peer's relayed connection stays"
    );
    // QUIC's second direct connection (NATLAB fact 5) counts nothing twice.
    let acts = s.connected(t1, conn(4), peer, false, None);
    assert!(!acts.contains(&Action::PunchOk(peer)), "{acts:?}");
    assert!(!s.punch_result(peer, true));
    s.count_bytes(&peer, 5000);
    assert_eq!(s.closed(t1, conn(1)), vec![Action::Resume(peer)]);
    let st = s.stats();
    assert_eq!(st.punches_ok, 1);
    assert_eq!(st.first_direct_ms, Some(42));
    assert_eq!((st.bytes_relayed, st.bytes_direct), (1000, 5000));
    assert_eq!((st.conns_direct, st.conns_relayed), (2, 1));
}

#[test]
fn a_failed_punch_is_settled_once_and_bytes_count_as_relayed() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    let peer = PeerId::random();
    s.connected(t0, conn(1), peer, true, None);
    assert!(s.punch_result(peer, false));
    assert!(!s.punch_result(peer, false), "settled already");
    s.count_bytes(&peer, 7);
    let st = s.stats();
    assert_eq!((st.punches_tried, st.punches_ok), (1, 0));
    assert_eq!(st.bytes_relayed, 7);
    assert_eq!(st.first_direct_ms, None);
    // All of the peer's connections gone: its entry goes too (bounded by connections).
    s.closed(t0, conn(1));
    assert!(s.peers.is_empty() && s.conns.is_empty());
}

#[test]
fn a_peer_reached_over_a_relay_is_dialled_once_at_its_direct_addresses() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    let peer = PeerId::random();
    let direct: Multiaddr = "/ip4/198.51.100.9/tcp/4001".parse().unwrap();
    let relayed: Multiaddr = format!(
        "/ip4/198.51.100.1/tcp/4001/p2p/{}/p2p-circuit",
        PeerId::random()
    )
    .parse()
    .unwrap();
    let told = [relayed, direct.clone()];
    // Identify from a peer we reach directly: nothing to do.
    s.connected(t0, conn(1), peer, false, None);
    assert!(s.identified(t0, peer, false, &told).is_empty());
    s.closed(t0, conn(1));
    s.connected(t0, conn(2), peer, true, None);
    assert_eq!(
        s.identified(t0, peer, false, &told),
        vec![Action::DialDirect {
            peer,
            addrs: vec![direct]
        }],
        "only the direct address is dialled"
    );
    assert!(s.identified(t0, peer, false, &told).is_empty(), "once");
}

#[test]
fn autonat_answers_about_relayed_addresses_are_ignored() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    let relayed: Multiaddr = format!(
        "/ip4/127.0.0.1/tcp/4001/p2p/{}/p2p-circuit",
        PeerId::random()
    )
    .parse()
    .unwrap();
    assert!(s.tested(t0, relayed, false).is_empty());
    // What a peer sees of us on an inbound relayed connection.
    let bare: Multiaddr = format!("/p2p/{}", PeerId::random()).parse().unwrap();
    assert!(s.tested(t0, bare, false).is_empty());
    assert_eq!(s.stats().reachability, Reachability::Unknown);
}

#[test]
fn a_direct_connection_just_after_the_peer_closed_the_relayed_one_still_counts() {
    let t0 = Instant::now();
    let mut s = NatState::new(NatConfig::default());
    let peer = PeerId::random();
    s.connected(t0, conn(1), peer, true, None);
    // The peer saw the direct connection first and closed the relayed one.
    s.closed(t0, conn(1));
    let t1 = t0 + Duration::from_millis(5);
    let acts = s.connected(t1, conn(2), peer, false, None);
    assert!(acts.contains(&Action::PunchOk(peer)), "{acts:?}");
    assert!(acts.contains(&Action::Direct(peer)));
    assert_eq!(s.stats().punches_ok, 1);
    // Without a direct connection the lingering entry goes after a while.
    let other = PeerId::random();
    s.connected(t1, conn(3), other, true, None);
    s.closed(t1, conn(3));
    s.closed(t1 + Duration::from_secs(60), conn(2));
    assert!(
        s.peers.is_empty(),
        "bounded by connections and recent punches"
    );
}
