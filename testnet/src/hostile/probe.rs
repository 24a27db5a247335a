//! Honest questions to a node from a fresh identity: for tests that check
//! what a node serves (e.g. that its manifest hashes to its ID), and for
//! attacks that need the manifest before they start, asked under another
//! identity so the attacker itself never has to read an answer.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use libp2p::Multiaddr;
use protocol::manifest::Manifest;
/// The session protocol's ask and answer, for callers that build probes.
pub use protocol::wire::{Answer, Ask};
use protocol::ContentId;
use tokio::task::JoinSet;

use super::net;
use super::session::Asker;
use super::{check_loopback, peer_of, Counters};

/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A session with one node; dropping it disconnects.
pub struct Probe {
    target: Multiaddr,
    asker: Arc<Asker>,
    tasks: JoinSet<()>,
}

impl Probe {
    /// Connects to `target` (127.0.0.1, with `/p2p/<id>`) under a fresh identity.
    pub async fn connect(target: &Multiaddr) -> anyhow::Result<Probe> {
        check_loopback(target, "target")?;
        let peer = peer_of(target)?;
        let mut tasks = JoinSet::new();
        let net = net::start(&mut tasks, vec![(peer, target.clone())], None).await?;
        let asker = Arc::new(Asker::new(
            net.control,
            peer,
            None,
            Arc::new(Counters::default()),
        ));
        let reader = asker.clone();
        tasks.spawn(net.incoming.for_each_concurrent(2, move |(from, s)| {
            let reader = reader.clone();
            async move {
                if from == reader.peer() {
                    reader.read_answers(s).await;
                }
            }
        }));
        Ok(Probe {
            target: target.clone(),
            asker,
            tasks,
        })
    }

    /// Asks `ask` and returns the answer.
    pub async fn ask(&self, ask: Ask) -> anyhow::Result<Answer> {
        self.asker
            .ask(ask.clone(), ANSWER_TIMEOUT)
            .await
            .with_context(|| format!("{} did not answer {ask:?}", self.target))
    }

    /// Asks for the manifest of `id` until the node gives it (for up to ~5 s).
    pub async fn manifest(&self, id: ContentId) -> anyhow::Result<Manifest> {
        let mut last = String::new();
        for _ in 0..20 {
            match self.ask(Ask::Manifest { id }).await {
                Ok(Answer::Manifest { bytes }) => {
                    return Manifest::decode_untrusted(&bytes).with_context(|| {
                        format!("{} sent a manifest we cannot decode", self.target)
                    });
                }
                Ok(other) => last = format!("it answered {other:?}"),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "{} does not give us the manifest of {id} ({last}); does it serve that content?",
            self.target
        )
    }

    /// Disconnects.
    pub async fn close(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Connects to `target` (127.0.0.1, with `/p2p/<id>`), asks `ask` and returns the answer.
pub async fn ask_once(target: &Multiaddr, ask: Ask) -> anyhow::Result<Answer> {
    let probe = Probe::connect(target).await?;
    let answer = probe.ask(ask).await;
    probe.close().await;
    answer
}

/// The manifest of `id` as `target` serves it.
pub async fn fetch_manifest(target: &Multiaddr, id: ContentId) -> anyhow::Result<Manifest> {
    let probe = Probe::connect(target).await?;
    let manifest = probe.manifest(id).await;
    probe.close().await;
    manifest
}

/// SHA-256 of `bytes` as lowercase hex, the form content IDs are shown in.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes).as_slice())
}
