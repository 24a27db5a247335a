//! A peer we added before it spoke (a probe, or a leecher that quit and came
//! back) hears our holdings as soon as it first speaks, not at the next
//! periodic exchange: a complete peer's holdings are all a returning leecher
//! can ask for.

use super::*;

fn drain(t: &mut Transfer<u32>) -> Vec<Action<u32>> {
    std::iter::from_fn(|| t.poll_action()).collect()
}

fn haves_to(actions: &[Action<u32>], peer: u32) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::SendHave { peer: p, .. } if *p == peer))
        .count()
}

#[test]
fn a_complete_peer_answers_a_returning_leechers_first_have_at_once() {
    let data = content(64 * MIN_CHUNK_SIZE as usize);
    let (manifest, tree) = build(&data);
    let count = manifest.chunk_count();
    let config = TransferConfig::default();
    let interval = config.have_interval;
    let mut seed = Transfer::new(manifest, tree, &Bitfield::full(count), config, 1);
    let t0 = Instant::now();
    // Added as a probe while it was away: our have to it went nowhere.
    assert!(seed.handle_peer_connected(t0, 7));
    seed.handle_timeout(t0);
    assert_eq!(haves_to(&drain(&mut seed), 7), 1);
    // It comes back a second later and sends its first have: half the chunks,
    // and no interest yet, since it knows nothing of what we hold.
    let t1 = t0 + interval / 5;
    let mut half = Bitfield::new(count);
    for i in 0..count / 2 {
        half.set(i);
    }
    let info = HaveInfo {
        have: HaveSet::from_bitfield(&half),
        interested: false,
        choking: false,
    };
    seed.handle_have(t1, 7, &info).unwrap();
    seed.handle_timeout(t1);
    assert_eq!(
        haves_to(&drain(&mut seed), 7),
        1,
        "the returning peer must hear our holdings now, not at {interval:?}"
    );
    // Later haves from it are diffs of a known peer: no reply of ours each time.
    seed.handle_have(t1, 7, &info).unwrap();
    seed.handle_timeout(t1);
    assert_eq!(haves_to(&drain(&mut seed), 7), 0);
}
