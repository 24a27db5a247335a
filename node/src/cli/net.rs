//! Network flags shared by every command, and starting an embedded node from them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use node::behaviour::RelayLimits;
use node::units::{parse_rate, parse_size};
use node::{Client, NodeConfig};
use protocol::choker::ChokePolicy;
use protocol::picker::PickPolicy;

/// Flags every command takes: where to listen, whom to bootstrap through, caps.
#[derive(Args, Clone)]
pub struct NetArgs {
    /// Peer to join the DHT through (multiaddr, with or without /p2p/<id>); repeatable.
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Address to listen on; repeatable. Default: TCP and QUIC on all interfaces, OS-chosen ports.
    #[arg(long)]
    pub listen: Vec<Multiaddr>,
    /// Where the identity key and state live (default: $XDG_DATA_HOME/kadswarm or ~/.local/share/kadswarm).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Upload cap, e.g. 8mbit or 2MiB (per second).
    #[arg(long)]
    pub max_upload: Option<String>,
    /// Download cap, e.g. 8mbit or 2MiB (per second).
    #[arg(long)]
    pub max_download: Option<String>,
    /// Never upload chunks to anyone (client-server experiments).
    #[arg(long)]
    pub no_upload: bool,
    /// Choking policy (experiments): tit-for-tat unchokes the best uploaders
    /// to us plus one optimistic slot; unchoke-all serves every interested peer.
    #[arg(long, value_enum, default_value_t = ChokeArg::TitForTat)]
    pub choke: ChokeArg,
    /// Which missing chunk to ask for next (experiments): rarest-first,
    /// random, or sequential (lowest index first).
    #[arg(long, value_enum, default_value_t = PickArg::RarestFirst)]
    pub pick: PickArg,
    /// Rewrite this file every 500 ms with JSON counters (for scripts).
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9898. No authentication: keep it on loopback.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Bare `--relay`: run a relay v2 server for peers behind NATs (needs an
    /// address others can reach: a public listen address or --external).
    /// `--relay ADDR` (repeatable; a multiaddr ending in /p2p/<relay peer id>):
    /// reserve a slot on that relay, so peers reach us through it even
    /// behind a NAT, and hole-punch to them when possible. A node given a
    /// relay advertises only its relayed address and addresses AutoNAT
    /// confirms, and stays a DHT client until AutoNAT finds it reachable.
    /// Without --relay ADDR, a node that AutoNAT finds unreachable reserves
    /// on connected peers that run a relay. Put a bare --relay after any
    /// positional argument (or write --relay=serve).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "serve")]
    pub relay: Vec<RelayArg>,
    /// An address others reach us at (repeatable), e.g. a public or
    /// port-forwarded address: advertised as confirmed, and reachability is
    /// public. A relay needs one unless it listens on a public address.
    #[arg(long, value_name = "ADDR")]
    pub external: Vec<Multiaddr>,
    /// Relay server: most circuits relayed at once, in total [default: 16].
    #[arg(long, value_name = "N")]
    pub relay_max_circuits: Option<usize>,
    /// Relay server: most circuits at once from or to one peer [default: 4].
    #[arg(long, value_name = "N")]
    pub relay_max_circuits_per_peer: Option<usize>,
    /// Relay server: a circuit is closed after this many seconds [default:
    /// 900; libp2p's 120 ends real transfers].
    #[arg(long, value_name = "SECS")]
    pub relay_max_circuit_duration: Option<u64>,
    /// Relay server: a circuit is closed after carrying this much, both
    /// directions together, e.g. 256MiB [default: 256MiB; libp2p's 128KiB
    /// ends real transfers]. With the defaults the relay carries at most
    /// 16 x 256 MiB at once; per source peer libp2p allows a burst of 30
    /// circuits, then one per 2 minutes.
    #[arg(long, value_name = "SIZE")]
    pub relay_max_circuit_bytes: Option<String>,
}

/// `--choke`: the choking policy, as spelled on the command line (the same
/// spelling as `testnet sim --choke`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ChokeArg {
    /// Tit-for-tat with an optimistic unchoke (the default).
    TitForTat,
    /// Unchoke every interested peer.
    UnchokeAll,
}

impl From<ChokeArg> for ChokePolicy {
    fn from(c: ChokeArg) -> Self {
        match c {
            ChokeArg::TitForTat => ChokePolicy::TitForTat,
            ChokeArg::UnchokeAll => ChokePolicy::UnchokeAll,
        }
    }
}

/// `--pick`: the piece-picking policy, as spelled on the command line (the
/// same spelling as `testnet sim --pick`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PickArg {
    /// Fewest holders first (the default).
    RarestFirst,
    /// Uniformly at random.
    Random,
    /// Lowest index first.
    Sequential,
}

