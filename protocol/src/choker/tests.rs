//! The choker's unit and property tests.

use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn secs(k: u64) -> Duration {
    Duration::from_secs(k)
}

fn view(peer: u32, interested: bool, download_rate: u64, upload_rate: u64) -> PeerView<u32> {
    PeerView {
        peer,
        interested,
        download_rate,
        upload_rate,
        snubbed: false,
    }
}

fn leecher(peer: u32, download_rate: u64) -> PeerView<u32> {
    view(peer, true, download_rate, 0)
}

fn regular(choker: &Choker<u32>) -> BTreeSet<u32> {
    let optimistic = choker.optimistic();
    choker
        .unchoked()
        .filter(|p| Some(*p) != optimistic)
        .collect()
}

fn set(peers: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
    peers.into_iter().collect()
}

#[test]
fn leeching_unchokes_top_four_by_download_rate() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut choker = Choker::new(ChokerConfig::default());
    // Rates out of peer order; uploads deliberately rank the other way round.
    let mut peers: Vec<_> = (0..10u32)
        .map(|p| view(p, true, u64::from((p * 7) % 10) * 1000, u64::from(p)))
        .collect();
    // Fast but not interested: must not take a slot.
    peers.push(view(100, false, 1_000_000, 0));
    let changes = choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);

    // Download rates 9000, 8000, 7000, 6000 belong to peers 7, 4, 1, 8.
    assert_eq!(regular(&choker), set([1, 4, 7, 8]));
    let optimistic = choker.optimistic().expect("six choked interested peers");
    assert!(!regular(&choker).contains(&optimistic) && optimistic < 10);
    assert_eq!(set(changes.unchoke.iter().copied()), set(choker.unchoked()));
    assert!(changes.choke.is_empty());
    assert!(!choker.is_unchoked(&100));
    assert_eq!(choker.unchoked().count(), 5);
}

#[test]
fn seeding_ranks_by_upload_rate() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut choker = Choker::new(ChokerConfig::default());
    let peers: Vec<_> = (0..10u32)
        .map(|p| view(p, true, u64::from(p) * 1000, u64::from(10 - p) * 1000))
        .collect();
    // A seed has more regular slots than a leecher.
    let seed_slots = ChokerConfig::default().seed_slots;
    assert!(seed_slots > ChokerConfig::default().regular_slots);
    choker.rechoke(t0, &peers, Mode::Seeding, &mut rng);
    assert_eq!(regular(&choker), set(0..seed_slots as u32));

    // The same peers while leeching rank the other way, in four slots.
    let changes = choker.rechoke(t0 + secs(10), &peers, Mode::Leeching, &mut rng);
    assert_eq!(regular(&choker), set([6, 7, 8, 9]));
    assert!(changes.choke.iter().all(|&p| p < 6));
}

#[test]
fn not_interested_peers_stay_choked() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut choker = Choker::new(ChokerConfig::default());
    let mut peers: Vec<_> = (0..8u32).map(|p| view(p, false, 1_000_000, 0)).collect();
    peers.push(leecher(8, 10));
    peers.push(leecher(9, 20));
    choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);
    // Free slots are left empty rather than given to peers that want nothing.
    assert_eq!(set(choker.unchoked()), set([8, 9]));
    assert_eq!(choker.optimistic(), None);

    // An unchoked peer that loses interest is choked.
    peers[9].interested = false;
    let changes = choker.rechoke(t0 + secs(10), &peers, Mode::Leeching, &mut rng);
    assert_eq!(changes.choke, vec![9]);
    assert!(changes.unchoke.is_empty());
    assert_eq!(set(choker.unchoked()), set([8]));
}

