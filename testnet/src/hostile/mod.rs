//! The adversarial test peer: a libp2p peer that speaks `/kadswarm/session/2`
//! badly on purpose, to prove that a node holds up against it.
//!
//! [`Hostile::start`] builds its own swarm (TCP + noise + yamux, like a node,
//! plus identify and Kademlia on `/kadswarm/kad/1`), connects to its target
//! and runs one [`Attack`] at full rate until it is stopped or dropped.
//! Attacks against a seeder are clients of the victim ([`client`]); attacks
//! against a getter are lying servers that announce themselves in the DHT
//! ([`server`]). Raw streams (`libp2p-stream`) let it do what no codec would:
//! write half a frame, never read the victim's session stream, send bytes of
//! the wrong type. [`session`] holds the honest plumbing (our one outbound
//! stream per peer, answers matched to asks by request ID), [`frame`] the
//! framing, and [`badframes`] the garbage attack's catalogue.
//!
//! `testnet hostile-peer` runs one as its own process; `testnet hostile`
//! ([`measure`]) runs three of them against a seeder, attack after attack,
//! and measures what they cost an honest download and the seeder's memory.
//!
//! Network safety: it only ever talks to 127.0.0.1 (or ::1); [`Config`]
//! refuses any other address.

pub mod badframes;
pub mod cli;
pub mod client;
pub mod frame;
pub mod measure;
pub mod net;
pub mod noncanonical;
pub mod probe;
pub mod rss;
pub mod server;
pub mod session;
pub mod victim;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use protocol::ContentId;
use tokio::task::JoinSet;

/// One way of misbehaving. Client attacks target a node that serves the
/// content (a seeder); server attacks target a node that fetches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Attack {
    /// Says on its session stream that it has nothing and wants everything,
    /// then pipelines chunk asks (every index in turn, `width` of them) and
    /// never reads the victim's session stream to it. The session is held
    /// until the victim cuts it or `hold` passes, then opened again.
    SlowReader,
    /// Pipelines many manifest asks (`width`, 256 by default) on its session
    /// stream and never reads the answers; held and reopened like slow-reader.
    ManifestFlood,
    /// Opens session streams (`width` at once) that announce a frame of the
    /// largest size the node accepts (a message with a chunk and the deepest
    /// proof, or the bitfield if larger), send all of it but the last byte,
    /// and hold them open for `hold`.
    RequestStall,
    /// Sends frames no honest peer sends on session streams (`width` at
    /// once), in turn: oversize length prefixes, truncated frames, random
    /// bytes, zero-length frames, CBOR of the wrong type, deeply nested CBOR,
    /// byte strings claiming 4 GiB, answers to asks never made, gained
    /// chunks past the content's end, haves of unknown content.
    Garbage,
    /// A greedy leecher that looks honest: `width` pipelined chunk asks for
    /// every index in turn, each answer read at full speed.
    ChunkFlood,
    /// Announces itself as a provider and claims every chunk in its have,
    /// then answers chunk asks with "don't have", garbage frames and chunks
    /// of random bytes, in turn.
    LyingSeeder,
    /// Announces itself as a provider and claims every chunk, then serves
    /// real chunks (with their valid proofs) with one bit of the data
    /// flipped: from its own copy of the file (`file`), or relayed from an
    /// honest upstream seeder.
    WrongChunks,
    /// Shares a file under a manifest whose bytes decode to a valid manifest
    /// but are not its canonical encoding (an extra map field); the content
    /// ID is the SHA-256 of those exact bytes. Serves the real chunks.
    NoncanonicalManifest,
}