impl From<PickArg> for PickPolicy {
    fn from(p: PickArg) -> Self {
        match p {
            PickArg::RarestFirst => PickPolicy::RarestFirst,
            PickArg::Random => PickPolicy::Random,
            PickArg::Sequential => PickPolicy::Sequential,
        }
    }
}

/// One `--relay`: run a relay server, or use the relay at an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayArg {
    /// Bare `--relay` (or `--relay=serve`): run a relay v2 server.
    Serve,
    /// `--relay ADDR`: reserve a slot on this relay.
    Use(Multiaddr),
}

impl std::str::FromStr for RelayArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s == "serve" {
            return Ok(Self::Serve);
        }
        let addr: Multiaddr = s
            .parse()
            .map_err(|e| format!("{s:?} is neither `serve` nor a multiaddr: {e}"))?;
        if addr.iter().any(|p| p == Protocol::P2pCircuit) {
            return Err(format!(
                "{s:?} is a relayed address; give the relay's own address, ending in /p2p/<relay peer id>"
            ));
        }
        if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
            return Err(format!(
                "{s:?} does not end in /p2p/<relay peer id>; the relay prints its full address when it starts"
            ));
        }
        Ok(Self::Use(addr))
    }
}

impl NetArgs {
    /// Relays to use (`--relay ADDR`).
    fn relays_used(&self) -> Vec<Multiaddr> {
        self.relay
            .iter()
            .filter_map(|r| match r {
                RelayArg::Use(a) => Some(a.clone()),
                RelayArg::Serve => None,
            })
            .collect()
    }

    /// The relay server's limits if one runs (bare `--relay` or `relay_server = true`).
    fn relay_limits(&self, serve: bool) -> anyhow::Result<Option<RelayLimits>> {
        let any_limit = self.relay_max_circuits.is_some()
            || self.relay_max_circuits_per_peer.is_some()
            || self.relay_max_circuit_duration.is_some()
            || self.relay_max_circuit_bytes.is_some();
        if !serve {
            if any_limit {
                anyhow::bail!("--relay-max-* limits apply to a relay server: add a bare --relay");
            }
            return Ok(None);
        }
        let mut l = RelayLimits::default();
        if let Some(n) = self.relay_max_circuits {
            l.max_circuits = n;
        }
        if let Some(n) = self.relay_max_circuits_per_peer {
            l.max_circuits_per_peer = n;
        }
        if let Some(secs) = self.relay_max_circuit_duration {
            l.max_circuit_duration = Duration::from_secs(secs);
        }
        if let Some(b) = &self.relay_max_circuit_bytes {
            l.max_circuit_bytes = parse_size(b)
                .map_err(|e| anyhow::anyhow!("invalid --relay-max-circuit-bytes: {e}"))?;
        }
        Ok(Some(l))
    }
}

/// The data dir's lock, held by a process that runs a node.
static NODE_LOCK: std::sync::OnceLock<node::daemon::lock::DaemonLock> = std::sync::OnceLock::new();

/// Commands that only talk to a daemon need just its data directory.
#[derive(Args, Clone)]
pub struct DirArgs {
    /// The daemon's data dir (default: $XDG_DATA_HOME/kadswarm or ~/.local/share/kadswarm).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DirArgs {
    /// The daemon running on this data dir, or an error saying how to start one.
    pub async fn remote(&self) -> anyhow::Result<super::remote::Remote> {
        let dir = dir_or_default(self.data_dir.as_deref());
        super::remote::Remote::find(&dir).await?.with_context(|| {
            format!(
                "no node daemon runs on data dir {}; start one with `node join --data-dir {}`",
                dir.display(),
                dir.display()
            )
        })
    }
}

/// The data directory: `--data-dir`, else the XDG data home.
pub fn data_dir(net: &NetArgs) -> PathBuf {
    dir_or_default(net.data_dir.as_deref())
}

fn dir_or_default(dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_path_buf();
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kadswarm")
}

/// What an embedded node does for the DHT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhtRole {
    /// Answers queries and stores records (`join`, `share`).
    Server,
    /// Looks up and announces only (`get`).
    Client,
}

