//! Loopback testnets: real `node` processes on 127.0.0.1, no root needed.
//! `testnet up` lives here; `demo` builds on the same pieces.
//!
//! Network safety: every node is told to listen on 127.0.0.1 explicitly,
//! and only addresses on 127.0.0.1 are accepted as bootstrap addresses.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;

use crate::procs::{ChildId, Supervisor};
use crate::rundir;

/// What every loopback node listens on: 127.0.0.1, a port of the OS's choosing.
pub const LISTEN: &str = "/ip4/127.0.0.1/tcp/0";

/// How long a node may take to print its first line (address or content ID).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A node's address on 127.0.0.1 ending in `/p2p/<peer id>`, as `node join` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopbackAddr(String);

impl FromStr for LoopbackAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if !s.starts_with("/ip4/127.0.0.1/") {
            return Err(format!("{s:?} is not a 127.0.0.1 multiaddr"));
        }
        if s.contains(char::is_whitespace) {
            return Err(format!("{s:?} contains whitespace"));
        }
        match s.rsplit_once("/p2p/") {
            Some((_, peer)) if !peer.is_empty() && !peer.contains('/') => Ok(Self(s.to_string())),
            _ => Err(format!("{s:?} does not end in /p2p/<peer id>")),
        }
    }
}

impl fmt::Display for LoopbackAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Paths of one node inside the run folder.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    /// `<run>/<name>`.
    pub dir: PathBuf,
    /// `--data-dir`: identity and state.
    pub data: PathBuf,
    /// The node's stderr.
    pub log: PathBuf,
    /// `--stats-file`.
    pub stats: PathBuf,
}

impl NodeFiles {
    /// Creates `<run>/<name>/` and names the files in it.
    pub fn create(run: &Path, name: &str) -> anyhow::Result<Self> {
        let dir = rundir::node_dir(run, name)?;
        Ok(Self {
            data: dir.join("data"),
            log: dir.join("node.log"),
            stats: dir.join("stats.json"),
            dir,
        })
    }
}

/// Builds a node command line: subcommand, then flags.
#[derive(Clone, Debug, Default)]
pub struct Args(Vec<OsString>);

impl Args {
    /// Starts with the subcommand and its positional arguments.
    pub fn new<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self(words.into_iter().map(Into::into).collect())
    }

    /// Adds `--flag value`.
    pub fn opt(mut self, flag: &str, value: impl Into<OsString>) -> Self {
        self.0.push(flag.into());
        self.0.push(value.into());
        self
    }

    /// Adds `flag value` when there is a value.
    pub fn opt_some(self, flag: &str, value: Option<impl Into<OsString>>) -> Self {
        match value {
            Some(v) => self.opt(flag, v),
            None => self,
        }
    }

    /// Adds a bare `--flag`.
    pub fn flag(mut self, flag: &str) -> Self {
        self.0.push(flag.into());
        self
    }

    /// The flags every loopback node gets: listen on 127.0.0.1, own data dir,
    /// and the bootstrap node when there is one.
    pub fn loopback(self, files: &NodeFiles, bootstrap: Option<&LoopbackAddr>) -> Self {
        let args = self.opt("--listen", LISTEN).opt("--data-dir", &files.data);
        match bootstrap {
            Some(addr) => args.opt("--bootstrap", addr.to_string()),
            None => args,
        }
    }

    /// The arguments.
    pub fn as_slice(&self) -> &[OsString] {
        &self.0
    }
}

/// Starts `node join` as `name` and waits for its first listen address.
pub async fn start_join(
    sup: &mut Supervisor,
    run: &Path,
    name: &str,
    bootstrap: Option<&LoopbackAddr>,
) -> anyhow::Result<(ChildId, LoopbackAddr)> {
    let files = NodeFiles::create(run, name)?;
    let args = Args::new(["join"]).loopback(&files, bootstrap);
    let id = sup.spawn(name, args.as_slice(), &files.log)?;
    let addr = wait_addr(sup, id, tokio::time::Instant::now() + STARTUP_TIMEOUT).await?;
    Ok((id, addr))
}