#[test]
fn optimistic_rotates_every_period_and_holds_between_rechokes() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut choker = Choker::new(ChokerConfig::default());
    let mut peers: Vec<_> = (0..4u32).map(|p| leecher(p, 10_000)).collect();
    peers.extend((4..24u32).map(|p| leecher(p, 0)));

    let mut per_period = Vec::new();
    for period in 0..8u64 {
        let start = t0 + secs(30 * period);
        let changes = choker.rechoke(start, &peers, Mode::Leeching, &mut rng);
        let optimistic = choker.optimistic().expect("twenty choked interested peers");
        assert!(
            optimistic >= 4,
            "top peer {optimistic} got the optimistic slot"
        );
        if let Some(&previous) = per_period.last() {
            assert_ne!(
                optimistic, previous,
                "slot did not rotate in period {period}"
            );
            // Rotation swaps exactly the optimistic peer.
            assert_eq!(changes.unchoke, vec![optimistic]);
            assert_eq!(changes.choke, vec![previous]);
        }
        per_period.push(optimistic);
        for k in [10, 20] {
            assert!(choker.is_due(start + secs(k)));
            let changes = choker.rechoke(start + secs(k), &peers, Mode::Leeching, &mut rng);
            assert_eq!(
                choker.optimistic(),
                Some(optimistic),
                "changed inside a period"
            );
            assert_eq!(changes, ChokeChanges::default());
        }
        assert_eq!(regular(&choker), set([0, 1, 2, 3]));
    }
    let distinct: BTreeSet<u32> = per_period.iter().copied().collect();
    assert!(distinct.len() >= 5, "only {distinct:?} over 8 periods");

    // With two candidates the slot alternates: the holder is never redrawn.
    peers.truncate(6);
    let mut holders = Vec::new();
    for period in 8..16u64 {
        choker.rechoke(t0 + secs(30 * period), &peers, Mode::Leeching, &mut rng);
        holders.extend(choker.optimistic());
    }
    assert_eq!(holders.len(), 8);
    assert!(holders.windows(2).all(|w| w[0] != w[1]), "{holders:?}");
}

#[test]
fn optimistic_that_earns_a_top_slot_becomes_regular() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut choker = Choker::new(ChokerConfig::default());
    let mut peers: Vec<_> = (0..4u32)
        .map(|p| leecher(p, 1000 * u64::from(p + 1)))
        .collect();
    peers.extend((4..10u32).map(|p| leecher(p, 0)));
    choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);
    let lucky = choker.optimistic().expect("choked peers exist");

    // It reciprocated: now the fastest uploader to us.
    peers[lucky as usize].download_rate = 50_000;
    let changes = choker.rechoke(t0 + secs(10), &peers, Mode::Leeching, &mut rng);
    assert_eq!(regular(&choker), set([1, 2, 3, lucky]));
    let next = choker.optimistic().expect("choked peers remain");
    assert_ne!(next, lucky);
    assert!(next >= 4);
    // The slowest regular peer is out, and a fresh optimistic peer is in.
    assert_eq!(changes.choke, vec![0]);
    assert_eq!(changes.unchoke, vec![next]);
}

#[test]
fn snubbed_peers_lose_their_regular_slot() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let mut choker = Choker::new(ChokerConfig::default());
    let mut peers: Vec<_> = (0..5u32)
        .map(|p| leecher(p, 1000 * u64::from(p + 1)))
        .collect();
    choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);
    assert_eq!(regular(&choker), set([1, 2, 3, 4]));
    assert_eq!(choker.optimistic(), Some(0));

    // The fastest peer stops sending: it drops out of the regular set even with the best
    // (stale) rate, and as the only other candidate takes the optimistic slot instead.
    peers[4].snubbed = true;
    let changes = choker.rechoke(t0 + secs(10), &peers, Mode::Leeching, &mut rng);
    assert_eq!(regular(&choker), set([0, 1, 2, 3]));
    assert_eq!(choker.optimistic(), Some(4));
    assert_eq!(changes, ChokeChanges::default());

    // With other candidates around, a snubbed peer has no claim beyond a random draw.
    peers.extend((5..30u32).map(|p| leecher(p, 0)));
    for k in 2..20 {
        choker.rechoke(t0 + secs(10 * k), &peers, Mode::Leeching, &mut rng);
        assert!(!regular(&choker).contains(&4));
    }
}