/// Starts an embedded node from the flags; waits for the bootstrap peers.
pub async fn start(
    net: &NetArgs,
    find_timeout: Option<Duration>,
    dht: DhtRole,
) -> anyhow::Result<Client> {
    let dir = data_dir(net);
    let keypair = node::identity::load_or_create(&dir)?;
    // Held until the process exits: one node per identity.
    let lock = node::daemon::lock::DaemonLock::acquire(&dir)?;
    if NODE_LOCK.set(lock).is_err() {
        anyhow::bail!("a node was already started in this process");
    }
    // Flags win; config.toml in the data dir supplies the rest.
    let file = node::config_file::FileConfig::load(&dir)?;
    let mut config = NodeConfig::loopback();
    config.listen = if !net.listen.is_empty() {
        net.listen.clone()
    } else if !file.listen.is_empty() {
        file.listen.clone()
    } else {
        vec![
            "/ip4/0.0.0.0/tcp/0".parse()?,
            "/ip4/0.0.0.0/udp/0/quic-v1".parse()?,
        ]
    };
    let rate = |flag: &str, v: Option<&String>| -> anyhow::Result<Option<u64>> {
        match v {
            Some(v) => parse_rate(v).map_err(|e| anyhow::anyhow!("invalid {flag}: {e}")),
            None => Ok(None),
        }
    };
    config.net.max_upload = rate(
        "--max-upload",
        net.max_upload.as_ref().or(file.max_upload.as_ref()),
    )?;
    config.net.max_download = rate(
        "--max-download",
        net.max_download.as_ref().or(file.max_download.as_ref()),
    )?;
    config.net.dht_client = dht == DhtRole::Client;
    config.engine.bootstrap = if net.bootstrap.is_empty() {
        file.bootstrap.clone()
    } else {
        net.bootstrap.clone()
    };
    config.engine.transfer.upload_enabled = !(net.no_upload || file.no_upload);
    config.engine.transfer.choker.policy = net.choke.into();
    config.engine.transfer.picker.policy = net.pick.into();
    let serve_relay = net.relay.contains(&RelayArg::Serve) || file.relay_server;
    config.net.relay_server = net.relay_limits(serve_relay)?;
    let relays = net.relays_used();
    config.engine.nat.relays = if relays.is_empty() {
        for a in &file.relays {
            a.to_string()
                .parse::<RelayArg>()
                .map_err(|e| anyhow::anyhow!("invalid relays entry in config.toml: {e}"))?;
        }
        file.relays.clone()
    } else {
        relays
    };
    config.engine.nat.external = if net.external.is_empty() {
        file.external.clone()
    } else {
        net.external.clone()
    };
    // Behind a relay our listen addresses are (probably) private: advertise the
    // relayed address and what AutoNAT confirms instead.
    config.engine.listen_addrs_are_external = config.engine.nat.relays.is_empty();
    if let Some(t) = find_timeout {
        config.engine.find_timeout = t;
    }
    let config_bootstrap_empty = config.engine.bootstrap.is_empty();
    let uses_relays = !config.engine.nat.relays.is_empty();
    let (client, _task) = node::spawn(keypair, config)?;
    let metrics = match (net.metrics, &file.metrics) {
        (Some(a), _) => Some(a),
        (None, Some(text)) => Some(text.parse().with_context(|| {
            format!("invalid metrics = {text:?} in config.toml: give ADDR:PORT")
        })?),
        (None, None) => None,
    };
    if let Some(addr) = metrics {
        let (bound, _server) = node::metrics::start_metrics_server(addr, client.clone()).await?;
        eprintln!("serving metrics on http://{bound}/metrics");
    }
    if !config_bootstrap_empty {
        let n = tokio::time::timeout(Duration::from_secs(20), client.bootstrapped())
            .await
            .context("timed out reaching the bootstrap peers")??;
        tracing::info!("connected to {n} bootstrap peers");
    }
    if uses_relays {
        wait_for_reservation(&client).await;
    }
    Ok(client)
}

/// Most time to wait for a slot on a `--relay` before going on without one.
const RESERVATION_WAIT: Duration = Duration::from_secs(15);

