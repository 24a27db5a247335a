//! The piece picker's tests: bucket invariants after every operation, the
//! picking policies, and availability bookkeeping.

use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, HashSet};

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn bitfield(len: u32, ones: impl IntoIterator<Item = u32>) -> Bitfield {
    let mut bf = Bitfield::new(len);
    for i in ones {
        bf.set(i);
    }
    bf
}

/// A rarest-first picker: random-first mode off.
fn rarest(chunk_count: u32) -> PiecePicker {
    PiecePicker::new(
        chunk_count,
        PickerConfig {
            random_first: 0,
            ..PickerConfig::default()
        },
    )
}

/// Sets each chunk's availability to `avail[i]` by adding peers.
fn with_availability(avail: &[u32]) -> PiecePicker {
    let n = avail.len() as u32;
    let mut p = rarest(n);
    for (i, &a) in avail.iter().enumerate() {
        for _ in 0..a {
            p.peer_gained(i as u32);
        }
    }
    p.check_invariants();
    p
}

/// The same bookkeeping as the picker, done the obvious way.
#[derive(Debug)]
struct Model {
    have: Vec<bool>,
    avail: Vec<u32>,
    requested: Vec<u32>,
}

impl Model {
    fn new(n: u32) -> Self {
        Self {
            have: vec![false; n as usize],
            avail: vec![0; n as usize],
            requested: vec![0; n as usize],
        }
    }

    fn apply(&mut self, op: &Op) {
        let n = self.have.len() as u32;
        match op {
            Op::AddPeer(bits) | Op::RemovePeer(bits) => {
                for i in (0..n).filter(|&i| bit(bits, i)) {
                    let a = &mut self.avail[i as usize];
                    *a = match op {
                        Op::AddPeer(_) => *a + 1,
                        _ => a.saturating_sub(1),
                    };
                }
            }
            &Op::Gained(i) if i < n => self.avail[i as usize] += 1,
            &Op::Lost(i) if i < n => {
                self.avail[i as usize] = self.avail[i as usize].saturating_sub(1)
            }
            &Op::Have(i) if i < n => {
                self.have[i as usize] = true;
                self.requested[i as usize] = 0;
            }
            &Op::Request(i) if i < n && !self.have[i as usize] => self.requested[i as usize] += 1,
            &Op::Unrequest(i) if i < n => {
                self.requested[i as usize] = self.requested[i as usize].saturating_sub(1)
            }
            _ => {}
        }
    }

    /// Chunks `pick` may return for a peer holding `peer`.
    fn eligible(&self, peer: &Bitfield) -> Vec<u32> {
        (0..self.have.len() as u32)
            .filter(|&i| !self.have[i as usize] && self.requested[i as usize] == 0 && peer.get(i))
            .collect()
    }

    /// Rank of a chunk for rarest-first: availability, with unknown (0) last.
    fn rank(&self, i: u32) -> (bool, u32) {
        let a = self.avail[i as usize];
        (a == 0, a)
    }
}

#[derive(Debug, Clone)]
enum Op {
    AddPeer(u64),
    RemovePeer(u64),
    Gained(u32),
    Lost(u32),
    Have(u32),
    Request(u32),
    Unrequest(u32),
}

fn bit(bits: &u64, i: u32) -> bool {
    i < 64 && bits >> i & 1 == 1
}

/// A bitfield of `len` chunks from the low bits of `bits`, plus out-of-range bits when longer.
fn peer_bitfield(len: u32, bits: u64) -> Bitfield {
    bitfield(len, (0..64).filter(|&i| bit(&bits, i)))
}

fn apply(p: &mut PiecePicker, op: &Op) {
    let n = p.chunk_count();
    match *op {
        Op::AddPeer(bits) => p.add_peer(&peer_bitfield(n, bits)),
        Op::RemovePeer(bits) => p.remove_peer(&peer_bitfield(n, bits)),
        Op::Gained(i) => p.peer_gained(i),
        Op::Lost(i) => p.peer_lost(i),
        Op::Have(i) => p.mark_have(i),
        Op::Request(i) => p.mark_requested(i),
        Op::Unrequest(i) => p.mark_unrequested(i),
    }
}

