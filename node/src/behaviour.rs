//! The libp2p behaviour of a node and how its swarm is built.
//!
//! Besides the DHT, identify and session streams, every node carries the
//! NAT traversal kit: a relay v2 client (reserve a slot on a relay, dial
//! peers through one), DCUtR (hole punching over a relayed connection) and
//! AutoNAT v2 as client (is this address reachable?) and server (answer
//! others). None of them sends anything until there is something to do: no
//! relay is used unless configured or needed, and AutoNAT tests only
//! addresses peers observed that are not already confirmed. The relay v2
//! server runs only when asked (`--relay`), with [`RelayLimits`].

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::metrics::Registry;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, autonat, connection_limits, dcutr, identify, kad, memory_connection_limits,
    noise, relay, tcp, yamux, StreamProtocol, Swarm,
};

use crate::address_book::AddressBook;

/// Most peers whose addresses the [`AddressBook`] keeps.
const ADDRESS_BOOK_PEERS: NonZeroUsize = match NonZeroUsize::new(1024) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Our own Kademlia protocol name: never the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/kadswarm/kad/1");
/// Identify's protocol version string.
pub const IDENTIFY_VERSION: &str = "/kadswarm/1";

/// Every libp2p protocol a node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Refuses banned peers.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Caps connections.
    pub limits: connection_limits::Behaviour,
    /// Refuses new connections while the process uses too much memory.
    pub memory: memory_connection_limits::Behaviour,
    /// The DHT: provider records keyed by content ID.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Learns peers' listen addresses (fed to Kademlia).
    pub identify: identify::Behaviour,
    /// Addresses heard of outside the routing table (peer exchange), for dials by ID.
    pub addresses: AddressBook,
    /// Session streams (`/kadswarm/session/2`, see `wire`).
    pub stream: libp2p_stream::Behaviour,
    /// Relay v2 client: reservations on relays, dials through them.
    pub relay_client: relay::client::Behaviour,
    /// Relay v2 server, only with `--relay` (see [`RelayLimits`]).
    pub relay: Toggle<relay::Behaviour>,
    /// Hole punching over relayed connections.
    pub dcutr: dcutr::Behaviour,
    /// AutoNAT v2 client: asks servers to dial back addresses peers observed for us.
    pub autonat_client: autonat::v2::client::Behaviour,
    /// AutoNAT v2 server: dials back the addresses others ask about.
    pub autonat_server: autonat::v2::server::Behaviour,
}

/// Bounds of our relay v2 server. libp2p's defaults (2 minutes and 128 KiB
/// per circuit) end any real transfer at once; ours let a relayed transfer
/// of a few hundred MiB finish while bounding what one peer, and all peers
/// together, can make the relay carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Most circuits relayed at once, for all peers together.
    pub max_circuits: usize,
    /// Most circuits at once from or to one peer.
    pub max_circuits_per_peer: usize,
    /// A circuit is closed after this long.
    pub max_circuit_duration: Duration,
    /// A circuit is closed after carrying this many bytes (both directions together).
    pub max_circuit_bytes: u64,
    /// Most reservations held at once, for all peers together.
    pub max_reservations: usize,
    /// Most reservations one peer may hold.
    pub max_reservations_per_peer: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_circuits: 16,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(15 * 60),
            max_circuit_bytes: 256 << 20,
            max_reservations: 128,
            max_reservations_per_peer: 4,
        }
    }
}

impl RelayLimits {
    /// libp2p's relay configuration with these limits. libp2p's rate
    /// limiters stay: per source peer a bucket of 30 circuits refilled one
    /// per 2 minutes, per source IP 60 refilled one per minute (and the same
    /// for reservations), so a peer cannot churn circuits to escape the caps.
    fn config(&self) -> relay::Config {
        relay::Config {
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer,
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            max_reservations: self.max_reservations,
            max_reservations_per_peer: self.max_reservations_per_peer,
            ..relay::Config::default()
        }
    }
}