/// Waits for a `join` node's first listen address.
pub async fn wait_addr(
    sup: &mut Supervisor,
    id: ChildId,
    deadline: tokio::time::Instant,
) -> anyhow::Result<LoopbackAddr> {
    let line = sup.next_line(id, deadline, "its listen address").await?;
    line.text
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))
        .with_context(|| format!("{} printed an unexpected listen address", sup.name(id)))
}

/// How far apart `testnet up` starts its nodes by default. Nodes of a real
/// network do not all join in the same second, and each join into a DHT of
/// a few hundred nodes costs the machine about 0.4 CPU-seconds (two
/// Kademlia bootstraps, a hundred-odd dials with a noise handshake each):
/// 200 nodes started at once kept both cores of a 2-core machine saturated
/// for two minutes, while 100 ms apart (held back further by nodes slow to
/// reach the bootstrap node) they are all in after about 45 s and idle
/// 10 s later.
pub const JOIN_INTERVAL: Duration = Duration::from_millis(100);

/// `testnet up`: starts a bootstrap node and `nodes` more joined to it, one
/// every `interval` (later if a node takes longer to print its address), and
/// returns their names and addresses, bootstrap first, once all are
/// listening; also saves them as `<name> <multiaddr>` lines in
/// `<run>/addresses.txt`. The caller keeps them running.
pub async fn up(
    sup: &mut Supervisor,
    run: &Path,
    nodes: usize,
    interval: Duration,
) -> anyhow::Result<Vec<(String, LoopbackAddr)>> {
    let (_, boot) = start_join(sup, run, "bootstrap", None).await?;
    let mut addrs = vec![("bootstrap".to_string(), boot.clone())];

    for i in 1..=nodes {
        let started = tokio::time::Instant::now();
        let name = format!("node-{i}");
        let files = NodeFiles::create(run, &name)?;
        let args = Args::new(["join"])
            .loopback(&files, Some(&boot))
            .opt("--stats-file", &files.stats);
        let id = sup.spawn(&name, args.as_slice(), &files.log)?;
        // A node prints its address once it reached the bootstrap node:
        // waiting for it keeps a loaded machine from piling up joins.
        let addr = wait_addr(sup, id, tokio::time::Instant::now() + STARTUP_TIMEOUT).await?;
        addrs.push((name, addr));
        if i % 50 == 0 && i < nodes {
            eprintln!("testnet: {i} of {nodes} nodes up");
        }
        if i < nodes {
            tokio::time::sleep_until(started + interval).await;
        }
    }
    let listing: String = addrs.iter().map(|(n, a)| format!("{n} {a}\n")).collect();
    let path = run.join("addresses.txt");
    std::fs::write(&path, listing).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_loopback_addresses_with_a_peer_id() {
        let ok = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        assert_eq!(ok.parse::<LoopbackAddr>().unwrap().to_string(), ok);
        assert!(format!(" {ok}\n").parse::<LoopbackAddr>().is_ok());
        for bad in [
            "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW",
            "/ip4/0.0.0.0/tcp/4001/p2p/12D3KooW",
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/tcp/4001/p2p/",
            "/ip4/127.0.0.1/tcp/4001/p2p/a b",
            "/dns4/localhost/tcp/4001/p2p/12D3KooW",
        ] {
            assert!(bad.parse::<LoopbackAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_args_pin_the_listen_address() {
        let files = NodeFiles {
            dir: "/r/n".into(),
            data: "/r/n/data".into(),
            log: "/r/n/node.log".into(),
            stats: "/r/n/stats.json".into(),
        };
        let boot: LoopbackAddr = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWx".parse().unwrap();
        let args = Args::new(["get", "abc"])
            .loopback(&files, Some(&boot))
            .flag("--no-seed");
        let words: Vec<_> = args
            .as_slice()
            .iter()
            .map(|s| s.to_str().unwrap())
            .collect();
        assert_eq!(
            words,
            [
                "get",
                "abc",
                "--listen",
                LISTEN,
                "--data-dir",
                "/r/n/data",
                "--bootstrap",
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWx",
                "--no-seed"
            ]
        );
    }
}