/// Operations on chunks `0..n + 2`, so some indices are out of range.
fn ops(n: u32) -> impl Strategy<Value = Vec<Op>> {
    let i = 0..n + 2;
    let op = prop_oneof![
        2 => any::<u64>().prop_map(Op::AddPeer),
        1 => any::<u64>().prop_map(Op::RemovePeer),
        4 => i.clone().prop_map(Op::Gained),
        3 => i.clone().prop_map(Op::Lost),
        2 => i.clone().prop_map(Op::Have),
        2 => i.clone().prop_map(Op::Request),
        1 => i.prop_map(Op::Unrequest),
    ];
    proptest::collection::vec(op, 0..120)
}

fn scenario() -> impl Strategy<Value = (u32, Vec<Op>, u64, u64)> {
    (1u32..40).prop_flat_map(|n| (Just(n), ops(n), any::<u64>(), any::<u64>()))
}

#[test]
fn new_picker_lacks_everything() {
    let p = PiecePicker::new(10, PickerConfig::default());
    p.check_invariants();
    assert_eq!(p.chunk_count(), 10);
    assert_eq!(p.missing(), 10);
    assert!(!p.is_complete());
    assert!(!p.in_endgame());
    assert_eq!(p.have().count_ones(), 0);
    assert_eq!(PickerConfig::default().random_first, 4);
}

#[test]
fn empty_content_is_complete_and_never_picks() {
    let p = PiecePicker::new(0, PickerConfig::default());
    p.check_invariants();
    assert!(p.is_complete());
    assert!(!p.in_endgame());
    assert_eq!(p.pick(&Bitfield::full(0), &mut rng(0)), None);
    assert_eq!(
        p.pick_endgame(&Bitfield::full(0), |_| false, &mut rng(0)),
        None
    );
}

#[test]
fn picks_the_rarest_chunk() {
    let p = with_availability(&[3, 2, 5, 1, 4, 2]);
    let seed = Bitfield::full(6);
    for s in 0..50 {
        assert_eq!(p.pick(&seed, &mut rng(s)), Some(3));
    }
    // A peer without chunk 3 gets the rarest of what it has: 1 or 5.
    let partial = bitfield(6, [0, 1, 2, 5]);
    let picks: BTreeSet<_> = (0..50)
        .filter_map(|s| p.pick(&partial, &mut rng(s)))
        .collect();
    assert_eq!(picks, BTreeSet::from([1, 5]));
}

#[test]
fn skips_held_requested_and_lacking_chunks() {
    let mut p = with_availability(&[1, 1, 1, 2, 2]);
    p.mark_have(0);
    p.mark_requested(1);
    let peer = bitfield(5, [0, 1, 3, 4]);
    // Chunk 2 is the rarest left, but the peer lacks it.
    for s in 0..50 {
        assert!(matches!(p.pick(&peer, &mut rng(s)), Some(3 | 4)));
    }
    p.mark_unrequested(1);
    assert_eq!(p.pick(&peer, &mut rng(0)), Some(1));
    p.check_invariants();
}

#[test]
fn nothing_to_pick_is_none() {
    let mut p = with_availability(&[1, 1, 1]);
    assert_eq!(p.pick(&Bitfield::new(3), &mut rng(0)), None);
    p.mark_have(0);
    p.mark_requested(1);
    assert_eq!(p.pick(&bitfield(3, [0, 1]), &mut rng(0)), None);
}

#[test]
fn tie_break_is_random() {
    // Chunks 10..30 are equally rare; the rest are more common.
    let avail: Vec<u32> = (0..60)
        .map(|i| if (10..30).contains(&i) { 2 } else { 3 })
        .collect();
    let p = with_availability(&avail);
    let seed = Bitfield::full(60);
    let picks: BTreeSet<_> = (0..300)
        .filter_map(|s| p.pick(&seed, &mut rng(s)))
        .collect();
    assert!(picks.iter().all(|c| (10..30).contains(c)), "{picks:?}");
    assert!(picks.len() >= 15, "only {} distinct picks", picks.len());
}

