//! The hostile peer's swarm: built like a node's (TCP + noise + yamux,
//! identify, Kademlia on `/kadswarm/kad/1`), but with raw session streams it
//! drives by hand, and a driver task that keeps it connected.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, kad, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use protocol::ContentId;
use tokio::task::JoinSet;

/// The session protocol, spoken over raw streams.
pub const SESSION: StreamProtocol = StreamProtocol::new(protocol::wire::PROTOCOL_NAME);
/// The node's Kademlia protocol name.
pub const KAD: StreamProtocol = StreamProtocol::new("/kadswarm/kad/1");
/// The node's identify protocol version.
pub const IDENTIFY_VERSION: &str = "/kadswarm/1";

/// How long connecting to the targets may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a lost target is dialled again and the provider record renewed.
const TICK: Duration = Duration::from_secs(1);
/// How often a server attack announces itself as provider again.
const REPROVIDE: Duration = Duration::from_secs(10);

/// Everything the hostile peer speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Raw streams for the session protocol.
    pub stream: libp2p_stream::Behaviour,
    /// The DHT, to announce server attacks.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Tells the victim our listen addresses.
    pub identify: identify::Behaviour,
}

/// A started swarm: its stream control and who it is.
pub struct Net {
    /// Opens streams to peers.
    pub control: libp2p_stream::Control,
    /// The session streams peers open to us. Registered before any dial, so
    /// no stream a peer opens is refused for want of a listener; a caller that
    /// stops polling it makes libp2p refuse further ones.
    pub incoming: libp2p_stream::IncomingStreams,
    /// Our (fresh) identity.
    pub peer_id: PeerId,
    /// Where we listen (server attacks only).
    pub listen: Vec<Multiaddr>,
}

/// Builds a swarm with a fresh identity, connects to every `dial` target and
/// spawns its driver into `tasks`. With `provide`, it also listens on
/// 127.0.0.1, runs the DHT in server mode and announces itself as a provider
/// of that content (through the targets) every few seconds.
pub async fn start(
    tasks: &mut JoinSet<()>,
    dial: Vec<(PeerId, Multiaddr)>,
    provide: Option<ContentId>,
) -> anyhow::Result<Net> {
    let mut swarm = build(Keypair::generate_ed25519())?;
    let peer_id = *swarm.local_peer_id();
    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control
        .accept(SESSION)
        .map_err(|e| anyhow::anyhow!("cannot accept {SESSION} streams: {e}"))?;
    let mut listen = Vec::new();
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;

    if provide.is_some() {
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse()?)
            .context("cannot listen on 127.0.0.1")?;
        swarm.behaviour_mut().kad.set_mode(Some(kad::Mode::Server));
        while listen.is_empty() {
            match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
                Ok(SwarmEvent::NewListenAddr { address, .. }) => {
                    swarm.add_external_address(address.clone());
                    listen.push(address.with(libp2p::multiaddr::Protocol::P2p(peer_id)));
                }
                Ok(_) => {}
                Err(_) => bail!("the hostile peer got no listen address on 127.0.0.1"),
            }
        }
    }

    let targets: HashSet<PeerId> = dial.iter().map(|(p, _)| *p).collect();
    for (peer, addr) in &dial {
        swarm.behaviour_mut().kad.add_address(peer, addr.clone());
        swarm
            .dial(addr.clone())
            .with_context(|| format!("cannot dial {addr}"))?;
    }
    let mut connected = HashSet::new();
    let mut last_error = String::from("no answer");
    while connected.len() < targets.len() {
        match tokio::time::timeout_at(deadline, swarm.select_next_some()).await {
            Ok(SwarmEvent::ConnectionEstablished { peer_id, .. }) => {
                connected.insert(peer_id);
            }
            Ok(SwarmEvent::OutgoingConnectionError { error, .. }) => {
                last_error = error.to_string();
            }
            Ok(ev) => on_event(&mut swarm, ev),
            Err(_) => bail!(
                "cannot connect to {} within {CONNECT_TIMEOUT:?} ({last_error}); is the target running?",
                dial.iter()
                    .filter(|(p, _)| !connected.contains(p))
                    .map(|(_, a)| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    if let Some(id) = provide {
        let _ = swarm.behaviour_mut().kad.bootstrap();
        provide_now(&mut swarm, id);
    }
    tasks.spawn(drive(swarm, dial, provide));
    Ok(Net {
        control,
        incoming,
        peer_id,
        listen,
    })
}

fn build(key: Keypair) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let mut kad_config = kad::Config::new(KAD);
            kad_config.set_query_timeout(Duration::from_secs(10));
            let kad = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            let identify = identify::Behaviour::new(identify::Config::new(
                IDENTIFY_VERSION.into(),
                key.public(),
            ));
            Behaviour {
                stream: libp2p_stream::Behaviour::new(),
                kad,
                identify,
            }
        })?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(120))
                .with_notify_handler_buffer_size(NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN))
        })
        .build();
    Ok(swarm)
}

/// Polls the swarm for as long as the attack runs: dials lost targets again
/// and renews the provider record.
async fn drive(
    mut swarm: Swarm<Behaviour>,
    dial: Vec<(PeerId, Multiaddr)>,
    provide: Option<ContentId>,
) {
    let mut tick = tokio::time::interval(TICK);
    let mut since_provide = Duration::ZERO;
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => on_event(&mut swarm, ev),
            _ = tick.tick() => {
                for (peer, addr) in &dial {
                    // A victim that banned us refuses; trying again costs it little.
                    let opts = DialOpts::peer_id(*peer)
                        .addresses(vec![addr.clone()])
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = swarm.dial(opts);
                }
                since_provide += TICK;
                if let Some(id) = provide {
                    if since_provide >= REPROVIDE {
                        since_provide = Duration::ZERO;
                        provide_now(&mut swarm, id);
                    }
                }
            }
        }
    }
}

fn on_event(swarm: &mut Swarm<Behaviour>, ev: SwarmEvent<BehaviourEvent>) {
    // Like a node: Kademlia learns peers' addresses from identify.
    if let SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
        peer_id,
        info,
        ..
    })) = ev
    {
        if info.protocols.contains(&KAD) {
            for a in info.listen_addrs.into_iter().take(8) {
                swarm.behaviour_mut().kad.add_address(&peer_id, a);
            }
        }
    }
}

fn provide_now(swarm: &mut Swarm<Behaviour>, id: ContentId) {
    if let Err(e) = swarm
        .behaviour_mut()
        .kad
        .start_providing(kad::RecordKey::new(id.as_bytes()))
    {
        eprintln!("hostile: cannot announce {id}: {e}");
    }
}