/// Network settings for building a swarm.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Most established connections in total.
    pub max_connections: u32,
    /// Provider record lifetime.
    pub provider_ttl: Duration,
    /// How often Kademlia republishes our provider records.
    pub provider_republish: Duration,
    /// Upload cap in bytes per second.
    pub max_upload: Option<u64>,
    /// Download cap in bytes per second.
    pub max_download: Option<u64>,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Most inbound streams still negotiating their protocol per connection.
    pub max_negotiating_streams: usize,
    /// A frame that moves no byte for this long is dropped (see `wire`).
    pub stall_timeout: Duration,
    /// New connections are refused while the process's resident memory is above this.
    pub max_memory_bytes: usize,
    /// A connection no protocol uses is closed after this long. Swarm
    /// members keep theirs busy (have exchange every few seconds); DHT
    /// connections are opened again when a query needs them.
    pub idle_connection_timeout: Duration,
    /// How often Kademlia refreshes its routing table on its own (libp2p's
    /// default); a small network needs no more, and each refresh dials peers.
    pub dht_refresh_interval: Duration,
    /// Peers per Kademlia bucket (libp2p's default is 20). When a bucket is
    /// full, every new peer seen makes Kademlia dial the bucket's oldest
    /// entry to check it is alive; with connections idling out after
    /// `idle_connection_timeout` every entry looks disconnected, so each
    /// node joining a 200-node testnet set off about a hundred such dials
    /// (a third of the CPU the join cost). 128 holds every peer of a network
    /// up to about 250 nodes, where the farthest bucket takes half of them;
    /// lookups still ask the 20 closest.
    pub dht_bucket_size: usize,
    /// Run a relay v2 server with these limits (`--relay`); none by default.
    pub relay_server: Option<RelayLimits>,
    /// Run Kademlia as a client: look up and announce, but answer nobody's
    /// queries and store nobody's records (`get`). Answering is not free:
    /// libp2p-kad 0.49 walks all 256 buckets for each FIND_NODE or
    /// GET_PROVIDERS, ~0.5 ms in a small network, and in a flash crowd of 30
    /// `get`s that was most of the CPU their start-up took.
    pub dht_client: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            provider_ttl: Duration::from_secs(30 * 60),
            provider_republish: Duration::from_secs(5 * 60),
            max_upload: None,
            max_download: None,
            max_connections_per_peer: 2,
            max_negotiating_streams: 16,
            stall_timeout: Duration::from_secs(10),
            max_memory_bytes: 512 << 20,
            idle_connection_timeout: Duration::from_secs(10),
            dht_refresh_interval: Duration::from_secs(300),
            dht_bucket_size: 128,
            relay_server: None,
            dht_client: false,
        }
    }
}

/// Builds the swarm: TCP (noise + yamux), QUIC and relayed connections
/// (noise + yamux inside a circuit), with our behaviour; the transports
/// count their bytes into `metrics` (`libp2p_bandwidth_bytes_total`).
pub fn build_swarm(
    keypair: Keypair,
    config: &NetConfig,
    metrics: &mut Registry,
) -> anyhow::Result<Swarm<Behaviour>> {
    let config = config.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux_config,
        )?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux_config)?
        .with_bandwidth_metrics(metrics)
        .with_behaviour(move |key, relay_client| {
            let peer_id = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config
                .set_provider_record_ttl(Some(config.provider_ttl))
                .set_provider_publication_interval(Some(config.provider_republish))
                .set_query_timeout(Duration::from_secs(30))
                .set_periodic_bootstrap_interval(Some(config.dht_refresh_interval));
            if let Some(size) = NonZeroUsize::new(config.dht_bucket_size) {
                kad_config.set_kbucket_size(size);
            }
            let store = kad::store::MemoryStore::with_config(
                peer_id,
                kad::store::MemoryStoreConfig {
                    max_provided_keys: 4096,
                    ..Default::default()
                },
            );
            let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
            if config.dht_client {
                kad.set_mode(Some(kad::Mode::Client));
            }
            let identify = identify::Behaviour::new(
                identify::Config::new(IDENTIFY_VERSION.into(), key.public())
                    .with_agent_version(format!("kadswarm/{}", env!("CARGO_PKG_VERSION")))
                    .with_push_listen_addr_updates(true)
                    .with_cache_size(256),
            );
            let limits = connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(config.max_connections))
                    .with_max_established_per_peer(Some(config.max_connections_per_peer))
                    .with_max_pending_incoming(Some(64))
                    .with_max_pending_outgoing(Some(64)),
            );
            Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                limits,
                memory: memory_connection_limits::Behaviour::with_max_bytes(
                    config.max_memory_bytes,
                ),
                kad,
                identify,
                addresses: AddressBook::new(ADDRESS_BOOK_PEERS),
                stream: libp2p_stream::Behaviour::new(),
                relay_client,
                relay: config
                    .relay_server
                    .as_ref()
                    .map(|l| relay::Behaviour::new(peer_id, l.config()))
                    .into(),
                dcutr: dcutr::Behaviour::new(peer_id),
                autonat_client: autonat::v2::client::Behaviour::default(),
                autonat_server: autonat::v2::server::Behaviour::default(),
            }
        })?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(config.idle_connection_timeout)
                .with_max_negotiating_inbound_streams(config.max_negotiating_streams)
                .with_notify_handler_buffer_size(NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN))
        })
        .build();
    Ok(swarm)
}

/// Yamux settings of every connection, direct or relayed.
fn yamux_config() -> yamux::Config {
    let mut c = yamux::Config::default();
    // A session needs one stream each way, Kademlia and identify a few more;
    // this bounds what a peer can open before protocols refuse them.
    c.set_max_num_streams(256);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swarm(dht_client: bool) -> Swarm<Behaviour> {
        let config = NetConfig {
            dht_client,
            ..NetConfig::default()
        };
        let mut swarm = build_swarm(
            Keypair::generate_ed25519(),
            &config,
            &mut Registry::default(),
        )
        .expect("swarm");
        // What a node does with its listen addresses by default (`listen_addrs_are_external`).
        swarm.add_external_address("/ip4/127.0.0.1/tcp/4001".parse().expect("addr"));
        swarm
    }

    #[tokio::test]
    async fn a_dht_client_stays_a_client_where_a_server_starts_answering() {
        assert_eq!(swarm(false).behaviour().kad.mode(), kad::Mode::Server);
        assert_eq!(swarm(true).behaviour().kad.mode(), kad::Mode::Client);
    }
}
