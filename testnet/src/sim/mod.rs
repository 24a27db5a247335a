//! `testnet sim`: a discrete-event simulator of a kadswarm swarm in virtual time.
//!
//! Every simulated peer runs the real `protocol::transfer::Transfer` with its
//! piece picker and choker, configured as the node configures them; only the
//! network (a fluid bandwidth model with latency) and discovery (random
//! neighbours plus the seeder) are modelled. The same seed gives
//! byte-identical output.

pub mod chart;
pub mod cli;
pub mod config;
pub mod flows;
pub mod queue;
pub mod report;
pub mod world;

pub use config::{Arrivals, Class, Departure, SimConfig};
/// The policies a run is configured with, for callers without a `protocol` dependency.
pub use protocol::{choker::ChokePolicy, picker::PickPolicy};
pub use world::{run, Outcome, PeerResult};

#[cfg(test)]
mod tests;
