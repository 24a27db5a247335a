//! The simulator's own tests: small, fast, deterministic.

use super::*;

#[test]
fn placeholder_small_flash_crowd_finishes() {
    let config = SimConfig::flash_crowd(20);
    let outcome = run(&config).unwrap();
    assert!(outcome.peers.iter().all(|p| p.finish.is_some()));
}
