//! What one simulated run is: swarm size, content, links, latency,
//! discovery, arrivals and departures, upload classes, and the policies.

use std::time::Duration;

use protocol::choker::ChokePolicy;
use protocol::picker::PickPolicy;
use protocol::transfer::TransferConfig;

use crate::units::Rate;

/// How leechers arrive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrivals {
    /// All at time zero.
    FlashCrowd,
    /// A Poisson process: this many arrivals per second on average.
    Poisson { per_sec: f64 },
}

/// What a leecher does once it holds the whole file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Departure {
    /// Chance that it leaves at once (selfish); otherwise it seeds for `stay`.
    pub leave_prob: f64,
    /// How long an altruistic leecher keeps seeding; `None`: until the run ends.
    pub stay: Option<Duration>,
}

impl Departure {
    /// Every finished leecher keeps seeding until the end (the flash-crowd setting).
    pub const STAY: Self = Self {
        leave_prob: 0.0,
        stay: None,
    };
}

/// A share of the leechers with one upload rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Class {
    /// Fraction of the leechers (the fractions are normalised over all classes).
    pub weight: f64,
    /// Their upload cap; `None` for free riders (uploads disabled, as `node --no-upload`).
    pub upload: Option<Rate>,
}

impl Class {
    /// Label for the CSV: the rate, or `free-rider`.
    pub fn label(&self) -> String {
        match self.upload {
            Some(r) => r.to_string().replace(' ', ""),
            None => "free-rider".into(),
        }
    }
}

/// One simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of leechers N (the seeder is extra).
    pub peers: usize,
    /// File size F in bytes.
    pub size: u64,
    /// Chunk size; `None`: the node's own choice for this size (`auto_chunk_size`).
    pub chunk_size: Option<u32>,
    /// Upload classes of the leechers (one class: homogeneous u).
    pub classes: Vec<Class>,
    /// Seeder upload u_s.
    pub server_upload: Rate,
    /// Every leecher's download cap; `None`: uncapped.
    pub download: Option<Rate>,
    /// One-way delay added to every message and chunk.
    pub latency: Duration,
    /// Extra wire bytes per chunk payload byte (headers, ACKs), charged to the uploader's link.
    pub wire_overhead: f64,
    /// Peers each arrival dials (besides the seeder), like the node's `wanted_peers`.
    pub neighbours: usize,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// What finished leechers do.
    pub departure: Departure,
    /// Piece-picking policy of every peer.
    pub pick: PickPolicy,
    /// Choking policy of every peer.
    pub choke: ChokePolicy,
    /// Seed of every random choice; same seed, same output.
    pub seed: u64,
    /// Give up at this virtual time.
    pub time_limit: Duration,
}

impl SimConfig {
    /// The flash crowd of the issue: N leechers at u = 8 Mbit/s, u_s = 10u, F = 16 MiB.
    pub fn flash_crowd(peers: usize) -> Self {
        Self {
            peers,
            size: 16 << 20,
            chunk_size: None,
            classes: vec![Class {
                weight: 1.0,
                upload: Some(Rate(8_000_000)),
            }],
            server_upload: Rate(80_000_000),
            download: None,
            latency: Duration::from_millis(5),
            wire_overhead: 0.0,
            neighbours: node::engine::config::EngineConfig::default().wanted_peers,
            arrivals: Arrivals::FlashCrowd,
            departure: Departure::STAY,
            pick: PickPolicy::default(),
            choke: ChokePolicy::default(),
            seed: 1,
            time_limit: Duration::from_secs(24 * 3600),
        }
    }

    /// The transfer tunables of one peer: the node's defaults, with this run's
    /// policies, and uploads off for free riders.
    pub fn transfer_config(&self, uploads: bool) -> TransferConfig {
        let mut config = node_transfer_config();
        config.picker.policy = self.pick;
        config.choker.policy = self.choke;
        config.upload_enabled = uploads;
        config
    }

    /// Mean leecher upload in bits per second (free riders count zero), for the bound.
    pub fn mean_upload(&self) -> f64 {
        let total: f64 = self.classes.iter().map(|c| c.weight).sum();
        if total <= 0.0 {
            return 0.0;
        }
        self.classes
            .iter()
            .map(|c| c.weight * c.upload.map_or(0.0, Rate::bits_per_sec))
            .sum::<f64>()
            / total
    }
}

/// The transfer tunables a node runs with unless told otherwise (its engine's default).
pub fn node_transfer_config() -> TransferConfig {
    node::engine::config::EngineConfig::default().transfer
}