#[test]
fn optimistic_is_replaced_when_it_leaves_or_loses_interest() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut choker = Choker::new(ChokerConfig::default());
    let mut peers: Vec<_> = (0..4u32).map(|p| leecher(p, 10_000)).collect();
    peers.extend((4..10u32).map(|p| leecher(p, 0)));
    choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);
    let first = choker.optimistic().expect("choked peers exist");

    peers[first as usize].interested = false;
    let changes = choker.rechoke(t0 + secs(10), &peers, Mode::Leeching, &mut rng);
    let second = choker.optimistic().expect("choked peers remain");
    assert_ne!(second, first);
    assert_eq!(changes.choke, vec![first]);
    assert_eq!(changes.unchoke, vec![second]);

    peers.retain(|v| v.peer != second);
    let changes = choker.rechoke(t0 + secs(20), &peers, Mode::Leeching, &mut rng);
    let third = choker.optimistic().expect("choked peers remain");
    assert!(third != first && third != second);
    // The departed peer is reported choked so a mirrored set stays in sync.
    assert_eq!(changes.choke, vec![second]);
    assert_eq!(changes.unchoke, vec![third]);
}

#[test]
fn remove_peer_frees_its_slot() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut choker = Choker::new(ChokerConfig::default());
    let mut peers: Vec<_> = (0..4u32).map(|p| leecher(p, 10_000)).collect();
    peers.push(leecher(4, 500));
    peers.push(leecher(5, 400));
    choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);
    assert_eq!(regular(&choker), set([0, 1, 2, 3]));

    choker.remove_peer(&2);
    assert!(!choker.is_unchoked(&2));
    assert_eq!(regular(&choker), set([0, 1, 3]));
    let optimistic = choker.optimistic().expect("4 or 5");
    choker.remove_peer(&optimistic);
    assert_eq!(choker.optimistic(), None);
    choker.remove_peer(&99);

    peers.retain(|v| v.peer != 2 && v.peer != optimistic);
    let changes = choker.rechoke(t0 + secs(10), &peers, Mode::Leeching, &mut rng);
    let remaining = if optimistic == 4 { 5 } else { 4 };
    // Already forgotten peers are not reported again.
    assert_eq!(changes.unchoke, vec![remaining]);
    assert!(changes.choke.is_empty());
    assert_eq!(set(choker.unchoked()), set([0, 1, 3, remaining]));
}

#[test]
fn default_policy_is_tit_for_tat() {
    let choker = Choker::<u32>::new(ChokerConfig::default());
    assert_eq!(choker.config().policy, ChokePolicy::TitForTat);
    assert!(choker.has_free_slot(4, Mode::Leeching));
    assert!(!choker.has_free_slot(5, Mode::Leeching));
    let seed_slots = choker.config().seed_slots;
    assert!(choker.has_free_slot(seed_slots, Mode::Seeding));
    assert!(!choker.has_free_slot(seed_slots + 1, Mode::Seeding));
}

#[test]
fn unchoke_all_unchokes_every_interested_peer() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let config = ChokerConfig {
        policy: ChokePolicy::UnchokeAll,
        ..ChokerConfig::default()
    };
    let mut choker = Choker::new(config);
    assert!(choker.has_free_slot(1_000, Mode::Leeching));
    assert!(choker.has_free_slot(1_000, Mode::Seeding));
    let mut peers: Vec<_> = (0..12u32).map(|p| leecher(p, u64::from(p))).collect();
    peers[3].interested = false;
    // Snubbing and free riding (rate 0) do not matter: everyone interested uploads.
    peers[5].snubbed = true;
    let changes = choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);
    let expected = set((0..12).filter(|&p| p != 3));
    assert_eq!(set(choker.unchoked()), expected);
    assert_eq!(set(changes.unchoke), expected);
    assert_eq!(choker.optimistic(), None);
    peers[7].interested = false;
    let changes = choker.rechoke(t0 + secs(10), &peers, Mode::Seeding, &mut rng);
    assert_eq!(changes.choke, vec![7]);
    assert!(changes.unchoke.is_empty());
    assert_eq!(choker.unchoked().count(), 10);
}

