//! Tools to run many kadswarm nodes on one machine.
//!
//! The `testnet` binary drives real `node` processes: `up` starts a loopback
//! swarm and keeps it running, `demo` spreads a generated file through one
//! and reports the distribution time, who uploaded what, and the copies'
//! SHA-256. The modules are public so the workspace's integration tests can
//! drive swarms the same way.
//!
//! Network safety: nodes listen only on 127.0.0.1 and are only ever given
//! bootstrap addresses on 127.0.0.1.

pub mod datagen;
pub mod demo;
pub mod loopback;
pub mod nodebin;
pub mod procs;
pub mod progress;
pub mod rundir;
pub mod stats;
pub mod units;
