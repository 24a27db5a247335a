//! The seeder-leaves scenario of issue 12 on the virtual clock: one seed with
//! four times a leecher's upload, four leechers; the seed leaves once it has
//! delivered a given number of copies, and the leechers must finish alone.

use super::*;

/// Chunks of the content (as in the measured run: 512).
const CHUNKS: usize = 512;

struct Outcome {
    /// Leechers that completed after the seed left.
    completed: usize,
    /// Distinct chunks the seed had delivered when it left.
    distinct_delivered: usize,
}

/// Runs the swarm until the seed has delivered `copies` copies, removes the
/// seed, and runs on for `after` of virtual time.
fn seeder_leaves(config: TransferConfig, rng_seed: u64, copies: f64) -> Outcome {
    let mut config = config;
    // Runs differ in the leechers' rates and random-first length (Sim::new seeds nodes by position).
    config.picker.random_first += (rng_seed % 2) as u32;
    let mut sim = Sim::new(
        CHUNKS * MIN_CHUNK_SIZE as usize,
        &[Behaviour::Honest],
        4,
        config,
    );
    let chunk_rate = u64::from(MIN_CHUNK_SIZE);
    sim.uplink[0].0 = Some(40 * chunk_rate);
    for link in &mut sim.uplink[1..] {
        link.0 = Some(10 * chunk_rate + rng_seed * 97);
    }
    let leave_after = (copies * CHUNKS as f64).ceil() as usize;
    let mut delivered = vec![false; CHUNKS];
    let mut delivered_total = 0usize;
    let mut gone = false;
    let limit = sim.now + Duration::from_secs(600);
    loop {
        sim.drain_actions();
        if sim.nodes[1..].iter().all(|n| n.is_complete()) || sim.now > limit {
            break;
        }
        let next_msg = sim.queue.peek().map(|Reverse((t, ..))| *t);
        let next_timer = sim
            .nodes
            .iter()
            .enumerate()
            .filter(|&(k, _)| !(gone && k == 0))
            .filter_map(|(_, n)| n.poll_timeout())
            .min();
        let Some(next) = next_msg.into_iter().chain(next_timer).min() else {
            break;
        };
        sim.now = sim.now.max(next);
        while let Some(Reverse((t, seq, from, to))) = sim.queue.peek().copied() {
            if t > sim.now {
                break;
            }
            sim.queue.pop();
            let Some(msg) = sim.msgs.remove(&seq) else {
                continue;
            };
            if gone && (from == 0 || to == 0) {
                continue;
            }
            if from == 0 {
                if let Msg::ChunkResp(i, Answer::Chunk(..)) = &msg {
                    delivered_total += 1;
                    delivered[*i as usize] = true;
                }
            }
            sim.deliver(from, to, msg);
            if !gone && delivered_total >= leave_after {
                gone = true;
                let now = sim.now;
                for n in &mut sim.nodes[1..] {
                    n.handle_peer_disconnected(now, 0);
                }
            }
        }
        let now = sim.now;
        for (k, n) in sim.nodes.iter_mut().enumerate() {
            if !(gone && k == 0) && n.poll_timeout().is_some_and(|t| t <= now) {
                n.handle_timeout(now);
            }
        }
        if gone {
            // The departed seed's own work goes nowhere.
            while sim.nodes[0].poll_action().is_some() {}
        }
    }
    Outcome {
        completed: sim.nodes[1..].iter().filter(|n| n.is_complete()).count(),
        distinct_delivered: delivered.iter().filter(|&&d| d).count(),
    }
}

#[test]
fn swarm_outlives_a_seed_that_leaves_after_one_point_zero_five_copies() {
    for rng_seed in 0..4 {
        let o = seeder_leaves(TransferConfig::default(), rng_seed, 1.05);
        assert_eq!(
            o.distinct_delivered, CHUNKS,
            "run {rng_seed}: the seed's first 1.05 copies held only {} distinct chunks",
            o.distinct_delivered
        );
        assert_eq!(o.completed, 4, "run {rng_seed}: leechers stranded");
    }
}

#[test]
fn without_first_copy_first_the_seed_repeats_itself() {
    // The old behaviour, which the node had before: shows the test above can fail.
    let config = TransferConfig {
        first_copy_first: false,
        ..TransferConfig::default()
    };
    let outcomes: Vec<Outcome> = (0..4)
        .map(|s| seeder_leaves(config.clone(), s, 1.05))
        .collect();
    let short = outcomes
        .iter()
        .filter(|o| o.distinct_delivered < CHUNKS)
        .count();
    eprintln!(
        "without first-copy-first: distinct after 1.05 copies {:?}, completed {:?}",
        outcomes
            .iter()
            .map(|o| o.distinct_delivered)
            .collect::<Vec<_>>(),
        outcomes.iter().map(|o| o.completed).collect::<Vec<_>>()
    );
    assert!(short > 0, "every run got every chunk out without the rule");
}

#[test]
fn a_fast_seed_is_not_slowed_by_first_copy_first() {
    // The issue 9 shape: uncapped seed ten times a leecher, four leechers; the
    // seed should still upload several copies and the swarm finish as fast.
    let time = |first_copy_first: bool| {
        let config = TransferConfig {
            first_copy_first,
            ..TransferConfig::default()
        };
        let mut sim = Sim::new(
            120 * MIN_CHUNK_SIZE as usize,
            &[Behaviour::Honest],
            4,
            config,
        );
        sim.uplink[0].0 = Some(100 * u64::from(MIN_CHUNK_SIZE));
        for link in &mut sim.uplink[1..] {
            link.0 = Some(10 * u64::from(MIN_CHUNK_SIZE));
        }
        assert!(sim.run(Duration::from_secs(600)), "swarm did not complete");
        sim.assert_all_verified();
        sim.now - sim.t0
    };
    let (with, without) = (time(true), time(false));
    eprintln!("fast seed: {with:?} with first-copy-first, {without:?} without");
    assert!(
        with.as_secs_f64() <= without.as_secs_f64() * 1.10,
        "first-copy-first took {with:?}, without {without:?}"
    );
}

#[test]
fn availability_counts_copies_and_chunks_nobody_holds() {
    let mut sim = Sim::new(
        10 * MIN_CHUNK_SIZE as usize,
        &[Behaviour::Honest],
        2,
        TransferConfig::default(),
    );
    // Before any have exchange a leecher knows of no copy of anything.
    let a = sim.nodes[1].availability(3);
    assert_eq!(a.distributed_copies, 0.0);
    assert_eq!((a.unavailable, a.unavailable_examples), (10, vec![0, 1, 2]));
    assert!(sim.run(Duration::from_secs(600)));
    // Complete: the seed and us hold every chunk, the other leecher (whose last
    // haves may still be on the way) most of them.
    let a = sim.nodes[1].availability(3);
    assert!((2.0..=3.0).contains(&a.distributed_copies), "{a:?}");
    assert_eq!(a.unavailable, 0);
    // Without the seed, one copy fewer of the chunks the seed held.
    let now = sim.now;
    sim.nodes[1].handle_peer_disconnected(now, 0);
    let b = sim.nodes[1].availability(0).distributed_copies;
    assert!((1.0..=2.0).contains(&b) && b < a.distributed_copies, "{b}");
}