impl Attack {
    /// The attacks that target a seeder, in the order `testnet hostile` runs them.
    pub const AGAINST_SEEDERS: [Attack; 5] = [
        Attack::SlowReader,
        Attack::ManifestFlood,
        Attack::RequestStall,
        Attack::Garbage,
        Attack::ChunkFlood,
    ];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Attack::SlowReader => "slow-reader",
            Attack::ManifestFlood => "manifest-flood",
            Attack::RequestStall => "request-stall",
            Attack::Garbage => "garbage",
            Attack::ChunkFlood => "chunk-flood",
            Attack::LyingSeeder => "lying-seeder",
            Attack::WrongChunks => "wrong-chunks",
            Attack::NoncanonicalManifest => "noncanonical-manifest",
        }
    }

    /// True for attacks that serve a getter rather than ask a seeder.
    pub fn is_server(self) -> bool {
        matches!(
            self,
            Attack::LyingSeeder | Attack::WrongChunks | Attack::NoncanonicalManifest
        )
    }

    /// How wide the attack runs when the user names no width: asks in
    /// flight on its session (slow-reader, manifest-flood, chunk-flood), or
    /// session streams open at once (request-stall, garbage; a node takes 2
    /// per peer and refuses the rest).
    pub fn default_width(self) -> usize {
        match self {
            Attack::SlowReader => 64,
            Attack::ManifestFlood => 256,
            Attack::RequestStall => 2,
            Attack::Garbage => 4,
            Attack::ChunkFlood => 32,
            Attack::LyingSeeder | Attack::WrongChunks | Attack::NoncanonicalManifest => 0,
        }
    }

    /// True for attacks that need the manifest (fetched under another
    /// identity) before they start.
    fn needs_manifest(self) -> bool {
        matches!(
            self,
            Attack::SlowReader | Attack::ChunkFlood | Attack::RequestStall
        )
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to attack and how hard.
#[derive(Clone, Debug)]
pub struct Config {
    /// The attack.
    pub attack: Attack,
    /// Client attacks: the victim. Server attacks: the bootstrap node whose
    /// DHT the hostile peer announces itself in. A 127.0.0.1 multiaddr
    /// ending in `/p2p/<peer id>`.
    pub target: Multiaddr,
    /// The content to ask for (client attacks) or to claim (lying-seeder,
    /// wrong-chunks). Not used by noncanonical-manifest, which makes its own.
    pub content: Option<ContentId>,
    /// Asks in flight or streams open at once; `None` takes [`Attack::default_width`].
    pub width: Option<usize>,
    /// How long a stalled session is held before it is dropped and reopened.
    pub hold: Duration,
    /// wrong-chunks (required) and lying-seeder (optional): an honest seeder
    /// of `content`, for real manifests and chunks to relay (and corrupt).
    pub upstream: Option<Multiaddr>,
    /// noncanonical-manifest (required) and wrong-chunks: the file to share
    /// (read into memory, at most [`noncanonical::MAX_FILE_BYTES`]).
    pub file: Option<PathBuf>,
}

impl Config {
    /// A config for `attack` against `target` with the defaults.
    pub fn new(attack: Attack, target: Multiaddr) -> Self {
        Self {
            attack,
            target,
            content: None,
            width: None,
            hold: Duration::from_secs(20),
            upstream: None,
            file: None,
        }
    }

    /// Asks in flight or streams open at once.
    pub fn width(&self) -> usize {
        self.width
            .unwrap_or_else(|| self.attack.default_width())
            .max(1)
    }

    fn content(&self) -> anyhow::Result<ContentId> {
        self.content
            .with_context(|| format!("{} needs the content ID to use (--content)", self.attack))
    }
}

/// Counters of what an attack did, so a caller can tell it really ran.
#[derive(Debug, Default)]
pub struct Counters {
    /// Session streams opened or accepted.
    pub streams: AtomicU64,
    /// Asks or bad frames written, whole or on purpose in part (client), or
    /// answers written (server).
    pub sent: AtomicU64,
    /// Complete frames read back.
    pub received: AtomicU64,
    /// Bytes of frames read back.
    pub bytes_read: AtomicU64,
    /// Answers that refused us: choked, don't have, unknown content.
    pub refused: AtomicU64,
    /// Streams that failed to open, write or read.
    pub errors: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            streams: get(&self.streams),
            sent: get(&self.sent),
            received: get(&self.received),
            bytes_read: get(&self.bytes_read),
            refused: get(&self.refused),
            errors: get(&self.errors),
        }
    }
}

/// [`Counters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Counters::streams`].
    pub streams: u64,
    /// See [`Counters::sent`].
    pub sent: u64,
    /// See [`Counters::received`].
    pub received: u64,
    /// See [`Counters::bytes_read`].
    pub bytes_read: u64,
    /// See [`Counters::refused`].
    pub refused: u64,
    /// See [`Counters::errors`].
    pub errors: u64,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} streams, {} sent, {} frames read ({}), {} refused, {} errors",
            self.streams,
            self.sent,
            self.received,
            crate::units::bytes(self.bytes_read),
            self.refused,
            self.errors
        )
    }
}

/// A running hostile peer; dropping it stops the attack at once.
pub struct Hostile {
    peer_id: PeerId,
    content: Option<ContentId>,
    listen: Vec<Multiaddr>,
    counters: Arc<Counters>,
    tasks: JoinSet<()>,
}