#[test]
fn rechoke_schedule() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut choker = Choker::<u32>::new(ChokerConfig::default());
    assert!(choker.is_due(t0));
    assert_eq!(choker.poll_timeout(), None);
    choker.rechoke(
        t0,
        &[leecher(1, 0), leecher(2, 0)],
        Mode::Leeching,
        &mut rng,
    );
    assert!(!choker.is_due(t0 + secs(9)));
    assert!(choker.is_due(t0 + secs(10)));
    assert_eq!(choker.poll_timeout(), Some(t0 + secs(10)));

    // An optimistic rotation that is not a multiple of the rechoke interval wakes the
    // caller on its own.
    let config = ChokerConfig {
        regular_slots: 1,
        optimistic_interval: secs(15),
        optimistic_trial: Duration::MAX,
        ..ChokerConfig::default()
    };
    let mut choker = Choker::new(config);
    let peers: Vec<_> = (0..5u32).map(|p| leecher(p, 0)).collect();
    choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);
    choker.rechoke(t0 + secs(10), &peers, Mode::Leeching, &mut rng);
    assert_eq!(choker.poll_timeout(), Some(t0 + secs(15)));
    let before = choker.optimistic();
    choker.rechoke(t0 + secs(15), &peers, Mode::Leeching, &mut rng);
    assert_ne!(choker.optimistic(), before);
    assert_eq!(choker.poll_timeout(), Some(t0 + secs(25)));
}

#[test]
fn an_optimistic_holder_that_trades_gives_the_slot_to_an_idle_peer_after_its_trial() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let config = ChokerConfig {
        regular_slots: 1,
        ..ChokerConfig::default()
    };
    let trial = config.optimistic_trial;
    let mut choker = Choker::new(config);
    // Peer 0 earns the regular slot; 1, 2 and 3 give us nothing yet.
    let start = [
        leecher(0, 9000),
        leecher(1, 0),
        leecher(2, 0),
        leecher(3, 0),
    ];
    choker.rechoke(t0, &start, Mode::Leeching, &mut rng);
    let holder = choker.optimistic().expect("three candidates");
    assert_eq!(choker.poll_timeout(), Some(t0 + trial));
    assert!(!choker.is_due(t0 + trial) && choker.trial_is_due(t0 + trial));

    // The holder started trading with us: a peer that gives us nothing gets the slot.
    let views: Vec<_> = start
        .iter()
        .map(|v| {
            leecher(
                v.peer,
                if v.peer == holder {
                    500
                } else {
                    v.download_rate
                },
            )
        })
        .collect();
    let t1 = t0 + trial;
    let changes = choker.review_optimistic(t1, &views, &mut rng);
    let next = choker.optimistic().expect("slot refilled");
    assert!(next != holder && next != 0, "slot went to {next}");
    assert_eq!(changes.unchoke, vec![next]);
    assert_eq!(changes.choke, vec![holder]);
    assert_eq!(regular(&choker), set([0]));
    assert_eq!(choker.poll_timeout(), Some(t1 + trial));

    // A holder that gives us nothing keeps its slot for the whole period.
    let changes = choker.review_optimistic(t1 + trial, &start, &mut rng);
    assert!(changes.unchoke.is_empty() && changes.choke.is_empty());
    assert_eq!(choker.optimistic(), Some(next));
    assert_eq!(choker.poll_timeout(), Some(t0 + secs(10)));

    // Nobody idle waiting: a trading holder keeps the slot too.
    let mut choker = Choker::new(ChokerConfig {
        regular_slots: 1,
        ..ChokerConfig::default()
    });
    let all_trade = [leecher(0, 9000), leecher(1, 10), leecher(2, 10)];
    choker.rechoke(t0, &all_trade, Mode::Leeching, &mut rng);
    let holder = choker.optimistic();
    let changes = choker.review_optimistic(t0 + trial, &all_trade, &mut rng);
    assert!(changes.unchoke.is_empty() && changes.choke.is_empty());
    assert_eq!(choker.optimistic(), holder);
}

#[test]
fn huge_intervals_do_not_overflow() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let config = ChokerConfig {
        regular_slots: usize::MAX,
        seed_slots: usize::MAX,
        rechoke_interval: Duration::MAX,
        optimistic_interval: Duration::MAX,
        optimistic_trial: Duration::MAX,
        snub_timeout: Duration::MAX,
        policy: ChokePolicy::TitForTat,
    };
    let mut choker = Choker::new(config);
    let peers: Vec<_> = (0..5u32).map(|p| leecher(p, 0)).collect();
    choker.rechoke(t0, &peers, Mode::Leeching, &mut rng);
    assert_eq!(choker.unchoked().count(), 5);
    assert_eq!(choker.poll_timeout(), None);
    assert!(!choker.is_due(t0 + secs(1_000_000)));
}

