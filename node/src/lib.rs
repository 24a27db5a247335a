//! The kadswarm node: libp2p networking, storage and the command line around
//! the pure `protocol` crate.

// Commands and disk completions are moved once per event; boxing them buys nothing.
#![allow(clippy::large_enum_variant, clippy::collapsible_match)]

pub mod address_book;
pub mod behaviour;
pub mod client;
pub mod config_file;
pub mod daemon;
pub mod engine;
pub mod http_listener;
pub mod identity;
pub mod memory;
pub mod metrics;
pub mod ratelimit;
pub mod scan;
pub mod storage;
pub mod strikes;
pub mod units;
pub mod uploads;
pub mod wire;

use std::sync::Arc;

use anyhow::Context;
use libp2p::identity::Keypair;
use libp2p::Multiaddr;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use behaviour::NetConfig;
pub use client::{
    Client, ContentState, ContentStatus, Download, GetEvent, Outcome, PeerStatus, Stats,
};
pub use engine::EngineConfig;

/// Everything needed to start a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Network settings.
    pub net: NetConfig,
    /// Event-loop settings (bootstrap peers among them).
    pub engine: EngineConfig,
}

impl NodeConfig {
    /// Listening on 127.0.0.1 with an OS-chosen TCP port: what tests use.
    pub fn loopback() -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/0"
                .parse()
                .expect("valid literal multiaddr")],
            net: NetConfig::default(),
            engine: EngineConfig::default(),
        }
    }
}

/// Starts a node on the current tokio runtime; returns its handle and the loop's task.
pub fn spawn(keypair: Keypair, config: NodeConfig) -> anyhow::Result<(Client, JoinHandle<()>)> {
    let counters = Arc::new(wire::Counters::default());
    let limits = Arc::new(wire::WireLimits::new(config.net.stall_timeout));
    let shared = wire::streams::Shared::new(
        limits,
        counters.clone(),
        Arc::new(ratelimit::RateLimiter::new(config.net.max_upload)),
        Arc::new(ratelimit::RateLimiter::new(config.net.max_download)),
    );
    let mut registry = libp2p::metrics::Registry::default();
    let mut swarm = behaviour::build_swarm(keypair, &config.net, &mut registry)?;
    let metrics = Arc::new(metrics::Metrics::new(registry, counters.clone()));
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("cannot listen on {addr}"))?;
    }
    let peer_id = *swarm.local_peer_id();
    let (tx, rx) = mpsc::channel(64);
    let engine = engine::Engine::new(swarm, config.engine, shared, rx, metrics.clone())?;
    let task = tokio::spawn(engine.run());
    Ok((
        Client {
            tx,
            peer_id,
            counters,
            metrics,
        },
        task,
    ))
}