#[test]
fn random_first_ignores_rarity_until_enough_is_held() {
    let mut avail = vec![5u32; 200];
    avail[7] = 1;
    let mut p = with_availability(&avail);
    p.config = PickerConfig::default();
    let seed = Bitfield::full(200);
    for held in 0..4 {
        let picks: BTreeSet<_> = (0..200)
            .filter_map(|s| p.pick(&seed, &mut rng(s)))
            .collect();
        assert!(picks.len() >= 50, "random-first picked only {picks:?}");
        assert!(picks.iter().all(|&c| !p.have().get(c)));
        p.mark_have(100 + held);
    }
    // Four chunks held: rarest first from now on.
    for s in 0..50 {
        assert_eq!(p.pick(&seed, &mut rng(s)), Some(7));
    }
}

#[test]
fn random_first_finds_the_few_chunks_a_peer_has() {
    let mut p = PiecePicker::new(10_000, PickerConfig::default());
    let peer = bitfield(10_000, [17, 5_000, 9_999]);
    p.add_peer(&peer);
    p.mark_requested(5_000);
    let picks: BTreeSet<_> = (0..100)
        .filter_map(|s| p.pick(&peer, &mut rng(s)))
        .collect();
    assert_eq!(picks, BTreeSet::from([17, 9_999]));
}

#[test]
fn unknown_chunks_are_picked_last_but_picked() {
    // The caller never added this peer, so chunk 2 reads as available nowhere.
    let p = with_availability(&[0, 3, 0, 4]);
    assert_eq!(p.pick(&bitfield(4, [1, 2, 3]), &mut rng(0)), Some(1));
    assert_eq!(p.pick(&bitfield(4, [2, 3]), &mut rng(0)), Some(3));
    assert_eq!(p.pick(&bitfield(4, [2]), &mut rng(0)), Some(2));
}

#[test]
fn default_policy_is_rarest_first() {
    assert_eq!(PickerConfig::default().policy, PickPolicy::RarestFirst);
}

#[test]
fn sequential_policy_picks_the_lowest_eligible_index() {
    let mut p = with_availability(&[1, 5, 2, 1, 4, 3]);
    p.config.policy = PickPolicy::Sequential;
    p.mark_have(0);
    p.mark_requested(1);
    // Chunk 3 is the rarest eligible, but 2 comes first.
    for s in 0..20 {
        assert_eq!(p.pick(&Bitfield::full(6), &mut rng(s)), Some(2));
    }
    assert_eq!(p.pick(&bitfield(6, [0, 1, 4, 5]), &mut rng(0)), Some(4));
    assert_eq!(p.pick(&bitfield(6, [0, 1]), &mut rng(0)), None);
}

#[test]
fn random_policy_ignores_rarity() {
    let mut avail = vec![5u32; 100];
    avail[7] = 1;
    let mut p = with_availability(&avail);
    p.config.policy = PickPolicy::Random;
    for c in 50..60 {
        p.mark_have(c);
    }
    p.mark_requested(3);
    let picks: BTreeSet<_> = (0..300)
        .filter_map(|s| p.pick(&Bitfield::full(100), &mut rng(s)))
        .collect();
    assert!(picks.len() >= 50, "random picked only {picks:?}");
    assert!(picks.iter().all(|&c| !(50..60).contains(&c) && c != 3));
    // Rarest first with the same state always takes chunk 7.
    p.config.policy = PickPolicy::RarestFirst;
    assert_eq!(p.pick(&Bitfield::full(100), &mut rng(0)), Some(7));
}

#[test]
fn availability_follows_peers() {
    let mut p = rarest(8);
    let a = bitfield(8, [0, 1, 2]);
    let b = bitfield(8, [2, 3]);
    p.add_peer(&a);
    p.add_peer(&b);
    p.peer_gained(7);
    assert_eq!(
        (0..8).map(|i| p.availability(i)).collect::<Vec<_>>(),
        [1, 1, 2, 1, 0, 0, 0, 1]
    );
    p.mark_have(2);
    p.remove_peer(&a);
    p.peer_lost(7);
    assert_eq!(
        (0..8).map(|i| p.availability(i)).collect::<Vec<_>>(),
        [0, 0, 1, 1, 0, 0, 0, 0]
    );
    p.check_invariants();
}