#[test]
fn degenerate_inputs() {
    let t0 = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut choker = Choker::<u32>::new(ChokerConfig::default());
    assert_eq!(
        choker.rechoke(t0, &[], Mode::Leeching, &mut rng),
        ChokeChanges::default()
    );
    assert_eq!(choker.unchoked().count(), 0);

    // Duplicate entries: the first one counts.
    let peers = [
        view(1, false, 1_000_000, 0),
        leecher(1, 2_000_000),
        leecher(2, 5),
        leecher(2, 0),
    ];
    choker.rechoke(t0 + secs(10), &peers, Mode::Leeching, &mut rng);
    assert_eq!(set(choker.unchoked()), set([2]));

    // No regular slots: only the optimistic peer is unchoked.
    let config = ChokerConfig {
        regular_slots: 0,
        seed_slots: 0,
        ..ChokerConfig::default()
    };
    let mut choker = Choker::new(config);
    let peers: Vec<_> = (0..5u32).map(|p| leecher(p, 1000)).collect();
    choker.rechoke(t0, &peers, Mode::Seeding, &mut rng);
    assert_eq!(choker.unchoked().count(), 1);
    assert!(choker.optimistic().is_some());

    // Time going backwards is tolerated.
    choker.rechoke(t0 + secs(100), &peers, Mode::Seeding, &mut rng);
    choker.rechoke(t0, &peers, Mode::Seeding, &mut rng);
    assert_eq!(choker.unchoked().count(), 1);
}

#[test]
fn ties_are_broken_randomly_and_reproducibly() {
    let t0 = Instant::now();
    let peers: Vec<_> = (0..10u32).map(|p| leecher(p, 100)).collect();
    let mut reversed = peers.clone();
    reversed.reverse();
    let mut outcomes = BTreeSet::new();
    for seed in 0..20 {
        let mut a = Choker::new(ChokerConfig::default());
        let mut b = Choker::new(ChokerConfig::default());
        a.rechoke(
            t0,
            &peers,
            Mode::Leeching,
            &mut ChaCha8Rng::seed_from_u64(seed),
        );
        b.rechoke(
            t0,
            &reversed,
            Mode::Leeching,
            &mut ChaCha8Rng::seed_from_u64(seed),
        );
        // Same seed, same outcome, whatever order the caller lists peers in.
        assert_eq!(set(a.unchoked()), set(b.unchoked()));
        assert_eq!(a.optimistic(), b.optimistic());
        outcomes.insert(regular(&a).into_iter().collect::<Vec<_>>());
    }
    assert!(outcomes.len() > 5, "ties not random: {outcomes:?}");
}

#[test]
fn snub_helper() {
    let t0 = Instant::now();
    let timeout = secs(60);
    // Not waiting on the peer: never snubbed.
    assert!(!is_snubbed(t0 + secs(1000), None, None, timeout));
    assert!(!is_snubbed(t0 + secs(59), None, Some(t0), timeout));
    assert!(is_snubbed(t0 + secs(60), None, Some(t0), timeout));
    // Data from before we started waiting does not help.
    assert!(is_snubbed(
        t0 + secs(70),
        Some(t0),
        Some(t0 + secs(5)),
        timeout
    ));
    // Data since then restarts the clock.
    assert!(!is_snubbed(
        t0 + secs(70),
        Some(t0 + secs(20)),
        Some(t0 + secs(5)),
        timeout
    ));
    assert!(is_snubbed(
        t0 + secs(80),
        Some(t0 + secs(20)),
        Some(t0 + secs(5)),
        timeout
    ));
    // A clock behind the timestamps is not a snub.
    assert!(!is_snubbed(
        t0,
        Some(t0 + secs(20)),
        Some(t0 + secs(5)),
        timeout
    ));
}

/// One rechoke's peer list: few ids and rates, so duplicates and ties are common.
fn arb_peers() -> impl Strategy<Value = Vec<PeerView<u32>>> {
    let peer = (
        0u32..25,
        prop::bool::weighted(0.7),
        0u64..6,
        0u64..6,
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(peer, interested, download_rate, upload_rate, snubbed)| PeerView {
                peer,
                interested,
                download_rate,
                upload_rate,
                snubbed,
            },
        );
    prop::collection::vec(peer, 0..30)
}