/// Waits (bounded) until a relay holds a slot for us: then our provider
/// records carry the relayed address from the first announce, and, since a
/// reservation follows identify from the relay, DCUtR knows our observed
/// address before the first relayed connection (NATLAB fact 2).
async fn wait_for_reservation(client: &Client) {
    let deadline = tokio::time::Instant::now() + RESERVATION_WAIT;
    loop {
        if let Ok(s) = client.stats().await {
            if !s.nat.reservations.is_empty() {
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "no relay accepted a reservation within {} s; going on (peers behind NATs cannot reach us until one does)",
                RESERVATION_WAIT.as_secs()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails early if files cannot be created in `dir` (the probe never follows a link or truncates anything).
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    node::storage::check_writable(dir).with_context(|| {
        format!(
            "output directory {} is not writable; choose another --out",
            dir.display()
        )
    })
}

/// Prints each listen address on stdout.
pub async fn print_listen_addrs(client: &Client) -> anyhow::Result<()> {
    for a in client.listen_addrs().await? {
        println!("{a}");
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        net: NetArgs,
        path: Option<String>,
    }

    const RELAY: &str =
        "/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("node").chain(args.iter().copied()))
    }

    #[test]
    fn bare_relay_serves_and_relay_addr_uses() {
        let c = parse(&["--relay"]).unwrap();
        assert_eq!(c.net.relay, vec![RelayArg::Serve]);
        let c = parse(&["--relay", RELAY, "--relay", RELAY]).unwrap();
        let want = RelayArg::Use(RELAY.parse().unwrap());
        assert_eq!(c.net.relay, vec![want.clone(), want]);
        assert_eq!(c.net.relays_used().len(), 2);
        let c = parse(&["--relay=serve", "--relay", RELAY]).unwrap();
        assert_eq!(c.net.relay[0], RelayArg::Serve);
        let c = parse(&["--relay", "--listen", "/ip4/127.0.0.1/tcp/0"]).unwrap();
        assert_eq!(c.net.relay, vec![RelayArg::Serve]);
        assert_eq!(c.net.listen.len(), 1);
        let c = parse(&[]).unwrap();
        assert!(c.net.relay.is_empty() && c.net.relays_used().is_empty());
    }

    #[test]
    fn a_relay_address_needs_the_relay_peer_id_and_no_circuit() {
        let e = parse(&["--relay", "/ip4/192.0.2.1/tcp/4001"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("/p2p/<relay peer id>"), "{e}");
        let circuit = format!("{RELAY}/p2p-circuit");
        let e = parse(&["--relay", &circuit]).err().unwrap();
        assert!(e.to_string().contains("relayed address"), "{e}");
        // A bare --relay before a positional argument takes it as the address.
        let e = parse(&["--relay", "file.bin"]).err().unwrap();
        assert!(
            e.to_string().contains("neither `serve` nor a multiaddr"),
            "{e}"
        );
        assert!(parse(&["file.bin", "--relay"]).is_ok());
    }

    #[test]
    fn choke_and_pick_default_to_the_nodes_policies_and_parse_their_names() {
        let c = parse(&[]).unwrap();
        let defaults = protocol::transfer::TransferConfig::default();
        assert_eq!(ChokePolicy::from(c.net.choke), defaults.choker.policy);
        assert_eq!(PickPolicy::from(c.net.pick), defaults.picker.policy);
        let c = parse(&["--choke", "unchoke-all", "--pick", "sequential"]).unwrap();
        assert_eq!(ChokePolicy::from(c.net.choke), ChokePolicy::UnchokeAll);
        assert_eq!(PickPolicy::from(c.net.pick), PickPolicy::Sequential);
        let c = parse(&["--choke", "tit-for-tat", "--pick", "random"]).unwrap();
        assert_eq!(ChokePolicy::from(c.net.choke), ChokePolicy::TitForTat);
        assert_eq!(PickPolicy::from(c.net.pick), PickPolicy::Random);
        assert_eq!(
            PickPolicy::from(parse(&["--pick", "rarest-first"]).unwrap().net.pick),
            PickPolicy::RarestFirst
        );
        let e = parse(&["--choke", "greedy"]).err().unwrap();
        assert!(e.to_string().contains("unchoke-all"), "{e}");
        assert!(parse(&["--pick", "rarest"]).is_err());
    }

    #[test]
    fn relay_limits_default_to_ours_and_need_a_server() {
        let c = parse(&["--relay"]).unwrap();
        let l = c.net.relay_limits(true).unwrap().unwrap();
        assert_eq!(l, RelayLimits::default());
        assert!(l.max_circuit_duration >= Duration::from_secs(600));
        assert!(
            l.max_circuit_bytes >= 128 << 20,
            "a 64 MiB transfer fits both ways"
        );
        let c = parse(&[
            "--relay",
            "--relay-max-circuits",
            "3",
            "--relay-max-circuits-per-peer",
            "1",
            "--relay-max-circuit-duration",
            "60",
            "--relay-max-circuit-bytes",
            "1MiB",
        ])
        .unwrap();
        let l = c.net.relay_limits(true).unwrap().unwrap();
        assert_eq!(
            (
                l.max_circuits,
                l.max_circuits_per_peer,
                l.max_circuit_duration,
                l.max_circuit_bytes
            ),
            (3, 1, Duration::from_secs(60), 1 << 20)
        );
        let c = parse(&["--relay-max-circuits", "3"]).unwrap();
        assert!(c.net.relay_limits(false).is_err());
        assert_eq!(parse(&[]).unwrap().net.relay_limits(false).unwrap(), None);
        let c = parse(&["--relay", "--relay-max-circuit-bytes", "lots"]).unwrap();
        assert!(c.net.relay_limits(true).is_err());
    }
}