#[test]
fn mark_have_is_idempotent_and_clears_requests() {
    let mut p = with_availability(&[2, 1, 3]);
    p.mark_requested(1);
    p.mark_requested(1);
    assert_eq!(p.requested_count(1), 2);
    p.mark_have(1);
    p.mark_have(1);
    p.check_invariants();
    assert_eq!(p.requested_count(1), 0);
    assert_eq!(p.missing(), 2);
    // Late replies for a chunk we already hold change nothing.
    p.mark_requested(1);
    p.mark_unrequested(1);
    assert_eq!(p.requested_count(1), 0);
    p.mark_have(0);
    p.mark_have(2);
    p.check_invariants();
    assert!(p.is_complete());
    assert_eq!(p.pick(&Bitfield::full(3), &mut rng(0)), None);
}

#[test]
fn counters_saturate_instead_of_underflowing() {
    let mut p = rarest(3);
    p.peer_lost(0);
    p.remove_peer(&Bitfield::full(3));
    p.mark_unrequested(1);
    p.check_invariants();
    assert_eq!(p.availability(0), 0);
    assert_eq!(p.requested_count(1), 0);
    assert_eq!(
        p.pick(&Bitfield::full(3), &mut rng(0)).map(|c| c < 3),
        Some(true)
    );
}

#[test]
fn out_of_range_indices_are_ignored() {
    let mut p = rarest(5);
    for i in [5, 6, 64, u32::MAX] {
        p.peer_gained(i);
        p.peer_lost(i);
        p.mark_requested(i);
        p.mark_unrequested(i);
        p.mark_have(i);
        assert_eq!(p.availability(i), 0);
        assert_eq!(p.requested_count(i), 0);
    }
    // Bitfields of the wrong length, from a confused or hostile peer.
    let long = Bitfield::full(200);
    p.add_peer(&long);
    p.add_peer(&Bitfield::full(2));
    p.remove_peer(&Bitfield::full(1));
    p.check_invariants();
    assert_eq!(p.missing(), 5);
    assert_eq!(
        (0..5).map(|i| p.availability(i)).collect::<Vec<_>>(),
        [1, 2, 1, 1, 1]
    );
    assert!(p.pick(&long, &mut rng(0)).is_some_and(|c| c < 5));
    assert!(p.pick(&Bitfield::new(0), &mut rng(0)).is_none());
    assert!(p.pick_endgame(&long, |_| false, &mut rng(0)).is_none());
}

#[test]
fn endgame_starts_when_every_missing_chunk_is_in_flight() {
    let mut p = with_availability(&[1, 2, 2, 1]);
    p.mark_have(0);
    p.mark_requested(1);
    p.mark_requested(2);
    assert!(!p.in_endgame());
    p.mark_requested(3);
    assert!(p.in_endgame());
    let seed = Bitfield::full(4);
    assert_eq!(p.pick(&seed, &mut rng(0)), None);
    // This peer already has a request out for chunk 3.
    for s in 0..20 {
        let c = p.pick_endgame(&seed, |c| c == 3, &mut rng(s));
        assert!(matches!(c, Some(1 | 2)), "{c:?}");
    }
    p.mark_unrequested(2);
    assert!(!p.in_endgame());
    p.mark_requested(2);
    p.mark_have(1);
    p.mark_have(2);
    p.mark_have(3);
    assert!(!p.in_endgame());
    assert!(p.is_complete());
}

#[test]
fn endgame_prefers_fewest_requests_with_random_tie_break() {
    let mut p = with_availability(&[1; 10]);
    for c in 0..10 {
        p.mark_requested(c);
        if c != 4 && c != 8 {
            p.mark_requested(c);
        }
    }
    let seed = Bitfield::full(10);
    let picks: BTreeSet<_> = (0..100)
        .filter_map(|s| p.pick_endgame(&seed, |_| false, &mut rng(s)))
        .collect();
    assert_eq!(picks, BTreeSet::from([4, 8]));
    // With 4 and 8 already asked of this peer, the eight doubly-requested chunks tie.
    let picks: BTreeSet<_> = (0..200)
        .filter_map(|s| p.pick_endgame(&seed, |c| c == 4 || c == 8, &mut rng(s)))
        .collect();
    assert_eq!(picks.len(), 8, "{picks:?}");
    assert_eq!(
        p.pick_endgame(&bitfield(10, [4]), |c| c == 4, &mut rng(0)),
        None
    );
}