proptest! {
    #[test]
    fn rechoke_invariants(
        leech_slots in 0usize..7,
        seed_slots in 0usize..7,
        seed in any::<u64>(),
        steps in prop::collection::vec((0u64..40, any::<bool>(), arb_peers()), 1..25),
    ) {
        let t0 = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let config = ChokerConfig {
            regular_slots: leech_slots,
            seed_slots,
            ..ChokerConfig::default()
        };
        let optimistic_interval = config.optimistic_interval;
        let mut choker = Choker::new(config);
        let mut mirror: BTreeSet<u32> = BTreeSet::new();
        let mut held_since: Option<Instant> = None;
        let mut now = t0;
        for (dt, seeding, views) in steps {
            now += secs(dt);
            let mode = if seeding { Mode::Seeding } else { Mode::Leeching };
            let slots = if seeding { seed_slots } else { leech_slots };
            // The model's view of the input: first entry per peer.
            let mut first: std::collections::BTreeMap<u32, &PeerView<u32>> = Default::default();
            for v in &views {
                first.entry(v.peer).or_insert(v);
            }
            let previous_optimistic = choker.optimistic();

            let changes = choker.rechoke(now, &views, mode, &mut rng);

            // The changes are exactly the diff of the unchoked set.
            let after = set(choker.unchoked());
            prop_assert!(changes.unchoke.iter().all(|p| !mirror.contains(p)));
            prop_assert!(changes.choke.iter().all(|p| mirror.contains(p)));
            mirror.extend(changes.unchoke.iter().copied());
            for p in &changes.choke {
                mirror.remove(p);
            }
            prop_assert_eq!(&mirror, &after);
            prop_assert_eq!(after.len(), choker.unchoked().count(), "duplicate in unchoked()");
            prop_assert!(after.len() <= slots + 1);

            // Only present, interested peers are unchoked; regular ones are not snubbed.
            let regular = regular(&choker);
            prop_assert!(regular.len() <= slots);
            for p in &after {
                let v = first.get(p);
                prop_assert!(v.is_some_and(|v| v.interested), "{} unchoked", p);
                prop_assert!(choker.is_unchoked(p));
            }
            prop_assert!(regular.iter().all(|p| first.get(p).is_some_and(|v| !v.snubbed)));

            // Regular slots go to the best ranked eligible peers, filled as far as possible.
            let eligible: Vec<&PeerView<u32>> =
                first.values().copied().filter(|v| v.interested && !v.snubbed).collect();
            prop_assert_eq!(regular.len(), slots.min(eligible.len()));
            let worst_in = regular.iter().map(|p| rank_rate(first[p], mode)).min();
            let best_out = eligible
                .iter()
                .filter(|v| !regular.contains(&v.peer))
                .map(|v| rank_rate(v, mode))
                .max();
            if let (Some(worst_in), Some(best_out)) = (worst_in, best_out) {
                prop_assert!(worst_in >= best_out);
            }

            // The optimistic slot is filled whenever someone interested is left out, and
            // a valid holder keeps it until its period is over.
            let left_out = first.values().any(|v| v.interested && !regular.contains(&v.peer));
            prop_assert_eq!(choker.optimistic().is_some(), left_out);
            if let Some(o) = choker.optimistic() {
                prop_assert!(!regular.contains(&o));
            }
            if let (Some(prev), Some(since)) = (previous_optimistic, held_since) {
                let still_valid = first.get(&prev).is_some_and(|v| v.interested)
                    && !regular.contains(&prev);
                if still_valid && now < since + optimistic_interval {
                    prop_assert_eq!(choker.optimistic(), Some(prev));
                }
            }
            // A new holder, or the old one kept for another period, starts a period.
            let rotated = held_since.is_some_and(|since| now >= since + optimistic_interval);
            if choker.optimistic() != previous_optimistic || rotated {
                held_since = Some(now);
            }
            if choker.optimistic().is_none() {
                held_since = None;
            }
        }
    }
}