impl Hostile {
    /// Builds the peer, connects to the target (and upstream), and starts the
    /// attack on the current tokio runtime. Returns once it is connected;
    /// fails if the target cannot be reached within 20 s.
    pub async fn start(cfg: Config) -> anyhow::Result<Hostile> {
        check_loopback(&cfg.target, "target")?;
        if let Some(up) = &cfg.upstream {
            check_loopback(up, "upstream")?;
        }
        let target = peer_of(&cfg.target)?;
        let counters = Arc::new(Counters::default());
        let mut tasks = JoinSet::new();
        if !cfg.attack.is_server() {
            let content = cfg.content()?;
            // Under another identity, so the attacker never has to read an answer.
            let manifest = if cfg.attack.needs_manifest() {
                Some(probe::fetch_manifest(&cfg.target, content).await?)
            } else {
                None
            };
            let net = net::start(&mut tasks, vec![(target, cfg.target.clone())], None).await?;
            let peer_id = net.peer_id;
            let ctx = client::Ctx::new(
                net.control,
                target,
                content,
                manifest.as_ref(),
                counters.clone(),
                cfg.hold,
            );
            client::spawn(&mut tasks, cfg.attack, ctx, net.incoming, cfg.width())?;
            return Ok(Hostile {
                peer_id,
                content: Some(content),
                listen: Vec::new(),
                counters,
                tasks,
            });
        }
        let served = match (cfg.attack, cfg.file.as_deref()) {
            (Attack::NoncanonicalManifest, Some(file)) => {
                server::Served::Own(Arc::new(noncanonical::Share::from_file(file)?))
            }
            (Attack::NoncanonicalManifest, None) => {
                bail!("noncanonical-manifest needs a file to share (--file)")
            }
            (Attack::WrongChunks, Some(file)) => {
                let share =
                    noncanonical::Share::from_file_with(file, noncanonical::Variant::Canonical)?;
                if let Some(id) = cfg.content {
                    if id != share.id {
                        bail!(
                            "{} shared with the automatic chunk size is {}, not {id}; give the file the seeder shares",
                            file.display(),
                            share.id
                        );
                    }
                }
                server::Served::Own(Arc::new(share))
            }
            (Attack::WrongChunks, None) if cfg.upstream.is_none() => {
                bail!("wrong-chunks needs the file (--file) or an honest seeder to relay from (--upstream)")
            }
            _ => server::Served::Claimed(cfg.content()?),
        };
        let mut dial = vec![(target, cfg.target.clone())];
        let upstream = match &cfg.upstream {
            Some(addr) => {
                let peer = peer_of(addr)?;
                if peer != target {
                    dial.push((peer, addr.clone()));
                }
                Some(peer)
            }
            None => None,
        };
        let content = served.id();
        let net = net::start(&mut tasks, dial, Some(content)).await?;
        let srv = server::Server::new(
            cfg.attack,
            served,
            net.control.clone(),
            upstream,
            counters.clone(),
        );
        srv.spawn(&mut tasks, net.incoming);
        Ok(Hostile {
            peer_id: net.peer_id,
            content: Some(content),
            listen: net.listen,
            counters,
            tasks,
        })
    }

    /// This hostile peer's identity (a fresh one per start).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The content attacked, claimed or served.
    pub fn content(&self) -> Option<ContentId> {
        self.content
    }

    /// Where a server attack listens (empty for client attacks).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen
    }

    /// What the attack has done so far.
    pub fn stats(&self) -> Snapshot {
        self.counters.snapshot()
    }

    /// Stops every task and closes the connections.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// The peer ID at the end of `addr`.
pub fn peer_of(addr: &Multiaddr) -> anyhow::Result<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Ok(peer),
        _ => bail!("{addr} does not end in /p2p/<peer id>; give the full address"),
    }
}

/// Refuses anything but 127.0.0.1 or ::1: this peer attacks what it talks to.
pub fn check_loopback(addr: &Multiaddr, what: &str) -> anyhow::Result<()> {
    let loopback = match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    };
    if !loopback {
        bail!("{what} {addr} is not on 127.0.0.1 or ::1; the hostile peer only attacks loopback");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        let ok: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        assert!(check_loopback(&ok, "target").is_ok());
        for bad in [
            "/ip4/10.0.0.1/tcp/1",
            "/dns4/localhost/tcp/1",
            "/ip4/0.0.0.0/tcp/1",
        ] {
            let a: Multiaddr = bad.parse().unwrap();
            assert!(check_loopback(&a, "target").is_err(), "{bad}");
        }
    }

    #[test]
    fn server_attacks_are_told_apart() {
        assert!(Attack::AGAINST_SEEDERS.iter().all(|a| !a.is_server()));
        assert!(Attack::NoncanonicalManifest.is_server());
    }
}