#[test]
fn endgame_loop_completes() {
    let n = 40;
    let mut r = rng(7);
    let mut p = PiecePicker::new(n, PickerConfig::default());
    let peers: Vec<Bitfield> = (0..4)
        .map(|_| bitfield(n, (0..n).filter(|_| r.random_bool(0.6))))
        .chain([Bitfield::full(n)])
        .collect();
    for bf in &peers {
        p.add_peer(bf);
    }
    let mut asked: Vec<HashSet<u32>> = vec![HashSet::new(); peers.len()];
    for round in 0..10_000 {
        if p.is_complete() {
            break;
        }
        let who = r.random_range(0..peers.len());
        let pick = p.pick(&peers[who], &mut r).or_else(|| {
            p.in_endgame()
                .then(|| p.pick_endgame(&peers[who], |c| asked[who].contains(&c), &mut r))
                .flatten()
        });
        if let Some(c) = pick {
            assert!(asked[who].insert(c), "asked peer {who} twice for {c}");
            assert!(peers[who].get(c) && !p.have().get(c));
            p.mark_requested(c);
        }
        // Some outstanding request completes; the others for that chunk are cancelled.
        if round % 3 == 0 {
            let flying: Vec<(usize, u32)> = asked
                .iter()
                .enumerate()
                .flat_map(|(w, s)| s.iter().map(move |&c| (w, c)))
                .collect();
            if !flying.is_empty() {
                let (_, c) = flying[r.random_range(0..flying.len())];
                p.mark_have(c);
                for s in &mut asked {
                    s.remove(&c);
                }
            }
        }
        p.check_invariants();
    }
    assert!(p.is_complete(), "still missing {}", p.missing());
}

#[test]
fn large_swarm_stays_consistent() {
    let n = 2_000;
    let mut r = rng(1);
    let mut p = PiecePicker::new(n, PickerConfig::default());
    let peers: Vec<Bitfield> = (0..30)
        .map(|_| bitfield(n, (0..n).filter(|_| r.random_bool(0.5))))
        .collect();
    for bf in &peers {
        p.add_peer(bf);
    }
    for c in (0..n).step_by(3) {
        p.mark_have(c);
    }
    for bf in peers.iter().step_by(2) {
        p.remove_peer(bf);
    }
    p.check_invariants();
    let model_avail = |c: u32| {
        peers
            .iter()
            .skip(1)
            .step_by(2)
            .filter(|bf| bf.get(c))
            .count()
    };
    assert!((0..n).all(|c| p.availability(c) as usize == model_avail(c)));
}

proptest! {
    #[test]
    fn bookkeeping_matches_model_and_invariants_hold((n, ops, _, _) in scenario()) {
        let mut p = rarest(n);
        let mut m = Model::new(n);
        for op in &ops {
            apply(&mut p, op);
            m.apply(op);
            p.check_invariants();
        }
        for i in 0..n {
            prop_assert_eq!(p.availability(i), m.avail[i as usize]);
            prop_assert_eq!(p.requested_count(i), m.requested[i as usize]);
            prop_assert_eq!(p.have().get(i), m.have[i as usize]);
        }
        let missing: Vec<u32> = (0..n).filter(|&i| !m.have[i as usize]).collect();
        prop_assert_eq!(p.missing() as usize, missing.len());
        let endgame = !missing.is_empty() && missing.iter().all(|&i| m.requested[i as usize] > 0);
        prop_assert_eq!(p.in_endgame(), endgame);
    }

    #[test]
    fn pick_is_eligible_and_rarest((n, ops, peer_bits, seed) in scenario()) {
        let mut p = rarest(n);
        let mut m = Model::new(n);
        for op in &ops {
            apply(&mut p, op);
            m.apply(op);
        }
        // Sometimes count the peer itself, as a caller with consistent bookkeeping does.
        let peer = peer_bitfield(n, peer_bits);
        if seed % 2 == 0 {
            let op = Op::AddPeer(peer_bits);
            apply(&mut p, &op);
            m.apply(&op);
        }
        let eligible = m.eligible(&peer);
        match p.pick(&peer, &mut rng(seed)) {
            None => prop_assert!(eligible.is_empty(), "None but {:?} eligible", eligible),
            Some(c) => {
                prop_assert!(eligible.contains(&c), "picked ineligible {}", c);
                let best = eligible.iter().map(|&i| m.rank(i)).min();
                prop_assert_eq!(Some(m.rank(c)), best);
            }
        }
    }

    #[test]
    fn random_first_pick_is_eligible((n, ops, peer_bits, seed) in scenario(), random_first in 0u32..6) {
        let mut p = PiecePicker::new(n, PickerConfig { random_first, ..PickerConfig::default() });
        let mut m = Model::new(n);
        for op in &ops {
            apply(&mut p, op);
            m.apply(op);
        }
        let peer = peer_bitfield(n, peer_bits);
        let eligible = m.eligible(&peer);
        match p.pick(&peer, &mut rng(seed)) {
            None => prop_assert!(eligible.is_empty()),
            Some(c) => prop_assert!(eligible.contains(&c)),
        }
    }

    #[test]
    fn endgame_pick_is_requested_and_not_asked((n, ops, peer_bits, seed) in scenario(), asked_bits in any::<u64>()) {
        let mut p = rarest(n);
        let mut m = Model::new(n);
        for op in &ops {
            apply(&mut p, op);
            m.apply(op);
        }
        let peer = peer_bitfield(n, peer_bits);
        let asked = |c: u32| bit(&asked_bits, c);
        let candidates: Vec<u32> = (0..n)
            .filter(|&i| !m.have[i as usize] && m.requested[i as usize] > 0 && peer.get(i) && !asked(i))
            .collect();
        match p.pick_endgame(&peer, asked, &mut rng(seed)) {
            None => prop_assert!(candidates.is_empty()),
            Some(c) => {
                prop_assert!(candidates.contains(&c));
                let fewest = candidates.iter().map(|&i| m.requested[i as usize]).min();
                prop_assert_eq!(Some(m.requested[c as usize]), fewest);
            }
        }
    }
}

impl PiecePicker {
    /// Panics unless `order`, `pos`, `ends` and the counters agree with each other.
    fn check_invariants(&self) {
        let n = self.chunk_count();
        let live = self.live();
        assert_eq!(self.order.len(), n as usize);
        assert_eq!(self.pos.len(), n as usize);
        assert_eq!(self.availability.len(), n as usize);
        assert_eq!(self.requested.len(), n as usize);
        assert!(!self.ends.is_empty(), "ends must not be empty");
        assert!(
            self.ends.windows(2).all(|w| w[0] <= w[1]),
            "ends not sorted"
        );
        if let [.., below, top] = self.ends[..] {
            assert_ne!(below, top, "empty top bucket was not trimmed");
        }
        assert!(live <= n);
        for (p, &c) in self.order.iter().enumerate() {
            assert!(c < n, "order holds out-of-range chunk {c}");
            assert_eq!(self.pos[c as usize], p as u32, "pos/order mismatch at {p}");
        }
        let mut bucket = 0usize;
        for p in 0..live {
            while self.ends[bucket] <= p {
                bucket += 1;
            }
            let c = self.order[p as usize];
            assert!(!self.have.get(c), "held chunk {c} in live region");
            assert_eq!(
                self.availability[c as usize] as usize, bucket,
                "chunk {c} at {p} in wrong bucket"
            );
        }
        for &c in &self.order[live as usize..] {
            assert!(self.have.get(c), "missing chunk {c} outside live region");
            assert_eq!(
                self.requested[c as usize], 0,
                "held chunk {c} counts requests"
            );
        }
        assert_eq!(self.have.count_ones(), n - live);
        let unrequested = self.order[..live as usize]
            .iter()
            .filter(|&&c| self.requested[c as usize] == 0)
            .count();
        assert_eq!(self.unrequested_missing as usize, unrequested);
        for c in 0..n {
            let blocked = self.have.get(c) || self.requested[c as usize] > 0;
            assert_eq!(self.blocked.get(c), blocked, "blocked bit of chunk {c}");
        }
    }
}
